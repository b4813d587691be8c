"""Experiment files: `base:` inheritance, `ablate:` axes, seeds, metric suite, overrides.

name: prior_ablation
description: AR vs diffusion prior, and the paper's two no-prior baselines
base: base/tiny.yaml          # path relative to this file; deep merge, this file wins
plugins: [my_prior.py]        # optional: files (or modules) that register prior kinds or
                              # data sources, imported before validation (harness/plugins.py)
metrics: quick                # metrics/quick.yaml
seeds: [0]
seed_stages: [prior]          # optional: only these stages retrain per seed
ablate:                       # product of axes
  prior.kind: [diffusion, ar, caption_only, text_embedding]
  guidance:                   # a value may be a dict of coupled keys (+ optional label)
    - {label: paper, decoder.clip_drop: 0.1, decoder.text_drop: 0.5}
    - {label: none, decoder.clip_drop: 0.0, decoder.text_drop: 0.0}
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import paths, plugins
from ..errors import ConfigError
from .schema import SEED_RANGE, Config
from .validate import (
    build,
    check_bounds,
    coerce,
    deep_merge,
    lookup,
    nest,
    suggest,
    validate_section,
)
from .yaml_file import is_interpolation, read_yaml, resolve_merged

EXPERIMENT_KEYS = (
    "name", "description", "base", "metrics", "seeds", "seed_stages", "ablate", "plugins",
)  # fmt: skip
RUN_FIELDS = ("seed", "seed_stages", "first_seed")  # set per run, not config sections
SECTIONS = tuple(f.name for f in dataclasses.fields(Config) if f.name not in RUN_FIELDS)
MAX_ARMS = 4096  # the product of the axes; prior_ablation has 8


@dataclass
class Arm:
    label: str  # short and readable: `prior.kind=ar`
    axes: dict[str, Any]  # axis name -> the value shown for it (a coupled value's label)
    settings: dict[str, Any]  # nested config overrides this arm applies
    origins: dict[str, str] = field(default_factory=dict)  # dotted key -> where it was set

    @property
    def slug(self) -> str:
        """The label as a folder name: labels come from axis values (paths, captions, any
        text), so they are rewritten, not refused; `expand` refuses two arms that would share
        a folder."""
        return paths.safe_slug(self.label)


@dataclass
class Experiment:
    name: str
    description: str
    path: Path | None
    metrics: str
    seeds: list[int]
    settings: dict[str, Any]  # merged, validated config overrides shared by every arm
    axes: list[str]
    arms: list[Arm]
    overrides: list[str] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)  # resolved paths / module names
    seed_stages: list[str] | None = None  # stages retrained per seed (None: every stage)

    def config(self, arm: Arm, seed: int) -> Config:
        cfg = build(Config, deep_merge(self.settings, arm.settings))
        cfg.seed, cfg.first_seed = seed, self.seeds[0]
        cfg.seed_stages = None if self.seed_stages is None else list(self.seed_stages)
        check_config(cfg, str(self.path or "<experiment>"))
        return cfg

    def where(self, arm: Arm, dotted: str) -> str:
        """Where the arm's value of `dotted` was set, for an error message: an axis value,
        the command line, or the experiment file (which may inherit it from its base)."""
        if dotted in {parse_override(o)[0] for o in self.overrides}:  # it wins over axes
            return "command line"
        return arm.origins.get(dotted, str(self.path or "<experiment>"))


def check_file_keys(raw: dict[str, Any], where: str) -> None:
    for key in raw:
        if key not in EXPERIMENT_KEYS and key not in SECTIONS:
            options = list(EXPERIMENT_KEYS + SECTIONS)
            raise ConfigError(f"{key}: unknown key{suggest(str(key), options)}", where)


def load_chain(path: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The file merged over its whole `base:` chain, the command line's overrides applied,
    then `${...}` resolved once over the result (so a child can interpolate its base's keys,
    and a value that interpolates an overridden key follows the override), then validated
    again (an interpolated value is checked once it has one)."""
    raw = apply_overrides(merge_chain(path), list(overrides or []))
    merged = resolve_merged(raw, str(path))
    sections = {k: v for k, v in merged.items() if k in SECTIONS}
    try:
        sections = validate_section(sections, Config)
    except ConfigError as err:
        raise ConfigError(str(err), str(path)) from None
    return merged | sections


