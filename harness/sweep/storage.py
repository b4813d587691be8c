"""Where a study lives: a local SQLite file (the default) or Optuna journal file, or any RDB
URL (PostgreSQL, MySQL) through which workers on many hosts share one study.

RDB workers heartbeat their running trial; a trial whose worker stopped beating (killed,
preempted) is failed and re-queued with the same parameters by Optuna's
RetryHeartbeatStaleTrialCallback. A journal file has no heartbeat: there (and on any
storage, sooner) a worker re-queues the trials of dead worker processes on its own host.
"""

from __future__ import annotations

import fcntl
import hashlib
import shlex
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna

from ..errors import HarnessError

HEARTBEAT_S = 10  # a running trial's worker writes a heartbeat this often
GRACE_S = 60  # ... and is presumed dead after this long without one
MAX_RETRY = 3  # re-queues of one trial after its worker died
JOURNAL = "journal:"
FILE_SUFFIXES = {".db": "sqlite", ".sqlite": "sqlite", ".sqlite3": "sqlite", ".log": "journal",
                 ".journal": "journal", ".jsonl": "journal"}  # fmt: skip


@contextmanager
def quiet_experimental() -> Iterator[None]:
    """Heartbeats, their retry callback and metric names are marked experimental in Optuna;
    multi-host studies rely on them, so the warning would only be noise on every start."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def resolve_url(text: str | None, root: Path) -> str:
    """A storage URL from `--storage` / the sweep file: a URL, `journal:PATH`, a `.db` or
    `.log` path, or nothing (sqlite:///ROOT/study.db)."""
    if not text:
        return f"sqlite:///{(root / 'study.db').resolve()}"
    if "://" in text:
        return text
    if text.startswith(JOURNAL):
        return JOURNAL + str(Path(text[len(JOURNAL) :]).resolve())
    kind = FILE_SUFFIXES.get(Path(text).suffix)
    if kind == "sqlite":
        return f"sqlite:///{Path(text).resolve()}"
    if kind == "journal":
        return JOURNAL + str(Path(text).resolve())
    raise HarnessError(
        f"storage {text!r}: expected an RDB URL (postgresql://..., sqlite:///...), "
        "journal:PATH, or a .db / .log file"
    )


def redact(url: str) -> str:
    """The URL without its password (what may be printed and written down)."""
    if url.startswith(JOURNAL) or "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 (an unparsable URL has nothing we can hide reliably)
        return url.split("://", 1)[0] + "://***"


def dashboard_command(url: str) -> str:
    """How to open the study in optuna-dashboard (a journal by its file, else its URL)."""
    if url.startswith(JOURNAL):
        return f"optuna-dashboard {shlex.quote(url[len(JOURNAL) :])}"
    return f"optuna-dashboard {shlex.quote(url)}"


def local_file(url: str) -> Path | None:
    """The file behind a SQLite or journal URL (None for a server)."""
    if url.startswith(JOURNAL):
        return Path(url[len(JOURNAL) :])
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///") :])
    return None


def engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}  # local workers take turns writing
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {"pool_pre_ping": True}


def open_storage(url: str, where: str = "--storage") -> Any:
    """An Optuna storage for `url`; HarnessError (one line, password hidden) if unreachable."""
    if url.startswith(JOURNAL):
        path = Path(url[len(JOURNAL) :])
        if not path.parent.is_dir():
            raise HarnessError(f"storage {url}: folder {path.parent} not found", where)
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    file = local_file(url)
    if file is not None and not file.parent.is_dir():
        raise HarnessError(f"storage {url}: folder {file.parent} not found", where)
    try:
        # Workers started together on a fresh database would all create Optuna's tables at
        # once; PostgreSQL then fails all but one (duplicate key in pg_type). One at a time.
        with StorageLock(url, "schema"), quiet_experimental():
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs(url),
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=MAX_RETRY
                ),
            )
    except Exception as err:  # noqa: BLE001 (driver, network and URL errors all end here)
        reason = str(getattr(err, "orig", None) or err).strip().splitlines() or [repr(err)]
        name = type(err).__name__
        if isinstance(err, ModuleNotFoundError):
            reason = [f"{err} (postgresql needs `pip install 'psycopg[binary]'`)"]
        raise HarnessError(
            f"cannot open Optuna storage {redact(url)}: {reason[0] or name}", where
        ) from None


def retry_callback(storage: Any) -> Any:
    """What re-queues a trial whose worker died: the storage's own, else a new one."""
    own = getattr(storage, "get_heartbeat_stale_trial_callback", lambda: None)()
    with quiet_experimental():
        return own or optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


class StorageLock:
    """A named lock shared by every worker of one storage, on any host: a file lock beside
    a SQLite / journal file, an advisory lock on PostgreSQL (GET_LOCK on MySQL). A dead
    holder's lock is released by the kernel / the server. `release` may be called early
    and again. Used to create the schema, and to "count the study's trials, then ask for
    one" (named by the study) so the budget is met exactly."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.key = int.from_bytes(hashlib.sha256(f"harness-sweep:{name}".encode()).digest()[:8],
                                  "big", signed=True)  # fmt: skip
        self._held: Any = None
        self._engine: Any = None
        self._thread = threading.Lock()

    def acquire(self) -> None:
        file = local_file(self.url)
        if file is not None:
            handle = open(f"{file}.{self.name}.lock", "a+")  # noqa: SIM115 (held until release)
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._held = ("file", handle)
        elif self.url.startswith(("postgresql", "mysql")):
            from sqlalchemy import text

            conn = self._server().connect()
            if self.url.startswith("postgresql"):
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
            else:
                conn.execute(text("SELECT GET_LOCK(:k, -1)"), {"k": str(self.key)})
            self._held = ("server", conn)
        else:  # e.g. sqlite in memory: one process only
            self._thread.acquire()
            self._held = ("thread", None)

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        kind, handle = held
        if kind == "file":
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        elif kind == "server":
            handle.close()  # ends the session, which drops its advisory lock
        else:
            self._thread.release()

    def _server(self) -> Any:
        if self._engine is None:
            import sqlalchemy
            from sqlalchemy.pool import NullPool

            self._engine = sqlalchemy.create_engine(
                self.url,
                poolclass=NullPool,
                **{
                    k: v for k, v in engine_kwargs(self.url).items() if k == "connect_args"
                },  # fmt: skip
            )
        return self._engine

    def __enter__(self) -> StorageLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
