"""Per-caption sample diversity: how different K samples of one caption are.

The paper's diversity question for priors (section 5.1: the diffusion and AR priors keep more
of the diversity of images per caption than the z_t-only baselines) is about several
samples of the same caption, not about variations of one image. For each of M captions the
K samples' mean pairwise distance (LPIPS when its weights are on disk, else 1 - cos in
evaluator-CLIP space: diversity.pick_distance; the name records which) is one value; the
metric is their mean over captions, with a bootstrap interval over captions (a caption's K
samples are not independent of each other, captions are). Every arm scored on the same M
captions resamples the same caption rows, so differences pair like the other metrics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import uncertainty as U
from .diversity import mean_pairwise


def sample_diversity(
    groups: torch.Tensor,
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    name: str,
    n_boot: int = U.N_BOOT,
    seed: int = 0,
) -> dict[str, U.Estimate]:
    """groups: uint8 (M, K, 3, H, W), K >= 2 samples of each of M captions ->
    {sample_diversity_<name>: mean over captions of the mean pairwise distance}."""
    if groups.ndim != 5 or groups.shape[1] < 2:
        raise ValueError(f"need (M, K>=2, 3, H, W) sample groups, got {tuple(groups.shape)}")
    per_caption = mean_pairwise(groups, distance)  # (M,)
    return {f"sample_diversity_{name}": U.bootstrap_mean(per_caption.numpy(), n_boot, seed)}
