"""Stages through the content-addressed stage cache: load what is cached, train (once,
across processes) what is absent, in the graph's order, and report what happened as
structured events (the log lines are printed from them, never parsed back)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..cache import StageCache
from ..config import Config
from .common import METRICS_FILE
from .graph import STAGES
from .stage import Stage, StageContext

# (stage, key, cfg, fit) -> fit(): runs the training (which returns the stage's metrics),
# e.g. inside a W&B run of its own.
TrainHook = Callable[[Stage, str, Config, Callable[[], dict[str, Any]]], dict[str, Any]]


@dataclass(frozen=True)
class StageEvent:
    stage: str
    key: str
    trained: bool  # False: reused from the cache
    seconds: float  # training time now, or as recorded when the entry was made

    def line(self) -> str:
        how = f"trained in {self.seconds:.0f} s" if self.trained else "reused"
        return f"  {self.stage:<10} {self.key}  {how}"


@dataclass
class Resolution:
    loaded: dict[str, Any] = field(default_factory=dict)  # stage name -> module
    dirs: dict[str, Path] = field(default_factory=dict)  # stage name -> cache entry
    events: list[StageEvent] = field(default_factory=list)


def device_of(cfg: Config) -> torch.device:
    """Where trained stages sample: the accelerator the config trains on, if present."""
    wants_gpu = cfg.train.accelerator == "gpu" or cfg.train.accelerator == "auto"
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


def inputs_of(stage: Stage, res: Resolution) -> tuple[dict[str, Any], dict[str, Path]]:
    """The modules and cache folders of the stages `stage` is keyed on or uses, by role."""
    links = {**stage.keyed, **stage.uses}
    modules = {role: res.loaded[s.name] for role, s in links.items() if s.name in res.loaded}
    return modules, {role: res.dirs[s.name] for role, s in links.items() if s.name in res.dirs}


class Resolver:
    """Loaded stage modules are kept per (stage, key), so arms that share a stage share
    one module; `retrain` names stages trained again (once each) even when cached."""

    def __init__(
        self,
        cache: StageCache,
        retrain: set[str] | None = None,
        progress: bool = False,
        echo: Callable[[str], None] = print,
        hook: TrainHook | None = None,
        meta: dict[str, Any] | None = None,
        judge: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        self.cache, self.retrain, self.progress = cache, set(retrain or ()), progress
        self.echo, self.hook, self.meta = echo, hook, meta or {}
        # what scores held-out images in a stage's metrics (input role "judge"): the metrics
        # suite's attribute classifier, handed in by `run` (stages do not import metrics)
        self.judge = judge
        self.retrained: set[tuple[str, str]] = set()
        self.modules: dict[tuple[str, str], Any] = {}

    def resolve(self, cfg: Config, keys: dict[str, str | None]) -> Resolution:
        """Every stage with a key in `keys` (None or absent: not needed), upstream first."""
        res = Resolution()
        for name, stage in STAGES.items():
            key = keys.get(name)
            if key is not None:
                res.events.append(self._one(stage, key, cfg, res))
        return res

    def _one(self, stage: Stage, key: str, cfg: Config, res: Resolution) -> StageEvent:
        name = stage.name
        redo = name in self.retrain and (name, key) not in self.retrained
        if not self.cache.has(name, key) or redo:
            self.echo(f"  {name:<10} {key}  training ...")
        entry = self.cache.resolve(name, key, self._trainer(stage, key, cfg, res),
                                   retrain=redo, meta=self.meta)  # fmt: skip
        if redo:
            self.retrained.add((name, key))
            self.modules.pop((name, key), None)
        event = StageEvent(name, key, not entry.reused, entry.seconds)
        self.echo(event.line())
        res.dirs[name] = entry.path
        if (name, key) not in self.modules:
            inputs, dirs = inputs_of(stage, res)
            ctx = StageContext(cfg, entry.path, inputs, dirs)
            self.modules[(name, key)] = stage.load(ctx, entry.path).to(device_of(cfg))
        res.loaded[name] = self.modules[(name, key)]
        return event

    def _trainer(self, stage: Stage, key: str, cfg: Config, res: Resolution):
        def train(tmp: Path) -> dict[str, Any]:
            inputs, dirs = inputs_of(stage, res)
            if self.judge is not None:
                inputs["judge"] = self.judge
            ctx = StageContext(cfg, tmp, inputs, dirs, self.progress,
                               partial=self.cache.partial(stage.name, key))  # fmt: skip

            def fit() -> dict[str, Any]:
                stage.train(ctx)
                return json.loads((tmp / METRICS_FILE).read_text())

            metrics = fit() if self.hook is None else self.hook(stage, key, cfg, fit)
            return {"stage_metrics": metrics}

        return train
