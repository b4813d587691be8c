"""Metrics as a registry (lm-evaluation-harness's `@register_metric`): one place knows each
metric's suite key, the figures it outputs with their directions, and the inputs it needs.

Suites list registry keys (`metrics: [fd, kd, clip_score]`); `score_images` runs each listed
entry whose inputs it has; tables, sweeps' objectives and plots ask `output_of(name)` for a
figure's direction and kind. The built-in entries are registered in builtin.py; a plugin file
registers another with the same decorator:

    @register_metric("sharpness", [Output("sharpness", higher_is_better=True)], needs=("gen",))
    def sharpness(inp: Inputs) -> dict[str, Estimate]: ...

Output names may hold one placeholder: `<net>` (the feature network: fd_<net> -> fd_clip) or
`<space>` (the distance: diversity_<space> -> diversity_lpips). Placeholders match one word
without underscores, so `fd_<net>` never claims `fd_clip_inf`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError
from ..registry import Registry
from .uncertainty import Estimate

Kind = Literal["sample", "set"]  # a mean of per-sample values, or a statistic of the whole set
NEEDS = ("gen", "features", "reference", "captions", "claims", "variations", "groups", "clip")


@dataclass(frozen=True)
class Output:
    """One figure a metric reports. `kind` decides how a difference is bootstrapped: a
    per-sample mean pairs the per-sample values, a set-level statistic is recomputed."""

    pattern: str
    higher_is_better: bool
    kind: Kind = "sample"

    def matches(self, name: str) -> bool:
        return re.fullmatch(_regex(self.pattern), name) is not None


@dataclass(frozen=True)
class Context:
    """What decides the names a suite produces here: the feature network (`inception` ->
    fid/kid), the diversity distance (`lpips` or `clip`) and whether the data are shapes."""

    net: str = "clip"
    space: str = "clip"
    shapes: bool = True


@dataclass(frozen=True)
class MetricSpec:
    key: str  # what a suite lists under `metrics:`
    outputs: tuple[Output, ...]
    needs: tuple[str, ...]
    compute: Callable[[Any], dict[str, Estimate]] = field(repr=False)
    names: Callable[[Context], list[str]] = field(repr=False)
    description: str = ""


METRICS: Registry[MetricSpec] = Registry("metric")  # suite key -> entry (harness.registry)


def _regex(pattern: str) -> str:
    return re.escape(pattern).replace("<net>", "[a-z0-9]+").replace("<space>", "[a-z0-9]+")


def default_names(outputs: Sequence[Output]) -> Callable[[Context], list[str]]:
    def names(ctx: Context) -> list[str]:
        return [o.pattern.replace("<net>", ctx.net).replace("<space>", ctx.space) for o in outputs]

    return names


def register_metric(
    key: str,
    outputs: Sequence[Output],
    needs: Sequence[str],
    names: Callable[[Context], list[str]] | None = None,
    description: str = "",
) -> Callable[[Callable], Callable]:
    """Decorator: register `fn(inputs) -> {name: Estimate}` under suite key `key`."""
    unknown = sorted(set(needs) - set(NEEDS))
    if unknown:
        raise ValueError(f"metric {key!r}: unknown needs {unknown} (known: {', '.join(NEEDS)})")

    def wrap(fn: Callable) -> Callable:
        namer = names or default_names(outputs)  # a second entry under `key` is a ValueError
        METRICS.register(key, MetricSpec(key, tuple(outputs), tuple(needs), fn, namer, description))
        return fn

    return wrap


def get(key: str, where: str = "") -> MetricSpec:
    """The entry a suite names; unknown keys are a one-line error with did-you-mean."""
    if key not in METRICS:
        raise ConfigError(f"metrics: {METRICS.unknown(key)}", where)
    return METRICS[key]


def output_of(name: str) -> Output | None:
    """The registered figure `name` is (its direction and kind); None for an unknown name."""
    for _, spec in METRICS.items():
        for o in spec.outputs:
            if o.matches(name):
                return o
    return None


def higher_is_better(name: str) -> bool | None:
    """A figure's direction; None when no registered metric outputs it (never ranked)."""
    o = output_of(name)
    return None if o is None else o.higher_is_better


def lower_is_better(name: str) -> bool:
    return higher_is_better(name) is False


def direction_word(name: str) -> str:
    better = higher_is_better(name)
    return "unknown" if better is None else ("higher" if better else "lower")


def needs_of(keys: Sequence[str]) -> set[str]:
    """Every input the suite keys `keys` need (the runner prepares only these)."""
    return {n for k in keys for n in get(k).needs}


def produced(keys: Sequence[str], ctx: Context) -> list[str]:
    """The figure names suite keys `keys` report in context `ctx`."""
    return [name for k in keys for name in get(k).names(ctx)]
