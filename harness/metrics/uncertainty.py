"""95% intervals for every metric, from bootstrap replicates that every arm draws alike.

Every arm scores the same test captions, and replicate b of every arm resamples the same
caption rows: `bootstrap_indices(n, n_boot, seed)` with one index seed. Each Estimate records
what its replicates were drawn from (`Draws`), so two estimates can be compared replicate by
replicate (inference.py) only when they are aligned.

Per-sample metrics (CLIP score, compositional accuracy, diversity per caption or source) use
a percentile bootstrap of the mean over samples. Set-level metrics (FD, KD) resample the
generated set and recompute (fid.py); the reference set is shared by every arm, so its own
sampling noise does not separate arms and is not resampled. Resampling with replacement
inflates FD (duplicated rows), so set-level replicates are re-centred on the point estimate:
their spread, not their bias, makes the interval.

With several training seeds an arm's interval is a two-level bootstrap: draw b resamples the
seeds (one draw shared by every arm) and takes replicate b of each drawn seed, so both
seed-to-seed and caption-to-caption noise widen it and replicate b stays paired across arms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

LEVEL = 0.95
N_BOOT = 200
OUTER_SEED = 0  # index seed of the resampled training seeds: one for every arm (paired)


@dataclass(frozen=True)
class Draws:
    """What an estimate's replicates were drawn from. Replicate b of two estimates with equal
    Draws resampled the same rows (and, across seeds, the same seeds)."""

    n: int  # rows resampled (captions / samples / sources) per training seed
    n_boot: int
    index_seeds: tuple[int, ...]  # bootstrap_indices seed, per training seed
    seeds: tuple[int, ...] = ()  # training seeds of a two-level estimate (outer level)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Draws:
        return cls(int(d["n"]), int(d["n_boot"]), tuple(d["index_seeds"]), tuple(d["seeds"]))


@dataclass
class Estimate:
    """A metric's value with its interval [lo, hi] (LEVEL confidence) and sample count N."""

    value: float
    lo: float
    hi: float
    n: int
    replicates: np.ndarray | None = field(default=None, repr=False)  # (B,) bootstrap values
    draws: Draws | None = field(default=None, repr=False)
    per_sample: np.ndarray | None = field(default=None, repr=False)  # (N,) a mean's values

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "lo": self.lo, "hi": self.hi, "n": self.n}
        if self.draws is not None:
            out["draws"] = asdict(self.draws)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], replicates: np.ndarray | None = None) -> Estimate:
        """Inverse of as_dict (results.json rows of older runs have no `draws`: unpaired)."""
        draws = Draws.from_dict(d["draws"]) if "draws" in d else None
        return cls(d["value"], d["lo"], d["hi"], d["n"], replicates, draws)

    def __str__(self) -> str:
        return f"{self.value:.4g} [{self.lo:.4g}, {self.hi:.4g}]"


def percentile_interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(replicates, np.float64), [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) row indices drawn with replacement; fixed by `seed` (reproducible), so
    every arm scored with the same (n, n_boot, seed) resamples the same rows."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_mean(
    values: np.ndarray | Sequence[float], n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
) -> Estimate:
    """Mean of per-sample values (N,) with a percentile-bootstrap interval."""
    v = np.asarray(values, np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("no samples to average")
    reps = v[bootstrap_indices(v.size, n_boot, seed)].mean(axis=1)  # (B,)
    lo, hi = percentile_interval(reps, level)
    draws = Draws(v.size, n_boot, (seed,))
    return Estimate(float(v.mean()), lo, hi, int(v.size), reps, draws, per_sample=v)


def bootstrap_statistic(
    stat: Callable[[np.ndarray], float],
    n: int,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
    value: float | None = None,
) -> Estimate:
    """A set-level statistic: `stat(idx)` on rows `idx` (n,), recomputed per resample.

    `value` is the point estimate when it comes from elsewhere (e.g. clean-fid's own KID).
    """
    point = stat(np.arange(n)) if value is None else value
    reps = np.array([stat(idx) for idx in bootstrap_indices(n, n_boot, seed)])
    return from_replicates(point, reps, n, level, recentre=True, draws=Draws(n, n_boot, (seed,)))


def from_replicates(
    value: float,
    replicates: np.ndarray,
    n: int,
    level: float = LEVEL,
    recentre: bool = False,
    draws: Draws | None = None,
) -> Estimate:
    """An Estimate from a point value and its bootstrap replicates (B,).

    `recentre` shifts the replicates onto `value`: keep their spread, drop the bias that
    resampling with replacement adds to set-level statistics such as FD.
    """
    reps = np.asarray(replicates, np.float64)
    if recentre:
        reps = reps - reps.mean() + value
    lo, hi = percentile_interval(reps, level)
    return Estimate(float(value), lo, hi, int(n), reps, draws)


def across_seeds(
    per_seed: Sequence[Estimate],
    seeds: Sequence[int] | None = None,
    level: float = LEVEL,
) -> Estimate:
    """One arm, several training seeds (`seeds`, in the order of `per_seed`): the mean of the
    seeds' values; see the module docstring. Draw b resamples the seeds with the same draw
    for every arm (OUTER_SEED) and takes replicate b of each drawn seed. The seed-level part
    of a draw is scaled by sqrt(S / (S - 1)): resampling S seeds alone shrinks their spread
    by (S - 1) / S, which with 3 seeds narrows the interval below its level."""
    seeds = tuple(seeds) if seeds is not None else tuple(range(len(per_seed)))
    if len(per_seed) == 1:
        return per_seed[0]
    values = np.array([e.value for e in per_seed])  # (S,)
    s = len(values)
    reps_known = all(e.replicates is not None for e in per_seed)
    n_boot = min(len(e.replicates) for e in per_seed) if reps_known else N_BOOT  # type: ignore[arg-type]
    pick = bootstrap_indices(s, n_boot, OUTER_SEED)  # (B, S)
    outer = values.mean() + np.sqrt(s / (s - 1)) * (values[pick].mean(axis=1) - values.mean())
    reps = outer  # (B,)
    if reps_known:  # within-seed part: replicate b of each drawn seed, about its value
        stacked = np.stack([e.replicates[:n_boot] - e.value for e in per_seed])  # type: ignore[index]
        reps = outer + stacked[pick, np.arange(n_boot)[:, None]].mean(axis=1)
    lo, hi = percentile_interval(reps, level)
    inner = [e.draws for e in per_seed]
    draws = None
    if reps_known and all(d is not None for d in inner) and len({d.n for d in inner}) == 1:
        index_seeds = tuple(x for d in inner for x in d.index_seeds)  # type: ignore[union-attr]
        draws = Draws(inner[0].n, n_boot, index_seeds, seeds)  # type: ignore[union-attr]
    return Estimate(float(values.mean()), lo, hi, sum(e.n for e in per_seed), reps, draws)


def aligned(a: Estimate, b: Estimate) -> bool:
    """True when replicate b of `a` and of `b` come from the same resampled rows (and seeds)."""
    return (
        a.draws is not None
        and a.draws == b.draws
        and a.replicates is not None
        and b.replicates is not None
        and len(a.replicates) == len(b.replicates) == a.draws.n_boot
    )
