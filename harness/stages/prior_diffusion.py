"""The diffusion prior (Ramesh et al. 2022, §2.1): a causal Transformer that denoises z_i.

Training: x0 = sqrt(D) z_i (unit variance per coordinate, so the noise schedule means what it
means for images; a unit vector has coordinates ~1/sqrt(D) and would be drowned by noise
almost at once), MSE on `prior.prediction` (paper: x0), caption dropped with probability
`prior.text_drop`. Sampling: DDIM over `prior.steps` respaced steps with `prior.eta`, no
clipping (embeddings are unbounded), classifier-free guidance at `prior.guidance_scale`, and
best-of-`prior.candidates` by z_i . z_t.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import PriorConfig
from ..diffusion import GaussianDiffusion, betas_for, guided
from ..diffusion.noise import Noise
from ..nets.prior_transformer import DiffusionPriorNet
from .prior import PriorStage, best_of


class DiffusionPrior(PriorStage):
    def __init__(self, cfg: PriorConfig, clip_dim: int, text_width: int, context_length: int):
        super().__init__(cfg, clip_dim, text_width, context_length)
        self.net = DiffusionPriorNet(
            clip_dim, text_width, cfg.width, cfg.layers, cfg.heads, context_length
        )
        self.diffusion = GaussianDiffusion(betas_for(cfg.schedule, cfg.timesteps), cfg.prediction)
        self.x_scale = math.sqrt(clip_dim)  # z_i (unit norm) <-> x0 (unit variance per dim)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        z_i = batch["z_i"]  # (B, D)
        losses = self.diffusion.training_losses(
            self.net,
            z_i * self.x_scale,
            z_t=batch["z_t"],
            text_enc=batch["text_enc"],
            text_mask=batch["text_mask"],
            keep=self.keep_mask(z_i.shape[0]),
        )  # (B,)
        loss = losses.mean()
        self.track_loss(loss)
        return loss

    @torch.no_grad()
    def sample(
        self,
        z_t: Tensor,
        text_enc: Tensor,
        text_mask: Tensor,
        cfg: PriorConfig,
        generator: Noise | torch.Generator | None = None,
    ) -> Tensor:
        """z_t (B, D), text_enc (B, L, Wt), text_mask (B, L) -> z_i (B, D) L2-normalised."""
        n, (b, d) = cfg.candidates, z_t.shape

        def rep(x: Tensor) -> Tensor:  # candidate c of row r sits at c * B + r
            return x.repeat(n, *([1] * (x.ndim - 1)))

        cond = {
            "z_t": rep(z_t),
            "text_enc": rep(text_enc),
            "text_mask": rep(text_mask),
            "keep": torch.ones(n * b, dtype=torch.bool, device=z_t.device),
        }
        model = self.net
        if cfg.guidance_scale != 1.0:  # null: caption tokens and z_t both dropped
            model = guided(self.net, cfg.guidance_scale, {"keep": torch.zeros_like})
        diffusion = self.diffusion.respaced(min(cfg.steps, self.diffusion.num_timesteps))
        x0 = diffusion.ddim_sample(
            model,
            (n * b, d),
            eta=cfg.eta,
            generator=generator,
            clip_denoised=False,
            device=z_t.device,
            dtype=z_t.dtype,
            **cond,
        )  # (n B, D)
        candidates = F.normalize(x0.view(n, b, d), dim=-1)  # (n, B, D)
        return best_of(candidates, z_t)
