"""`sweep`: open (or create, or resume) the study, then run workers on it.

OUT/<study>/sweep.json        what `report` needs: storage (password hidden), objectives
OUT/<study>/study.db          the default storage (SQLite)
OUT/<study>/trials/trial-NNNN/seed<k>/   each trial's metrics.json, samples.png
OUT/<study>/trials/wandb/                W&B runs of the trials and of the stages they trained
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from .. import paths
from ..atomic import write_json_atomic
from ..errors import HarnessError
from ..stages.checks import check_experiment
from .engines import make_pruner, make_sampler
from .space import as_overrides
from .spec import SweepSpec
from .storage import StorageLock, open_storage, quiet_experimental, redact, resolve_url
from .trial import TrialSetup, check_parallel_training
from .worker import Worker, tally

MARKER = "sweep.json"
STORAGE_ENV = "HARNESS_SWEEP_STORAGE"  # how --workers hands its storage URL to the workers


@dataclass
class SweepResult:
    study: str
    storage: str  # password hidden
    root: Path
    budget: int
    ran_here: list[int]
    done: int
    running: int
    errors: int


def open_study(spec: SweepSpec, storage: Any, url: str) -> optuna.Study:
    """Create the study or load it (another worker, or an interrupted run, made it).

    Each worker that joins gets the next index, and its sampler the seed `seed + index`:
    workers started alike do not draw the same parameters, nor does a resumed worker
    repeat the draws of the run it resumes."""
    directions = [o.direction for o in spec.objectives]
    with StorageLock(url, spec.study):
        study = optuna.create_study(
            study_name=spec.study,
            storage=storage,
            pruner=make_pruner(spec.pruner),
            directions=directions,
            load_if_exists=True,
        )
        joined = int(study.user_attrs.get("workers_joined", 0))
        study.set_user_attr("workers_joined", joined + 1)
    study.sampler = make_sampler(spec.sampler, spec.space, joined)
    found = [d.name.lower() for d in study.directions]
    if found != directions:
        raise HarnessError(
            f"study {spec.study!r} exists with directions {found}, the file asks {directions}; "
            "rename the study or use another storage",
            str(spec.path),
        )
    if not study.metric_names:
        with quiet_experimental():
            study.set_metric_names([o.metric for o in spec.objectives])
    return study


def run_sweep(
    spec: SweepSpec,
    out: Path = Path("runs"),
    storage: str | None = None,
    workers: int = 1,
    cache_dir: Path | None = None,
    progress: bool = False,
    echo: Callable[[str], None] = print,
    argv: list[str] | None = None,
) -> SweepResult:
    """Run the sweep until its budget is met; `workers` > 1 starts that many local worker
    processes (`argv`: the command that starts one, without --workers)."""
    from ..metrics.suite import load_suite, resolve_features

    root = paths.inside(out, Path(out) / spec.study)  # spec.study is a checked slug
    storage = storage or os.environ.get(STORAGE_ENV) or None
    url = resolve_url(storage or spec.storage, root)
    suite = load_suite(spec.suite)
    resolve_features(suite)  # a suite that cannot run here stops before the study opens
    check_parallel_training(spec, cache_dir)  # ... as does DDP training in a trial
    check_experiment(spec.base(as_overrides(spec.first_values()))[0])  # ... and a bad net
    if not (storage or spec.storage):
        root.mkdir(parents=True, exist_ok=True)  # the default SQLite file lives there
    handle = open_storage(url, "--storage" if storage else str(spec.path))
    root.mkdir(parents=True, exist_ok=True)  # only once the storage answered
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the worker prints one line a trial
    study = open_study(spec, handle, url)
    write_json_atomic(root / MARKER, marker(spec, url))
    ran: list[int] = []
    if workers > 1:
        spawn_workers(argv or [], workers, url)
    else:
        setup = TrialSetup(spec, root, cache_dir, suite, progress, echo)
        ran = Worker(study, url, spec.budget, setup, echo, storage=handle).run()
    now = tally(study)
    return SweepResult(spec.study, redact(url), root, spec.budget, ran, now.done, now.running,
                       now.errors)  # fmt: skip


def marker(spec: SweepSpec, url: str) -> dict[str, Any]:
    return {
        "study": spec.study,
        "file": str(spec.path.resolve()),
        "experiment": str(spec.experiment),
        "storage": redact(url),
        "storage_has_password": redact(url) != url,
        "objectives": [{"metric": o.metric, "direction": o.direction} for o in spec.objectives],
        "space": [p.path for p in spec.space],
        "sampler": spec.sampler.name,
        "pruner": spec.pruner.name,
        "n_trials": spec.budget,
    }


def spawn_workers(argv: list[str], workers: int, url: str) -> None:
    """Start `workers` worker processes of this sweep on this host and wait for them all."""
    env = _env_with(str(paths.PROJECT_ROOT)) | {STORAGE_ENV: url}  # not on the command line
    procs = []
    cmd = [sys.executable, "-m", "harness", *argv, "--workers", "1"]
    for gpu in worker_gpus(workers, visible_gpus()):
        own = env if gpu is None else env | {"CUDA_VISIBLE_DEVICES": gpu}
        procs.append(subprocess.Popen(cmd, env=own))
    codes = [p.wait() for p in procs]
    bad = [c for c in codes if c != 0]
    if bad:
        raise HarnessError(f"{len(bad)} of {workers} workers failed (exit codes {bad})")


def visible_gpus() -> str:
    """This host's GPUs as CUDA_VISIBLE_DEVICES would list them ("" without any)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return os.environ["CUDA_VISIBLE_DEVICES"]
    import torch

    return ",".join(str(i) for i in range(torch.cuda.device_count()))


def worker_gpus(workers: int, visible: str) -> list[str | None]:
    """Worker k trains on GPU k mod n (each trial is one process on one device), so K
    workers on an n-GPU host do not all land on the first GPU."""
    gpus = [g.strip() for g in visible.split(",") if g.strip()]
    return [gpus[k % len(gpus)] if gpus else None for k in range(workers)]


def _env_with(project_root: str) -> dict[str, str]:
    env = dict(os.environ)
    parts = [project_root, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    return env
