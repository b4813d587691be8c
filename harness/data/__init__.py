"""Captioned-image sources. Each yields (uint8 image tensor (3, H, W), caption str).

Bring-your-own sources (folder, webdataset, coco) list (key, caption, image bytes) records;
`collect` keeps the records whose key hashes to the split (80/10/10, stable across runs and
machines), decodes each image once (centre crop, resize to the resolution) and skips, counts
and logs unreadable images and empty captions.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import ConfigError, HarnessError

SPLITS = ("train", "val", "test")
SOURCES = ("shapes", "folder", "webdataset", "coco")
# Errors PIL raises on a corrupt, truncated or foreign file.
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
log = logging.getLogger(__name__)

Record = tuple[str, str, Callable[[], bytes]]  # (image key, caption, read the image bytes)


def split_size(cfg: DataConfig, split: str) -> int:
    return {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]


def decode_image(data: bytes, resolution: int) -> np.ndarray:
    """Encoded image -> uint8 (resolution, resolution, 3): centre square crop, then resize."""
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")  # forces a full decode: a truncated file fails here
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
        # PIL's bicubic filter widens its support when shrinking, so downscaling averages.
        im = im.resize((resolution, resolution), Image.Resampling.BICUBIC)
        return np.asarray(im, dtype=np.uint8)


def read_image(path: str | Path, resolution: int) -> torch.Tensor:
    """An image file -> uint8 (1, 3, resolution, resolution); HarnessError if unreadable."""
    try:
        arr = decode_image(Path(path).read_bytes(), resolution)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise HarnessError(f"cannot read image: {err}", str(path)) from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]


class CaptionedImages(Dataset):
    """Pairs held in memory at one resolution; one image may carry several captions."""

    def __init__(
        self, images: np.ndarray, image_index: np.ndarray, captions: list[str], keys: list[str]
    ) -> None:
        self.images = images  # (M, H, W, 3) uint8, one row per distinct image
        self.image_index = image_index  # (N,) int64: pair -> image row
        self.captions = captions  # (N,)
        self.keys = keys  # (M,) the image keys the split was drawn by

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        image = torch.from_numpy(self.images[self.image_index[i]]).permute(2, 0, 1).contiguous()
        return image, self.captions[i]


def collect(
    records: Iterable[Record],
    split: str,
    limit: int,
    resolution: int,
    name: str,
    where: str,
    skipped: Counter | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """The first `limit` usable pairs of `split`, in record order; logs one summary line.

    Returns CaptionedImages' fields: (images, image_index, captions, keys).

    `skipped` holds counts the source itself adds while `records` is consumed (unreadable
    shards, images without a caption); the summary line reports them with collect's own.
    Raises HarnessError naming `where` when the split has no usable pair.
    """
    from .shapes import split_of  # the same stable 80/10/10 hash as the shapes data

    skipped = Counter() if skipped is None else skipped
    images: list[np.ndarray] = []
    rows: dict[str, int] = {}
    bad: set[str] = set()
    index: list[int] = []
    captions: list[str] = []
    for key, caption, read in records:
        if len(captions) >= limit:
            break
        if split_of(key) != split or key in bad:
            continue
        caption = (caption or "").strip()
        if not caption:
            skipped["empty captions"] += 1
            continue
        if key not in rows:
            try:
                images.append(decode_image(read(), resolution))
            except UNREADABLE:
                bad.add(key)
                skipped["unreadable or missing images"] += 1
                continue
            rows[key] = len(images) - 1
        index.append(rows[key])
        captions.append(caption)
    counts = ", ".join(f"{n} {what}" for what, n in sorted(skipped.items()) if n) or "nothing"
    # A warning when anything was skipped: the CLI shows warnings, so a user learns that part
    # of their data is unreadable without looking for a log file.
    log.log(
        logging.WARNING if sum(skipped.values()) else logging.INFO,
        "%s %s [%s]: %d pairs from %d images at %d px; skipped %s",
        name, where, split, len(captions), len(images), resolution, counts,
    )  # fmt: skip
    if not captions:
        raise HarnessError(f"no usable image-caption pair in the {split} split (skipped {counts})",
                           where)  # fmt: skip
    return np.stack(images), np.asarray(index, np.int64), captions, list(rows)


def check_source(cfg: DataConfig) -> None:
    """Fail fast, naming the path, when some split of `cfg` has no usable pair.

    Reads each split only up to its first usable pair (seconds, even for a large dataset),
    so a wrong path, a captions file without usable rows, or a folder of unreadable images is
    found before any stage trains; the real build later counts and reports what it skips.
    """
    probe = replace(cfg, n_train=1, n_val=1, n_test=1)
    quiet, log.disabled = log.disabled, True  # the probe's one-pair summaries would mislead
    try:
        for split in SPLITS:
            build_source(probe, split, resolution=8)
    finally:
        log.disabled = quiet


def build_source(cfg: DataConfig, split: str, resolution: int | None = None) -> Dataset:
    """The dataset `cfg` names, for one split, at `resolution` (default cfg.resolution)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    res = resolution or cfg.resolution
    n = split_size(cfg, split)
    if cfg.source == "shapes":
        from .shapes import ShapesDataset, ShapesSpec

        spec = ShapesSpec(
            resolution=res, max_objects=cfg.max_objects, min_objects=cfg.min_objects, seed=cfg.seed,
            caption_detail=cfg.caption_detail,
        )  # fmt: skip
        return ShapesDataset(split, n, spec)
    if cfg.source == "folder":
        from .folder import FolderSource

        return FolderSource(cfg.path, split, n, res)
    if cfg.source == "webdataset":
        from .webdataset import WebDatasetSource

        return WebDatasetSource(cfg.path, split, n, res)
    if cfg.source == "coco":
        from .coco import CocoCaptions

        return CocoCaptions(cfg.path, cfg.annotations, split, n, res)
    raise ConfigError(f"unknown data source {cfg.source!r} (one of {SOURCES})", "data.source")
