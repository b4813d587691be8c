"""Metric suites (`metrics/<name>.yaml`): which metrics, on how many samples, in which
feature space, against which reference set. Defaults live in `Suite`; a YAML overrides them
and is validated like an experiment file (one-line errors naming file and key, did-you-mean).
The metric names a suite may list are the metric registry's keys (registry.py, builtin.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .. import paths
from ..config.experiment import read_yaml
from ..config.schema import bounded
from ..config.validate import build, suggest, validate_section
from ..errors import ConfigError, HarnessError
from . import (
    builtin,  # noqa: F401  (its import registers the built-in metrics)
    fid,
    registry,
)


@dataclass
class Suite:
    """One metric suite. `fd`/`kd` are reported as fid/kid with Inception features and as
    fd_clip/kd_clip with the evaluator CLIP's image tower."""

    description: str = ""
    metrics: list[str] = field(default_factory=lambda: ["fd", "kd", "clip_score"])  # registry
    features: Literal["inception", "evaluator_clip"] = "inception"
    # When Inception weights are missing: "none" stops with a message naming the file;
    # "evaluator_clip" says so once and reports fd_clip / kd_clip instead of fid / kid.
    fallback: Literal["none", "evaluator_clip"] = "none"
    data: Literal["experiment", "coco"] = "experiment"  # coco: data.path/annotations -> COCO
    split: Literal["val", "test"] = "test"  # captions (and the real row's images)
    # Reference images: a split the captions are not drawn from, so the `real` row (this
    # split's images of the same captions) is scored against images it does not contain.
    reference_split: Literal["val", "test"] = "val"
    zero_shot: bool = False  # the stages never trained on this data (the paper's COCO protocol)
    n_samples: int = bounded(512, min=2)  # generated samples = captions drawn from `split`
    n_reference: int = bounded(0, min=0)  # reference images; 0 = the whole split
    # px every image is scored at; 0: generated images at their own size (the last enabled
    # stage's: evaluators resize their input), the reference at data.resolution
    resolution: int = bounded(0, min=0)
    clip_model: Literal["evaluator", "conditioning"] = "evaluator"  # conditioning: biased, warns
    diversity_sources: int = bounded(16, min=1)
    diversity_variations: int = bounded(4, min=2)
    classifier_steps: int = bounded(800, min=1)  # attribute classifier (compositional)
    n_bootstrap: int = bounded(200, min=10)
    bootstrap_seed: int = 0  # one index seed for every arm and seed: replicates pair up
    fd_inf_fractions: list[float] = field(default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    fd_inf_subsets: int = bounded(2, min=1)  # random subsets averaged per fraction (fd_inf)
    sample_diversity_captions: int = bounded(32, min=1)  # M captions (sample_diversity)
    samples_per_caption: int = bounded(4, min=2)  # K samples of each (sample_diversity)
    kid_subsets: int = bounded(100, min=1)
    kid_subset_size: int = bounded(1000, min=2)
    batch_size: int = bounded(256, min=1)
    name: str = ""  # set by load_suite from the file name, not a YAML key

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Cross-field checks (also after parse_suite set fields one by one)."""
        if len(set(self.metrics)) != len(self.metrics):
            raise ConfigError(f"metrics: repeated entry in {self.metrics}")
        if not self.metrics:
            raise ConfigError("metrics: empty list")
        for i, m in enumerate(self.metrics):
            if m not in registry.METRICS:
                raise ConfigError(f"metrics[{i}]: {registry.METRICS.unknown(m)}")
        fr = self.fd_inf_fractions
        if len(set(fr)) < 3 or not all(0.0 < f <= 1.0 for f in fr):
            raise ConfigError(f"fd_inf_fractions: need >= 3 distinct values in (0, 1], got {fr}")

    @property
    def needs(self) -> set[str]:
        """Every input this suite's metrics read (the runner prepares only these)."""
        return registry.needs_of(self.metrics)

    @property
    def needs_features(self) -> bool:
        return "features" in self.needs

    @property
    def real_row_possible(self) -> bool:
        """A `real` row needs reference images disjoint from the captions' own images."""
        return self.reference_split != self.split


def resolve_features(suite: Suite) -> str:
    """The feature network this suite will use here: "inception" or "evaluator_clip"."""
    if suite.features == "evaluator_clip" or not suite.needs_features:
        return suite.features
    if fid.inception_available():
        return "inception"
    if suite.fallback == "evaluator_clip":
        fid.say_inception_missing_once()
        return "evaluator_clip"
    where = f"suite {suite.name}" if suite.name else "suite"
    raise HarnessError(f"{fid.inception_missing()} (or set `fallback: evaluator_clip`)", where)


def parse_suite(raw: dict, where: str, name: str = "") -> Suite:
    """A suite from a YAML mapping; errors name `where` and the key."""
    if "name" in raw:
        raise ConfigError("name: unknown key (a suite is named by its file)", where)
    try:
        suite = build(Suite, validate_section(raw, Suite))
        suite.check()
    except ConfigError as err:
        raise ConfigError(str(err), where) from None
    suite.name = name
    return suite


def load_suite(name: str | Path) -> Suite:
    """`quick` -> metrics/quick.yaml (cwd first, then the checkout); a path works too."""
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        found = paths.find_in("metrics", str(name))
        if found is None:
            known = [paths.yaml_name(p, "metrics") for p in paths.list_yaml("metrics")]
            hint = suggest(str(name), known)
            raise ConfigError(f"no metric suite {name!r}{hint}; known: {', '.join(known)}")
        path = found
    return parse_suite(read_yaml(path), str(path), paths.yaml_name(path, "metrics"))
