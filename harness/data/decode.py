"""Bring-your-own images and captions, decoded defensively.

A scraped or downloaded data set holds files nobody looked at: a PNG that declares 50000 x
50000 pixels (a decompression bomb: a few KB that decode to gigabytes), truncated JPEGs,
symlinks out of the data folder, a "caption" of a megabyte, CMYK, 16-bit, palette and
alpha images. Each is converted to 8-bit RGB by a stated rule, or skipped; both are counted
and reported in the one summary line a split's build logs.

Conversions: alpha (RGBA, LA, palette with transparency) is put on white (the page colour
web images are drawn on; RGB under a transparent pixel is arbitrary, often black), 16-bit
grey is scaled to 8 bits (PIL's own convert clips it to white), CMYK through PIL's formula.
This is the one decoder of every bring-your-own source and of `read_image` (a user's file).
"""

from __future__ import annotations

import io
import stat
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import HarnessError

MAX_PIXELS = 2**26  # 67 Mpx (8192 x 8192): above any photo a data set is made of
MAX_FILE_BYTES = 2**28  # 256 MiB: read into memory whole
MAX_CAPTION_CHARS = 1000  # > 200 CLIP tokens; the text encoders read 32 to 77
# Errors PIL raises on a corrupt, truncated or foreign file.
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
TOO_LARGE = f"images over {MAX_PIXELS >> 20} Mpx"
OUTSIDE = "files outside the data folder"
TOO_BIG = f"image files over {MAX_FILE_BYTES >> 20} MiB"
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


class Skip(Exception):
    """A sample left out on purpose; `reason` is what the summary line counts it under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def to_rgb(im: Image.Image, changed: Counter) -> Image.Image:
    """Any PIL mode -> 8-bit RGB by the module's rules; Skip for float images."""
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ALPHA:
        changed["images with alpha (put on white)"] += 1
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode in SIXTEEN_BIT:
        changed["16-bit images (scaled to 8 bits)"] += 1
        grey = np.clip(np.asarray(im, dtype=np.float64), 0, 65535) / 257.0
        return Image.fromarray(np.round(grey).astype(np.uint8), "L").convert("RGB")
    if im.mode == "F":
        raise Skip("float images (no agreed range)")
    if im.mode == "CMYK":
        changed["CMYK images"] += 1
    return im.convert("RGB")  # forces a full decode: a truncated file fails here


def decode_image(data: bytes, resolution: int, changed: Counter | None = None) -> np.ndarray:
    """Encoded image -> uint8 (resolution, resolution, 3): centre square crop, then resize.

    Raises Skip for a decompression bomb (checked on the header, before any pixel is
    decoded) and one of UNREADABLE for a corrupt or truncated file."""
    changed = Counter() if changed is None else changed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise Skip(TOO_LARGE) from None
    with im:
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise Skip(TOO_LARGE)
        rgb = to_rgb(im, changed)
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        rgb = rgb.crop((left, top, left + side, top + side))
        # PIL's bicubic filter widens its support when shrinking, so downscaling averages.
        rgb = rgb.resize((resolution, resolution), Image.Resampling.BICUBIC)
        return np.asarray(rgb, dtype=np.uint8)


def read_image(path: str | Path, resolution: int) -> torch.Tensor:
    """An image file -> uint8 (1, 3, resolution, resolution); HarnessError if unreadable."""
    try:
        arr = decode_image(Path(path).read_bytes(), resolution)
    except (*UNREADABLE, Skip) as err:
        raise HarnessError(f"cannot read image: {err}", str(path)) from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]


def take_image(
    read: Callable[[], bytes], resolution: int, skipped: Counter, changed: Counter
) -> np.ndarray | None:
    """The decoded image, or None with the reason counted in `skipped`."""
    try:
        return decode_image(read(), resolution, changed)
    except Skip as why:
        skipped[why.reason] += 1
    except UNREADABLE:
        skipped["unreadable or missing images"] += 1
    return None


def take_caption(caption: str | None, changed: Counter) -> str:
    """Stripped; cut to MAX_CAPTION_CHARS (counted): the text encoders read far less, and a
    megabyte "caption" (a page scraped whole) would sit in memory for every epoch."""
    caption = (caption or "").strip()
    if len(caption) > MAX_CAPTION_CHARS:
        changed[f"captions cut to {MAX_CAPTION_CHARS} characters"] += 1
        caption = caption[:MAX_CAPTION_CHARS].rstrip()
    return caption


def read_inside(root: Path, name: str) -> bytes:
    """The bytes of `root/name`, a regular file that resolves inside `root` (already
    resolved): a captions row naming `../x` or `/etc/x`, or a symlink out of the folder, is
    skipped (Skip), not followed; a pipe or a device is never opened (it could block)."""
    path = (root / name).resolve()
    if path != root and root not in path.parents:
        raise Skip(OUTSIDE)
    info = path.stat()  # missing: FileNotFoundError, counted as unreadable
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{path}: not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise Skip(TOO_BIG)
    return path.read_bytes()
