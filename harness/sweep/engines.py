"""Optuna samplers and pruners by name, with their options checked against Optuna's own
signatures (a misspelt option gets a did-you-mean, not a TypeError deep in a worker).

    sampler: tpe                                  # or {name: nsga2, seed: 0, population_size: 8}
    pruner: {name: median, stage: decoder, val_every: 25, n_startup_trials: 3}
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import optuna

from ..config.validate import suggest
from ..errors import ConfigError
from .space import Param

SAMPLERS: dict[str, type] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": optuna.samplers.GridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
}
PRUNERS: dict[str, type] = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
}
SINGLE_OBJECTIVE = ("cmaes",)
MAX_GRID = 100_000  # points the grid sampler lists (in every worker): a fine step makes billions


@dataclass(frozen=True)
class SamplerSpec:
    name: str = "tpe"
    seed: int | None = None  # the k-th worker to join the study uses seed + k (study.py)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrunerSpec:
    name: str = "none"
    stage: str = "decoder"  # whose validation loss feeds the pruner
    val_every: int = 25  # validate that stage every N training steps (only while sweeping)
    options: dict[str, Any] = field(default_factory=dict)


def split_engine(raw: Any, what: str, where: str) -> tuple[str, dict[str, Any]]:
    """`tpe` or `{name: tpe, ...}` -> ("tpe", {...})."""
    if isinstance(raw, str):
        return raw, {}
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ConfigError(f"{what}: expected a name or a mapping with `name`", where)
    return raw["name"], {k: v for k, v in raw.items() if k != "name"}


def check_options(cls: type, options: dict[str, Any], what: str, where: str, skip: tuple) -> None:
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p not in ("self", *skip) and not p.startswith("_")]
    for key in options:
        if key not in allowed:
            raise ConfigError(f"{what}.{key}: unknown option{suggest(str(key), allowed)}", where)


def parse_sampler(raw: Any, where: str, n_objectives: int, space: list[Param]) -> SamplerSpec:
    name, options = split_engine(raw if raw is not None else "tpe", "sampler", where)
    if name not in SAMPLERS:
        raise ConfigError(f"sampler: unknown sampler {name!r} (known: {', '.join(SAMPLERS)})"
                          f"{suggest(name, list(SAMPLERS))}", where)  # fmt: skip
    seed = options.pop("seed", None)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError(f"sampler.seed: expected an int, got {seed!r}", where)
    check_options(SAMPLERS[name], options, "sampler", where, ("seed", "search_space"))
    if name in SINGLE_OBJECTIVE and n_objectives > 1:
        raise ConfigError(f"sampler: {name} handles one objective; use nsga2 or tpe", where)
    if name == "grid":
        for p in space:
            if p.grid_len() is None:
                raise ConfigError(f"space.{p.path}: the grid sampler needs a `step`", where)
        if grid_size(space) > MAX_GRID:
            raise ConfigError(
                f"sampler: a grid of {grid_size(space)} points (at most {MAX_GRID}); use a "
                "coarser step or another sampler",
                where,
            )
    spec = SamplerSpec(name, seed, options)
    try:
        make_sampler(spec, space)  # options of the wrong type fail here, not in a worker
    except (TypeError, ValueError) as err:
        raise ConfigError(f"sampler: {err}", where) from None
    return spec


def parse_pruner(raw: Any, where: str, n_objectives: int) -> PrunerSpec:
    name, options = split_engine(raw if raw is not None else "none", "pruner", where)
    if name not in PRUNERS:
        raise ConfigError(f"pruner: unknown pruner {name!r} (known: {', '.join(PRUNERS)})"
                          f"{suggest(name, list(PRUNERS))}", where)  # fmt: skip
    stage = options.pop("stage", PrunerSpec.stage)
    from ..stages.graph import VALIDATING  # torch: only once the file parses this far

    pruned = [s.name for s in VALIDATING]  # the stages that validate during fit
    if stage not in pruned:
        raise ConfigError(f"pruner.stage: {stage!r} does not validate during training "
                          f"(choose {', '.join(pruned)})", where)  # fmt: skip
    every = options.pop("val_every", PrunerSpec.val_every)
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ConfigError(f"pruner.val_every: expected a positive int, got {every!r}", where)
    check_options(PRUNERS[name], options, "pruner", where, ())
    if name != "none" and n_objectives > 1:
        raise ConfigError("pruner: Optuna cannot prune a multi-objective study; use none", where)
    spec = PrunerSpec(name, stage, every, options)
    try:
        make_pruner(spec)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"pruner: {err}", where) from None
    return spec


def make_sampler(spec: SamplerSpec, space: list[Param], worker: int = 0) -> Any:
    seed = None if spec.seed is None else spec.seed + worker
    if spec.name == "grid":
        grid = {p.path: p.grid() for p in space}
        return optuna.samplers.GridSampler(grid, seed=seed, **spec.options)
    return SAMPLERS[spec.name](seed=seed, **spec.options)


def make_pruner(spec: PrunerSpec) -> Any:
    return PRUNERS[spec.name](**spec.options)


def grid_size(space: list[Param]) -> int:
    size = 1
    for p in space:
        size *= p.grid_len() or 0
    return size
