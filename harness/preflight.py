"""Checks a run makes before it trains anything.

A typo in a data path, an unwritable output folder or a missing GPU must cost seconds, not
the stages trained before the error, and must leave nothing behind in the cache or the
results. `check_run` runs before the training stack is imported; `check_data` is also what
`validate` runs for bring-your-own data.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from .cache import check_writable
from .config import Config, Experiment
from .errors import ConfigError


def configs_of(exp: Experiment) -> list[Config]:
    return [exp.config(arm, seed) for arm in exp.arms for seed in exp.seeds]


def check_data(configs: list[Config]) -> None:
    """Every distinct bring-your-own data config yields a usable pair in every split."""
    seen = set()
    for cfg in configs:
        ident = json.dumps(asdict(cfg.data), sort_keys=True)
        if ident in seen:
            continue
        seen.add(ident)
        from .data import check_source, source_of  # imports torch: only when checking data

        if source_of(cfg.data).needs:  # a source that reads the user's files
            check_source(cfg.data)


def check_accelerator(configs: list[Config], where: str) -> None:
    """An accelerator the config asks for by name is present (Lightning fails at the first
    stage's Trainer otherwise, with a traceback)."""
    wanted = {cfg.train.accelerator for cfg in configs} & {"gpu", "mps"}
    if not wanted:
        return
    import torch

    present = {"gpu": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    for name in sorted(wanted):
        if not present[name]:
            raise ConfigError(
                f"train.accelerator: {name}, but no {name.upper()} device is visible here "
                "(use cpu, or auto to take one when present)",
                where,
            )


def check_run(exp: Experiment, out_root: Path, cache_root: Path) -> None:
    """Everything a run can find wrong before it trains: raises HarnessError naming the key,
    file or folder, having written nothing."""
    configs = configs_of(exp)
    check_accelerator(configs, str(exp.path or "<experiment>"))
    check_data(configs)
    check_writable(cache_root, "stage cache")
    check_writable(out_root, "output folder")
