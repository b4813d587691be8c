"""`python -m harness run` end to end on the micro experiment, in a subprocess."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

MICRO = ROOT / "tests" / "fixtures" / "micro.yaml"


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("micro")
    env = {"HARNESS_CACHE": str(base / "cache")}
    cold = run_cli(
        "run", str(MICRO), "--out", str(base / "runs"), "--no-progress", env=env, timeout=900
    )
    assert cold.returncode == 0, cold.stdout[-3000:] + cold.stderr[-3000:]
    rows = list(csv.DictReader((base / "runs" / "micro" / "results.csv").open()))
    warm = run_cli(
        "run", str(MICRO), "--out", str(base / "runs2"), "--no-progress", env=env, timeout=900
    )
    assert warm.returncode == 0, warm.stderr[-3000:]
    return {"base": base, "cold": cold, "warm": warm, "rows": rows}


def test_results_csv_has_one_row_per_arm_with_intervals(micro_run):
    rows = micro_run["rows"]
    assert [r["arm"] for r in rows] == ["prior.kind=diffusion", "prior.kind=text_embedding"]
    assert [r["prior.kind"] for r in rows] == ["diffusion", "text_embedding"]
    for name in ("fd_clip", "kd_clip", "clip_score", "compositional_acc", "diversity_clip"):
        for r in rows:
            lo, v, hi = (float(r[f"{name}{s}"]) for s in ("_lo", "", "_hi"))
            assert math.isfinite(v) and lo <= v <= hi, (name, r)
    assert "fid" not in rows[0]  # no Inception weights here: never called FID
    out = micro_run["cold"].stdout
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
    cold, warm = micro_run["cold"].stdout, micro_run["warm"].stdout
    assert cold.count("decoder    ") and cold.count("trained in") == 6  # 6 stages, once each
    assert "training" not in warm and warm.count("reused") >= 11
    warm_rows = list(csv.DictReader((micro_run["base"] / "runs2" / "micro" / "results.csv").open()))
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
