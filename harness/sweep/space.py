"""A sweep's search space: dotted config keys -> Optuna distributions.

    space:
      decoder.guidance_scale: {low: 1.0, high: 5.0}         # float: the key's own type
      decoder.eta: {low: 0.0, high: 1.0, step: 0.25}         # a float grid
      decoder.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
      decoder.steps: {low: 10, high: 50, step: 10}          # int
      decoder.sampler: [ddim, ddpm]                          # categorical (or {choices: [...]})

Every key must be a config value (did-you-mean otherwise); bounds are checked against the
key's own range, so a sampled trial is always a valid config.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

from ..config import Config
from ..config.experiment import check_value
from ..config.validate import lookup, suggest
from ..errors import ConfigError

PARAM_KEYS = ("type", "low", "high", "step", "log", "choices")
Kind = Literal["float", "int", "categorical"]


@dataclass(frozen=True)
class Param:
    path: str  # dotted config key; also the Optuna parameter name
    kind: Kind
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    sampling: bool = False  # a sampling-time knob: changing it trains nothing

    def suggest(self, trial: Any) -> Any:
        """The trial's value for this key (Optuna records it under `path`)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.path, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.path, self.low, self.high, step=self.step or 1,
                                     log=self.log)  # fmt: skip
        return trial.suggest_float(self.path, self.low, self.high, step=self.step, log=self.log)

    def grid_len(self) -> int | None:
        """len(self.grid()), without listing it (a fine step makes billions of points)."""
        if self.kind == "categorical":
            return len(self.choices)
        if self.kind == "int":
            return len(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        return int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1

    def grid(self) -> list[Any] | None:
        """Every value, for the grid sampler; None for a continuous range."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        n = int(math.floor((self.high - self.low) / self.step + 1e-9))
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]


def parse_space(raw: Any, where: str) -> list[Param]:
    """`space:` of a sweep file -> params; ConfigError naming the file and the key."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("space: expected a mapping of config key -> range or choices", where)
    return [parse_param(str(path), spec, where) for path, spec in raw.items()]


def parse_param(path: str, spec: Any, where: str) -> Param:
    spot = f"space.{path}"
    if path == "seed":
        raise ConfigError(f"{spot}: the seed comes from the experiment's `seeds:`", where)
    try:
        f, tp = lookup(Config, path)
    except ConfigError as err:
        raise ConfigError(f"space: {err}", where) from None
    if dataclasses.is_dataclass(tp):
        raise ConfigError(f"{spot}: is a section; name one of its keys", where)
    if typing.get_origin(tp) is list:
        raise ConfigError(f"{spot}: a list-valued key cannot be searched", where)
    sampling = bool(f.metadata.get("sampling"))
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{spot}: expected {{low, high}} or a list of choices", where)
    for key in spec:
        if key not in PARAM_KEYS:
            hint = suggest(str(key), list(PARAM_KEYS))
            raise ConfigError(f"{spot}.{key}: unknown key{hint}", where)
    kind = spec.get("type") or ("categorical" if "choices" in spec else numeric_kind(tp))
    if kind not in typing.get_args(Kind):
        raise ConfigError(f"{spot}.type: {kind!r} (allowed: float, int, categorical)", where)
    if kind == "categorical":
        return categorical(path, spec, where, sampling)
    if tp not in (int, float):
        raise ConfigError(f"{spot}: not a number; give `choices`, not a range", where)
    if tp is int and kind == "float":
        raise ConfigError(f"{spot}.type: the key is an int", where)
    return numeric(path, kind, spec, where, sampling)  # int values of a float key are fine


def numeric_kind(tp: Any) -> str:
    return "int" if tp is int else "float" if tp is float else "categorical"


def categorical(path: str, spec: dict, where: str, sampling: bool) -> Param:
    spot = f"space.{path}"
    extra = sorted(set(spec) - {"choices", "type"})
    if extra:
        raise ConfigError(f"{spot}.{extra[0]}: not used with choices", where)
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{spot}.choices: expected a non-empty list", where)
    checked = []
    for i, value in enumerate(choices):
        if not isinstance(value, str | int | float | bool) or value is None:
            raise ConfigError(f"{spot}.choices[{i}]: expected a number, string or bool", where)
        checked.append(checked_value(path, value, f"{spot}.choices[{i}]", where))
    if len(set(map(repr, checked))) != len(checked):
        raise ConfigError(f"{spot}.choices: repeated value in {choices}", where)
    return Param(path, "categorical", choices=tuple(checked), sampling=sampling)


def numeric(path: str, kind: str, spec: dict, where: str, sampling: bool) -> Param:
    spot = f"space.{path}"
    if "choices" in spec:
        raise ConfigError(f"{spot}: give either choices or low/high", where)
    for end in ("low", "high"):
        if end not in spec:
            raise ConfigError(f"{spot}: missing `{end}`", where)
        if not is_number(spec[end]) or (kind == "int" and not isinstance(spec[end], int)):
            raise ConfigError(f"{spot}.{end}: expected {'an int' if kind == 'int' else 'a number'}"
                              f", got {spec[end]!r}", where)  # fmt: skip
    low, high = spec["low"], spec["high"]
    if low > high:
        raise ConfigError(f"{spot}: low ({low}) is above high ({high})", where)
    for end in ("low", "high"):
        checked_value(path, spec[end], f"{spot}.{end}", where)
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"{spot}.log: expected true or false, got {log!r}", where)
    if step is not None and (not is_number(step) or step <= 0):
        raise ConfigError(f"{spot}.step: expected a positive number, got {step!r}", where)
    if kind == "int" and step is not None and not isinstance(step, int):
        raise ConfigError(f"{spot}.step: expected an int, got {step!r}", where)
    if log and low <= 0:
        raise ConfigError(f"{spot}: log needs low > 0 (got {low})", where)
    if log and step is not None and (kind == "float" or step != 1):
        raise ConfigError(f"{spot}: log and step cannot be combined", where)
    cast = int if kind == "int" else float
    return Param(path, kind, cast(low), cast(high), None if step is None else cast(step), log,
                 sampling=sampling)  # fmt: skip


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def checked_value(path: str, value: Any, spot: str, where: str) -> Any:
    """`value` validated as `path` would be in an experiment (type, range)."""
    try:
        return check_value(path, value, where)
    except ConfigError as err:
        reason = err.message.removeprefix(f"{path}: ")
        raise ConfigError(f"{spot}: {reason}", where) from None


def as_overrides(params: dict[str, Any]) -> list[str]:
    """{"decoder.eta": 0.5} -> ["decoder.eta=0.5"]: JSON scalars read back exactly as YAML."""
    import json

    return [f"{path}={json.dumps(value)}" for path, value in params.items()]
