"""Hypothesis strategies for experiment and sweep files a user might write: the real keys,
near-misses of them (typos, case, `-` for `_`), random keys, values of every YAML type (of
the right type and in range often enough to reach the deeper checks), nesting, lists,
`ablate:` axes with coupled values, command-line overrides, and raw-text corruptions."""

from __future__ import annotations

import dataclasses
import typing
from functools import cache
from typing import Any, Literal

import yaml
from hypothesis import strategies as st

from harness.config.experiment import EXPERIMENT_KEYS
from harness.config.experiment import SECTIONS as CONFIG_SECTIONS
from harness.config.schema import Config
from harness.config.validate import hints
from harness.sweep.spec import SWEEP_KEYS
from tests.conftest import MICRO, ROOT

TRICKY = ["", " ", "\t", "~", "null", "yes", "no", "on", "1e-3", ".nan", "-.inf", "0x10",
          "1_000", "${oops}", "${data.resolution}", "${env:HOME}", "../../escaped", "/etc",
          "a=b", "{}", "[]", "- x", ": x", "#", "'", '"', "\\", "\x00", "\u2028", "é", "🙂",
          "diffusion", "ar", "ddim", "folder", "webdataset", "coco", "quick", "standard",
          "micro_suite.yaml", "fd_clip", "clip_score", "tpe", "grid", "median", "none",
          str(MICRO), str(ROOT / "experiments" / "base" / "tiny.yaml"), "experiments/eta.yaml",
          "guidance_scale", "sqlite:///x.db", "journal:x.log"]  # fmt: skip


def often(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], n: int = 6) -> Any:
    """`good` n times in n + 1, else `bad`: mostly valid input reaches the deeper checks."""
    return st.integers(0, n).flatmap(lambda i: bad if i == 0 else good)  # one_of would dedupe


text = often(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12), st.sampled_from(TRICKY), n=2
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.integers(-3, 300)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(-2.0, 2.0)
    | text
)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


def near_miss(word: str) -> st.SearchStrategy[str]:
    """One edit away from `word`: a dropped, doubled or swapped letter, case, `-` for `_`."""
    edits = [word.upper(), word.replace("_", "-"), word + "s", word[:-1], word.capitalize()]
    edits += [word[:i] + word[i + 1 :] for i in range(len(word))]
    edits += [word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(len(word) - 1)]
    edits += [word[:i] + word[i] + word[i:] for i in range(len(word))]
    return st.sampled_from(sorted(set(edits) - {word} - {""}) or [word + "x"])


def key_like(names: list[str]) -> st.SearchStrategy[str]:
    """Mostly real names; sometimes a near-miss, sometimes anything."""
    real = st.sampled_from(names)
    return often(real, real.flatmap(near_miss) | text)


