"""Stable content hashes of each unCLIP stage's training config (the stage cache's keys).

A key covers exactly what determines the trained weights: the stage's own training fields
(sampling-time knobs excluded), the fields of what it trains on, and its upstream keys
(CLIP <- data; prior <- CLIP; decoder <- CLIP; upsamplers <- data). So an ablation over
`decoder.eta` retrains nothing, and one over `prior.kind` reuses the CLIP and the decoder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from .schema import Config

# Bump when a code change alters what a stage learns from the same config.
CACHE_VERSION = 1
STAGES = ("clip", "eval_clip", "prior", "decoder", "upsampler1", "upsampler2")
NO_TRAINED_PRIOR = ("caption_only", "text_embedding")


def training_fields(obj: Any, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A dataclass as a dict without its sampling-time fields (recursively) or `drop`."""
    out = {}
    for f in dataclasses.fields(obj):
        if f.metadata.get("sampling") or f.name in drop:
            continue
        value = getattr(obj, f.name)
        out[f.name] = training_fields(value) if dataclasses.is_dataclass(value) else value
    return out


def digest(*parts: Any) -> str:
    blob = json.dumps([CACHE_VERSION, *parts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def world(cfg: Config) -> dict[str, Any]:
    """Trainer settings that change the result: numeric precision and the global batch."""
    t = cfg.train
    return {"precision": t.precision, "devices": t.devices, "num_nodes": t.num_nodes}


def prior_fields(cfg: Config) -> dict[str, Any]:
    p = cfg.prior
    if p.kind == "ar":  # the diffusion fields do not touch the AR prior, and vice versa
        return training_fields(p, drop=("timesteps", "schedule", "prediction"))
    return training_fields(p, drop=("ar",))


def decoder_fields(cfg: Config) -> dict[str, Any]:
    d = cfg.decoder
    if not d.text_cond:  # no text pathway: its size and drop rate are irrelevant
        return training_fields(d, drop=("text_width", "text_layers", "text_drop"))
    return training_fields(d)


def stage_keys(cfg: Config) -> dict[str, str | None]:
    """{stage: key}; None where the arm has no such trained stage."""
    data = training_fields(cfg.data)
    env = world(cfg)
    keys: dict[str, str | None] = {}
    keys["clip"] = digest("clip", data, training_fields(cfg.clip), cfg.seed, env)
    keys["eval_clip"] = digest(
        "eval_clip", data, training_fields(cfg.eval.clip), cfg.eval.clip_seed, env
    )
    keys["prior"] = (
        None
        if cfg.prior.kind in NO_TRAINED_PRIOR
        else digest("prior", keys["clip"], prior_fields(cfg), cfg.seed, env)
    )
    keys["decoder"] = digest("decoder", keys["clip"], decoder_fields(cfg), cfg.seed, env)
    low = cfg.decoder.resolution
    for stage, name in (("upsampler1", "first"), ("upsampler2", "second")):
        up = getattr(cfg.upsamplers, name)
        if not up.enabled:
            keys[stage] = None
            continue
        keys[stage] = digest(stage, data, low, training_fields(up), cfg.seed, env)
        low = up.resolution
    return keys
