"""CLIP embeddings of a dataset split, computed once and memory-mapped.

The prior learns p(z_i | y) from (z_t, caption tokens) -> z_i pairs and the decoder learns
p(x | z_i, y); both read the same frozen CLIP's outputs for every training pair, so they are
computed once per (CLIP weights, data split) and shared. Row i is item i of
`build_source(data_cfg, split)`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import progress
from .atomic import atomic_write
from .config import DataConfig
from .config.hashing import digest, training_fields
from .data import build_source

log = logging.getLogger(__name__)
# A stages.clip.ClipStage. Not imported: the stage modules import this module, and the
# stages package registers the prior kinds, which need it, when first imported.
ClipStage = Any
ARRAYS = ("z_i", "z_t", "tokens", "text_enc", "text_mask")


@dataclass
class Embeddings:
    """One (CLIP, data split); arrays are read-only np.memmap (N rows each)."""

    z_i: np.ndarray  # (N, D) float32, L2-normalised CLIP image embeddings
    z_t: np.ndarray  # (N, D) float32, L2-normalised CLIP text embeddings
    tokens: np.ndarray  # (N, L) int64 caption token ids (the CLIP tokenizer)
    text_enc: np.ndarray  # (N, L, text_width) float16 per-token text encodings
    text_mask: np.ndarray  # (N, L) bool, True at real tokens
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)


def weights_fingerprint(clip: ClipStage) -> str:
    """Hash of the CLIP's weights: embeddings of other weights are never reused."""
    h = hashlib.sha256()
    for name, tensor in sorted(clip.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def cache_dir(clip: ClipStage, clip_dir: Path, data_cfg: DataConfig, split: str) -> Path:
    """clip_dir/embeddings/<split>/<key>; the key covers the data and the CLIP weights."""
    key = digest("embeddings", training_fields(data_cfg), split, weights_fingerprint(clip))
    return Path(clip_dir) / "embeddings" / split / key


def _load(folder: Path) -> Embeddings:
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
    captions = json.loads((folder / "captions.json").read_text())
    return Embeddings(**arrays, captions=captions)


@torch.inference_mode()
def _compute_into(clip: ClipStage, source, folder: Path, batch_size: int) -> None:
    """Encode every pair of `source` in batches, writing straight into .npy memmaps."""
    n, d, length, width = len(source), clip.embed_dim, clip.context_length, clip.text_width
    shapes = {
        "z_i": ((n, d), np.float32),
        "z_t": ((n, d), np.float32),
        "tokens": ((n, length), np.int64),
        "text_enc": ((n, length, width), np.float16),
        "text_mask": ((n, length), np.bool_),
    }
    out = {
        name: np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dt, shape=shp)
        for name, (shp, dt) in shapes.items()
    }
    captions: list[str] = []
    row = 0
    # Its own generator: iterating a DataLoader draws a seed from the global RNG, so a cache
    # miss here would otherwise change the weights of the stage being seeded and built next.
    loader = DataLoader(source, batch_size=batch_size, shuffle=False, generator=torch.Generator())
    for images, caps in progress.bar(loader, desc="CLIP embeddings", unit="batch"):
        tokens = clip.tokenize(list(caps))
        z_t, text_enc, mask = clip.encode_tokens(tokens)
        stop = row + len(caps)
        out["z_i"][row:stop] = clip.encode_images(images).float().cpu().numpy()
        out["z_t"][row:stop] = z_t.float().cpu().numpy()
        out["tokens"][row:stop] = tokens.numpy()
        out["text_enc"][row:stop] = text_enc.cpu().numpy().astype(np.float16)
        out["text_mask"][row:stop] = mask.cpu().numpy()
        captions.extend(caps)
        row = stop
    for array in out.values():
        array.flush()
    (folder / "captions.json").write_text(json.dumps(captions))


def compute_embeddings(
    clip: ClipStage,
    clip_dir: Path,
    data_cfg: DataConfig,
    split: str,
    batch_size: int = 256,
) -> Embeddings:
    """z_i, z_t, tokens, text_enc and text_mask for every pair of one split, cached.

    Cached as memory-mapped .npy under clip_dir/"embeddings"/split (a second call computes
    nothing). The cache is keyed by the data config and a hash of the CLIP's weights, and
    written to a temporary folder that is renamed when complete.
    """
    folder = cache_dir(clip, clip_dir, data_cfg, split)
    if (folder / "captions.json").is_file():
        return _load(folder)
    source = build_source(data_cfg, split)

    def write(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        _compute_into(clip, source, tmp, batch_size)

    try:
        atomic_write(folder, write)
    except OSError:
        if not (folder / "captions.json").is_file():  # not a lost race: a real failure
            raise
        log.info("embeddings for %s were written by another process meanwhile", folder)
    log.info("cached %d CLIP embeddings of the %s split in %s", len(source), split, folder)
    return _load(folder)