def typed(tp: Any) -> st.SearchStrategy[Any]:
    """A value of type `tp` (often valid, sometimes out of range), or anything."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return often(section(tp), anything)
    if origin is Literal:
        good = st.sampled_from(typing.get_args(tp))
        return often(good, good.flatmap(near_miss) | anything)
    if origin is list:
        inner = typing.get_args(tp)[0]
        return often(st.lists(typed(inner), min_size=1, max_size=4), anything)
    good = {int: st.integers(1, 130) | st.integers(-2, 2**33), float: st.floats(0.0, 1.0)
            | st.floats(-0.5, 50.0), bool: st.booleans(), str: text}[tp]  # fmt: skip
    return often(good, anything)


@cache
def section(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    """A partial dict for dataclass `cls`: some of its fields, typed, plus stray keys."""
    fields = {f.name: hints(cls)[f.name] for f in dataclasses.fields(cls)}
    values = {
        name: section(tp) if dataclasses.is_dataclass(tp) else typed(tp)
        for name, tp in fields.items()
    }
    picked = st.lists(st.sampled_from(sorted(fields)), max_size=4, unique=True).flatmap(
        lambda names: st.fixed_dictionaries({n: values[n] for n in names})
    )
    stray = st.dictionaries(key_like(sorted(fields)), anything, max_size=1)
    return often(picked, st.tuples(picked, stray).map(lambda p: p[1] | p[0]))


@cache
def dotted_keys() -> list[str]:
    """Every dotted config key (`decoder.text_drop`) and section (`decoder`)."""
    out: list[str] = []

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            if not prefix and f.name in ("seed_stages", "first_seed"):
                continue  # run fields set from `seed_stages:` / `seeds:`, not config keys
            tp = hints(cls)[f.name]
            out.append(prefix + f.name)
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}.")

    walk(Config, "")
    return out


def leaf_type(dotted: str) -> Any:
    cls: Any = Config
    for part in dotted.split("."):
        cls = hints(cls)[part]
    return cls


dotted = key_like(dotted_keys())
LEAVES = [k for k in dotted_keys() if not dataclasses.is_dataclass(leaf_type(k))]
value_for = dotted.flatmap(
    lambda k: st.tuples(st.just(k), typed(leaf_type(k)) if k in dotted_keys() else anything)
)
coupled = st.lists(value_for, max_size=3).map(dict) | st.tuples(
    st.lists(value_for, min_size=1, max_size=2).map(dict), text
).map(lambda p: {**p[0], "label": p[1]})
axis = value_for.flatmap(
    lambda kv: (
        st.tuples(st.just(kv[0]), st.lists(typed(leaf_type(kv[0])) | coupled, max_size=3))
        if kv[0] in dotted_keys()
        else st.tuples(st.just(kv[0]), anything)
    )
)
ablate = often(st.lists(axis, max_size=3).map(dict), anything)
seeds = often(
    st.lists(st.integers(0, 9), min_size=1, max_size=3),
    st.lists(st.integers(-2, 2**33), max_size=3) | st.integers(-1, 5) | anything,
)
SECTIONS = list(CONFIG_SECTIONS)
TOP = [*EXPERIMENT_KEYS, *SECTIONS]
SPLICE = [":", "-", " ", "\n", "{", "[", "'", "#", "\t", "&a", "*a", "!!int ", "${"]

# `plugins:` imports what it names: the fuzz names only files and modules that do not exist
# (never random text, which could name an installed module), or values of the wrong type.
plugins = often(
    st.lists(st.sampled_from(["nowhere.py", "sub/nowhere.py", "no_such_plugin_here"]), max_size=2),
    anything.filter(lambda v: not (isinstance(v, list) and all(isinstance(s, str) for s in v))),
    n=2,
)
TOP_VALUES = {"name": often(st.sampled_from(["exp", "a-b_1", "x.y"]), text), "description": text,
              "base": often(st.just(str(MICRO)), text, n=2), "metrics": text, "seeds": seeds,
              "ablate": ablate, "plugins": plugins,
              "seed_stages": often(st.lists(st.sampled_from(["prior", "decoder", "prio"])),
                                   anything),
              **{s: typed(hints(Config)[s]) for s in SECTIONS}}  # fmt: skip


def pick(values: dict[str, Any], names: list[str]) -> Any:
    return st.fixed_dictionaries({n: values[n] for n in names})


def mutated(base: dict[str, Any], values: dict[str, Any]) -> Any:
    """`base` (a valid file) with one or two keys drawn from `values`."""
    keys = st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=2, unique=True)
    return keys.flatmap(lambda ks: pick(values, ks)).map(lambda changed: {**base, **changed})


random_experiment = st.lists(st.sampled_from(TOP), max_size=5, unique=True).flatmap(
    lambda names: pick(TOP_VALUES, names)
).flatmap(
    lambda doc: often(st.just({}), st.dictionaries(key_like(TOP), anything, max_size=1))
    .map(lambda stray: stray | doc)
)  # fmt: skip
experiment_doc = st.one_of(random_experiment, mutated({"base": str(MICRO)}, TOP_VALUES))

override = (
    often(
        value_for.map(lambda kv: f"{kv[0]}={yaml.safe_dump(kv[1], default_flow_style=True)}"),
        st.tuples(key_like([*EXPERIMENT_KEYS, *dotted_keys()]), text).map("=".join) | text,
        n=4,
    )
    .map(lambda s: s.strip().replace("\n", " "))
    .filter(lambda s: not s.startswith("-"))
)
overrides = st.lists(override, max_size=2)

param = st.one_of(
    st.fixed_dictionaries({"low": scalars, "high": scalars},
                          optional={"step": scalars, "log": scalars, "type": text}),
    st.fixed_dictionaries({"low": st.floats(0, 1), "high": st.floats(0, 1)}),
    st.fixed_dictionaries({"low": st.integers(1, 4), "high": st.integers(1, 64)},
                          optional={"step": st.integers(-1, 3), "log": st.booleans()}),
    st.lists(scalars, max_size=4),
    st.fixed_dictionaries({"choices": anything}),
    anything,
)  # fmt: skip
objective = st.one_of(
    st.sampled_from(["fd_clip", "kd_clip", "clip_score", "diversity", "fid"]),
    st.fixed_dictionaries({"metric": text | st.sampled_from(["fd_clip", "clip_score"]),
                           "direction": st.sampled_from(["minimize", "maximize"]) | text}),
    anything,
)  # fmt: skip
SWEEP_VALUES = {
    "experiment": often(st.sampled_from([str(MICRO), "guidance_scale"]), text),
    "space": often(st.dictionaries(st.sampled_from(LEAVES), param, min_size=1, max_size=2),
                   st.dictionaries(dotted, param, min_size=1, max_size=2) | anything),
    "objectives": often(st.lists(objective, min_size=1, max_size=2), anything),
    "study": text, "description": text, "arm": text | st.none(), "overrides": overrides,
    "sampler": often(st.sampled_from(["tpe", "random", "grid", "cmaes", "nsga2"]), anything),
    "pruner": often(st.sampled_from(["none", "median", "hyperband"]), anything),
    "n_trials": often(st.integers(1, 5), anything), "storage": st.none() | anything,
}  # fmt: skip
REQUIRED = ["experiment", "space", "objectives"]
OPTIONAL = [k for k in SWEEP_VALUES if k not in REQUIRED]

VALID_SWEEP = {"experiment": str(MICRO), "n_trials": 2,
               "space": {"decoder.guidance_scale": {"low": 1.0, "high": 3.0}},
               "objectives": [{"metric": "fd_clip", "direction": "minimize"}]}  # fmt: skip
random_sweep = st.tuples(
    often(st.just(REQUIRED), st.lists(st.sampled_from(REQUIRED), unique=True)),
    st.lists(st.sampled_from(OPTIONAL), max_size=3, unique=True),
).flatmap(lambda names: pick(SWEEP_VALUES, [*names[0], *names[1]])).flatmap(
    lambda doc: often(st.just({}), st.dictionaries(key_like(list(SWEEP_KEYS)), anything,
                                                   max_size=1)).map(lambda stray: stray | doc)
)  # fmt: skip
sweep_doc = st.one_of(random_sweep, mutated(VALID_SWEEP, SWEEP_VALUES))


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


@st.composite
def yaml_text(draw: st.DrawFn, docs: st.SearchStrategy[Any]) -> str:
    """The document as YAML; one time in eight with a few characters spliced in."""
    out = dump(draw(docs))
    if draw(st.integers(0, 7)) == 0:
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(out)))
            out = out[:at] + draw(st.sampled_from(SPLICE)) + out[at:]
    return out
