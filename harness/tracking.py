"""Weights & Biases: one run per arm x seed (and per trained stage), offline by default.

Nothing depends on W&B being up: every number is also written locally (metrics.json,
results.csv). `WANDB_MODE` in the environment wins over `tracking.mode`, as W&B users expect.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .config import TrackingConfig
from .distributed import is_rank_zero

log = logging.getLogger(__name__)


def resolve_mode(tracking: TrackingConfig) -> str:
    return os.environ.get("WANDB_MODE") or tracking.mode


def init_run(
    tracking: TrackingConfig,
    *,
    name: str,
    group: str,
    job_type: str,
    config: dict[str, Any],
    directory: Path,
    tags: tuple[str, ...] = (),
) -> Any | None:
    """A W&B run, or None when tracking is disabled or on a non-zero DDP rank."""
    mode = resolve_mode(tracking)
    if mode == "disabled" or not is_rank_zero():
        return None
    import wandb  # slow import, only when tracking

    directory.mkdir(parents=True, exist_ok=True)
    return wandb.init(
        project=tracking.project,
        entity=tracking.entity or None,
        name=name,
        group=group,
        job_type=job_type,
        config=config,
        dir=str(directory),
        mode=mode,
        tags=list(tags),
        reinit="create_new",
        settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
    )


def log_results(
    run: Any | None,
    summary: dict[str, float],
    images: dict[str, Path] | None = None,
    table: tuple[list[str], list[list[Any]]] | None = None,
) -> None:
    """Summary metrics (with their interval bounds), sample grids and a per-caption table."""
    if run is None:
        return
    import wandb

    payload: dict[str, Any] = {k: wandb.Image(str(p)) for k, p in (images or {}).items()}
    if table is not None:
        columns, rows = table
        payload["per_caption"] = wandb.Table(columns=columns, data=rows)
    if payload:
        run.log(payload)
    for key, value in summary.items():
        run.summary[key] = value


def finish(run: Any | None, exit_code: int | None = None) -> str | None:
    """Close the run (exit_code 1: it failed); returns its local directory (for
    `wandb leet inspect`)."""
    if run is None:
        return None
    directory = str(Path(run.dir).parent)
    run.finish(exit_code=exit_code)
    return directory
