"""A crash costs nothing already computed; a NaN loss stops its stage and caches nothing.

One chain of runs on the micro experiment, each killed from outside with a real SIGKILL at
the moment it is seen doing something: training the CLIP, training the decoder (once its fit
has written an in-stage checkpoint), sampling, computing metrics, logging to W&B. Each rerun
resumes from what the killed runs finished (the decoder from its checkpoint, mid-fit); the
last one completes and must give the uninterrupted (session) run's results.csv exactly.

The chain starts from a copy of the session's cache without the CLIP, the decoder and the
samples, so those are made again (in other processes) while the rest is reused: the retrained
weights must equal the session's bit for bit (CPU determinism across processes).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.conftest import MICRO, ROOT, child_env, run_cli

ARM = "prior.kind=diffusion"  # the first arm: every kill lands while it is being made
EVERY = "train.checkpoint_every=5"  # of the decoder's 20 steps; not hashed: same stage keys


def checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob(".partial-*/last.ckpt"))


def tmp_in(folder: Path) -> bool:
    return any(folder.glob(".tmp-*"))


# (kill point, is the run there yet? given (cache, out, stdout so far))
POINTS: list[tuple[str, Callable[[Path, Path, str], bool]]] = [
    ("clip training", lambda cache, out, log: tmp_in(cache / "clip")),
    ("decoder training", lambda cache, out, log: bool(checkpoints(cache / "decoder"))),
    ("sampling", lambda cache, out, log: tmp_in(cache / "samples")),
    ("metric computation", lambda cache, out, log: "scoring ..." in log),
    # per_sample.csv is the last file before the arm's W&B run opens (runs/<exp>/wandb/)
    (
        "W&B logging",
        lambda cache, out, log: (out / "micro" / ARM / "seed0" / "per_sample.csv").exists(),
    ),
]


def run_until(point: str, ready: Callable, cache: Path, out: Path, log: Path) -> None:
    """Start `run` and SIGKILL it (and its W&B service) once `ready` sees it at `point`."""
    env = {**child_env(), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "WANDB_MODE": "offline", "HARNESS_CACHE": str(cache)}  # fmt: skip
    cmd = [sys.executable, "-m", "harness", "run", str(MICRO), EVERY, "--out", str(out),
           "--no-progress"]  # fmt: skip
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 600
        while not ready(cache, out, log.read_text()):
            assert proc.poll() is None, f"run ended before {point}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"never reached {point}"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def entries(cache: Path, stage: str) -> list[str]:
    """Complete entries (published keys) of one stage."""
    folder = cache / stage
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if (
        folder.is_dir()) else []  # fmt: skip


def state_dict(entry: Path) -> dict[str, torch.Tensor]:
    return torch.load(entry / "model.pt", map_location="cpu", weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def chain(micro_cache: Path, tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("crash")
    cache, out = base / "cache", base / "runs"
    session = json.loads((micro_cache.parent / "runs" / "micro" / "results.json").read_text())
    keys = session["rows"][0]["stage_keys"]
    shutil.copytree(micro_cache, cache)
    for stage in ("clip", "decoder"):
        shutil.rmtree(cache / stage / keys[stage])
    shutil.rmtree(cache / "samples")
    after_kill = {}
    for point, ready in POINTS:
        run_until(point, ready, cache, out, base / "run.log")
        after_kill[point] = {s: entries(cache, s) for s in ("clip", "decoder", "samples")}
        after_kill[point]["results"] = (out / "micro" / "results.csv").exists()
        after_kill[point]["checkpoints"] = [
            torch.load(p, weights_only=True)["global_step"] for p in checkpoints(cache / "decoder")
        ]
    final = run_cli("run", str(MICRO), EVERY, "--out", str(out), "--no-progress",
                    env={"HARNESS_CACHE": str(cache)}, timeout=900)  # fmt: skip
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    return {"cache": cache, "out": out, "keys": keys, "after_kill": after_kill,
            "final": final.stdout, "session": micro_cache}  # fmt: skip


def test_a_killed_stage_leaves_no_entry_and_finished_ones_survive(chain) -> None:
    k, keys = chain["after_kill"], chain["keys"]
    assert k["clip training"]["clip"] == [] and k["clip training"]["decoder"] == []
    assert k["decoder training"]["clip"] == [keys["clip"]]  # kept through the next kill
    assert k["decoder training"]["decoder"] == []
    assert k["sampling"]["decoder"] == [keys["decoder"]] and k["sampling"]["samples"] == []
    assert len(k["metric computation"]["samples"]) == 1  # the first arm's, complete
    assert not any(v["results"] for v in k.values())  # no results.csv from a killed run
    leftovers = [p for p in chain["cache"].rglob(".tmp-*")]
    assert leftovers == []  # every killed run's temporary was swept by the next one


def test_rerun_after_kills_gives_the_uninterrupted_results(chain) -> None:
    session_csv = chain["session"].parent / "runs" / "micro" / "results.csv"
    expected = list(csv.DictReader(session_csv.open()))
    got = list(csv.DictReader((chain["out"] / "micro" / "results.csv").open()))
    assert got == expected
    assert "training" not in chain["final"]  # everything the killed runs finished was kept


@pytest.mark.parametrize("stage", ["clip", "decoder"])
def test_retrained_weights_equal_the_sessions_bit_for_bit(chain, stage: str) -> None:
    key = chain["keys"][stage]
    ours, theirs = state_dict(chain["cache"] / stage / key), state_dict(
        chain["session"] / stage / key)  # fmt: skip
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name


def test_the_decoder_killed_mid_fit_resumes_from_its_checkpoint(chain) -> None:
    """The kill lands after a checkpoint (step 5, 10 or 15 of 20); the next run continues
    from it (its weights equal the uninterrupted fit's: the test above) and deletes it."""
    (step,) = chain["after_kill"]["decoder training"]["checkpoints"]
    assert step in (5, 10, 15)
    key = chain["keys"]["decoder"]
    resumed = json.loads((chain["cache"] / "decoder" / key / "stage_metrics.json").read_text())
    session = json.loads((chain["session"] / "decoder" / key / "stage_metrics.json").read_text())
    assert resumed["resumed_from_step"] == step and session["resumed_from_step"] == 0
    assert resumed["train_steps"] == session["train_steps"] == 20
    assert chain["after_kill"]["sampling"]["checkpoints"] == []  # removed once published
    assert not list(chain["cache"].rglob(".partial-*"))
    # measured, not asserted (other processes share these cores): steps not redone, and the
    # two fits' seconds (fit time only, each in its own process and moment)
    print(
        f"\ndecoder fit resumed at step {step} of 20: {step} steps not redone; fit "
        f"{resumed['train_seconds']:.1f} s vs {session['train_seconds']:.1f} s uninterrupted"
    )


def test_sigterm_mid_fit_checkpoints_and_stops_in_one_line(micro_cache: Path, tmp_path) -> None:
    """SIGTERM (a scheduler's pre-emption) saves the step it arrives at and stops the run
    with one line; without the handler Lightning would exit 0 as if the run had finished."""
    cache, key = tmp_path / "cache", None
    shutil.copytree(micro_cache, cache, ignore=shutil.ignore_patterns("samples", "variations"))
    for entry in (cache / "decoder").iterdir():
        if not entry.name.startswith("."):
            shutil.rmtree(entry)
            key = entry.name
    env = {**child_env(), "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled",
           "HARNESS_CACHE": str(cache)}  # fmt: skip
    cmd = [sys.executable, "-m", "harness", "run", str(MICRO), "train.checkpoint_every=3",
           "--out", str(tmp_path / "runs"), "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not checkpoints(cache / "decoder"):  # the fit runs: Lightning's handler is on
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "Traceback" not in err, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: decoder {key}: stopped by SIGTERM at step "), line
    step = int(line.split(" at step ")[1].split()[0])
    (ckpt,) = checkpoints(cache / "decoder")
    assert torch.load(ckpt, weights_only=True)["global_step"] == step
    assert entries(cache, "decoder") == []


def test_nan_loss_stops_the_stage_naming_it_and_the_step(tmp_path: Path) -> None:
    """A huge learning rate blows the CLIP (the first stage) up within a few steps."""
    out = run_cli("run", str(MICRO), "clip.lr=1e30", "--out", str(tmp_path / "runs"),
                  "--no-progress", env={"HARNESS_CACHE": str(tmp_path / "cache"),
                                        "WANDB_MODE": "disabled"})  # fmt: skip
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: clip ") and "training loss is" in line, line
    assert " at step " in line and "nothing was cached" in line
    assert entries(tmp_path / "cache", "clip") == [] and not tmp_in(tmp_path / "cache" / "clip")


def test_an_unreadable_partial_checkpoint_is_set_aside_and_the_stage_trains_from_zero(
    micro_cache: Path, tmp_path
) -> None:
    """A damaged last.ckpt (writes are atomic, so a disk error or a hand edit) must not fail
    the stage: the rerun warns, sets it aside and trains from step 0, to the same results."""
    cache = tmp_path / "cache"
    shutil.copytree(micro_cache, cache, ignore=shutil.ignore_patterns("samples", "variations"))
    (key,) = entries(cache, "decoder")
    shutil.rmtree(cache / "decoder" / key)
    partial = cache / "decoder" / f".partial-{key}"
    partial.mkdir()
    (partial / "last.ckpt").write_bytes(b"PK\x03\x04 not a checkpoint" * 10)
    out = run_cli("run", str(MICRO), "--out", str(tmp_path / "runs"), "--no-progress",
                  env={"HARNESS_CACHE": str(cache), "WANDB_MODE": "disabled"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "last.ckpt: unreadable" in out.stderr and "training from step 0" in out.stderr
    metrics = json.loads((cache / "decoder" / key / "stage_metrics.json").read_text())
    assert metrics["resumed_from_step"] == 0 and metrics["train_steps"] == 20
    rows = (tmp_path / "runs" / "micro" / "results.csv").read_text()
    assert rows == (micro_cache.parent / "runs" / "micro" / "results.csv").read_text()
