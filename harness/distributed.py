"""Which process of a Lightning DDP job this is.

With `train.strategy: ddp`, Lightning re-runs the whole command once per extra device (the
script is relaunched with LOCAL_RANK / NODE_RANK set), so every rank walks the same code.
Only rank 0 may write shared state: the stage cache, the W&B runs and the results. The other
ranks still train every stage rank 0 trains (each fit is a collective), but into private
folders, and do nothing else.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from pathlib import Path

LEADER_PID = "HARNESS_DDP_LEADER_PID"  # rank 0's pid, inherited by the ranks it launches


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else None


def is_rank_zero() -> bool:
    """True outside DDP and on global rank 0: RANK / SLURM_PROCID when a launcher sets them,
    else LOCAL_RANK and NODE_RANK (what Lightning's own launcher sets)."""
    for name in ("RANK", "SLURM_PROCID"):
        value = _env_int(name)
        if value is not None:
            return value == 0
    return not _env_int("LOCAL_RANK") and not _env_int("NODE_RANK")


def world_size() -> int:
    """Processes in this torch.distributed job (1 outside one): what trained a stage."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank_tag() -> str:
    """`n<node>r<local>`: names a non-zero rank's private folders."""
    return f"n{_env_int('NODE_RANK') or 0}r{_env_int('LOCAL_RANK') or 0}"


def mark_leader() -> None:
    """Called by rank 0 before any Trainer launches the other ranks: they inherit the pid
    and watch rank 0's cache temporaries instead of deciding on their own what to train.
    At exit rank 0 waits for them, so the command ends when every rank has."""
    if not is_rank_zero() or os.environ.get(LEADER_PID) == str(os.getpid()):
        return
    os.environ[LEADER_PID] = str(os.getpid())
    atexit.register(wait_for_ranks)


def wait_for_ranks(timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while _live_ranks() and time.monotonic() < deadline:
        time.sleep(0.2)


def _live_ranks() -> list[int]:
    """Running processes that inherited this process's leader mark with LOCAL_RANK > 0."""
    mark = f"{LEADER_PID}={os.getpid()}".encode()
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        rank = next((e[len(b"LOCAL_RANK=") :] for e in env if e.startswith(b"LOCAL_RANK=")), b"0")
        if mark in env and state != "Z" and rank not in (b"", b"0"):
            found.append(int(entry.name))
    return found


def leader_pid() -> int | None:
    """Rank 0's pid on a non-zero rank of the same host (None elsewhere)."""
    value = os.environ.get(LEADER_PID, "")
    return int(value) if value.isdigit() and int(value) != os.getpid() else None


def quiet_followers() -> None:
    """A non-zero rank walks rank 0's command to train with it: keep its stdout out of
    the terminal."""
    if not is_rank_zero():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
