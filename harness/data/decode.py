"""Encoded image bytes -> uint8 pixels: the one decoder of every bring-your-own source."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import HarnessError

# Errors PIL raises on a corrupt, truncated or foreign file.
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


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
