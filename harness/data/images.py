"""Pixel conventions: data is uint8 (3, H, W); diffusion models work in [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_model(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) in [0, 255] -> float (B, 3, H, W) in [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 in [0, 255] (clamped)."""
    return x.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-average down (no aliasing), bicubic up; float (B, C, H, W)."""
    if x.shape[-1] == size:
        return x
    mode = "area" if x.shape[-1] > size else "bicubic"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=(size, size), mode=mode, **kwargs)
