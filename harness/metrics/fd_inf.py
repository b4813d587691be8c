"""FD without its small-sample bias: the extrapolation FD_inf (Chong & Forsyth 2020,
"Effectively Unbiased FID and Inception Score and where to find them").

FD_N, the Frechet distance of N samples, overestimates the FD of the distributions by a bias
~ k / N whose k differs between arms (it grows with the arm's variance), so at small N it can
rank a collapsed arm ahead of a better one. To first order E[FD_{n,m}] = FD + a/n + b/m for
n generated and m reference samples; scoring subsets at the same fraction f of both sets
(n = fN, m = fM, drawn without replacement) gives FD + (a/N + b/M) / f, a line in 1/f whose
least-squares intercept is FD with both biases removed. Each fraction averages `subsets`
random subsets of the generated set (one reference subset per fraction, shared by every
arm); f = 1 is the whole set.

Interval: the whole procedure is repeated on each bootstrap resample of the generated set
(the same rows every arm resamples, so replicates stay paired) with the same subset
positions, re-centred on the point value. The fit is only first order: where N is not much
larger than the feature dimension the 1/n^2 terms leave a bias (measured in
test_metrics_stats), so read fd_inf as less biased than FD_N, not as exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import uncertainty as U
from .fid import Reference, frechet_replicates

FRACTIONS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def design(
    gen_n: int, ref: Reference, fractions: Sequence[float], subsets: int, seed: int
) -> list[tuple[np.ndarray, Reference]]:
    """Per fraction f: generated positions (k, fN) and the reference subset of fM rows, fixed
    by seed (so every arm and replicate uses the same ones); f = 1 is the whole set."""
    rng = np.random.default_rng([seed, 1])  # a stream apart from the bootstrap indices'
    m = len(ref.feats)
    out = []
    for f in sorted(fractions):
        n_f, m_f = max(2, round(f * gen_n)), max(2, round(f * m))
        if n_f >= gen_n:
            pos = np.arange(gen_n)[None]
        else:
            pos = np.stack([rng.permutation(gen_n)[:n_f] for _ in range(subsets)])
        sub = ref if m_f >= m else Reference.of(ref.feats[np.sort(rng.permutation(m)[:m_f])])
        out.append((pos, sub))
    return out


def intercept_weights(x: np.ndarray, degree: int = 1) -> np.ndarray:
    """w with w @ y = the least-squares intercept of y against polynomial(x, degree)."""
    basis = np.vander(x, degree + 1, increasing=True)  # (F, degree + 1): 1, x, ...
    return np.linalg.pinv(basis)[0]


def fd_curve(gen_feats: np.ndarray, rows: np.ndarray, plan: list) -> np.ndarray:
    """FD at each fraction of `plan` for each row set `rows` (B, N) -> (B, F)."""
    ys = []
    for pos, sub_ref in plan:
        k, n_f = pos.shape
        index = rows[:, pos].reshape(-1, n_f)  # (B * k, n_f)
        ys.append(frechet_replicates(gen_feats, sub_ref, index).reshape(len(rows), k).mean(1))
    return np.stack(ys, axis=1)


def fd_inf_estimate(
    gen_feats: np.ndarray,
    ref: Reference,
    n_boot: int = U.N_BOOT,
    seed: int = 0,
    fractions: Sequence[float] = FRACTIONS,
    subsets: int = 2,
) -> U.Estimate:
    """FD extrapolated to infinitely many generated and reference samples, with interval."""
    n = len(gen_feats)
    if len(ref.feats) < 4:
        raise ValueError("fd_inf needs the reference features (not only mean and covariance)")
    plan = design(n, ref, fractions, subsets, seed)
    inv_f = np.array([n / pos.shape[1] for pos, _ in plan])  # 1/f with the rounded sizes
    if len(set(inv_f.tolist())) < 2:
        raise ValueError(f"fd_inf: {n} samples give fewer than 2 distinct subset sizes")
    w = intercept_weights(inv_f)
    rows = np.concatenate([np.arange(n)[None], U.bootstrap_indices(n, n_boot, seed)])
    fits = fd_curve(gen_feats, rows, plan) @ w  # (1 + B,): the whole set, then replicates
    draws = U.Draws(n, n_boot, (seed,))
    return U.from_replicates(float(fits[0]), fits[1:], n, recentre=True, draws=draws)
