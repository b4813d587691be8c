"""Corruptions of the upsamplers' conditioning image (Ramesh et al. 2022, §2.1).

The first upsampler sees its low-resolution input blurred (paper: Gaussian, kernel 3,
sigma 0.6); the second sees BSR degradation (Zhang et al. 2021, "Designing a practical
degradation model for deep blind image super-resolution"): random blur, resize, noise and
JPEG, applied in a random order. Training on corrupted inputs makes the upsampler robust
to the previous stage's artefacts. Images are float (B, 3, H, W) in [-1, 1]; every op keeps
the size (a resize goes down and back up) because the upsampler's input size is fixed.
"""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import decode_jpeg, encode_jpeg

from .data.images import resize, to_model, to_uint8


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None, device) -> Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def gaussian_blur(x: Tensor, sigma: float | Tensor, kernel: int = 3) -> Tensor:
    """Gaussian blur, x (B, C, H, W); sigma a float or per-image (B,) tensor."""
    if not isinstance(sigma, Tensor):
        if sigma <= 0:
            return x
        sigma = torch.full((x.shape[0],), float(sigma), device=x.device)
    sigma = sigma.to(x.dtype).clamp(min=1e-3)  # 0 would divide by zero in the kernel
    return kornia.filters.gaussian_blur2d(x, (kernel, kernel), torch.stack([sigma, sigma], 1))


def random_blur(x: Tensor, g: torch.Generator | None) -> Tensor:
    """Isotropic Gaussian blur, sigma ~ U(0.2, 1.5) per image, kernel 5."""
    return gaussian_blur(x, _uniform(x.shape[0], 0.2, 1.5, g, x.device), kernel=5)


def random_resize(x: Tensor, g: torch.Generator | None) -> Tensor:
    """Down to a random fraction in [0.5, 1) of the size (one per batch: a batch shares a
    shape) with a random interpolation, then back up bicubically."""
    size = x.shape[-1]
    small = max(2, int(size * float(_uniform(1, 0.5, 1.0, _cpu(g), "cpu"))))
    mode = ("area", "bilinear", "bicubic")[int(torch.randint(3, (1,), generator=_cpu(g)))]
    kwargs = {} if mode == "area" else {"align_corners": False}
    down = F.interpolate(x, size=(small, small), mode=mode, **kwargs)
    return resize(down, size)


def random_noise(x: Tensor, g: torch.Generator | None) -> Tensor:
    """Additive Gaussian noise, std ~ U(0, 0.1) per image on the [-1, 1] scale."""
    std = _uniform(x.shape[0], 0.0, 0.1, g, x.device).to(x.dtype)[:, None, None, None]
    noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
    return x + std * noise


def random_jpeg(x: Tensor, g: torch.Generator | None) -> Tensor:
    """JPEG round trip through the real codec (libjpeg, as BSR's cv2), quality ~ U(30, 95)
    per image. Not kornia's differentiable codec: nothing backpropagates through a
    degradation, and that codec cost ~1 s per batch of 64 32-px images here (variable)
    against ~30 ms for libjpeg, which made it most of the 64 px upsampler's training step."""
    quality = _uniform(x.shape[0], 30.0, 95.0, _cpu(g), "cpu").round().int().tolist()
    pixels = to_uint8(x.clamp(-1, 1)).cpu()  # (B, C, H, W)
    # One call per image: each has its own quality (a few hundred microseconds each).
    out = [decode_jpeg(encode_jpeg(img, quality=q)) for img, q in zip(pixels, quality, strict=True)]
    return to_model(torch.stack(out)).to(x.device, x.dtype)


BSR_OPS = (random_blur, random_resize, random_noise, random_jpeg)


def _cpu(g: torch.Generator | None) -> torch.Generator | None:
    # Scalars (order, sizes) are drawn on the CPU; a CUDA generator cannot serve them.
    return g if g is None or g.device.type == "cpu" else None


def bsr(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """BSR degradation: blur, resize, noise and JPEG in a random order (one per call), with
    per-image strengths; x (B, C, H, W) in [-1, 1] -> same shape, clamped to [-1, 1]."""
    order = torch.randperm(len(BSR_OPS), generator=_cpu(generator)).tolist()
    for i in order:
        x = BSR_OPS[i](x, generator)
    return x.clamp(-1, 1)


def degrade(
    x: Tensor, kind: str, blur_sigma: float = 0.6, generator: torch.Generator | None = None
) -> Tensor:
    """The upsampler config's `degradation`: "blur" (kernel 3), "bsr", or "none"."""
    if kind == "blur":
        return gaussian_blur(x, blur_sigma, kernel=3)
    if kind == "bsr":
        return bsr(x, generator)
    if kind == "none":
        return x
    raise ValueError(f"unknown degradation {kind!r}; expected blur, bsr or none")
