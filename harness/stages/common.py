"""What every stage's training shares: seeding, the Trainer, the LR schedule, the metrics file."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EMAWeightAveraging
from pytorch_lightning.loggers import Logger

from ..atomic import write_json_atomic
from ..config import TrainConfig
from ..distributed import world_size
from .curves import Curves, log_every
from .guards import FiniteLoss

METRICS_FILE = "stage_metrics.json"


@dataclass(frozen=True)
class FitHooks:
    """What a caller adds to every Trainer built inside `with fit_hooks(...)` without
    threading it through each stage: a sweep's pruning callback, and how often those fits
    validate on held-out data (None: not during fit, the default; it costs time)."""

    callbacks: tuple[Callback, ...] = ()
    val_every: int | None = None


_HOOKS: ContextVar[FitHooks | None] = ContextVar("fit_hooks", default=None)


def active_hooks() -> FitHooks:
    return _HOOKS.get() or FitHooks()


@contextmanager
def fit_hooks(callbacks: tuple[Callback, ...] = (), val_every: int | None = None) -> Iterator[None]:
    token = _HOOKS.set(FitHooks(tuple(callbacks), val_every))
    try:
        yield
    finally:
        _HOOKS.reset(token)


def quiet_lightning() -> None:
    """Keep Lightning's banner lines and known-harmless warnings out of the run log."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (
        r".*validation_step.*but have no .val_dataloader.*",
        r".*isinstance\(treespec, LeafSpec\).*",
        r".*does not have many workers.*",
        r".*litlogger.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def seed_all(seed: int) -> None:
    pl.seed_everything(seed, workers=True, verbose=False)


def set_threads(train: TrainConfig) -> None:
    if train.threads:
        torch.set_num_threads(train.threads)


def make_trainer(
    train: TrainConfig,
    max_steps: int,
    *,
    ema: float | None = None,
    progress: bool = True,
    last: list[Callback] | None = None,
    loggers: list[Logger] | None = None,
) -> pl.Trainer:
    """A step-budgeted Trainer from the experiment's `train:` section: the one place where a
    stage's Trainer gets its callbacks, logger and checkpointing (stages.train.train_stage
    is its only caller).

    `ema` adds Lightning's EMA weight averaging: validation and the weights left in the
    module after `fit` are the averaged ones (what the paper samples with). `last`: callbacks
    that run after every other (the in-stage checkpoint saves the updated EMA). `loggers`
    (stages.curves.stage_loggers) receive the training curves, about train.log_points
    points per fit (none: no curves).
    """
    set_threads(train)
    quiet_lightning()
    cbs: list[Callback] = [FiniteLoss()]  # a NaN/inf loss stops the stage, naming the step
    if loggers:
        cbs.append(Curves())  # lr, throughput, grad norm beside the module's losses
    if ema is not None and ema > 0:
        cbs.append(EMAWeightAveraging(decay=ema))
    hooks = active_hooks()
    val_every = hooks.val_every
    return pl.Trainer(
        accelerator=train.accelerator,
        devices=train.devices,
        num_nodes=train.num_nodes,
        strategy=train.strategy,
        precision=train.precision,
        max_steps=max_steps,
        max_epochs=-1,
        logger=loggers or False,  # curves: stages/curves.py; figures: stage_metrics.json
        log_every_n_steps=log_every(max_steps, train.log_points),
        callbacks=[*cbs, *hooks.callbacks, *(last or [])],
        enable_checkpointing=False,  # the stage cache stores the finished artifact
        enable_model_summary=False,
        enable_progress_bar=progress,
        val_check_interval=val_every,
        check_val_every_n_epoch=None if val_every else 1,
        num_sanity_val_steps=0,
        deterministic="warn" if train.accelerator == "cpu" else False,
    )


def write_stage_metrics(out_dir: Path, metrics: dict[str, Any]) -> Path:
    """The stage's own quality figures, next to its checkpoint, and how many processes
    trained it (DDP world size; throughput figures depend on it)."""
    payload = {**metrics, "world_size": metrics.get("world_size", world_size())}
    return write_json_atomic(Path(out_dir) / METRICS_FILE, payload)


def warmup_cosine(total: int, warmup: int = 0, floor: float = 1.0) -> Callable[[int], float]:
    """LR multiplier per optimizer step: linear warmup over `warmup` steps, then a cosine from
    1 down to `floor` at step `total`. warmup 0 and floor 1 (the defaults): constant.

    The stages' schedules: CLIP warms up over 10% and decays to 0 (standard for CLIP), the
    priors warm up over min(100, 10%) and decay to 10%, the decoder and upsamplers keep
    their lr constant."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def with_schedule(
    opt: torch.optim.Optimizer, total: int, warmup: int = 0, floor: float = 1.0
) -> dict[str, Any]:
    """`configure_optimizers`' answer: `opt` stepped by `warmup_cosine` every step."""
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, warmup, floor))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