def without_interpolations(raw: Any) -> Any:
    """`raw` less its `${...}` values (checked once the merged chain resolves them)."""
    if isinstance(raw, dict):
        return {k: without_interpolations(v) for k, v in raw.items() if not is_interpolation(v)}
    return raw


def merge_chain(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file merged over its `base:` chain, unresolved; config sections are validated per
    file (naming the file that holds a bad value)."""
    path = path.resolve()
    if path in seen:
        cycle = " -> ".join(p.name for p in (*seen, path))
        raise ConfigError(f"base: cycle {cycle}", str(path))
    if not path.is_file():
        raise ConfigError("file not found", str(path))
    raw = read_yaml(path, resolve=False)
    check_file_keys(raw, str(path))
    if "plugins" in raw:  # before anything names what they register
        raw["plugins"] = plugins.load_plugins(raw["plugins"], path.parent, str(path))
    suite = raw.get("metrics")
    if isinstance(suite, str) and suite.endswith((".yaml", ".yml")):  # relative to its file,
        raw["metrics"] = str((path.parent / suite).resolve())  # even when inherited
    sections = {k: v for k, v in raw.items() if k in SECTIONS}
    try:
        validate_section(without_interpolations(sections), Config)
    except ConfigError as err:
        raise ConfigError(str(err), str(path)) from None
    own = {k: v for k, v in raw.items() if k in EXPERIMENT_KEYS} | sections
    base = own.pop("base", None)
    if base is None:
        return own
    if not isinstance(base, str):
        raise ConfigError(f"base: expected a path, got {base!r}", str(path))
    base_path = path.parent / base
    if not base_path.is_file():
        raise ConfigError(f"base: file not found: {base_path}", str(path))
    inherited = merge_chain(base_path, (*seen, path))
    inherited.pop("ablate", None)  # axes belong to the file that declares them
    used = [*inherited.get("plugins", []), *own.get("plugins", [])]  # a base's stay loaded
    return deep_merge(inherited, own) | ({"plugins": used} if used else {})


def parse_override(text: str) -> tuple[str, Any]:
    """`decoder.text_drop=0.2` -> ("decoder.text_drop", 0.2); values parse as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"expected KEY=VALUE, got {text!r}", "command line")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def check_value(dotted: str, value: Any, where: str) -> Any:
    """Validate one dotted config key and its value."""
    try:
        f, tp = lookup(Config, dotted)
        if dataclasses.is_dataclass(tp):
            return validate_section(value, tp, f"{dotted}.")
        value = coerce(value, tp, dotted)
        if isinstance(value, int | float):
            check_bounds(value, f, dotted)
        return value
    except ConfigError as err:
        raise ConfigError(str(err), where) from None


