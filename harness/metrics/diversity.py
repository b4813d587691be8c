"""Variation diversity: how different N variations of one source are, and how much of the
source survives in them.

diversity_<net>: mean pairwise distance among the M variations of a source, averaged over
sources. preservation_<net>: mean similarity of each variation to its source. The distance
is LPIPS (torchmetrics, AlexNet) when its weights are on disk -- torchmetrics ships the
LPIPS heads but the AlexNet backbone comes from torchvision's download cache -- else the
cosine distance 1 - cos(z_i, z_i') in evaluator-CLIP space; the metric names say which.
Similarity is 1 - distance in both cases, so preservation is on the same scale.
Intervals bootstrap over sources (variations of one source are not independent).
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from ..data.images import resize, to_model
from . import uncertainty as U

log = logging.getLogger(__name__)
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet_Weights.IMAGENET1K_V1


def alexnet_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def lpips_available() -> bool:
    return alexnet_path().is_file()


def lpips_distance(
    device: str | torch.device = "cpu",
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """LPIPS (B,) between two uint8 batches (B, 3, H, W); needs the AlexNet weights on disk."""
    if not lpips_available():
        raise FileNotFoundError(
            f"LPIPS needs torchvision's AlexNet weights at {alexnet_path()} (no download here)"
        )
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    net = _NoTrainLpips(net="alex").to(device).eval()

    def prep(x: torch.Tensor) -> torch.Tensor:  # AlexNet's strides need >= 64 px
        return resize(to_model(x), max(64, x.shape[-1])).to(device)

    @torch.no_grad()
    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return net(prep(a), prep(b)).reshape(-1).cpu()

    return dist


def clip_distance(clip: torch.nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """1 - cos(z_i(a), z_i(b)) (B,) with the (evaluator) CLIP's image tower."""

    @torch.no_grad()
    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1.0 - (clip.encode_images(a) * clip.encode_images(b)).sum(-1).double().cpu()

    return dist


@functools.cache
def warn_clip_space() -> None:
    """Once per process: every arm (or trial) would say it again; the metric's name
    (`diversity_clip`) records the space in every result."""
    log.warning("LPIPS weights missing (%s): diversity measured in CLIP space", alexnet_path())


def pick_distance(
    clip: torch.nn.Module | None, prefer_lpips: bool = True
) -> tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """("lpips", fn) when LPIPS weights are present, else ("clip", fn) with the CLIP."""
    if prefer_lpips and lpips_available():
        return "lpips", lpips_distance()
    if clip is None:
        raise ValueError("no LPIPS weights and no evaluator CLIP: cannot measure diversity")
    if prefer_lpips:
        warn_clip_space()
    return "clip", clip_distance(clip)


def mean_pairwise(
    groups: torch.Tensor, distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """uint8 (N, M, 3, H, W) -> (N,) mean distance over the M (M - 1) / 2 pairs of a group."""
    n, m = groups.shape[:2]
    if m < 2:
        raise ValueError(f"need at least 2 images per group, got {m}")
    pairs = list(itertools.combinations(range(m), 2))
    i, j = (torch.tensor(p) for p in zip(*pairs, strict=True))
    a = groups[:, i].flatten(0, 1)  # (N * P, 3, H, W)
    b = groups[:, j].flatten(0, 1)
    return distance(a, b).reshape(n, len(pairs)).double().mean(1)


def variation_diversity(
    sources: torch.Tensor,
    variations: torch.Tensor,
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    name: str,
    n_boot: int = U.N_BOOT,
    seed: int = 0,
) -> dict[str, U.Estimate]:
    """sources (N, 3, H, W), variations (N, M, 3, H, W) uint8 -> diversity and preservation.

    Each source contributes one value to each metric (its mean over pairs / variations).
    """
    n, m = variations.shape[:2]
    if m < 2 or len(sources) != n:
        raise ValueError(f"need N sources and (N, M>=2) variations, got {len(sources)}, {m}")
    pairwise = mean_pairwise(variations, distance)  # (N,)
    src = sources[:, None].expand(-1, m, -1, -1, -1).flatten(0, 1)  # (N * M, 3, H, W)
    kept = 1.0 - distance(src, variations.flatten(0, 1)).reshape(n, m).double().mean(1)
    return {
        f"diversity_{name}": U.bootstrap_mean(pairwise.numpy(), n_boot, seed),
        f"preservation_{name}": U.bootstrap_mean(kept.numpy(), n_boot, seed),
    }
