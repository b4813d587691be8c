"""Check a user's (partial) config dict against the dataclass schema.

Each YAML file and each command-line override is validated on its own before merging, so an
error names the file it is in and the dotted key: `exp.yaml: decoder.txt_drop: unknown key
(did you mean decoder.text_drop?)`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from functools import cache
from typing import Any, Literal

from ..errors import ConfigError

_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")  # YAML 1.1 reads 1e-3 as str


@cache
def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_of(cls: type, name: str) -> dataclasses.Field | None:
    return next((f for f in dataclasses.fields(cls) if f.name == name), None)


def suggest(name: str, options: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def unknown_key(key: str, cls: type, prefix: str) -> str:
    options = [f.name for f in dataclasses.fields(cls)]
    return f"{prefix}{key}: unknown key{suggest(key, options, prefix)}"


def type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if typing.get_origin(tp) is list:
        return f"a list of {type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, dotted: str) -> Any:
    """Return `value` as type `tp` or raise ConfigError naming `dotted`."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            shown = ", ".join(map(str, allowed))
            hint = suggest(str(value), [str(a) for a in allowed]) if isinstance(value, str) else ""
            raise ConfigError(f"unknown value {value!r} (allowed: {shown}){hint}", dotted)
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"expected {type_name(tp)}, got {value!r}", dotted)
        (inner,) = typing.get_args(tp)
        return [coerce(v, inner, f"{dotted}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and _FLOAT.match(value):
            number = float(value)
        if number is not None and math.isfinite(number):  # no setting means anything at nan/inf
            return number
        if number is not None:
            raise ConfigError(f"expected a finite number, got {value!r}", dotted)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"schema type {tp} not handled")  # a bug in schema.py, not user input
    raise ConfigError(f"expected {type_name(tp)}, got {value!r}", dotted)


def check_bounds(value: Any, f: dataclasses.Field, dotted: str) -> None:
    lo_hi = f.metadata.get("range")
    if lo_hi is not None and not lo_hi[0] <= value <= lo_hi[1]:
        raise ConfigError(f"{value} is outside [{lo_hi[0]}, {lo_hi[1]}]", dotted)
    lo = f.metadata.get("min")
    if lo is not None and value < lo:
        raise ConfigError(f"{value} is below the minimum {lo}", dotted)


def validate_section(raw: Any, cls: type, prefix: str = "") -> dict[str, Any]:
    """Validate a partial dict for dataclass `cls`; returns it with values coerced.

    `prefix` is the dotted path of `cls` inside the full config (for messages).
    """
    if not isinstance(raw, dict):
        where = prefix.rstrip(".") or "<top level>"
        raise ConfigError(f"expected a mapping, got {raw!r}", where)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        f = field_of(cls, str(key))
        if f is None:
            raise ConfigError(unknown_key(str(key), cls, prefix))
        tp = hints(cls)[f.name]
        dotted = f"{prefix}{key}"
        if dataclasses.is_dataclass(tp):
            out[key] = validate_section(value, tp, f"{dotted}.")
            continue
        out[key] = coerce(value, tp, dotted)
        if isinstance(out[key], int | float):
            check_bounds(out[key], f, dotted)
    return out


def lookup(cls: type, dotted: str) -> tuple[dataclasses.Field, Any]:
    """The field and type at a dotted path, or ConfigError with a did-you-mean."""
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        f = field_of(cls, part)
        prefix = ".".join(parts[:i]) + ("." if i else "")
        if f is None:
            raise ConfigError(unknown_key(part, cls, prefix))
        tp = hints(cls)[part]
        if i == len(parts) - 1:
            return f, tp
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"{prefix}{part} is a value, not a section", dotted)
        cls = tp
    raise ConfigError("empty key", dotted)


def nest(dotted: str, value: Any) -> dict[str, Any]:
    """`a.b.c`, v -> {"a": {"b": {"c": v}}}"""
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` wins; mappings merge key by key, everything else (lists too) is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def build(cls: type, values: dict[str, Any], base: Any = None) -> Any:
    """Instantiate dataclass `cls` from a validated partial dict, defaults elsewhere.

    Starts from the default instance, so a nested section whose default comes from a factory
    (the evaluator CLIP, the second upsampler) keeps those defaults under a partial override.
    """
    obj = cls() if base is None else base
    for key, value in values.items():
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            value = build(type(current), value, current)
        setattr(obj, key, value)
    return obj
