"""Training curves of a stage's fit: what the Trainer logs, where it goes.

Every stage's fit logs train/loss (the module's own `self.log`), val/loss (when the fit
validates: a sweep's pruning), train/lr, train/samples_per_second and train/grad_norm (the
`Curves` callback), about `train.log_points` times per fit. They go to `metrics.csv` beside
stage_metrics.json in the stage's cache entry, and to the stage's W&B run when the caller
opened one (`stage_run`, e.g. the runner's per-stage run), through Lightning's WandbLogger
on that same run, so the curve and the stage's summary sit in one run.
"""

from __future__ import annotations

import csv
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

CURVES_FILE = "metrics.csv"
GRID_FILE = "samples.png"  # a stage's own sample grid, when its evaluate writes one

_RUN: ContextVar[Any] = ContextVar("stage_run", default=None)


@contextmanager
def stage_run(run: Any | None) -> Iterator[None]:
    """Fits inside this block log their curves (and grid) to the W&B `run` (None: none)."""
    token = _RUN.set(run)
    try:
        yield
    finally:
        _RUN.reset(token)


def log_every(steps: int, points: int) -> int:
    """The Trainer's log_every_n_steps for about `points` points over `steps` steps."""
    return max(1, steps // max(1, points))


def stage_loggers(out: Path) -> list[Logger]:
    """metrics.csv in `out`, and the active stage run (if any) through WandbLogger."""
    loggers: list[Logger] = [CurvesCSV(Path(out) / CURVES_FILE)]
    run = _RUN.get()
    if run is not None:
        loggers.append(WandbLogger(experiment=run))
    return loggers


def log_grid(out: Path) -> None:
    """The stage's sample grid (written by its evaluate) as an image in its W&B run."""
    run, grid = _RUN.get(), Path(out) / GRID_FILE
    if run is None or not grid.is_file():
        return
    import wandb

    run.log({"samples": wandb.Image(str(grid))})


class CurvesCSV(Logger):
    """One row per logged step, columns as they appear (rewritten whole at each save: a
    stage logs tens of rows, and a partial file stays readable after a crash)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = ["step"]

    @property
    def name(self) -> str:
        return "curves"

    @property
    def version(self) -> str:
        return ""

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # the stage's config is in its model.pt and stage_metrics.json

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        if self.rows and self.rows[-1]["step"] == step:  # same step: one row
            self.rows[-1].update(row)
        else:
            self.rows.append(row)
        self.columns += [k for k in row if k not in self.columns]

    @rank_zero_only
    def save(self) -> None:
        if not self.rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)  # a library caller's fresh out
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        tmp.replace(self.path)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


class Curves(Callback):
    """train/lr, train/samples_per_second (wall clock, data loading included, over the last
    log interval) and train/grad_norm (global L2 norm of the unscaled gradients, before any
    clipping) at every step; the Trainer keeps the ones at its logging steps."""

    def __init__(self) -> None:
        self.window: deque[tuple[int, float]] = deque()
        self.last = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.window = deque(maxlen=max(1, trainer.log_every_n_steps))
        self.last = time.perf_counter()

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        grads = [p.grad.detach().norm() for p in pl_module.parameters() if p.grad is not None]
        if grads:
            norm = torch.stack(grads).norm()
            pl_module.log("train/grad_norm", norm, on_step=True, on_epoch=False)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        now = time.perf_counter()
        self.window.append((batch_size(batch), now - self.last))
        self.last = now
        seconds = sum(s for _, s in self.window)
        rate = sum(n for n, _ in self.window) / max(seconds, 1e-9)
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else 0.0
        pl_module.log_dict({"train/lr": float(lr), "train/samples_per_second": rate},
                           on_step=True, on_epoch=False)  # fmt: skip


def batch_size(batch: Any) -> int:
    """Items in a batch: a tensor's length, or that of its first tensor (tuple or dict)."""
    if isinstance(batch, torch.Tensor):
        return len(batch)
    items = batch.values() if isinstance(batch, Mapping) else batch
    for item in items if isinstance(items, list | tuple) else list(items):
        if isinstance(item, torch.Tensor):
            return len(item)
    return 0
