"""Lightning DDP: `train.strategy: ddp` on 2 CPU processes trains one micro stage; only rank
0 writes the stage cache and the W&B run, and the other rank neither waits on the cache's
lock (rank 0 holds it while both train) nor leaves anything behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import MICRO, ROOT

# Lightning relaunches the running script for rank 1, so the stage is trained from a script
# file (not `python -c`): the runner's stage resolution, exactly as `run` uses it.
SCRIPT = """
import sys

from harness.config import load_experiment, stage_keys
from harness.runner import Runner

exp_file, out, cache, stage = sys.argv[1:5]
exp = load_experiment(exp_file, sys.argv[5:])
cfg = exp.config(exp.arms[0], exp.seeds[0])
keys = {k: (v if k == stage else None) for k, v in stage_keys(cfg).items()}
Runner(exp, out, cache, progress=False).resolve(cfg, keys)
print("rank done", keys[stage], flush=True)
"""


def test_ddp_on_two_cpu_processes_writes_one_entry_and_one_wandb_run(tmp_path):
    script = tmp_path / "train_stage.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    overrides = ["clip.train_steps=4", "train.accelerator=cpu", "train.strategy=ddp",
                 "train.devices=2"]  # fmt: skip
    cmd = [sys.executable, str(script), str(MICRO), str(tmp_path / "runs"),
           str(tmp_path / "cache"), "clip", *overrides]  # fmt: skip
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    # rank 0 returns only once rank 1 has: both trained (two processes, one collective fit)
    assert out.stdout.count("rank done") == 2, out.stdout
    assert out.stdout.count("clip") >= 4 and out.stdout.count("training ...") == 2
    entries = list((tmp_path / "cache" / "clip").iterdir())
    complete = [p for p in entries if not p.name.startswith(".")]
    assert len(complete) == 1 and (complete[0] / "cache_meta.json").is_file()
    assert not [p for p in entries if p.name.startswith(".tmp-")]  # rank 1's copy is gone
    runs = list(Path(tmp_path / "runs").rglob("offline-run-*"))
    assert len(runs) == 1 and "wandb-stages" in str(runs[0])
