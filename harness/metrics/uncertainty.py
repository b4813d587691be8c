"""95% intervals for every metric, and the rule that says whether two arms differ.

Per-sample metrics (CLIP score, compositional accuracy, diversity per source) use a
percentile bootstrap of the mean over samples. Set-level metrics (FD, KD) resample the
generated set and recompute (see fid.py); the reference set is shared by every arm, so its
own sampling noise does not separate arms and is not resampled. Resampling with replacement
inflates FD (duplicated rows), so set-level replicates are re-centred on the point estimate:
their spread, not their bias, makes the interval. With several seeds an arm's interval is a
two-level bootstrap: resample the seeds, then draw one within-seed replicate of each, so both
seed-to-seed and sample-to-sample noise widen it.

Two arms differ (`differ`) when the 95% bootstrap interval of the difference of their means
excludes 0 -- computed from the stored bootstrap replicates of each arm (independent draws,
so replicates pair up at random). Without replicates the conservative fallback is
non-overlap of the two intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

LEVEL = 0.95
N_BOOT = 200


@dataclass
class Estimate:
    """A metric's value with its interval [lo, hi] (LEVEL confidence) and sample count."""

    value: float
    lo: float
    hi: float
    n: int
    replicates: np.ndarray | None = field(default=None, repr=False)  # (B,) bootstrap values

    def as_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "n": self.n}

    def __str__(self) -> str:
        return f"{self.value:.4g} [{self.lo:.4g}, {self.hi:.4g}]"


def percentile_interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(replicates, np.float64), [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) row indices drawn with replacement; fixed by `seed` (reproducible)."""
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
    return Estimate(float(v.mean()), lo, hi, int(v.size), reps)


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
    return from_replicates(point, reps, n, level, recentre=True)


def from_replicates(
    value: float, replicates: np.ndarray, n: int, level: float = LEVEL, recentre: bool = False
) -> Estimate:
    """An Estimate from a point value and its bootstrap replicates (B,).

    `recentre` shifts the replicates onto `value`: keep their spread, drop the bias that
    resampling with replacement adds to set-level statistics such as FD.
    """
    reps = np.asarray(replicates, np.float64)
    if recentre:
        reps = reps - reps.mean() + value
    lo, hi = percentile_interval(reps, level)
    return Estimate(float(value), lo, hi, int(n), reps)


def across_seeds(per_seed: Sequence[Estimate], seed: int = 0, level: float = LEVEL) -> Estimate:
    """One arm, several seeds: mean of the seeds' values; see the module docstring."""
    if len(per_seed) == 1:
        return per_seed[0]
    values = np.array([e.value for e in per_seed])
    reps = values[bootstrap_indices(len(values), N_BOOT, seed)].mean(axis=1)
    if all(e.replicates is not None for e in per_seed):
        # Within-seed noise too: a draw = one replicate of each resampled seed.
        rng = np.random.default_rng(seed + 1)
        stacked = np.stack([rng.choice(e.replicates, N_BOOT) for e in per_seed])  # (S, B)
        pick = bootstrap_indices(len(per_seed), N_BOOT, seed)  # (B, S)
        reps = stacked[pick, np.arange(N_BOOT)[:, None]].mean(axis=1)
    lo, hi = percentile_interval(reps, level)
    return Estimate(float(values.mean()), lo, hi, sum(e.n for e in per_seed), reps)


def difference(a: Estimate, b: Estimate, seed: int = 0, level: float = LEVEL) -> Estimate:
    """a - b with a bootstrap interval (replicates paired at random: independent draws)."""
    if a.replicates is None or b.replicates is None:
        raise ValueError("difference needs bootstrap replicates on both estimates")
    rng = np.random.default_rng(seed)
    m = max(len(a.replicates), len(b.replicates))
    reps = rng.choice(a.replicates, m) - rng.choice(b.replicates, m)
    # Centre the replicates on the observed difference (their spread is what we need).
    reps = reps - reps.mean() + (a.value - b.value)
    lo, hi = percentile_interval(reps, level)
    return Estimate(a.value - b.value, lo, hi, min(a.n, b.n), reps)


def differ(a: Estimate, b: Estimate, level: float = LEVEL) -> bool:
    """True when arms a and b differ at `level` (rule in the module docstring)."""
    if a.replicates is not None and b.replicates is not None:
        d = difference(a, b, level=level)
        return d.lo > 0 or d.hi < 0
    return a.lo > b.hi or b.lo > a.hi
