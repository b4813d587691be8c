"""One trial: the swept arm of the base experiment with the sampled values as dotted
overrides, run by the experiment runner (stage cache, samples, metrics, W&B run) and scored
by the sweep's objectives.

Trials reuse the stage cache like arms do: a trial that only moves sampling-time knobs
(guidance scale, eta, steps) trains nothing; one that moves a training field trains the
stages whose hash it changes, and only those.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Arm, Config, stage_keys
from ..errors import HarnessError
from ..runner import ExperimentRun
from ..stages.common import fit_hooks
from .pruning import callbacks_for
from .space import as_overrides
from .spec import SweepSpec


@dataclass
class TrialSetup:
    """What every trial of one worker shares."""

    spec: SweepSpec
    root: Path  # OUT/<study>; trials write to OUT/<study>/trials/
    cache_dir: Path | None
    suite: Any  # the experiment's metric suite, loaded once
    progress: bool = False
    echo: Callable[[str], None] = print


@dataclass
class TrialOutcome:
    values: list[float]  # one per objective (the mean over the experiment's seeds)
    metrics: dict[str, float]  # every metric's mean over seeds
    trained: list[str]  # stages this trial trained (empty: everything came from the cache)
    out_dir: Path
    wandb_dirs: list[str]
    seconds: float


def label(number: int) -> str:
    return f"trial-{number:04d}"


def run_trial(trial: Any, setup: TrialSetup) -> TrialOutcome:
    """Sample the trial's parameters, run its arm at every seed, return its objectives."""
    spec = setup.spec
    start = time.perf_counter()
    params = {p.path: p.suggest(trial) for p in spec.space}
    exp, arm = spec.base(as_overrides(params))
    exp = dataclasses.replace(exp, name=spec.study)  # the W&B group: the sweep
    name = label(trial.number)
    trial_arm = Arm(label=name, axes={**arm.axes, **params}, settings=arm.settings)
    trained: list[str] = []

    def echo(line: str) -> None:
        if "trained in" in line:
            trained.append(line.split()[0])
        setup.echo(f"[{name}] {line.strip()}")

    runner = ExperimentRun(exp, setup.root, setup.cache_dir, progress=setup.progress, echo=echo)
    runner.root = setup.root / "trials"
    minimize = spec.objectives[0].direction == "minimize"
    results = []
    for i, seed in enumerate(exp.seeds):
        cfg = exp.config(trial_arm, seed)
        check_no_parallel_training(cfg, runner)
        pruning = callbacks_for(trial, cfg, spec.pruner, minimize) if i == 0 else ()
        with fit_hooks(pruning, spec.pruner.val_every if pruning else None):
            results.append(runner.run_one(trial_arm, seed, setup.suite))
    metrics = {
        m: float(np.mean([r.metrics[m].value for r in results]))
        for m in results[0].metrics
        if all(m in r.metrics for r in results)
    }
    missing = [o.metric for o in spec.objectives if o.metric not in metrics]
    if missing:
        raise HarnessError(f"the run reported no {missing[0]} (it gave: {', '.join(metrics)})")
    return TrialOutcome(
        values=[metrics[o.metric] for o in spec.objectives],
        metrics=metrics,
        trained=trained,
        out_dir=results[0].out_dir.parent,
        wandb_dirs=[r.wandb_dir for r in results if r.wandb_dir],
        seconds=time.perf_counter() - start,
    )


def check_no_parallel_training(cfg: Config, runner: ExperimentRun) -> None:
    """A trial on several devices may only reuse stages: Lightning's DDP relaunches the
    running command per device, which a sweep worker must not be. Train them with `run`
    (DDP works there); then a sampling-knob sweep over them trains nothing."""
    t = cfg.train
    if t.devices * t.num_nodes <= 1:
        return
    missing = [s for s, k in stage_keys(cfg).items() if k and not runner.cache.has(s, k)]
    if missing:
        raise HarnessError(
            f"stage {missing[0]} is not in the cache and train.devices x num_nodes = "
            f"{t.devices * t.num_nodes}: train it first with `python -m harness run` (DDP)"
        )
