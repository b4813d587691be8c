"""Kernel distance (MMD^2) between generated and reference features.

Inception features (`kid`): clean-fid's `kernel_distance`, its cubic kernel (x.y / d + 1)^3
averaged over random subsets, exactly (tested equal).

Any other feature space (`kd_<net>`, e.g. an evaluator CLIP's unit-norm z_i): a Gaussian
kernel exp(-|x - y|^2 / l^2) with l^2 = 2 tr(Sigma_ref), the mean squared distance between
two reference features, fixed by the reference so every arm is measured with one kernel.
Why not the cubic kernel: on unit-norm 64-d features x.y / d <= 1/64, so the cubic kernel
is ~ 1 + 3 x.y / d and its MMD^2 ~ (3/d) |mu_g - mu_r|^2, blind to the covariance (a
collapsed arm scored 28x better than a diverse one that FD ranks far ahead). Rescaling the
features (x sqrt(d), kernel (x.y + 1)^3) is not enough either: a polynomial kernel sees a
covariance change only through |dSigma|_F^2 ~ tr(dSigma)^2 / d, while |x - y|^2 concentrates
at tr(Sigma_g) + tr(Sigma_r) + |dmu|^2, so the Gaussian kernel sees a change of spread at
the trace level, as FD does (test_metrics_stats: collapsed x0.35 vs shifted arm).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from . import uncertainty as U
from .fid import Reference

Kernel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cubic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3  # clean-fid's polynomial kernel


def gaussian(ref: Reference) -> Kernel:
    """exp(-|x - y|^2 / l^2), l^2 = 2 tr(Sigma_ref) = E |x - x'|^2 over reference pairs."""
    scale = 2.0 * float(np.trace(ref.sigma))

    def k(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None] - 2.0 * x @ y.T  # (a, b)
        return torch.exp(-sq.clamp_min(0.0) / scale)

    k.scale = scale  # type: ignore[attr-defined]  # identifies the kernel (reference_pairs)
    return k


def kernel_for(net_name: str, ref: Reference) -> Kernel:
    return cubic if net_name == "inception" else gaussian(ref)


def reference_pairs(ref: Reference, kernel: Kernel, block: int = 2048) -> float:
    """Mean k(r_a, r_b) over pairs a != b of reference rows: shared by every arm, so it is
    computed once per reference and kernel (an O(M^2) sum)."""
    key = ("kd_rr", kernel.__name__, kernel.__dict__.get("scale"))
    if key not in ref.cache:
        r = torch.as_tensor(ref.feats, dtype=torch.float64, device=device())
        m, rr = len(r), torch.zeros((), dtype=torch.float64, device=r.device)
        for s in range(0, m, block):
            k = kernel(r[s : s + block], r)
            rr += k.sum() - k.diagonal(offset=s).sum()
        ref.cache[key] = float(rr / (m * (m - 1)))
    return ref.cache[key]


def clean_fid_kd(
    gen_feats: np.ndarray,
    ref_feats: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """clean-fid's `kernel_distance` (cubic-kernel MMD^2 averaged over random subsets).

    The same arithmetic and the same subset draws as clean-fid after `np.random.seed(seed)`
    (tested equal), but in torch on a private generator: clean-fid's numpy loop draws from
    the global generator and crawls on a busy CPU.
    """
    rs = np.random.RandomState(seed)
    g = torch.as_tensor(gen_feats, dtype=torch.float64, device=device())
    r = torch.as_tensor(ref_feats, dtype=torch.float64, device=device())
    m = min(len(g), len(r), subset_size)
    t = torch.zeros((), dtype=torch.float64, device=g.device)
    for _ in range(subsets):
        x = r[torch.as_tensor(rs.choice(len(r), m, replace=False))]  # clean-fid: feats2 first
        y = g[torch.as_tensor(rs.choice(len(g), m, replace=False))]
        a = cubic(x, x) + cubic(y, y)
        t += (a.sum() - a.diagonal().sum()) / (m - 1) - cubic(x, y).sum() * 2 / m
    return float(t / subsets / m)


def kd_replicates(
    gen_feats: np.ndarray,
    ref: Reference,
    index: np.ndarray,
    kernel: Kernel = cubic,
    block: int = 2048,
) -> np.ndarray:
    """Unbiased MMD^2 of each resampled generated set (B,), from resample counts.

    A resample with counts c has sum_{a != b} k(x_a, x_b) = c^T K c - sum_i c_i^2 K_ii over
    pairs of distinct draws -- minus pairs that repeat one row, which are excluded (as the
    diagonal is) so the estimate stays unbiased. K is formed block by block, never whole.
    """
    dev = device()
    g = torch.as_tensor(gen_feats, dtype=torch.float64, device=dev)
    r = torch.as_tensor(ref.feats, dtype=torch.float64, device=dev)
    n = len(g)
    counts = torch.stack([torch.bincount(torch.as_tensor(i), minlength=n) for i in index])
    c = counts.to(dev, torch.float64)  # (B, N)
    quad = torch.zeros(len(c), dtype=torch.float64, device=dev)
    diag = torch.zeros(n, dtype=torch.float64, device=dev)
    cross = torch.zeros(n, dtype=torch.float64, device=dev)
    for s in range(0, n, block):
        k = kernel(g[s : s + block], g)  # (b, N)
        quad += ((k @ c.T) * c[:, s : s + block].T).sum(0)
        diag[s : s + block] = k.diagonal(offset=s)
        cross[s : s + block] = kernel(g[s : s + block], r).mean(1)
    sq = (c**2).sum(1)
    gg = (quad - (c**2) @ diag) / (n * n - sq)
    return (gg + reference_pairs(ref, kernel, block) - 2 * (c @ cross) / n).cpu().numpy()


def kd_estimate(
    gen_feats: np.ndarray,
    ref: Reference,
    net_name: str,
    n_boot: int = U.N_BOOT,
    seed: int = 0,
    subsets: int = 100,
    subset_size: int = 1000,
) -> U.Estimate:
    """KD of the generated set (N rows) with a re-centred bootstrap interval. The point value
    is clean-fid's for Inception, else the unbiased MMD^2 of the whole set (an unbiased
    estimate at any N, unlike FD)."""
    n = len(gen_feats)
    kernel = kernel_for(net_name, ref)
    index = np.concatenate([np.arange(n)[None], U.bootstrap_indices(n, n_boot, seed)])
    both = kd_replicates(gen_feats, ref, index, kernel)  # the whole set, then (B,)
    value = float(both[0])
    if net_name == "inception":
        value = clean_fid_kd(gen_feats, ref.feats, subsets, subset_size, seed)
    draws = U.Draws(n, n_boot, (seed,))
    return U.from_replicates(value, both[1:], n, recentre=True, draws=draws)
