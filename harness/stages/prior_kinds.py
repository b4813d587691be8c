"""The built-in prior kinds (`prior.kind`), one line each, as DiT's `DiT_models` table.

A kind's `unused` fields are left out of its stage key: the diffusion fields do not touch
the AR prior, and vice versa. A plugin registers more (harness/plugins.py).
"""

from __future__ import annotations

from ..registry import PRIOR_KINDS
from .prior import CaptionOnly, TextEmbedding, TrainedPrior
from .prior_ar import ARPrior
from .prior_diffusion import DiffusionPrior

PRIOR_KINDS.register("diffusion", TrainedPrior(DiffusionPrior, unused=("ar",)))
PRIOR_KINDS.register("ar", TrainedPrior(ARPrior, unused=("timesteps", "schedule", "prediction")))
PRIOR_KINDS.register("caption_only", CaptionOnly())  # §5.1: the decoder's null z_i
PRIOR_KINDS.register("text_embedding", TextEmbedding())  # §5.1: z_t in place of z_i
