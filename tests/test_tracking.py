"""W&B runs and training curves of `python -m harness run`, read back from disk: every
stage's curve (metrics.csv and its W&B run's history), deterministic run ids that a rerun
resumes, one wandb folder per experiment, the W&B environment variables, axis tags."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MICRO, ROOT, run_cli

STAGES = ("clip", "eval_clip", "prior", "decoder", "upsampler1", "upsampler2")
CURVE_COLUMNS = ("train/loss", "train/lr", "train/grad_norm", "train/samples_per_second")


def wandb_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("wandb")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "wandb"]


def inspect(run_dir: Path, summary: bool = False) -> list[dict] | dict:
    """`wandb leet inspect --json`: the run's records (or its summary object)."""
    flags = ["--summary", "--json"] if summary else ["--json"]
    out = subprocess.run([*wandb_cmd(), "leet", "inspect", *flags, str(run_dir)],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "WANDB_MODE": "offline"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    if summary:
        return json.loads(out.stdout)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def offline_runs(root: Path) -> list[Path]:
    return sorted((root / "wandb").glob("offline-run-*"))


@pytest.fixture(scope="module")
def cold_root(micro_cache: Path) -> Path:
    return micro_cache.parent / "runs" / "micro"


def test_every_stage_logs_its_curve_to_csv_and_wandb(micro_cache, cold_root):
    for stage in STAGES:
        (entry,) = [p for p in (micro_cache / stage).iterdir() if not p.name.startswith(".")]
        rows = list(csv.DictReader((entry / "metrics.csv").open()))
        assert len(rows) >= 10, stage
        assert set(CURVE_COLUMNS) <= set(rows[0]), (stage, rows[0].keys())
        assert all(float(r["train/loss"]) >= 0 for r in rows if r["train/loss"])
    stage_runs = {}
    for run in offline_runs(cold_root):
        meta = inspect(run, summary=True)
        if meta["name"].split("-")[0] in STAGES:
            stage_runs[meta["name"].split("-")[0]] = run
    assert sorted(stage_runs) == sorted(STAGES)  # all under OUT/<experiment>/wandb/
    for stage, run in stage_runs.items():
        history = [r["history"]["item"] for r in inspect(run) if r["type"] == "history"]
        with_loss = [h for h in history if "train/loss" in h]
        assert len(with_loss) >= 10, (stage, len(with_loss))
        assert {"train/lr", "train/grad_norm"} <= set(with_loss[-1]), stage
        if stage == "decoder":  # the one stage whose evaluate draws a sample grid
            assert any(h.get("samples._type") == "image-file" for h in history)


def test_arm_runs_carry_axis_tags_and_the_sync_command_is_printed(micro_cache, cold_root):
    arms = [inspect(r, summary=True) for r in offline_runs(cold_root)]
    arms = [a for a in arms if a["name"].startswith("prior.kind=")]
    assert sorted(a["name"] for a in arms) == ["prior.kind=diffusion/seed0",
                                               "prior.kind=text_embedding/seed0"]  # fmt: skip
    for a in arms:
        assert a["tags"] == [a["name"].split("/")[0]]
    cold = (micro_cache.parent / "cold_stdout.txt").read_text()
    assert f"wandb sync {cold_root / 'wandb'}/offline-run-*" in cold


def test_a_warm_rerun_resumes_its_runs_and_honours_the_wandb_env(micro_cache, cold_root, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(cold_root, out / "micro")
    before = {inspect(r, summary=True)["run_id"] for r in offline_runs(out / "micro")}
    env = {"HARNESS_CACHE": str(micro_cache), "WANDB_TAGS": "nightly, ours",
           "WANDB_PROJECT": "elsewhere"}  # fmt: skip
    warm = run_cli("run", str(MICRO), "--out", str(out), "--no-progress", env=env, timeout=900)
    assert warm.returncode == 0, warm.stderr[-3000:]
    runs = offline_runs(out / "micro")
    metas = [inspect(r, summary=True) for r in runs]
    assert {m["run_id"] for m in metas} == before  # no new run id: the arms' runs resumed
    new = [m for m in metas if m["project"] == "elsewhere"]
    # the two arms re-scored, the real row, the results artifact's run (no stage run: reused)
    assert sorted(m["name"].split("/")[0] for m in new) == [
        "prior.kind=diffusion", "prior.kind=text_embedding", "real", "results"]  # fmt: skip
    for m in new:
        if m["name"] not in ("real", "results"):
            assert m["tags"] == [m["name"].split("/")[0], "nightly", "ours"]
    wandb_dir = tmp_path / "wandb_dir"
    moved = run_cli("run", str(MICRO), "--out", str(out), "--no-progress",
                    env={**env, "WANDB_DIR": str(wandb_dir)}, timeout=900)  # fmt: skip
    assert moved.returncode == 0, moved.stderr[-3000:]
    # the arms, the real row and `results` moved with WANDB_DIR; nothing new beside the runs
    assert len(offline_runs(wandb_dir)) == 4 and len(offline_runs(out / "micro")) == len(runs)


def test_prompts_benchmark_writes_a_grid_per_prompt_and_one_table(micro_cache, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n# not a prompt\n\na blue square\na green triangle\ntwo\n")
    out = tmp_path / "runs"
    env = {"HARNESS_CACHE": str(micro_cache)}
    res = run_cli("prompts", str(MICRO), str(prompts), "--out", str(out), "--n", "2", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "training" not in res.stdout  # every stage from the cache
    folder = out / "micro" / "prompts"
    grids = sorted(folder.glob("prompt-*.png"))
    assert [g.name for g in grids] == [f"prompt-{i:02d}.png" for i in range(4)]
    from PIL import Image

    from harness.grids import CELL, LABEL

    assert Image.open(grids[0]).size == (2 * CELL, 2 * (CELL + LABEL))  # 2 arms x 2 replicas
    assert (folder / "prompts.txt").read_text().splitlines()[1] == "01  a blue square"
    (run,) = offline_runs(out / "micro")
    tables = [r["history"]["item"] for r in inspect(run) if r["type"] == "history"]
    assert any(h.get("prompts._type") == "table-file" for h in tables)
    assert "wandb sync" in res.stdout


HOLDER = """
import sys, time
from pathlib import Path
from harness import tracking
from harness.config.schema import TrackingConfig
run = tracking.init_run(TrackingConfig(mode="offline"), name="holder", group="g", job_type="t",
                        config={}, directory=Path(sys.argv[1]), run_id="heldid0001")
print(run.id, flush=True)
time.sleep(600)
"""

RERUN = """
import os, subprocess, sys
from pathlib import Path
import wandb
from harness import tracking
from harness.config.schema import TrackingConfig
wandb.setup()  # this process's W&B service; the child below logs through it (WANDB_SERVICE)
holder = subprocess.Popen([sys.executable, "-c", sys.argv[2], sys.argv[1]],
                          stdout=subprocess.PIPE, text=True)
assert holder.stdout.readline().strip() == "heldid0001"
holder.kill()  # SIGKILL: the service still holds the id
holder.wait()
run = tracking.init_run(TrackingConfig(mode="offline"), name="rerun", group="g", job_type="t",
                        config={}, directory=Path(sys.argv[1]), run_id="heldid0001")
run.log({"x": 1.0})
run.finish()
print("RUN", run.id)
"""


def test_a_run_id_held_by_a_killed_process_logs_to_a_new_run(tmp_path):
    """A killed run's W&B service can keep its run id ("run ID ... is in use"); the rerun
    must log to a fresh run with a warning, not fail, and not reuse the id (wandb.init
    writes the id into its Settings, so the retry needs new ones)."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    out = subprocess.run([sys.executable, "-c", RERUN, str(tmp_path), HOLDER], cwd=ROOT,
                         env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("RUN ")]
    assert line.split()[1] not in ("heldid0001", "")
    assert "held by an earlier process" in out.stderr
