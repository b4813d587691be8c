"""webdataset tar shards in img2dataset's layout: `key.jpg` + `key.txt` per sample.

`data.path` is a glob of shards (`/data/cc3m/*.tar`); they are read in sorted order with the
stdlib tarfile. A sample's key is its member name up to the first dot of the basename (the
webdataset convention), so the split does not change when the data is re-sharded. A shard cut
short (an interrupted copy) keeps the samples before the cut; the loss is counted and logged.
Members are read from the shard only: links inside a shard are counted, never followed, and a
caption is read up to what `decode.take_caption` keeps.
"""

from __future__ import annotations

import glob
import os
import tarfile
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..errors import HarnessError
from .decode import MAX_CAPTION_CHARS, MAX_FILE_BYTES, TOO_BIG
from .records import CaptionedImages, Record, collect

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
TEXT_EXT = "txt"
CAPTION_BYTES = 4 * MAX_CAPTION_CHARS + 4  # UTF-8: enough to see that a caption is too long


def sample_key(member_name: str) -> tuple[str, str]:
    """`dir/000123.jpg` -> ("dir/000123", "jpg"); extensions may hold dots (`seg.jpg`)."""
    path = Path(member_name)
    stem, _, ext = path.name.partition(".")
    key = str(path.parent / stem) if str(path.parent) != "." else stem
    return key, ext.lower()


def _members(tar: tarfile.TarFile, skipped: Counter) -> Iterator[tarfile.TarInfo]:
    """The shard's members in order; a shard cut short keeps the members before the cut."""
    try:
        yield from tar
        tar.fileobj.seek(tar.offset)  # a cut between two members: no end-of-archive block
        cut = not tar.fileobj.read(1)
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        cut = True
    if cut:
        skipped["shards cut short"] += 1


def _shard_records(tar: tarfile.TarFile, skipped: Counter) -> Iterator[Record]:
    """Group a shard's members by key; yield (key, caption, image reader) per sample."""
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    for member in _members(tar, skipped):
        if member.isfile():
            key, ext = sample_key(member.name)
            samples.setdefault(key, {})[ext] = member
        elif member.issym() or member.islnk():
            skipped["links in shards (not followed)"] += 1
    for key, parts in samples.items():
        image = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
        if image is None:
            skipped["samples without an image"] += 1
            continue
        if TEXT_EXT not in parts:
            skipped["samples without a caption"] += 1
            continue
        if image.size > MAX_FILE_BYTES:  # read into memory whole
            skipped[TOO_BIG] += 1
            continue
        try:  # a caption whose bytes lie past the cut
            caption = _reader(tar, parts[TEXT_EXT], CAPTION_BYTES)().decode("utf-8", "replace")
        except OSError:
            skipped["unreadable captions"] += 1
            continue
        yield key, caption, _reader(tar, image)


def _reader(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int = -1):
    def read() -> bytes:
        try:  # by TarInfo: by name would re-scan the shard (and fail again past a cut)
            return tar.extractfile(member).read(limit)
        except (tarfile.TarError, EOFError, zlib.error) as err:  # counted like any unreadable image
            raise OSError(f"{member.name}: {err}") from err

    return read


def _records(shards: list[str], skipped: Counter) -> Iterator[Record]:
    for shard in shards:
        if not os.path.isfile(shard):  # a folder, a pipe or a device the glob also matched
            skipped["matches that are not files"] += 1
            continue
        try:
            tar = tarfile.open(shard, mode="r:*")
        except (tarfile.TarError, OSError, EOFError, zlib.error):
            skipped["unreadable shards"] += 1  # not a tar at all: its samples are lost
            continue
        with tar:
            yield from _shard_records(tar, skipped)


class WebDatasetSource(CaptionedImages):
    """The samples of every shard matching the glob `path`, for one split."""

    def __init__(self, path: str, split: str, limit: int, resolution: int) -> None:
        shards = sorted(glob.glob(str(Path(path).expanduser())))
        if not shards:
            raise HarnessError("no webdataset shard matches this glob", path)
        skipped: Counter = Counter()
        self.shards = shards
        super().__init__(
            *collect(
                _records(shards, skipped), split, limit, resolution, "webdataset", path, skipped
            )  # fmt: skip
        )
