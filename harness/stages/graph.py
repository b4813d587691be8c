"""The unCLIP stage graph: the six trained stages, in training order, and their links.

    clip ──┬── prior          key: CLIP's key + the prior kind's fields
           └── decoder        key: CLIP's key + decoder fields; uses eval_clip (not keyed)
                               to score its held-out decodings
    eval_clip                 the evaluator CLIP (its own section and seed), for metrics
    upsampler1, upsampler2    key: data + input resolution + own fields

CLIP and the upsamplers also hash the data fields they train on. Everything that needs the
graph asks here: stage keys, the runner's order, `--retrain` names, validate's table, which
stage a running fit trains (pruning), the sweep. This is the one module that spells the
stage names.
"""

from __future__ import annotations

from ..config import Config
from ..registry import Registry
from .clip import ClipRecipe
from .decoder import DecoderRecipe
from .prior import PriorRecipe
from .stage import Stage
from .upsampler import UpsamplerRecipe

CLIP = Stage("clip", ClipRecipe("clip", seed="seed"))
EVAL_CLIP = Stage("eval_clip", ClipRecipe("eval.clip", seed="eval.clip_seed"))
PRIOR = Stage("prior", PriorRecipe("prior"), keyed={"clip": CLIP})
DECODER = Stage(
    "decoder", DecoderRecipe("decoder"), keyed={"clip": CLIP}, uses={"evaluator": EVAL_CLIP}
)
UPSAMPLER1 = Stage("upsampler1", UpsamplerRecipe("upsamplers.first", below=("decoder",)))
UPSAMPLER2 = Stage(
    "upsampler2", UpsamplerRecipe("upsamplers.second", below=("decoder", "upsamplers.first"))
)

STAGES: Registry[Stage] = Registry("stage")  # in training order: upstream before downstream
for _stage in (CLIP, EVAL_CLIP, PRIOR, DECODER, UPSAMPLER1, UPSAMPLER2):
    STAGES.register(_stage.name, _stage)
UPSAMPLERS = (UPSAMPLER1, UPSAMPLER2)  # the cascade after the decoder, low to high
VALIDATING = (DECODER, *UPSAMPLERS)  # stages whose fit can validate (what a pruner watches)


def stage_keys(cfg: Config) -> dict[str, str | None]:
    """{stage: key} in training order; None where the arm has no such trained stage."""
    keys: dict[str, str | None] = {}
    for name, stage in STAGES.items():
        keys[name] = stage.key(cfg, keys)
    return keys


def stage_names() -> list[str]:
    return STAGES.names()
