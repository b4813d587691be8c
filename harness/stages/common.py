"""What every stage's training shares: the Trainer, seeding, and its metrics file."""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EMAWeightAveraging

from ..config import TrainConfig
from ..distributed import world_size
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
    callbacks: list[Callback] | None = None,
    logger: Any = False,
    val_every: int | None = None,
    progress: bool = True,
) -> pl.Trainer:
    """A step-budgeted Trainer from the experiment's `train:` section.

    `ema` adds Lightning's EMA weight averaging: validation and the weights left in the
    module after `fit` are the averaged ones (what the paper samples with).
    """
    set_threads(train)
    quiet_lightning()
    cbs = list(callbacks or [])
    cbs.append(FiniteLoss())  # a NaN/inf loss stops the stage, naming the step
    if ema is not None and ema > 0:
        cbs.append(EMAWeightAveraging(decay=ema))
    hooks = active_hooks()
    val_every = val_every or hooks.val_every
    return pl.Trainer(
        accelerator=train.accelerator,
        devices=train.devices,
        num_nodes=train.num_nodes,
        strategy=train.strategy,
        precision=train.precision,
        max_steps=max_steps,
        max_epochs=-1,
        logger=logger,
        callbacks=[*cbs, *hooks.callbacks],
        enable_checkpointing=False,  # the stage cache stores the finished artifact
        enable_model_summary=False,
        enable_progress_bar=progress,
        val_check_interval=val_every,
        check_val_every_n_epoch=None if val_every else 1,
        num_sanity_val_steps=0,
        deterministic="warn" if train.accelerator == "cpu" else False,
    )


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary name, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_stage_metrics(out_dir: Path, metrics: dict[str, Any]) -> Path:
    """The stage's own quality figures, next to its checkpoint, and how many processes
    trained it (DDP world size; throughput figures depend on it)."""
    path = Path(out_dir) / METRICS_FILE
    write_json_atomic(path, {**metrics, "world_size": metrics.get("world_size", world_size())})
    return path


def fit_timed(
    module: pl.LightningModule,
    loader: Any,
    train: TrainConfig,
    steps: int,
    ema: float,
    progress: bool,
    val: Any = None,
) -> tuple[pl.LightningModule, float, int]:
    """Train `module` for `steps` (EMA weights left in it) -> (module on CPU in eval mode,
    training seconds, steps taken). `val` (held-out batches for `validation_step`) is only
    used inside `fit_hooks(val_every=...)`."""
    trainer = make_trainer(train, steps, ema=ema, progress=progress)
    start = time.perf_counter()
    if steps > 0:
        trainer.fit(module, loader, val if active_hooks().val_every else None)
    return module.cpu().eval(), time.perf_counter() - start, trainer.global_step
