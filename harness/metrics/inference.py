"""Do two arms differ? Paired bootstrap differences, their p-values, and Holm's correction.

Every arm scores the same captions and resamples them alike (uncertainty.Draws), so replicate
b of arm A and replicate b of arm B come from the same resampled captions: the difference's
replicates are `reps_A[b] - reps_B[b]`, index by index. For a per-sample metric that is the
bootstrap of the mean of paired per-caption differences; for a set-level metric (FD, KD) both
were recomputed on the same rows. The caption-to-caption spread that both arms share cancels,
which is why pairing detects differences that overlapping intervals hide.

The p-value is a bootstrap t-test: se is the standard deviation of the difference's
replicates (times sqrt(n / (n - 1)): the bootstrap's variance of a mean divides by n, not
n - 1), t = d / se is referred to Student's t with df = 1 / (1/(n-1) + 1/(B-1)) -- se is
estimated from n rows and B replicates, and at Holm's small thresholds a normal reference
would be liberal (A/A: 9 % family-wise over 18 comparisons instead of 5 %) -- and the
interval is d +- t_df se. A percentile p-value could not go below 1 / B, too coarse for
Holm's thresholds over a table's comparisons. Set-level distances are conservative here
(A/A ~3 % at 5 %): bootstrapping a distance widens its spread. Estimates that are not
aligned (different N, n_boot, index seeds or training seeds; old runs without Draws) are
compared as independent: replicates paired by a seeded shuffle (var_A + var_B), which is
conservative when the arms did share captions. `Difference.paired` says which was used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from scipy.stats import t as student_t

from .uncertainty import LEVEL, Estimate, aligned

ALPHA = 1.0 - LEVEL


@dataclass
class Difference:
    """a - b with its interval, bootstrap standard error and two-sided p-value."""

    value: float
    lo: float
    hi: float
    se: float
    p: float
    paired: bool
    replicates: np.ndarray = field(repr=False)
    df: float = math.inf  # degrees of freedom of the t reference

    @property
    def half_width(self) -> float:
        """Minimal detectable difference at LEVEL: half the interval's width."""
        return (self.hi - self.lo) / 2.0

    def as_dict(self) -> dict[str, float | bool]:
        return {"difference": self.value, "lo": self.lo, "hi": self.hi, "se": self.se,
                "df": self.df, "p": self.p, "paired": self.paired}  # fmt: skip


def z_of(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def p_value(d: float, se: float, df: float = math.inf) -> float:
    """Two-sided p-value of d with standard error se (t with df); identical values give 1."""
    if se <= 0.0 or not math.isfinite(se):
        return 1.0 if d == 0.0 else 0.0
    if math.isinf(df):
        return math.erfc(abs(d) / se / math.sqrt(2.0))
    return float(2.0 * student_t.sf(abs(d) / se, df))


def effective_df(n: int, n_boot: int) -> float:
    """Degrees of freedom of a bootstrap se from n rows and n_boot replicates: the relative
    variance of a variance estimate is 2 / df, and the two sources add."""
    return 1.0 / (1.0 / max(n - 1, 1) + 1.0 / max(n_boot - 1, 1))


def difference(a: Estimate, b: Estimate, level: float = LEVEL, seed: int = 0) -> Difference:
    """a - b: paired replicate by replicate when aligned, else as independent estimates."""
    if a.replicates is None or b.replicates is None:
        raise ValueError("difference needs bootstrap replicates on both estimates")
    paired = aligned(a, b)
    if paired:
        reps = a.replicates - b.replicates
        n = a.draws.n  # type: ignore[union-attr]
    else:  # independent draws: a seeded shuffle breaks any accidental alignment
        rng = np.random.default_rng(seed)
        m = min(len(a.replicates), len(b.replicates))
        reps = rng.permutation(a.replicates)[:m] - rng.permutation(b.replicates)[:m]
        n = min(a.draws.n if a.draws else a.n, b.draws.n if b.draws else b.n)
    d = a.value - b.value
    if len(reps) < 2 or n < 2:
        return Difference(d, d, d, 0.0, p_value(d, 0.0), paired, reps)
    se = float(np.std(reps, ddof=1)) * math.sqrt(n / (n - 1))
    df = effective_df(n, len(reps))
    half = float(student_t.ppf(0.5 + level / 2.0, df)) * se
    return Difference(d, d - half, d + half, se, p_value(d, se, df), paired, reps, df)


def identical(a: Estimate, b: Estimate) -> bool:
    """Same value and same replicates: nothing to test (e.g. arms sharing variations)."""
    if a.value != b.value:
        return False
    if a.replicates is None or b.replicates is None:
        return a.lo == b.lo and a.hi == b.hi
    return np.array_equal(a.replicates, b.replicates)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error <= alpha for any dependence):
    the i-th smallest p is multiplied by (m - i + 1), then made monotone."""
    m = len(pvalues)
    order = np.argsort(pvalues, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        adjusted[i] = running
    return adjusted.tolist()


def differ(a: Estimate, b: Estimate, level: float = LEVEL) -> bool:
    """One comparison on its own (no family): the difference's interval excludes 0. Without
    replicates the conservative fallback is non-overlap of the two intervals."""
    if identical(a, b):
        return False
    if a.replicates is not None and b.replicates is not None:
        return difference(a, b, level).p < 1.0 - level
    return a.lo > b.hi or b.lo > a.hi
