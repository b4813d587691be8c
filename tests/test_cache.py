"""The stage cache: atomic entries, one trainer per key, nothing half-written is read."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest

from harness.cache import StageCache


def write_weights(tmp: Path) -> dict:
    (tmp / "model.pt").write_text("weights")
    return {"note": "trained"}


def test_train_once_then_reuse(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def train(tmp: Path) -> dict:
        calls.append(tmp)
        return write_weights(tmp)

    first = cache.resolve("decoder", "abc", train, meta={"config": {"x": 1}})
    second = cache.resolve("decoder", "abc", train)
    assert len(calls) == 1 and not first.reused and second.reused
    assert first.path == second.path == tmp_path / "decoder" / "abc"
    assert (first.path / "model.pt").read_text() == "weights"
    assert calls[0] != first.path  # trained under a temporary name
    entries = cache.entries()
    assert entries[0]["note"] == "trained" and entries[0]["config"] == {"x": 1}
    cache.resolve("decoder", "abc", train, retrain=True)
    assert len(calls) == 2 and len(list((tmp_path / "decoder").iterdir())) == 2  # entry + lock


def test_failed_training_leaves_nothing(tmp_path):
    cache = StageCache(tmp_path)

    def broken(tmp: Path) -> dict:
        (tmp / "model.pt").write_text("half")
        raise RuntimeError("loss is NaN")

    with pytest.raises(RuntimeError):
        cache.resolve("prior", "k", broken)
    assert not cache.has("prior", "k")
    assert [p.name for p in (tmp_path / "prior").iterdir()] == [".k.lock"]


def _slow_train(root: str, marker: str) -> None:
    def train(tmp: Path) -> dict:
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        return write_weights(tmp)

    StageCache(root).resolve("clip", "same", train)


def test_two_processes_never_train_the_same_stage(tmp_path):
    marker = tmp_path / "trained_by"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_slow_train, args=(str(tmp_path), str(marker))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(marker.read_text().split()) == 1


def _hang_in_training(root: str, started: str) -> None:
    def train(tmp: Path) -> dict:
        (tmp / "model.pt").write_text("half")
        Path(started).touch()
        time.sleep(60)
        return {}

    StageCache(root).resolve("decoder", "k", train)


def test_sigkill_mid_training_is_never_read_and_rerun_trains(tmp_path):
    started = tmp_path / "started"
    proc = mp.get_context("spawn").Process(
        target=_hang_in_training, args=(str(tmp_path / "c"), str(started))
    )
    proc.start()
    deadline = time.time() + 30
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    cache = StageCache(tmp_path / "c")
    assert not cache.has("decoder", "k")
    resolved = cache.resolve("decoder", "k", write_weights)  # the dead holder's lock is gone
    assert not resolved.reused and (resolved.path / "model.pt").read_text() == "weights"
    leftovers = [p.name for p in (tmp_path / "c" / "decoder").iterdir()]
    assert sorted(leftovers) == [".k.lock", "k"]  # the killed run's temporary was swept
