"""Lightning DDP: `python -m harness run` with `train.strategy: ddp` on 2 CPU processes. Every
stage is trained by both ranks (one collective fit each); only rank 0 writes the stage cache,
the W&B runs and the results, and only rank 0 samples and scores."""

from __future__ import annotations

import csv
import json

import pytest

from harness.config import load_experiment
from harness.errors import HarnessError
from harness.runner import ExperimentRun, Runner
from harness.sweep.spec import load_sweep
from harness.sweep.trial import check_parallel_training
from tests.conftest import MICRO, run_cli

DDP = ["train.accelerator=cpu", "train.strategy=ddp", "train.devices=2"]
STAGES = ("clip", "eval_clip", "prior", "decoder", "upsampler1", "upsampler2")


def test_run_under_ddp_on_two_cpu_processes(tmp_path):
    cache = tmp_path / "cache"
    out = run_cli("run", str(MICRO), *DDP, "train.checkpoint_every=5",  # rank 0 writes them
                  "--out", str(tmp_path / "runs"), "--no-progress",
                  env={"HARNESS_CACHE": str(cache), "OMP_NUM_THREADS": "1"},
                  cwd=tmp_path, timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    for stage in STAGES:  # one entry each, trained by both processes, no rank's leftovers
        entries = list((cache / stage).iterdir())
        complete = [p for p in entries if not p.name.startswith(".")]
        assert len(complete) == 1, (stage, entries)
        assert not [p for p in entries if p.name.startswith((".tmp-", ".partial-"))], entries
        metrics = json.loads((complete[0] / "stage_metrics.json").read_text())
        assert metrics["world_size"] == 2, (stage, metrics)
    root = tmp_path / "runs" / "micro"
    with open(root / "results.csv") as f:
        rows = [r["arm"] for r in csv.DictReader(f)]
    assert len(rows) == 3 and rows[-1] == "real"  # one row per arm (and the real row), once
    runs = list((root / "wandb").glob("offline-run-*"))  # every W&B run of the experiment
    assert len(runs) == len(STAGES) + 4  # one per stage and arm, the real row's, `results`
    # the arms share every stage but the prior's kind: rank 0 alone sampled each arm once
    assert len([p for p in (cache / "samples").iterdir() if not p.name.startswith(".")]) == 2
    # a sweep of sampling knobs over these DDP-trained stages trains nothing: it may run
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"experiment: {MICRO}\nobjectives: [fd_clip]\n"
                     "space: {decoder.guidance_scale: {low: 1.0, high: 3.0}}\n")  # fmt: skip
    spec = load_sweep(sweep, DDP)
    check_parallel_training(spec, cache)
    with pytest.raises(HarnessError, match="stage clip"):
        check_parallel_training(spec, tmp_path / "empty")


def test_a_nonzero_rank_trains_but_never_samples_or_writes(micro_cache, tmp_path, monkeypatch):
    """What rank 1 does once every stage is cached: load them, and nothing else."""
    monkeypatch.setenv("LOCAL_RANK", "1")

    def no_sampling(*_: object) -> None:
        pytest.fail("a non-zero rank sampled")

    monkeypatch.setattr(Runner, "samples", no_sampling)
    monkeypatch.setattr(Runner, "variations", no_sampling)
    exp = load_experiment(MICRO, [])
    assert ExperimentRun(exp, tmp_path / "runs", micro_cache, progress=False).run() == []
    assert not (tmp_path / "runs").exists()
