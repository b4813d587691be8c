"""`python -m harness run` end to end on the micro experiment, in a subprocess."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import MICRO, ROOT, child_env, run_cli


@pytest.fixture(scope="module")
def micro_run(micro_cache, tmp_path_factory) -> dict:
    base = micro_cache.parent
    cold = (base / "cold_stdout.txt").read_text()
    rows = list(csv.DictReader((base / "runs" / "micro" / "results.csv").open()))
    out2 = tmp_path_factory.mktemp("warm")
    env = {"HARNESS_CACHE": str(micro_cache)}
    warm = run_cli("run", str(MICRO), "--out", str(out2), "--no-progress", env=env, timeout=900)
    assert warm.returncode == 0, warm.stderr[-3000:]
    return {"base": base, "cold": cold, "warm": warm.stdout, "rows": rows, "warm_dir": out2}


def test_results_csv_has_one_row_per_arm_with_intervals(micro_run):
    rows, real = micro_run["rows"][:-1], micro_run["rows"][-1]
    assert [r["arm"] for r in rows] == ["prior.kind=diffusion", "prior.kind=text_embedding"]
    assert real["arm"] == "real" and real["prior.kind"] == ""  # the real row: no axis value
    assert [r["prior.kind"] for r in rows] == ["diffusion", "text_embedding"]
    for name in ("fd_clip", "kd_clip", "clip_score", "compositional_acc", "diversity_clip"):
        for r in rows:
            lo, v, hi = (float(r[f"{name}{s}"]) for s in ("_lo", "", "_hi"))
            assert math.isfinite(v) and lo <= v <= hi, (name, r)
    assert "fid" not in rows[0]  # no Inception weights here: never called FID
    out = micro_run["cold"]
    assert "* best arm" in out and "prior.kind=text_embedding" in out


def test_outputs_replicate_and_samples_exist(micro_run):
    root = micro_run["base"] / "runs" / "micro"
    meta = json.loads((root / "results.json").read_text())
    assert meta["versions"]["torch"] and meta["git_commit"]
    assert meta["rows"][0]["config"]["prior"]["kind"] == "diffusion"
    for arm in ("prior.kind=diffusion", "prior.kind=text_embedding"):
        seed_dir = root / arm / "seed0"
        assert (seed_dir / "samples.png").stat().st_size > 0
        assert json.loads((seed_dir / "metrics.json").read_text())["metrics"]["clip_score"]


def test_arms_share_stages_and_warm_rerun_trains_nothing(micro_run):
    cold, warm = micro_run["cold"], micro_run["warm"]
    assert cold.count("decoder    ") and cold.count("trained in") == 6  # 6 stages, once each
    assert "training" not in warm and warm.count("reused") >= 11
    warm_rows = list(csv.DictReader((micro_run["warm_dir"] / "micro" / "results.csv").open()))
    assert warm_rows == micro_run["rows"]  # same config + seed: identical numbers


def test_wandb_reads_back_the_same_metrics(micro_run):
    meta = json.loads((micro_run["base"] / "runs" / "micro" / "results.json").read_text())
    wandb = Path(sys.executable).with_name("wandb")
    cmd = [str(wandb)] if wandb.exists() else [sys.executable, "-m", "wandb"]
    for row, csv_row in zip(meta["rows"], micro_run["rows"], strict=True):
        out = subprocess.run(
            [*cmd, "leet", "inspect", "--summary", "--json", row["wandb_dir"]],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "WANDB_MODE": "offline"},
        )
        assert out.returncode == 0, out.stderr
        read = json.loads(out.stdout)
        assert read["config"]["arm"] == row["arm"]
        for name in ("fd_clip", "clip_score", "clip_score_lo", "compositional_acc_hi"):
            assert read["summary"][name] == pytest.approx(float(csv_row[name]), rel=1e-9)


def test_report_writes_table_plots_and_html(micro_run):
    root = micro_run["base"] / "runs" / "micro"
    out = run_cli("report", str(root))
    assert out.returncode == 0, out.stderr
    assert "prior.kind=diffusion" in out.stdout and "* best arm" in out.stdout
    page = (root / "report.html").read_text()
    assert page.count("<img") >= 6 + 2  # one plot per metric, one grid per arm
    assert (root / "report" / "clip_score.png").stat().st_size > 1000
    missing = run_cli("report", str(micro_run["base"]))
    assert missing.returncode == 2 and "results.json" in missing.stderr


def test_sigkill_during_training_then_rerun_gives_the_same_results(micro_run, tmp_path):
    env = {
        **child_env(),
        "PYTHONPATH": str(ROOT),
        "WANDB_MODE": "offline",
        "HARNESS_CACHE": str(tmp_path / "cache"),
    }
    cmd = [
        sys.executable,
        "-m",
        "harness",
        "run",
        str(MICRO),
        "--out",
        str(tmp_path / "runs"),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    decoder = tmp_path / "cache" / "decoder"
    deadline = time.time() + 600
    while time.time() < deadline and not list(decoder.glob(".tmp-*")):
        assert proc.poll() is None, "run ended before the decoder started training"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not [p for p in decoder.iterdir() if not p.name.startswith(".")]  # nothing complete
    again = run_cli(
        "run",
        str(MICRO),
        "--out",
        str(tmp_path / "runs"),
        "--no-progress",
        env={"HARNESS_CACHE": str(tmp_path / "cache")},
        timeout=900,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "clip       " in again.stdout and "reused" in again.stdout  # finished stages kept
    rows = list(csv.DictReader((tmp_path / "runs" / "micro" / "results.csv").open()))
    assert rows == micro_run["rows"]
