"""Pruning fed from a stage's validation loss while it trains inside a trial.

The sweep installs this callback on every Trainer its trial builds (stages.common.fit_hooks)
and asks those fits to validate every `pruner.val_every` steps. Only the stage the pruner
watches reports: the trial's intermediate value at step k is that stage's held-out loss after
k training steps, so trials are compared at the same point of the same stage. A trial whose
stage is already cached trains nothing and is never pruned (it costs nothing to finish).
"""

from __future__ import annotations

from typing import Any

import optuna
import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from ..config import Config
from ..stages.stage import training_stage

MONITOR = "val/loss"


class StagePruning(Callback):
    """Reports `sign * val/loss` of `stage` to the trial; raises TrialPruned when the pruner
    says so (the stage cache then discards the half-trained stage)."""

    def __init__(self, trial: optuna.Trial, cfg: Config, stage: str, sign: float = 1.0) -> None:
        self.trial, self.cfg, self.stage, self.sign = trial, cfg, stage, sign
        self.reports = 0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or training_stage() != self.stage:  # the graph's stage
            return
        value = trainer.callback_metrics.get(MONITOR)
        if value is None:
            return
        step = trainer.global_step
        self.trial.report(self.sign * float(value), step)
        self.reports += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.stage} {MONITOR}={float(value):.4g} at step {step}")


def callbacks_for(trial: Any, cfg: Config, pruner: Any, minimize: bool) -> tuple[Callback, ...]:
    """The trial's Lightning callbacks: none when the sweep does not prune."""
    if pruner.name == "none":
        return ()
    # the loss falls as the stage improves; a maximised objective compares negated losses
    return (StagePruning(trial, cfg, pruner.stage, 1.0 if minimize else -1.0),)
