"""Weights & Biases: one run per arm x seed (and per trained stage), offline by default.

Nothing depends on W&B being up: every number is also written locally (metrics.json,
results.csv). The W&B environment wins over the `tracking:` section, as W&B users expect:
WANDB_MODE, WANDB_PROJECT, WANDB_ENTITY, WANDB_DIR (where `wandb/` goes; default the
experiment's output folder), WANDB_TAGS (comma-separated, added to the run's own tags).

Run ids are deterministic (`run_id`): a rerun of the same experiment, arm, seed and resolved
config resumes its run rather than adding one (offline, a rerun writes another folder with
the same id; `wandb sync` uploads them into that one run, in order).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
from pathlib import Path
from typing import Any

from .config import TrackingConfig
from .distributed import is_rank_zero

log = logging.getLogger(__name__)


def resolve_mode(tracking: TrackingConfig) -> str:
    return os.environ.get("WANDB_MODE") or tracking.mode


def run_id(*parts: Any) -> str:
    """A W&B run id from what identifies the run (e.g. experiment, arm, seed, and the hash
    of the resolved config): the same parts, the same run."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def wandb_root(root: Path) -> Path:
    """The folder W&B writes its `wandb/` into: $WANDB_DIR, else the experiment's folder."""
    return Path(os.environ.get("WANDB_DIR") or root)


def env_tags() -> list[str]:
    return [t.strip() for t in os.environ.get("WANDB_TAGS", "").split(",") if t.strip()]


def axis_tags(axes: dict[str, Any]) -> tuple[str, ...]:
    """`key=value` per ablation axis (W&B caps a tag at 64 characters)."""
    return tuple(f"{k}={v}"[:64] for k, v in axes.items())


def sync_hint(root: Path) -> str | None:
    """The command that uploads the offline runs under `root`'s wandb folder (None: none)."""
    folder = wandb_root(root) / "wandb"
    if not any(folder.glob("offline-run-*")):
        return None
    return f"wandb sync {shlex.quote(str(folder))}/offline-run-*"


def init_run(
    tracking: TrackingConfig,
    *,
    name: str,
    group: str,
    job_type: str,
    config: dict[str, Any],
    directory: Path,
    run_id: str,
    tags: tuple[str, ...] = (),
) -> Any | None:
    """A W&B run (resumed when `run_id` exists), or None when tracking is disabled or on a
    non-zero DDP rank. `directory`: the experiment's folder (see wandb_root)."""
    mode = resolve_mode(tracking)
    if mode == "disabled" or not is_rank_zero():
        return None
    import wandb  # slow import, only when tracking

    directory = wandb_root(directory)
    directory.mkdir(parents=True, exist_ok=True)
    kwargs = dict(
        project=os.environ.get("WANDB_PROJECT") or tracking.project,
        entity=os.environ.get("WANDB_ENTITY") or tracking.entity or None,
        name=name,
        group=group,
        job_type=job_type,
        config=config,
        dir=str(directory),
        mode=mode,
        tags=list(dict.fromkeys([*tags, *env_tags()])),
        reinit="create_new",
    )

    def settings() -> Any:  # fresh each call: wandb.init writes the run id into its Settings
        return wandb.Settings(console="off", silent=True, x_disable_stats=True)

    try:
        return wandb.init(id=run_id, resume="allow", settings=settings(), **kwargs)
    except Exception as err:  # noqa: BLE001 - wandb raises its own server errors
        # A killed run's W&B service can outlive it and still hold the id ("run ID ... is
        # in use"); the rerun logs to a new run rather than failing the experiment.
        if "in use" not in str(err):
            raise
        log.warning("W&B run id %s is held by an earlier process: logging to a new run", run_id)
        return wandb.init(settings=settings(), **kwargs)


def with_intervals(metrics: dict[str, Any]) -> dict[str, float]:
    """Estimates -> W&B summary values: each figure and its interval's bounds."""
    out: dict[str, float] = {}
    for name, e in metrics.items():
        out |= {name: e.value, f"{name}_lo": e.lo, f"{name}_hi": e.hi}
    return out


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
