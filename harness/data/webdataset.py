"""webdataset tar shards in img2dataset's layout: `key.jpg` + `key.txt` per sample.

`data.path` is a glob of shards (`/data/cc3m/*.tar`); they are read in sorted order with the
stdlib tarfile. A sample's key is its member name up to the first dot of the basename (the
webdataset convention), so the split does not change when the data is re-sharded.
"""

from __future__ import annotations

import glob
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..errors import HarnessError
from . import CaptionedImages, Record, collect

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
TEXT_EXT = "txt"


def sample_key(member_name: str) -> tuple[str, str]:
    """`dir/000123.jpg` -> ("dir/000123", "jpg"); extensions may hold dots (`seg.jpg`)."""
    path = Path(member_name)
    stem, _, ext = path.name.partition(".")
    key = str(path.parent / stem) if str(path.parent) != "." else stem
    return key, ext.lower()


def _shard_records(tar: tarfile.TarFile, skipped: Counter) -> Iterator[Record]:
    """Group a shard's members by key; yield (key, caption, image reader) per sample."""
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    for member in tar.getmembers():
        if member.isfile():
            key, ext = sample_key(member.name)
            samples.setdefault(key, {})[ext] = member
    for key, parts in samples.items():
        image = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
        if image is None:
            skipped["samples without an image"] += 1
            continue
        if TEXT_EXT not in parts:
            skipped["samples without a caption"] += 1
            continue
        caption = tar.extractfile(parts[TEXT_EXT]).read().decode("utf-8", errors="replace")
        yield key, caption, _reader(tar, image)


def _reader(tar: tarfile.TarFile, member: tarfile.TarInfo):
    def read() -> bytes:
        try:
            return tar.extractfile(member).read()
        except tarfile.TarError as err:  # counted like any unreadable image
            raise OSError(f"{member.name}: {err}") from err

    return read


def _records(shards: list[str], skipped: Counter) -> Iterator[Record]:
    for shard in shards:
        try:
            with tarfile.open(shard, mode="r:*") as tar:
                yield from _shard_records(tar, skipped)
        except (tarfile.TarError, OSError, EOFError):
            skipped["unreadable shards"] += 1  # a truncated shard loses its samples


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
