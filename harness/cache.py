"""Content-addressed stage cache: `ROOT/<stage>/<key>/`, complete or absent.

A stage trains into a private temporary directory that is renamed to its key only when
training and writing have finished, so a crash (even SIGKILL) never leaves an entry that a
later run would read. An exclusive `flock` per key makes a second process that needs the
same stage wait for the first instead of training it twice; the kernel drops the lock when
its holder dies, so a killed run never blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import distributed, paths
from .errors import HarnessError

log = logging.getLogger(__name__)
META = "cache_meta.json"
TMP_PREFIX = ".tmp-"
PARTIAL_PREFIX = ".partial-"
FOLLOW_POLL = 0.2  # seconds between a non-zero DDP rank's looks at rank 0's progress
FOLLOW_TIMEOUT = 3600.0  # its wait for rank 0's entry once its own copy has trained


@dataclass
class Resolved:
    path: Path
    reused: bool
    seconds: float  # training time now, or as recorded when the entry was made


class StageCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, stage: str, key: str) -> Path:
        return paths.inside(self.root, self.root / stage / key)

    def partial(self, stage: str, key: str) -> Path:
        """Where a fit of (stage, key) keeps its in-stage checkpoint until the entry is
        published (stages/resume.py): outside the temporary folder a crash loses."""
        return paths.inside(self.root, self.root / stage / f"{PARTIAL_PREFIX}{key}")

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
        if not distributed.is_rank_zero():
            return self._follow(stage, key, train, retrain)
        distributed.mark_leader()
        with self.lock(stage, key):
            if self.has(stage, key) and not retrain:  # trained while we waited
                return Resolved(final, True, self._seconds(final))
            self._sweep(final.parent)
            if retrain:  # remade from scratch, not continued from a killed earlier fit
                shutil.rmtree(self.partial(stage, key), ignore_errors=True)
            tmp = final.parent / f"{TMP_PREFIX}{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            start = time.perf_counter()
            try:
                extra = train(tmp) or {}
                seconds = time.perf_counter() - start
                record = {"stage": stage, "key": key, "seconds": seconds, **(meta or {}), **extra}
                (tmp / META).write_text(json.dumps(record, indent=2, default=str) + "\n")
                self._publish(tmp, final)
                shutil.rmtree(self.partial(stage, key), ignore_errors=True)
            except BaseException as err:
                shutil.rmtree(tmp, ignore_errors=True)
                failure = stage_failure(err, stage, key, final.parent)
                if failure is None or failure is err:
                    raise
                raise failure from err
        return Resolved(final, False, seconds)

    def _follow(
        self, stage: str, key: str, train: Callable[[Path], Any], retrain: bool
    ) -> Resolved:
        """A non-zero DDP rank: it never takes the key's lock (rank 0 holds it while the
        ranks train together) and never publishes. It trains when rank 0 does, since each
        fit is a collective, into a private folder, then uses rank 0's entry."""
        final = self.path(stage, key)
        before = self._stamp(final)
        leader = distributed.leader_pid()
        while leader is not None and not self._leader_busy(final, leader):
            if self._published(final, before, retrain):  # rank 0 had it, or made it alone
                return Resolved(final, True, self._seconds(final))
            self._check_leader(leader, stage, key)
            time.sleep(FOLLOW_POLL)
        tmp = final.parent / f"{TMP_PREFIX}{key}-{os.getpid()}-{distributed.rank_tag()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        start = time.perf_counter()
        try:
            train(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        seconds = time.perf_counter() - start
        deadline = time.monotonic() + FOLLOW_TIMEOUT
        while not self._published(final, before, retrain):
            if leader is not None:
                self._check_leader(leader, stage, key)
                if not self._leader_busy(final, leader) and not self._published(
                    final, before, retrain
                ):
                    raise HarnessError(f"rank 0 stopped without writing {stage} {key}")
            if time.monotonic() > deadline:
                raise HarnessError(f"rank 0 did not write {stage} {key} in time", str(final))
            time.sleep(FOLLOW_POLL)
        return Resolved(final, False, seconds)

    def _leader_busy(self, final: Path, leader: int) -> bool:
        return any(final.parent.glob(f"{TMP_PREFIX}{final.name}-{leader}-*"))

    def _stamp(self, final: Path) -> int | None:
        try:
            return (final / META).stat().st_mtime_ns
        except OSError:
            return None

    def _published(self, final: Path, before: int | None, retrain: bool) -> bool:
        stamp = self._stamp(final)
        return stamp is not None and (not retrain or stamp != before)

    @staticmethod
    def _check_leader(leader: int, stage: str, key: str) -> None:
        if not _alive(leader):
            raise HarnessError(f"rank 0 (pid {leader}) died while {stage} {key} was due")

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


# What torch.save says when the disk fills (or RLIMIT_FSIZE stops it): no errno, no path.
TORCH_WRITE_FAILED = ("inline_container", "PytorchStreamWriter", "file write failed")


def stage_failure(err: BaseException, stage: str, key: str, folder: Path) -> HarnessError | None:
    """A failure while making (stage, key) as the one-line error a user can act on, or None
    (re-raise as is: a bug). A HarnessError raised inside (e.g. a NaN loss) gains the stage's
    name; a failed read or write (disk full, file size limit, read-only) names the path."""
    if isinstance(err, HarnessError):
        if err.where is None:  # same object and type, now saying which stage it was
            HarnessError.__init__(err, err.message, f"{stage} {key}")
        return err
    doing = f"while making {stage} {key}; nothing was cached"
    if isinstance(err, OSError) and err.errno is not None:
        return HarnessError(f"{err.strerror or err} ({doing})", str(err.filename or folder))
    # numpy and torch report a short write without an errno (or a path)
    short_write = isinstance(err, OSError) or (
        isinstance(err, RuntimeError) and any(m in str(err) for m in TORCH_WRITE_FAILED)
    )
    if not short_write:
        return None
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    return HarnessError(
        f"a write failed: disk full or over a file size limit? ({free}; {doing})", str(folder)
    )


def check_writable(folder: str | Path, what: str) -> None:
    """HarnessError naming `folder` unless a file can be written in it (created if absent).

    Leaves nothing behind: the probe file is deleted and folders it had to create are
    removed again, so a run that stops here wrote nothing.
    """
    folder = Path(folder)
    created = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        created.append(probe)
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        try:
            os.write(fd, b"x")  # a full disk can still create an empty file
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as err:
        raise HarnessError(
            f"cannot write the {what}: {err.strerror or err}", str(err.filename or folder)
        ) from None
    finally:
        for path in created:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
