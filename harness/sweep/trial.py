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

from ..cache import StageCache
from ..config import Arm
from ..errors import HarnessError
from ..paths import default_cache_dir
from ..runner import ExperimentRun
from ..stages.common import fit_hooks
from ..stages.graph import stage_keys
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

    def echo(line: str) -> None:
        setup.echo(f"[{name}] {line.strip()}")

    runner = ExperimentRun(exp, cache_dir=setup.cache_dir, progress=setup.progress, echo=echo,
                           root=setup.root / "trials")  # fmt: skip
    minimize = spec.objectives[0].direction == "minimize"
    results = []
    for i, seed in enumerate(exp.seeds):
        cfg = exp.config(trial_arm, seed)
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
        trained=[e.stage for r in results for e in r.events if e.trained],
        out_dir=results[0].out_dir.parent,
        wandb_dirs=[r.wandb_dir for r in results if r.wandb_dir],
        seconds=time.perf_counter() - start,
    )


def check_parallel_training(spec: SweepSpec, cache_dir: Path | None) -> None:
    """Before the study opens: on several devices (train.devices x num_nodes > 1) a trial
    may only reuse stages. Lightning's DDP relaunches the running command per device, and
    each copy of a sweep worker would join the study and draw its own parameters. Train the
    stages with `run` (DDP works there); a sweep of sampling knobs over them trains nothing."""
    swept = sorted({p.path for p in spec.space} & {"train.devices", "train.num_nodes"})
    if swept:
        raise HarnessError(f"space.{swept[0]}: a sweep trains each trial in one process; "
                           "scale out with --workers K instead", str(spec.path))  # fmt: skip
    exp, arm = spec.base(as_overrides(spec.first_values()))
    cache = StageCache(Path(cache_dir) if cache_dir else default_cache_dir())
    trains = [p.path for p in spec.space if not p.sampling]
    for seed in exp.seeds:
        cfg = exp.config(arm, seed)
        processes = cfg.train.devices * cfg.train.num_nodes
        if processes <= 1:
            continue
        missing = [s for s, k in stage_keys(cfg).items() if k and not cache.has(s, k)]
        if not (trains or missing):
            continue
        why = f"space.{trains[0]} retrains stages in every trial" if trains else (
            f"stage {missing[0]} (seed {seed}) is not in the cache {cache.root}")  # fmt: skip
        raise HarnessError(
            f"train.devices x train.num_nodes = {processes}, but {why}: a sweep worker cannot "
            "train under DDP (each rank would join the study and draw its own parameters). "
            "Train the stages first with `python -m harness run` (DDP works there) and sweep "
            "sampling knobs over them, or scale out with --workers K (one GPU each) or one "
            "`harness sweep` per host on a shared --storage, at train.devices=1",
            str(spec.path),
        )
