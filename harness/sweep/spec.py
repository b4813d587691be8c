"""Sweep files (`sweeps/*.yaml`): one Optuna study over an experiment's config.

    study: decoder_guidance              # study name (default: the file name); W&B group
    description: ...
    experiment: ../experiments/guidance_scale.yaml   # relative to this file, or a name
    arm: null                            # which arm of the experiment (default: the first)
    overrides: [decoder.steps=25]        # dotted overrides for every trial
    space: {decoder.guidance_scale: {low: 1.0, high: 5.0}, ...}     # see space.py
    objectives: [{metric: fd_clip, direction: minimize}, clip_score]
    sampler: {name: nsga2, seed: 0}      # tpe | random | grid | cmaes | nsga2
    pruner: none                         # median | hyperband | none (see engines.py)
    n_trials: 24                         # the study's budget, shared by all its workers
    storage: null                        # default: sqlite in the sweep's output folder

Everything is checked here, before any storage is opened or anything is written: a wrong
key, range, sampler, pruner or objective is one line naming the file and the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import paths
from ..config import Arm, Config, Experiment, load_experiment, read_yaml
from ..config.experiment import check_config, parse_override
from ..config.validate import build, deep_merge, nest, suggest
from ..errors import ConfigError
from .engines import PrunerSpec, SamplerSpec, grid_size, parse_pruner, parse_sampler
from .objectives import Objective, check_produced, parse_objectives
from .space import Param, as_overrides, parse_space

SWEEP_KEYS = ("study", "description", "experiment", "arm", "overrides", "space", "objectives",
              "sampler", "pruner", "n_trials", "storage")  # fmt: skip


@dataclass
class SweepSpec:
    study: str
    description: str
    path: Path
    experiment: Path
    arm: str | None
    overrides: list[str]
    space: list[Param]
    objectives: list[Objective]
    sampler: SamplerSpec
    pruner: PrunerSpec
    n_trials: int
    storage: str | None
    suite: str  # the experiment's metric suite

    @property
    def budget(self) -> int:
        """Trials the study runs: n_trials, or the whole grid when that is smaller."""
        if self.sampler.name == "grid":
            return min(self.n_trials, grid_size(self.space))
        return self.n_trials

    def base(self, extra: list[str] | tuple = ()) -> tuple[Experiment, Arm]:
        """The experiment with the sweep's overrides (+ `extra`), and the swept arm."""
        exp = load_experiment(self.experiment, [*self.overrides, *extra])
        arms = {a.label: a for a in exp.arms}
        if self.arm is not None and self.arm not in arms:
            hint = suggest(self.arm, list(arms))
            raise ConfigError(
                f"arm: no arm {self.arm!r} (arms: {', '.join(arms)}){hint}", str(self.path)
            )
        return exp, arms[self.arm] if self.arm is not None else exp.arms[0]

    def first_values(self) -> dict[str, Any]:
        """One point of the space: each parameter's first choice, or its low end."""
        return {p.path: p.choices[0] if p.choices else p.low for p in self.space}


def find_experiment(raw: Any, where: Path) -> Path:
    if not isinstance(raw, str) or not raw:
        raise ConfigError("experiment: expected a path or an experiment name", str(where))
    local = (where.parent / raw).resolve()
    if local.is_file():
        return local
    found = paths.find_in("experiments", raw.removesuffix(".yaml"))
    if found is None:
        known = [paths.yaml_name(p, "experiments") for p in paths.list_yaml("experiments")]
        raise ConfigError(f"experiment: not found: {raw!r}{suggest(raw, known)}", str(where))
    return found.resolve()


def positive_int(raw: Any, key: str, where: str) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise ConfigError(f"{key}: expected a positive integer, got {raw!r}", where)
    return raw


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepSpec:
    """Read and check a sweep file (and its experiment). Raises ConfigError."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ConfigError("file not found", where)
    raw = read_yaml(path)
    for key in raw:
        if key not in SWEEP_KEYS:
            raise ConfigError(f"{key}: unknown key{suggest(str(key), list(SWEEP_KEYS))}", where)
    for key in ("experiment", "space", "objectives"):
        if key not in raw:
            raise ConfigError(f"{key}: missing", where)
    file_overrides = raw.get("overrides") or []
    if not isinstance(file_overrides, list) or not all(isinstance(o, str) for o in file_overrides):
        raise ConfigError("overrides: expected a list of KEY=VALUE strings", where)
    space = parse_space(raw["space"], where)
    objectives = parse_objectives(raw["objectives"], where)
    storage = raw.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise ConfigError(f"storage: expected a URL or a path, got {storage!r}", where)
    study = raw.get("study")  # a folder under --out: a chosen name is refused when unsafe
    spec = SweepSpec(
        study=paths.check_name(study, "study", where) if study else paths.safe_slug(path.stem),
        description=str(raw.get("description") or ""),
        path=path,
        experiment=find_experiment(raw["experiment"], path),
        arm=None if raw.get("arm") is None else str(raw["arm"]),
        overrides=[*file_overrides, *(overrides or [])],
        space=space,
        objectives=objectives,
        sampler=parse_sampler(raw.get("sampler"), where, len(objectives), space),
        pruner=parse_pruner(raw.get("pruner"), where, len(objectives)),
        n_trials=positive_int(raw.get("n_trials", 20), "n_trials", where),
        storage=storage,
        suite="",
    )
    check_against_experiment(spec)
    return spec


def check_against_experiment(spec: SweepSpec) -> None:
    """The experiment loads, the arm exists, every end of every range gives a valid config,
    and the objectives are metrics its suite produces."""
    from ..metrics.suite import load_suite

    where = str(spec.path)
    swept = {p.path for p in spec.space}
    for text in spec.overrides:
        key = parse_override(text)[0]
        if key in swept:
            raise ConfigError(f"overrides: {key} is also in space", where)
    exp, arm = spec.base(as_overrides(spec.first_values()))
    spec.suite = exp.metrics
    cfg = exp.config(arm, exp.seeds[0])
    merged = deep_merge(exp.settings, arm.settings)
    for p in spec.space:
        for value in p.choices if p.kind == "categorical" else (p.low, p.high):
            try:
                check_config(build(Config, deep_merge(merged, nest(p.path, value))), where)
            except ConfigError as err:
                raise ConfigError(f"space.{p.path}={value}: {err.message}", where) from None
    check_produced(spec.objectives, load_suite(exp.metrics), cfg, where)


def with_budget(spec: SweepSpec, n_trials: int | None) -> SweepSpec:
    if n_trials is None:
        return spec
    return dataclasses.replace(spec, n_trials=positive_int(n_trials, "--n-trials", "command line"))
