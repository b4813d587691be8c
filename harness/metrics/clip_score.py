"""CLIP score: 100 x max(cos(image, caption), 0), with an evaluator CLIP.

Scoring with the CLIP the prior and decoder were conditioned on rewards samples for matching
that model's quirks rather than the caption, so the evaluator is a separately trained CLIP
(cfg.eval.clip); a suite may still ask for the conditioning CLIP, and then we warn.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from . import uncertainty as U

log = logging.getLogger(__name__)
CONDITIONING_WARNING = (
    "CLIP score computed with the conditioning CLIP: biased towards samples that exploit "
    "that model; use the evaluator CLIP (suite clip_model: evaluator) for comparisons"
)


def clip_scores(z_img: torch.Tensor, z_txt: torch.Tensor) -> np.ndarray:
    """Per-sample 100 * max(cos, 0) for L2-normalised embeddings (N, D), (N, D) -> (N,)."""
    cos = torch.nn.functional.cosine_similarity(z_img.double(), z_txt.double(), dim=-1)
    return (100.0 * cos.clamp_min(0)).cpu().numpy()


@torch.no_grad()
def clip_score(
    clip: torch.nn.Module,
    images: torch.Tensor,
    captions: list[str],
    batch_size: int = 256,
    conditioning: bool = False,
    n_boot: int = U.N_BOOT,
    seed: int = 0,
) -> U.Estimate:
    """Mean CLIP score of images (N, 3, H, W) against their captions, with a 95% interval.

    `clip` offers encode_images / encode_text (a ClipStage); `conditioning=True` says it is
    the model the samples were conditioned on (warns).
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if conditioning:
        log.warning(CONDITIONING_WARNING)
    scores = []
    for i in range(0, len(images), batch_size):
        z_img = clip.encode_images(images[i : i + batch_size])  # (b, D)
        z_txt = clip.encode_text(list(captions[i : i + batch_size]))  # (b, D)
        scores.append(clip_scores(z_img, z_txt))
    return U.bootstrap_mean(np.concatenate(scores), n_boot, seed)
