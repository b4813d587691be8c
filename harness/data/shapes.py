"""Embedded default dataset ``shapes``: procedurally drawn, captioned scenes of 1-3 objects.

Each object has a shape, colour, size and a cell of a 3x3 grid; captions come from templates
with spatial relations and state all of it, or at ``caption_detail`` < 1 a random part of it
(shapes_captions.py). Splits are disjoint by construction: every caption's *canonical
content* (what it states, independent of template and of object order) is hashed into
train/val/test buckets, and each split keeps only the scenes whose caption hashes to it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch.utils.data import Dataset

from .shapes_captions import (  # noqa: F401  (the vocabulary is re-exported: shapes.COLOURS)
    COLOURS,
    ONE_OBJECT_TEMPLATES,
    POSITIONS,
    SHAPES,
    SIZES,
    Claim,
    canonical,
    caption_text,
    claim_of,
    draw_stated,
    relation,
)

SPLITS = ("train", "val", "test")
SPLIT_PERCENT = (80, 10, 10)

PALETTE = np.array(
    [[230, 30, 30], [40, 190, 60], [40, 90, 235], [240, 220, 40], [160, 60, 210], [250, 140, 20]],
    dtype=np.float32,
)
BACKGROUND = np.array([20, 20, 28], dtype=np.float32)
RADII = (0.09, 0.15)  # half-extent per size, as a fraction of the width
# Adjacent cell centres are 1/3 apart and two large objects span 0.30, so +-0.01 jitter per
# axis keeps every pair of objects apart (circle/square/diamond/triangle fit in their box).
JITTER = 0.01
_CANDIDATE_BATCH = 4096  # fixed, so a dataset of n scenes is a prefix of one with more


@dataclass(frozen=True)
class ShapesSpec:
    resolution: int = 32
    max_objects: int = 2
    min_objects: int = 1
    seed: int = 0
    caption_detail: float = 1.0  # share of facts a caption states; 1: all (shapes_captions)


def canonical_description(attrs: np.ndarray | list) -> str:
    """Template- and order-independent content of the full-detail caption of a scene."""
    return canonical(claim_of(attrs))


def split_of(description: str) -> str:
    """Stable split assignment (hashlib, so it does not vary with PYTHONHASHSEED)."""
    digest = hashlib.blake2b(description.encode(), digest_size=8).digest()
    bucket = int.from_bytes(digest, "little") % 100
    bound = 0
    for split, percent in zip(SPLITS, SPLIT_PERCENT, strict=True):
        bound += percent
        if bucket < bound:
            return split
    raise AssertionError("split percentages must sum to 100")


def caption(attrs: np.ndarray | list, variant: int = 0) -> str:
    """Full-detail caption of one scene; ``variant`` picks a one-object template."""
    return caption_text(claim_of(attrs), variant)


def _draw_candidates(rng: np.random.Generator, m: int, spec: ShapesSpec):
    """m random scenes, minus those whose first pair of cells is diagonal (ambiguous)."""
    k = spec.max_objects
    n = rng.integers(spec.min_objects, spec.max_objects + 1, size=m)
    cells = np.argsort(rng.random((m, 9)), axis=1)[:, :k]  # distinct cells per scene
    attrs = np.stack(
        [
            rng.integers(0, len(SHAPES), (m, k)),
            rng.integers(0, len(COLOURS), (m, k)),
            rng.integers(0, len(SIZES), (m, k)),
            cells,
        ],
        axis=-1,
    ).astype(np.int16)
    attrs[np.arange(k)[None, :] >= n[:, None]] = -1
    ok = n < 2
    if k >= 2:
        d_row = np.abs(cells[:, 0] // 3 - cells[:, 1] // 3)
        d_col = np.abs(cells[:, 0] % 3 - cells[:, 1] % 3)
        ok |= d_row != d_col
    return attrs[ok], n[ok].astype(np.int8)


def _statements(
    attrs: np.ndarray, counts: np.ndarray, spec: ShapesSpec, rng: np.random.Generator
) -> tuple[np.ndarray, list[Claim]]:
    """What each scene's caption states: (m, K, 4) bool and the Claims. Full detail draws
    nothing from `rng`, so its scenes, captions and splits are the original ones."""
    full = spec.caption_detail >= 1.0
    if full:
        stated = np.repeat((attrs[..., :1] >= 0), 4, axis=-1)
    else:
        stated = draw_stated(rng, counts, attrs.shape[1], spec.caption_detail)
    rows = zip(attrs.tolist(), stated.tolist(), strict=True)
    return stated, [claim_of(r, s, exhaustive=full) for r, s in rows]


def sample_scenes(
    split: str, n: int, spec: ShapesSpec, rng: np.random.Generator, mention: np.random.Generator
):
    """Rejection-sample n scenes whose caption content hashes to ``split``.

    rng draws the scenes, `mention` what their captions state. Returns attributes
    (n, K, 4) int16, object counts (n,) int8, stated facts (n, K, 4) bool and the Claims.
    """
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    claims: list[Claim] = []
    batches = 0
    while len(claims) < n:
        attrs, counts = _draw_candidates(rng, _CANDIDATE_BATCH, spec)
        stated, said = _statements(attrs, counts, spec, mention)
        keep = [split_of(canonical(c)) == split for c in said]
        kept.append((attrs[keep], counts[keep], stated[keep]))
        claims += [c for c, k in zip(said, keep, strict=True) if k]
        batches += 1
        if not claims and batches >= 100:  # no caption content of this split exists
            raise ValueError(
                f"no caption of split {split!r} in 100 batches for {spec}: too few distinct "
                "captions (raise caption_detail)"
            )
    if not kept:
        k = spec.max_objects
        return (np.zeros((0, k, 4), np.int16), np.zeros((0,), np.int8),
                np.zeros((0, k, 4), bool), [])  # fmt: skip
    attrs, counts, stated = (np.concatenate(parts)[:n] for parts in zip(*kept, strict=True))
    return attrs, counts, stated, claims[:n]


def _coverage(shape: int, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (dx = |x - cx|, dy = y - cy)."""
    if shape == 0:  # circle: euclidean
        d = np.sqrt(dx * dx + dy * dy) - r
    elif shape == 1:  # square: chebyshev
        d = np.maximum(dx, np.abs(dy)) - r
    elif shape == 2:  # upward triangle, apex (0,-r), base y=+r: max over its three half-planes
        d = np.maximum(dy - r, (2 * dx - dy - r) * np.float32(1 / np.sqrt(5)))
    else:  # diamond: L1
        d = (dx + np.abs(dy) - r) * np.float32(1 / np.sqrt(2))
    return np.clip(np.float32(0.5) - d, 0.0, 1.0)


