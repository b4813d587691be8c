"""Write to a temporary name beside the target, then rename: a reader (or a run that was
killed mid-write) never sees half a file. One helper for every file the harness publishes."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """`write(tmp)` creates a file (or a folder) at `tmp`, which is then renamed to `path`.

    tmp sits in path's folder (a rename never crosses file systems) under a name private to
    this process; it is removed if `write` or the rename fails. Renaming a folder onto an
    existing non-empty one fails (OSError): the caller decides whether that was a lost race.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _remove(tmp)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        _remove(tmp)
    return path


def write_json_atomic(path: Path, payload: dict[str, Any]) -> Path:
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_text_atomic(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def _remove(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp.exists() or tmp.is_symlink():
        tmp.unlink(missing_ok=True)
