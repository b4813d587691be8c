"""Checks of an experiment that need what the config layer cannot import: the registries
(filled by stage and data modules, and by plugins) and the nets' own constructors.

For every arm: each registry-backed field names a registered entry, the data source has
the fields it needs, and every stage's module builds on the meta device (no memory, no
weights), so a head count the attention layers refuse, or a PCA larger than the CLIP, is
refused by the net's constructor itself and reported against the config key it came from.
Runs before anything trains (validate, run, sweeps).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import Arm, Config, Experiment
from ..config.hashing import value_at
from ..errors import ArgumentError, ConfigError
from ..registry import Registry
from .graph import STAGES, stage_keys
from .stage import Stage, StageContext


def check_experiment(exp: Experiment) -> None:
    """ConfigError (one line: file or axis value, dotted key, what) for the first problem."""
    built: dict[tuple[str, str], Any] = {}  # (stage, key) -> meta module, shared by arms
    for name in exp.seed_stages or []:
        if name not in STAGES:
            raise ConfigError(f"seed_stages: {STAGES.unknown(name)}", str(exp.path))
    for arm in exp.arms:
        cfg = exp.config(arm, exp.seeds[0])  # the nets do not depend on the seed
        check_registered(cfg, exp, arm)
        check_nets(cfg, exp, arm, built)


def registry_fields(obj: Any = None, prefix: str = "") -> list[tuple[str, Registry]]:
    """(dotted key, registry) of every schema field that names a registry entry."""
    obj = Config() if obj is None else obj
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(f.metadata.get("registry"), Registry):
            out.append((f"{prefix}{f.name}", f.metadata["registry"]))
        elif dataclasses.is_dataclass(value):
            out += registry_fields(value, f"{prefix}{f.name}.")
    return out


def check_registered(cfg: Config, exp: Experiment, arm: Arm) -> None:
    for dotted, registry in registry_fields():
        value = value_at(cfg, dotted)
        if value not in registry:
            raise ConfigError(f"{dotted}: {registry.unknown(value)}", exp.where(arm, dotted))
    source = value_at(cfg, "data.source")
    for name in registry_entry(cfg, "data.source").needs:
        if not getattr(cfg.data, name):
            raise ConfigError(f"data.{name}: required when data.source is {source}",
                              exp.where(arm, "data.source"))  # fmt: skip


def registry_entry(cfg: Config, dotted: str) -> Any:
    registry = dict(registry_fields())[dotted]
    return registry.get(value_at(cfg, dotted), dotted)


def check_nets(
    cfg: Config, exp: Experiment, arm: Arm, built: dict[tuple[str, str], Any] | None = None
) -> None:
    """Every enabled stage's module, built on the meta device from the arm's config (once
    per stage key: `built` carries them across arms)."""
    built = {} if built is None else built
    keys, mine = stage_keys(cfg), {}
    for name, stage in STAGES.items():
        if keys[name] is None:
            continue
        if (name, keys[name]) not in built:
            links = {**stage.keyed, **stage.uses}
            inputs = {role: mine[s.name] for role, s in links.items() if s.name in mine}
            built[(name, keys[name])] = _build(stage, StageContext(cfg, inputs=inputs), exp, arm)
        mine[name] = built[(name, keys[name])]


def _build(stage: Stage, ctx: StageContext, exp: Experiment, arm: Arm) -> Any:
    try:
        return stage.build_meta(ctx)
    except ArgumentError as err:
        key = f"{stage.section}.{err.arg}"
        where = exp.where(arm, key)
        raise ConfigError(f"{key} ({value_at(ctx.cfg, key)}): {err}", where) from None
    except ValueError as err:  # a constructor's refusal it does not pin on one argument
        raise ConfigError(f"{stage.section}: {err}", exp.where(arm, stage.section)) from None