def apply_overrides(merged: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        key, value = parse_override(text)
        if key == "base":  # the chain is already merged: a new base would be silently ignored
            raise ConfigError("base: set it in the file, not on the command line", "command line")
        if key == "plugins":  # ... as would plugins: the file's are imported by now
            raise ConfigError(f"plugins: list them in the file or in ${plugins.ENV}, not on "
                              "the command line", "command line")  # fmt: skip
        if "." not in key and key not in EXPERIMENT_KEYS and key not in SECTIONS:
            options = list(EXPERIMENT_KEYS + SECTIONS)  # `seed=3` would be silently ignored
            raise ConfigError(f"{key}: unknown key{suggest(key, options)}", "command line")
        if key in EXPERIMENT_KEYS:
            if key == "name" and value:
                paths.check_name(value, "name", "command line")
            merged = {**merged, key: value}
        elif key.split(".")[0] == "ablate":
            raise ConfigError(
                f"{key}: set axes in the file, not on the command line", "command line"
            )
        else:
            merged = deep_merge(merged, nest(key, check_value(key, value, "command line")))
    return merged


def axis_values(name: str, values: Any, where: str) -> list[tuple[str, dict[str, Any], str]]:
    """One axis -> [(display value, nested settings, where the value is written)]."""
    if not isinstance(values, list):
        raise ConfigError(f"ablate.{name}: expected a list of values", where)
    if not values:
        raise ConfigError(f"ablate.{name}: empty axis", where)
    out = []
    for i, value in enumerate(values):
        spot = f"{where}: ablate.{name}[{i}]"
        if isinstance(value, dict):
            coupled = dict(value)
            label = coupled.pop("label", None)
            if not coupled:
                raise ConfigError("a coupled value needs at least one key", spot)
            settings: dict[str, Any] = {}
            for key, v in coupled.items():
                settings = deep_merge(settings, nest(key, check_value(str(key), v, spot)))
            out.append((str(label) if label is not None else coupled_label(coupled), settings,
                        spot))  # fmt: skip
        else:
            out.append((str(value), nest(name, check_value(name, value, spot)), spot))
    shown = [v for v, _, _ in out]
    if len(set(shown)) != len(shown):
        raise ConfigError(f"ablate.{name}: repeated value in {shown}", where)
    return out


def coupled_label(coupled: dict[str, Any]) -> str:
    """Leaf names when they are unique (`clip_drop=0.1,text_drop=0.5`), else full keys."""
    leaves = [str(k).split(".")[-1] for k in coupled]
    keys = leaves if len(set(leaves)) == len(leaves) else [str(k) for k in coupled]
    return ",".join(f"{k}={v}" for k, v in zip(keys, coupled.values(), strict=True))


def expand(ablate: Any, where: str) -> tuple[list[str], list[Arm]]:
    """The product of the axes, in file order."""
    if ablate is None:
        return [], [Arm(label="base", axes={}, settings={})]
    if not isinstance(ablate, dict):
        raise ConfigError("ablate: expected a mapping of axis -> list of values", where)
    names = [str(n) for n in ablate]
    options = [axis_values(n, ablate[n], where) for n in names]
    if math.prod(map(len, options)) > MAX_ARMS:  # validate would list (and hash) them all
        raise ConfigError(f"ablate: {' x '.join(str(len(o)) for o in options)} = "
                          f"{math.prod(map(len, options))} arms, at most {MAX_ARMS}; search "
                          "a space this large with a sweep", where)  # fmt: skip
    arms = []
    for combo in itertools.product(*options):
        settings: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for _, s, spot in combo:
            settings = deep_merge(settings, s)
            origins |= dict.fromkeys(leaf_keys(s), spot)
        axes = {n: shown for n, (shown, _, _) in zip(names, combo, strict=True)}
        label = ",".join(v if "=" in v else f"{n}={v}" for n, v in axes.items())
        arms.append(Arm(label=label, axes=axes, settings=settings, origins=origins))
    check_folders(arms, where)
    return names, arms


def leaf_keys(nested: dict[str, Any], prefix: str = "") -> list[str]:
    """{"a": {"b": 1}} -> ["a.b"]."""
    out = []
    for key, value in nested.items():
        dotted = f"{prefix}{key}"
        out += leaf_keys(value, f"{dotted}.") if isinstance(value, dict) else [dotted]
    return out


def check_folders(arms: list[Arm], where: str) -> None:
    """Two arms never write into one folder (`a/b` and `a_b` both slug to `a_b`); compared
    case-blind, as on macOS and Windows disks."""
    seen: dict[str, Arm] = {}
    for arm in arms:
        other = seen.setdefault(arm.slug.casefold(), arm)
        if other is not arm:
            raise ConfigError(
                f"ablate: arms {other.label!r} and {arm.label!r} would share the folder "
                f"{arm.slug!r}; give a coupled value a `label:`",
                where,
            )


def check_seed_stages(names: Any, where: str) -> list[str] | None:
    """`seed_stages: [prior]`: a list of stage names (checked against the stage graph in
    stages/checks.py, which this layer cannot import)."""
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"seed_stages: expected a list of stage names, got {names!r}", where)
    if len(set(names)) != len(names):
        raise ConfigError(f"seed_stages: repeated stage in {names}", where)
    return list(names)


