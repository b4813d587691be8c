"""Content-addressed stage cache: `ROOT/<stage>/<key>/`, complete or absent.

A stage trains into a private temporary directory that is renamed to its key only when
training and writing have finished, so a crash (even SIGKILL) never leaves an entry that a
later run would read. An exclusive `flock` per key makes a second process that needs the
same stage wait for the first instead of training it twice; the kernel drops the lock when
its holder dies, so a killed run never blocks the next one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HarnessError

log = logging.getLogger(__name__)
META = "cache_meta.json"
TMP_PREFIX = ".tmp-"


@dataclass
class Resolved:
    path: Path
    reused: bool
    seconds: float  # training time now, or as recorded when the entry was made


class StageCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def has(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / META).is_file()

    @contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        folder = self.root / stage
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(folder / f".{key}.lock", "a+")  # noqa: SIM115 (held for the block)
        except OSError as err:
            raise HarnessError(
                f"cannot write the stage cache: {err.strerror}", str(folder)
            ) from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("waiting: another process is training %s %s", stage, key)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def resolve(
        self,
        stage: str,
        key: str,
        train: Callable[[Path], dict[str, Any] | None],
        retrain: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> Resolved:
        """The entry for (stage, key), training it with `train(tmp_dir)` if absent.

        `train` writes everything into the directory it is given; what it returns is kept
        in the entry's metadata beside `meta` (e.g. the stage's config).
        """
        final = self.path(stage, key)
        if self.has(stage, key) and not retrain:
            return Resolved(final, True, self._seconds(final))
        with self.lock(stage, key):
            if self.has(stage, key) and not retrain:  # trained while we waited
                return Resolved(final, True, self._seconds(final))
            self._sweep(final.parent)
            tmp = final.parent / f"{TMP_PREFIX}{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            start = time.perf_counter()
            try:
                extra = train(tmp) or {}
                seconds = time.perf_counter() - start
                record = {"stage": stage, "key": key, "seconds": seconds, **(meta or {}), **extra}
                (tmp / META).write_text(json.dumps(record, indent=2, default=str) + "\n")
                self._publish(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return Resolved(final, False, seconds)

    @staticmethod
    def _publish(tmp: Path, final: Path) -> None:
        if final.exists():  # --retrain: move the old entry out of the way first
            old = final.with_name(f"{TMP_PREFIX}old-{final.name}-{uuid.uuid4().hex[:8]}")
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)

    @staticmethod
    def _sweep(folder: Path) -> None:
        """Remove temporaries left by processes that died (we hold the key's lock)."""
        for tmp in folder.glob(f"{TMP_PREFIX}*"):
            pid = tmp.name.split("-")[-2] if tmp.name.count("-") >= 3 else ""
            if not pid.isdigit() or not _alive(int(pid)):
                shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _seconds(final: Path) -> float:
        try:
            return float(json.loads((final / META).read_text()).get("seconds", 0.0))
        except (OSError, ValueError):
            return 0.0

    def entries(self) -> list[dict[str, Any]]:
        """Every complete entry's metadata (for `ls`)."""
        out = []
        for meta in sorted(self.root.glob(f"*/*/{META}")):
            try:
                out.append(json.loads(meta.read_text()) | {"path": str(meta.parent)})
            except (OSError, ValueError):
                continue
        return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
