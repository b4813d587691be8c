"""A folder of images with a captions file: `captions.jsonl` or `captions.csv`.

jsonl: one object per line, `{"file": "cat.jpg", "caption": "a cat"}`; csv: a header row with
the same two columns. ("image"/"path" are accepted for the file, "text" for the caption.)
A file may appear on several lines (several captions); its path, relative to the folder, is
the key its split is drawn by.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from ..errors import HarnessError
from . import CaptionedImages, Record, collect

CAPTION_FILES = ("captions.jsonl", "captions.csv")
FILE_KEYS = ("file", "image", "path")
TEXT_KEYS = ("caption", "text")


def _pick(row: dict, names: tuple[str, ...], where: str) -> str:
    for name in names:
        if name in row:
            return "" if row[name] is None else str(row[name])
    raise HarnessError(f"a row lacks a column named one of {names}: {row}", where)


def read_rows(captions_file: Path) -> Iterator[tuple[str, str]]:
    """(relative image path, caption) per row of a captions.jsonl / captions.csv."""
    where = str(captions_file)
    with captions_file.open(newline="", encoding="utf-8") as f:
        if captions_file.suffix == ".csv":
            rows: Iterator[dict] = csv.DictReader(f)
        else:
            rows = (json.loads(line) for line in f if line.strip())
        try:
            for row in rows:
                yield _pick(row, FILE_KEYS, where), _pick(row, TEXT_KEYS, where)
        except json.JSONDecodeError as err:
            raise HarnessError(f"not JSON lines: {err}", where) from err


class FolderSource(CaptionedImages):
    """Images of `path` captioned by its captions file, for one split."""

    def __init__(self, path: str, split: str, limit: int, resolution: int) -> None:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise HarnessError("data.path is not a folder", str(root))
        found = [root / name for name in CAPTION_FILES if (root / name).is_file()]
        if not found:
            raise HarnessError(f"no {' or '.join(CAPTION_FILES)} in the image folder", str(root))
        records = _records(root, found[0])
        super().__init__(*collect(records, split, limit, resolution, "folder", str(root)))


def _records(root: Path, captions_file: Path) -> Iterator[Record]:
    # A missing file fails in read_bytes (OSError) and is counted with the unreadable ones.
    for name, caption in read_rows(captions_file):
        yield name, caption, (root / name).read_bytes