def check_seeds(seeds: Any, where: str) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"seeds: expected a non-empty list of integers, got {seeds!r}", where)
    for s in seeds:
        if not isinstance(s, int) or isinstance(s, bool):
            raise ConfigError(f"seeds: expected integers, got {s!r}", where)
        if not SEED_RANGE[0] <= s <= SEED_RANGE[1]:  # numpy and Lightning refuse the rest
            raise ConfigError(f"seeds: {s} is outside [{SEED_RANGE[0]}, {SEED_RANGE[1]}]", where)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: repeated seed in {seeds}", where)
    return list(seeds)


def check_metrics(name: Any, where: str) -> str:
    """A suite name (metrics/NAME.yaml) or a YAML path relative to the experiment file."""
    if not isinstance(name, str):
        raise ConfigError(f"metrics: expected a suite name, got {name!r}", where)
    if name.endswith((".yaml", ".yml")):
        path = (Path(where).parent / name).resolve()
        if not path.is_file():
            raise ConfigError(f"metrics: suite file not found: {path}", where)
        return str(path)
    if paths.find_in("metrics", name) is None:
        known = [p.stem for p in paths.list_yaml("metrics")]
        hint = suggest(name, known)
        raise ConfigError(
            f"metrics: unknown metric suite {name!r} (available: {', '.join(known)}){hint}", where
        )
    return name


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Read, merge, validate and expand an experiment file. Raises ConfigError."""
    path = Path(path)
    where = str(path)
    plugins.load_plugins(plugins.from_env(), Path.cwd(), f"${plugins.ENV}")
    merged = load_chain(path, list(overrides or []))
    ablate = merged.pop("ablate", None)
    overridden = {parse_override(o)[0] for o in overrides or []}
    if isinstance(ablate, dict):  # an override on an ablated key wins over the axis
        ablate = {k: v for k, v in ablate.items() if k not in overridden}
    settings = {k: v for k, v in merged.items() if k in SECTIONS}
    axes, arms = expand(ablate, where)
    for arm in arms:  # ... and over the same key inside a coupled axis value
        arm.settings = apply_overrides(arm.settings, [o for o in overrides or [] if "." in o])
    name = merged.get("name")  # a chosen name is refused when unsafe, the file's stem rewritten
    experiment = Experiment(
        name=paths.check_name(name, "name", where) if name else paths.safe_slug(path.stem),
        description=str(merged.get("description") or ""),
        path=path,
        metrics=check_metrics(merged.get("metrics", "quick"), where),
        seeds=check_seeds(merged.get("seeds", [0]), where),
        seed_stages=check_seed_stages(merged.get("seed_stages"), where),
        settings=settings,
        axes=axes,
        arms=arms,
        overrides=list(overrides or []),
        plugins=list(merged.get("plugins", [])),
    )
    for arm in arms:
        experiment.config(arm, experiment.seeds[0])  # cross-field checks for every arm
    return experiment


def check_config(cfg: Config, where: str) -> None:
    """Checks that span several keys; run on each fully resolved arm."""
    if cfg.data.min_objects > cfg.data.max_objects:
        raise ConfigError("data.min_objects is larger than data.max_objects", where)
    chain = [("decoder.resolution", cfg.decoder.resolution)]
    for name in ("first", "second"):
        up = getattr(cfg.upsamplers, name)
        if up.enabled:
            chain.append((f"upsamplers.{name}.resolution", up.resolution))
    for (low_key, low), (high_key, high) in itertools.pairwise(chain):
        if high <= low:
            raise ConfigError(f"{high_key} ({high}) must exceed {low_key} ({low})", where)
    if chain[-1][1] > cfg.data.resolution:
        raise ConfigError(
            f"{chain[-1][0]} ({chain[-1][1]}) exceeds data.resolution ({cfg.data.resolution})",
            where,
        )
    # Head counts, widths and the prior's PCA size are the nets' own checks, and what a
    # data source needs is its registry entry's: validation builds every arm's nets on the
    # meta device and asks the registries (stages/checks.py), so no rule is re-derived here.
