"""A folder of images with a captions file: `captions.jsonl` or `captions.csv`.

jsonl: one object per line, `{"file": "cat.jpg", "caption": "a cat"}`; csv: a header row with
the same two columns. ("image"/"path" are accepted for the file, "text" for the caption.)
A file may appear on several lines (several captions); its path, relative to the folder, is
the key its split is drawn by. Rows that are not JSON or lack a column are skipped and counted,
as are rows naming a file outside the folder (`../x`, `/etc/x`, a symlink out of it).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..errors import HarnessError
from .decode import read_inside
from .records import CaptionedImages, Record, collect

CAPTION_FILES = ("captions.jsonl", "captions.csv")
FILE_KEYS = ("file", "image", "path")
TEXT_KEYS = ("caption", "text")


def _pick(row: object, names: tuple[str, ...]) -> str | None:
    """The row's value under the first of `names` it has; None if it has none."""
    if not isinstance(row, dict):
        return None
    for name in names:
        if name in row:
            return "" if row[name] is None else str(row[name])
    return None


def _rows(captions_file: Path, f) -> Iterator[tuple[int, object]]:
    """(line number, parsed row or None when the line is not a JSON object / CSV row)."""
    if captions_file.suffix == ".csv":
        reader = csv.DictReader(f)
        for row in reader:
            yield reader.line_num, row
        return
    for number, line in enumerate(f, 1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError:
                yield number, None


def read_rows(captions_file: Path, skipped: Counter | None = None) -> Iterator[tuple[str, str]]:
    """(relative image path, caption) per usable row of a captions.jsonl / captions.csv.

    A row that is not JSON, or lacks a file or caption column, is skipped and counted in
    `skipped` (a researcher's million-line file should not die on one bad line); a file with
    no usable row at all is an error naming it and its first bad line.
    """
    where = str(captions_file)
    skipped = Counter() if skipped is None else skipped
    usable, first_bad = 0, None
    try:
        with captions_file.open(newline="", encoding="utf-8") as f:
            for number, row in _rows(captions_file, f):
                name, caption = _pick(row, FILE_KEYS), _pick(row, TEXT_KEYS)
                if name is None or caption is None:
                    skipped["bad caption rows"] += 1
                    first_bad = first_bad or number
                    continue
                usable += 1
                yield name, caption
    except UnicodeDecodeError as err:
        raise HarnessError(f"not UTF-8 text (byte offset {err.start})", where) from None
    except (OSError, csv.Error) as err:
        raise HarnessError(f"cannot read: {err}", where) from None
    if not usable:
        columns = f"one of {FILE_KEYS} and one of {TEXT_KEYS}"
        bad = f"; line {first_bad} lacks {columns}, or is not JSON" if first_bad else ""
        raise HarnessError(f"no usable row{bad}", where)


class FolderSource(CaptionedImages):
    """Images of `path` captioned by its captions file, for one split."""

    def __init__(self, path: str, split: str, limit: int, resolution: int) -> None:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise HarnessError("data.path is not a folder", str(root))
        found = [root / name for name in CAPTION_FILES if (root / name).is_file()]
        if not found:
            raise HarnessError(f"no {' or '.join(CAPTION_FILES)} in the image folder", str(root))
        skipped: Counter = Counter()
        records = _records(root, found[0], skipped)
        super().__init__(*collect(records, split, limit, resolution, "folder", str(root), skipped))


def _records(root: Path, captions_file: Path, skipped: Counter) -> Iterator[Record]:
    # A missing file fails in read_inside (OSError) and is counted with the unreadable ones.
    real = root.resolve()
    for name, caption in read_rows(captions_file, skipped):
        yield name, caption, lambda name=name: read_inside(real, name)
