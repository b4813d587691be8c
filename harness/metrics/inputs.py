"""What a registered metric receives: the scoring models and one arm's (or the real row's)
images and side data, with feature extraction done once and only when a metric asks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data.images import resize, to_model, to_uint8
from . import fid


def at_resolution(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> uint8 at size x size (area down, bicubic up: images.resize)."""
    if size <= 0 or images.shape[-1] == size:
        return images
    return to_uint8(resize(to_model(images), size))


@dataclass
class Evaluators:
    """What scores samples: evaluator CLIP (features, CLIP score, diversity), the
    conditioning CLIP (only if a suite asks for it) and the shapes attribute classifier."""

    clip: torch.nn.Module | None = None
    conditioning_clip: torch.nn.Module | None = None
    classifier: torch.nn.Module | None = None
    clip_key: str = ""  # identifies the evaluator CLIP in reference-statistics cache keys


@dataclass
class Inputs:
    """gen: uint8 (N, 3, H, W) at the suite's resolution; captions / claims: one per image;
    variations: (sources (S, 3, H, W), variations (S, V, 3, H, W)); groups: uint8
    (M, K, 3, H, W), K samples of each of M captions; reference: statistics in the suite's
    feature space. `seed` is the bootstrap index seed every arm shares."""

    suite: Any
    ev: Evaluators
    gen: torch.Tensor
    seed: int
    net: fid.FeatureNet | None = None
    reference: fid.Reference | None = None
    captions: list[str] | None = None
    claims: list[Any] | None = None
    variations: tuple[torch.Tensor, torch.Tensor] | None = None
    groups: torch.Tensor | None = None
    _features: np.ndarray | None = field(default=None, repr=False)

    @property
    def features(self) -> np.ndarray:
        """(N, D) features of `gen` in the suite's feature space, extracted once."""
        if self._features is None:
            if self.net is None:
                raise ValueError("no feature network")
            self._features = fid.extract(self.net, self.gen, self.suite.batch_size)
        return self._features

    def has(self, need: str) -> bool:
        if need == "features":
            return self.net is not None
        if need == "clip":
            return self.ev.clip is not None
        return getattr(self, need) is not None