def _draw_chunk(img: np.ndarray, attrs: np.ndarray, counts: np.ndarray, offsets: np.ndarray):
    """Draw the objects of a chunk into ``img`` (n, res, res, 3), which holds the background."""
    res = img.shape[1]
    # Each object is drawn only inside a window that holds it and its anti-aliased fringe
    # (~8x fewer pixels than the frame); a strided view makes gathering windows cheap.
    win = min(res, int(np.ceil(2 * RADII[-1] * res)) + 3)
    windows = sliding_window_view(img, (win, win), axis=(1, 2), writeable=True)
    for k in range(attrs.shape[1]):
        idx = np.nonzero(counts > k)[0]
        shape, colour, size, pos = attrs[idx, k].T.astype(np.int64)
        cx = ((pos % 3 + 0.5) / 3 + offsets[idx, k, 0]).astype(np.float32) * res
        cy = ((pos // 3 + 0.5) / 3 + offsets[idx, k, 1]).astype(np.float32) * res
        x0 = np.clip(np.floor(cx - win / 2).astype(np.int64), 0, res - win)
        y0 = np.clip(np.floor(cy - win / 2).astype(np.int64), 0, res - win)
        centres = np.arange(win, dtype=np.float32) + np.float32(0.5)
        dx = np.abs(x0[:, None] + centres - cx[:, None])[:, None, :]  # (M,1,win)
        dy = (y0[:, None] + centres - cy[:, None])[:, :, None]  # (M,win,1)
        radius = (np.asarray(RADII, np.float32)[size] * res)[:, None, None]
        cover = np.empty((len(idx), win, win), np.float32)
        for s in range(len(SHAPES)):  # each object gets the SDF of its own shape only
            sel = np.nonzero(shape == s)[0]
            if len(sel):
                cover[sel] = _coverage(s, dx[sel], dy[sel], radius[sel])
        # "Over" compositing inside the window (a window may hold a neighbour's edge); one
        # object per image per slot, so no window is written twice in one assignment.
        under = windows[idx, y0, x0].astype(np.float32)  # (M,3,win,win)
        under += cover[:, None] * (PALETTE[colour][:, :, None, None] - under)
        windows[idx, y0, x0] = np.rint(under).astype(np.uint8)


def render(
    attributes: np.ndarray,
    n_objects: np.ndarray,
    resolution: int,
    rng: np.random.Generator | None = None,
    chunk: int = 256,
) -> np.ndarray:
    """Vectorised renderer: (N, K, 4) attributes -> uint8 (N, res, res, 3).

    With ``rng`` each object centre is jittered by up to JITTER of the width per axis;
    without it objects sit exactly at their cell centres.
    """
    attributes, n_objects = np.asarray(attributes), np.asarray(n_objects)
    n, k = attributes.shape[:2]
    offsets = (
        rng.uniform(-JITTER, JITTER, size=(n, k, 2)) if rng is not None else np.zeros((n, k, 2))
    )
    out = np.empty((n, resolution, resolution, 3), np.uint8)
    # Filling from a whole frame is much faster than broadcasting a 3-byte pixel.
    frame = np.broadcast_to(BACKGROUND.astype(np.uint8), (resolution, resolution, 3))
    out[:] = np.ascontiguousarray(frame)
    for start in range(0, n, chunk):  # chunks keep the per-window temporaries cache-sized
        sl = slice(start, start + chunk)
        _draw_chunk(out[sl], attributes[sl], n_objects[sl], offsets[sl])
    return out


def _check_spec(spec: ShapesSpec) -> None:
    if not 1 <= spec.min_objects <= spec.max_objects <= 3:
        raise ValueError(f"need 1 <= min_objects <= max_objects <= 3, got {spec}")
    if spec.resolution < 1:
        raise ValueError(f"resolution must be positive, got {spec.resolution}")
    if not 0.0 <= spec.caption_detail <= 1.0:
        raise ValueError(f"caption_detail must be in [0, 1], got {spec.caption_detail}")


class ShapesDataset(Dataset):
    """``n`` captioned images of one split, rendered up front (uint8, HWC).

    attributes (n, K, 4) and n_objects (n,) are each image's full ground truth; stated
    (n, K, 4) and claims (n,) are what its caption states (shapes_captions.draw_stated).
    """

    def __init__(self, split: str, n: int, spec: ShapesSpec) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        _check_spec(spec)
        self.split, self.spec = split, spec
        # Independent streams per split and per purpose, so splits never share randomness.
        scene_rng, text_rng, jitter_rng, mention_rng = (
            np.random.default_rng([spec.seed, SPLITS.index(split), purpose]) for purpose in range(4)
        )
        self.attributes, self.n_objects, self.stated, self.claims = sample_scenes(
            split, n, spec, scene_rng, mention_rng
        )
        variants = (text_rng.random(n) * len(ONE_OBJECT_TEMPLATES)).astype(int)
        self.captions = [
            caption_text(c, int(v)) for c, v in zip(self.claims, variants, strict=True)
        ]
        self.images = render(self.attributes, self.n_objects, spec.resolution, jitter_rng)

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        image = torch.from_numpy(self.images[i]).permute(2, 0, 1).contiguous()
        return image, self.captions[i]
