"""Embedded default dataset ``shapes``: procedurally drawn, captioned scenes of 1-3 objects.

Each object has a shape, colour, size and a cell of a 3x3 grid; captions come from templates
with spatial relations. Splits are disjoint by construction: every scene's *canonical
description* (the caption's content, independent of template and of object order) is hashed
into train/val/test buckets, and each split keeps only the scenes that hash to it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch.utils.data import Dataset

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "large")
POSITIONS = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)  # index = row * 3 + col, row 0 at the top
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
_ONE_OBJECT_TEMPLATES = ("a {obj} in the {pos}", "a {obj} in the {pos} of the image")
_FLIPPED = {"to the right of": "to the left of", "below": "above"}


@dataclass(frozen=True)
class ShapesSpec:
    resolution: int = 32
    max_objects: int = 2
    min_objects: int = 1
    seed: int = 0


def relation(pos_a: int, pos_b: int) -> str:
    """Where cell ``pos_a`` lies relative to ``pos_b``, along the dominant axis."""
    d_row, d_col = pos_a // 3 - pos_b // 3, pos_a % 3 - pos_b % 3
    if abs(d_row) == abs(d_col):
        raise ValueError(f"cells {pos_a} and {pos_b} have no unambiguous relation")
    if abs(d_col) > abs(d_row):
        return "to the left of" if d_col < 0 else "to the right of"
    return "above" if d_row < 0 else "below"


def _phrase(row: list[int]) -> str:
    return f"{SIZES[row[2]]} {COLOURS[row[1]]} {SHAPES[row[0]]}"


def _present(attrs: np.ndarray | list) -> list[list[int]]:
    rows = attrs.tolist() if isinstance(attrs, np.ndarray) else attrs
    return [r for r in rows if r[0] >= 0]


def canonical_description(attrs: np.ndarray | list) -> str:
    """Template- and order-independent content of the caption of one image's attribute rows.

    It holds exactly what the caption states (no jitter, and for pairs only the relation, not
    the cells), so equal captions always give equal descriptions and hence the same split.
    """
    rows = _present(attrs)
    if not rows:
        raise ValueError("a scene needs at least one object")
    if len(rows) == 1:
        return f"{_phrase(rows[0])} @ {POSITIONS[rows[0][3]]}"
    a, b = rows[0], rows[1]
    rel = relation(a[3], b[3])
    if rel in _FLIPPED:  # "B right of A" says the same as "A left of B"
        a, b, rel = b, a, _FLIPPED[rel]
    text = f"{_phrase(a)} | {rel} | {_phrase(b)}"
    for extra in rows[2:]:
        text += f" ; {_phrase(extra)} @ {POSITIONS[extra[3]]}"
    return text


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
    """Caption for one image; ``variant`` picks a one-object template (ignored otherwise)."""
    rows = _present(attrs)
    if len(rows) == 1:
        template = _ONE_OBJECT_TEMPLATES[variant % len(_ONE_OBJECT_TEMPLATES)]
        return template.format(obj=_phrase(rows[0]), pos=POSITIONS[rows[0][3]])
    a, b = rows[0], rows[1]
    text = f"a {_phrase(a)} {relation(a[3], b[3])} a {_phrase(b)}"
    for extra in rows[2:]:
        text += f", and a {_phrase(extra)} in the {POSITIONS[extra[3]]}"
    return text


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


def sample_scenes(split: str, n: int, spec: ShapesSpec, rng: np.random.Generator):
    """Rejection-sample n scenes whose canonical description hashes to ``split``."""
    kept_attrs, kept_n, total = [], [], 0
    while total < n:
        attrs, counts = _draw_candidates(rng, _CANDIDATE_BATCH, spec)
        keep = [split_of(canonical_description(rows)) == split for rows in attrs.tolist()]
        kept_attrs.append(attrs[keep])
        kept_n.append(counts[keep])
        total += int(np.count_nonzero(keep))
        if total == 0 and len(kept_attrs) >= 100:  # a bug, not bad luck: fail, don't spin
            raise RuntimeError(f"no scene of split {split!r} in 100 batches for {spec}")
    if not kept_attrs:
        return np.zeros((0, spec.max_objects, 4), np.int16), np.zeros((0,), np.int8)
    return np.concatenate(kept_attrs)[:n], np.concatenate(kept_n)[:n]


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


class ShapesDataset(Dataset):
    """``n`` captioned images of one split, rendered up front (uint8, HWC)."""

    def __init__(self, split: str, n: int, spec: ShapesSpec) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        _check_spec(spec)
        self.split, self.spec = split, spec
        # Independent streams per split and per purpose, so splits never share randomness.
        scene_rng, text_rng, jitter_rng = (
            np.random.default_rng([spec.seed, SPLITS.index(split), purpose]) for purpose in range(3)
        )
        self.attributes, self.n_objects = sample_scenes(split, n, spec, scene_rng)
        variants = (text_rng.random(n) * len(_ONE_OBJECT_TEMPLATES)).astype(int)
        rows = self.attributes.tolist()
        self.captions = [caption(r, int(v)) for r, v in zip(rows, variants, strict=True)]
        self.images = render(self.attributes, self.n_objects, spec.resolution, jitter_rng)

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        image = torch.from_numpy(self.images[i]).permute(2, 0, 1).contiguous()
        return image, self.captions[i]
