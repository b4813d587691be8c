"""What a sweep optimises: metrics of the experiment's suite, each minimised or maximised.

Several objectives make a multi-objective study whose answer is a Pareto front. A metric
must be one the suite produces *here*: without Inception weights the Fréchet distance is
`fd_clip`, not `fid`, and without LPIPS weights diversity is `diversity_clip`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..config.validate import suggest
from ..data import source_of
from ..errors import ConfigError
from ..metrics.diversity import lpips_available
from ..metrics.registry import Context, higher_is_better, produced
from ..metrics.suite import resolve_features

DIRECTIONS = ("minimize", "maximize")


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str  # minimize | maximize


def parse_objectives(raw: Any, where: str) -> list[Objective]:
    """`objectives: [{metric: fd_clip, direction: minimize}, clip_score]` (a bare name takes
    the direction the results table uses for it)."""
    if isinstance(raw, str | dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ConfigError("objectives: expected a list of {metric, direction}", where)
    out = []
    for i, item in enumerate(raw):
        spot = f"objectives[{i}]"
        if isinstance(item, str):
            item = {"metric": item}
        if not isinstance(item, dict) or not isinstance(item.get("metric"), str):
            raise ConfigError(f"{spot}: expected {{metric: NAME, direction: ...}}", where)
        for key in item:
            if key not in ("metric", "direction"):
                hint = suggest(str(key), ["metric", "direction"])
                raise ConfigError(f"{spot}.{key}: unknown key{hint}", where)
        metric = item["metric"]
        default = "minimize" if higher_is_better(metric) is False else "maximize"
        direction = item.get("direction", default)
        if direction not in DIRECTIONS:
            raise ConfigError(f"{spot}.direction: {direction!r} (allowed: minimize, maximize)"
                              f"{suggest(str(direction), list(DIRECTIONS))}", where)  # fmt: skip
        out.append(Objective(metric, direction))
    names = [o.metric for o in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives: repeated metric in {names}", where)
    return out


def produced_metrics(suite: Any, cfg: Config) -> list[str]:
    """The metric names an arm of `cfg` scored by `suite` reports on this machine (the metric
    registry's names for this feature network, diversity distance and data source)."""
    net = "clip"
    if suite.needs_features and resolve_features(suite) == "inception":
        net = "inception"
    space = "lpips" if lpips_available() else "clip"
    return produced(suite.metrics, Context(net, space, source_of(cfg.data).attributes))


def check_produced(objectives: list[Objective], suite: Any, cfg: Config, where: str) -> None:
    produced = produced_metrics(suite, cfg)
    for i, o in enumerate(objectives):
        if o.metric not in produced:
            raise ConfigError(
                f"objectives[{i}].metric: {o.metric!r} is not produced by suite {suite.name!r} "
                f"here (it gives: {', '.join(produced)}){suggest(o.metric, produced)}",
                where,
            )
