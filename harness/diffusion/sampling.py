"""The sampling loops over a diffusion's steps: ancestral DDPM, DDIM with eta, and DDIM
inversion. A mixin of GaussianDiffusion: each loop calls the diffusion's single step."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor

from .noise import Noise, as_noise

Model = Callable[..., Tensor]  # model(x_t, t, **cond) -> output
# False/None: no clipping; True: clip predicted x0 to [-1, 1]; (lo, hi): clip to that range.
Clip = bool | tuple[float, float] | None


class Sampling:
    """Loops of GaussianDiffusion (which provides num_timesteps and the single steps)."""

    num_timesteps: int
    p_sample_step: Callable[..., Tensor]
    ddim_step: Callable[..., Tensor]
    ddim_invert_step: Callable[..., Tensor]

    def _indices(self, descending: bool, progress: bool) -> Iterable[int]:
        idx = range(self.num_timesteps)
        idx = reversed(idx) if descending else idx
        if progress:
            from tqdm.auto import tqdm  # only imported when a bar is wanted

            idx = tqdm(idx, total=self.num_timesteps)
        return idx

    @torch.inference_mode()  # no autograd bookkeeping at all: sampling never backpropagates
    def _run(
        self, step: Callable[..., Tensor], x: Tensor, descending: bool, progress: bool
    ) -> Tensor:
        for i in self._indices(descending, progress):
            x = step(x, torch.full((x.shape[0],), i, device=x.device, dtype=torch.long))
        return x

    def _init_noise(
        self,
        shape: Sequence[int],
        noise: Tensor | None,
        generator: Noise | torch.Generator | None,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> Tensor:
        """x_T: the given noise, else drawn by the noise source (on the CPU; noise.py) and
        moved to `device` (default: a generator's own device, else the CPU)."""
        if noise is not None:
            if tuple(noise.shape) != tuple(shape):
                raise ValueError(f"noise shape {tuple(noise.shape)} != {tuple(shape)}")
            return noise
        if device is None and isinstance(generator, torch.Generator):
            device = generator.device
        return as_noise(generator).randn(shape, device or "cpu", dtype or torch.float32)

    def ddpm_sample(
        self,
        model: Model,
        shape: Sequence[int],
        noise: Tensor | None = None,
        generator: Noise | torch.Generator | None = None,
        clip_denoised: Clip = True,
        progress: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **cond: Any,
    ) -> Tensor:
        """Ancestral sampling from x_{T-1} = noise (B, ...) to x0 (B, ...); dtype/device
        follow ``noise`` when given."""
        x = self._init_noise(shape, noise, generator, device, dtype)
        step = partial(
            self.p_sample_step, model, generator=generator, clip_denoised=clip_denoised, **cond
        )
        return self._run(step, x, descending=True, progress=progress)

    def ddim_sample(
        self,
        model: Model,
        shape: Sequence[int],
        eta: float = 0.0,
        noise: Tensor | None = None,
        generator: Noise | torch.Generator | None = None,
        clip_denoised: Clip = True,
        progress: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **cond: Any,
    ) -> Tensor:
        """DDIM sampling (eq. 12) over this diffusion's steps; respace first for fewer."""
        x = self._init_noise(shape, noise, generator, device, dtype)
        step = partial(
            self.ddim_step, model, eta=eta, generator=generator, clip_denoised=clip_denoised, **cond
        )
        return self._run(step, x, descending=True, progress=progress)

    def ddim_invert(
        self, model: Model, x0: Tensor, refine: int = 0, progress: bool = False, **cond: Any
    ) -> Tensor:
        """Clean x0 (B, ...) -> latent x_{T-1} such that eta=0 ``ddim_sample`` from it
        (without clipping) returns x0: approximately (first order in the step size) for
        ``refine=0``, up to the fixed-point tolerance for ``refine`` > 0."""
        step = partial(self.ddim_invert_step, model, refine=refine, **cond)
        return self._run(step, x0, descending=False, progress=progress)
