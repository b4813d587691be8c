"""Stable content hashes, and the training fields of a config section.

The stage cache's keys (stages/graph.py: stage_keys) are digests of exactly what determines
a stage's weights: its training fields (sampling-time knobs excluded), the fields of what
it trains on, and its upstream keys. So an ablation over `decoder.eta` retrains nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any

from .schema import Config

# Bump when a code change alters what a stage learns from the same config, or what its
# cache entry holds. 2: one model.pt format for every stage (stages/checkpoint.py), and the
# decoder pairs each caption's z_i with its own image on multi-caption sources.
CACHE_VERSION = 2


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


def value_at(obj: Any, dotted: str) -> Any:
    """`value_at(cfg, "upsamplers.first")` is cfg.upsamplers.first."""
    return functools.reduce(getattr, dotted.split("."), obj)
