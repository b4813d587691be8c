"""The `real` row: held-out real images scored exactly like an arm -- the floor of the
distances (FD, KD) and the ceiling of CLIP score, object recall and compositional accuracy.

Which images: the first N images of the captions' split (`suite.split`), i.e. the very
images whose captions the arms were sampled from, so the real row scores the same captions
(and claims) at the same N with the same bootstrap draws, and pairs with every arm. Against
which reference: `suite.reference_split`, a different split. The two must be disjoint: a
reference that contains the real row's own images makes FD(real) optimistic (at the extreme,
a set against itself scores 0), so a suite whose reference split is its caption split has
no real row (HarnessError). The shapes splits are disjoint by construction (split by a hash
of the scene's description); folder sources split by key hash.
"""

from __future__ import annotations

import torch

from ..config import DataConfig
from ..data import build_source
from ..errors import HarnessError
from . import fid
from .inputs import Evaluators
from .score import score_images
from .suite import Suite
from .uncertainty import Estimate


def real_images(data_cfg: DataConfig, suite: Suite, captions: list[str]) -> torch.Tensor:
    """uint8 (N, 3, H, W): the split's first N images, whose captions must be `captions`."""
    if not suite.real_row_possible:
        raise HarnessError(f"no real row: the reference split ({suite.reference_split}) is the "
                           f"captions' split, so it holds the real row's own images "
                           f"(set reference_split to another split)", suite.name)  # fmt: skip
    source = build_source(data_cfg, suite.split)
    n = len(captions)
    if n > len(source):
        raise HarnessError(f"real row: {n} captions but the {suite.split} split has "
                           f"{len(source)} images", suite.name)  # fmt: skip
    pairs = [source[i] for i in range(n)]
    mismatch = next((i for i, (_, c) in enumerate(pairs) if c != captions[i]), None)
    if mismatch is not None:
        raise HarnessError(f"real row: caption {mismatch} of the {suite.split} split is not the "
                           f"one the arms sampled", suite.name)  # fmt: skip
    return torch.stack([image for image, _ in pairs])


def score_real(
    suite: Suite,
    ev: Evaluators,
    data_cfg: DataConfig,
    reference: fid.Reference | None,
    captions: list[str],
    claims: list | None = None,
    seed: int | None = None,
) -> dict[str, Estimate]:
    """The real row: the same suite, N, captions, claims and bootstrap draws as the arms.
    Metrics of generated samples only (variation and sample diversity) are not scored."""
    images = real_images(data_cfg, suite, captions)
    return score_images(suite, ev, images, reference, captions, claims, seed=seed)
