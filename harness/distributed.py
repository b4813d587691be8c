"""Which process of a Lightning DDP job this is.

With `train.strategy: ddp`, Lightning re-runs the whole command once per extra device (the
script is relaunched with LOCAL_RANK / NODE_RANK / WORLD_SIZE set), so every rank walks the
same code. Only rank 0 may write shared state: the stage cache, the W&B runs and the
results. The other ranks still train every stage rank 0 trains (each fit is a collective),
but into private folders, and do nothing else. Which rank this is comes from those
environment variables (and RANK from torchrun or SLURM_PROCID), nothing else.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
from typing import Any

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


_launched: list[subprocess.Popen] = []  # rank processes this process's Trainer started


def watch_ranks(trainer: Any) -> None:
    """After a fit: keep the rank processes Lightning's launcher started for it (the
    command's first DDP fit starts them; later fits join them), for wait_for_ranks."""
    launcher = getattr(trainer.strategy, "launcher", None)
    for proc in getattr(launcher, "procs", None) or ():
        if proc not in _launched:
            _launched.append(proc)


def wait_for_ranks(timeout: float = 600.0) -> None:
    """At rank 0's exit: wait for the ranks it launched, so the command ends with them."""
    deadline = time.monotonic() + timeout
    for proc in _launched:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return


def leader_pid() -> int | None:
    """Rank 0's pid on a non-zero rank of the same host (None elsewhere)."""
    value = os.environ.get(LEADER_PID, "")
    return int(value) if value.isdigit() and int(value) != os.getpid() else None


def quiet_followers() -> None:
    """A non-zero rank walks rank 0's command to train with it: keep its stdout out of
    the terminal."""
    if not is_rank_zero():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
