"""The paper's image manipulations on a trained setup (Ramesh et al. 2022, §3): all act on
the bipartite latent (z_i, x_T) that DDIM inversion of the decoder gives (Pipeline.invert).

- variations: decode (z_i, x_T) with DDIM eta > 0 (Pipeline.vary; eta = 0 reconstructs);
- interpolation: z = slerp(z_i1, z_i2, θ), x_T slerped between the two inverted latents or
  one fixed random draw;
- text diffs: z_d = norm(z_t - z_t0), z = slerp(z_i, z_d, θ) for θ from 0 to θ_max.
Decoding is unguided DDIM at eta = 0 from the given x_T, as inverted, so θ = 0 (and each
interpolation endpoint with `latent: slerp`) gives back the input image.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .pipeline import Pipeline


def slerp(a: Tensor, b: Tensor, theta: float | Tensor) -> Tensor:
    """Spherical interpolation between a and b (B, ...) along the great circle, per row.

    slerp(a, b, θ) = sin((1-θ)ω)/sin ω · a + sin(θω)/sin ω · b, cos ω = <â, b̂>. Norm is
    preserved when |a| = |b|; θ=0 gives a, θ=1 gives b. Nearly parallel rows fall back to
    linear interpolation (sin ω -> 0).
    """
    flat_a, flat_b = a.flatten(1).double(), b.flatten(1).double()  # (B, N)
    cos = F.cosine_similarity(flat_a, flat_b, dim=1).clamp(-1.0, 1.0)  # (B,)
    omega = torch.arccos(cos)[:, None]  # (B, 1)
    theta = torch.as_tensor(theta, dtype=torch.float64, device=a.device).reshape(-1, 1)
    sin = torch.sin(omega)
    small = sin.abs() < 1e-6
    wa = torch.where(small, 1 - theta, torch.sin((1 - theta) * omega) / sin.clamp_min(1e-12))
    wb = torch.where(small, theta, torch.sin(theta * omega) / sin.clamp_min(1e-12))
    return (wa * flat_a + wb * flat_b).reshape(a.shape).to(a.dtype)


def text_direction(pipe: Pipeline, before: str, after: str) -> Tensor:
    """z_d = norm(z_t - z_t0): the CLIP text-embedding difference of the two captions (1, D)."""
    with torch.inference_mode():
        z = pipe.clip.encode_text([before, after]).float()  # (2, D)
    return F.normalize(z[1:] - z[:1], dim=-1)


def interpolate(
    pipe: Pipeline,
    image1: Tensor,
    image2: Tensor,
    steps: int,
    latent: Literal["slerp", "fixed"] = "slerp",
    generator: torch.Generator | None = None,
) -> Tensor:
    """images uint8 (1, 3, H, W) each -> (steps, 3, R, R) in [-1, 1], θ = 0 .. 1."""
    g = generator or torch.Generator().manual_seed(pipe.cfg.seed)
    z1, x1 = pipe.invert(image1)
    z2, x2 = pipe.invert(image2)
    theta = torch.linspace(0, 1, steps)
    z = slerp(z1.expand(steps, -1), z2.expand(steps, -1), theta)  # (steps, D)
    if latent == "slerp":
        x_t = slerp(x1.expand(steps, -1, -1, -1), x2.expand(steps, -1, -1, -1), theta)
    elif latent == "fixed":
        noise = torch.randn(x1.shape, generator=g, dtype=x1.dtype).to(x1.device)
        x_t = noise.expand(steps, -1, -1, -1)
    else:
        raise ValueError(f"latent must be slerp or fixed, got {latent!r}")
    return pipe.decode_latent(z, x_t.contiguous(), 0.0, g)


def textdiff(
    pipe: Pipeline,
    image: Tensor,
    before: str,
    after: str,
    theta_max: float = 0.5,
    steps: int = 5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """An image (1, 3, H, W) edited towards `after`: (steps, 3, R, R), θ = 0 .. theta_max."""
    g = generator or torch.Generator().manual_seed(pipe.cfg.seed)
    z_i, x_t = pipe.invert(image)
    z_d = text_direction(pipe, before, after).to(z_i.device)
    theta = torch.linspace(0, theta_max, steps)
    z = slerp(z_i.expand(steps, -1), z_d.expand(steps, -1), theta)
    return pipe.decode_latent(z, x_t.expand(steps, -1, -1, -1).contiguous(), 0.0, g)
