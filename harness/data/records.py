"""What the bring-your-own sources (folder, webdataset, coco) share: (key, caption, read
image bytes) records, collected into one split's pairs held in memory.

`collect` keeps the records whose key hashes to the split (80/10/10, stable across runs and
machines), decodes each image once (centre crop, resize to the resolution; decode.py: what is
converted, what is skipped) and skips, counts and logs unreadable images and empty captions.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import HarnessError
from .decode import take_caption, take_image
from .shapes import split_of  # the same stable 80/10/10 hash as the shapes data

log = logging.getLogger(__package__)  # "harness.data": one logger for every source
Record = tuple[str, str, Callable[[], bytes]]  # (image key, caption, read the image bytes)


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
    skipped = Counter() if skipped is None else skipped
    changed: Counter = Counter()  # kept, but converted or cut (decode.py)
    images, index, captions, rows = _pairs(records, split, limit, resolution, skipped, changed)
    counts = ", ".join(f"{n} {what}" for what, n in sorted(skipped.items()) if n) or "nothing"
    altered = ", ".join(f"{n} {what}" for what, n in sorted(changed.items()))
    # A warning when anything was skipped or changed: the CLI shows warnings, so a user learns
    # that part of their data is unreadable without looking for a log file.
    log.log(
        logging.WARNING if sum(skipped.values()) + sum(changed.values()) else logging.INFO,
        "%s %s [%s]: %d pairs from %d images at %d px; skipped %s%s",
        name, where, split, len(captions), len(images), resolution, counts,
        f"; kept but changed {altered}" if altered else "",
    )  # fmt: skip
    if not captions:
        raise HarnessError(f"no usable image-caption pair in the {split} split (skipped {counts})",
                           where)  # fmt: skip
    return np.stack(images), np.asarray(index, np.int64), captions, rows


def _pairs(
    records: Iterable[Record],
    split: str,
    limit: int,
    resolution: int,
    skipped: Counter,
    changed: Counter,
) -> tuple[list[np.ndarray], list[int], list[str], list[str]]:
    """(decoded images, pair -> image row, captions, image keys) of the split's first
    `limit` usable pairs; counts what it skips into `skipped`, what it converts or cuts
    into `changed`."""
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
        caption = take_caption(caption, changed)
        if not caption:
            skipped["empty captions"] += 1
            continue
        if key not in rows:
            image = take_image(read, resolution, skipped, changed)
            if image is None:
                bad.add(key)
                continue
            images.append(image)
            rows[key] = len(images) - 1
        index.append(rows[key])
        captions.append(caption)
    return images, index, captions, list(rows)
