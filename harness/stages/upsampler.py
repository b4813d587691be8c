"""unCLIP diffusion upsamplers (Ramesh et al. 2022, §2.1): low-res image -> high-res image.

Two stages (paper 64->256->1024; here cfg.upsamplers.first/.second, each taking the previous
stage's output resolution). No caption and no z_i: the net sees only x_t and the bicubically
upsampled low-resolution image. Training uses random crops (`crop_fraction` of the target
size, paper a quarter) and corrupts the conditioning image (`degradation`: blur for the
first, BSR for the second) so the upsampler tolerates the previous stage's artefacts. The
net is fully convolutional, so it samples whole images after training on crops.

The diffusion runs over the residual x - up(low) rather than over x (as SRDiff, Li et al.
2022, does): the net still sees up(low) as extra channels, as in the paper, but it only has
to model the detail bicubic upsampling misses, which a small net learns in few steps; flat
regions are then exactly the conditioning image instead of a re-synthesised copy of it.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from ..config import Config, UpsamplerConfig
from ..config.hashing import training_fields, value_at
from ..data.images import resize, to_model, to_uint8
from ..degradations import degrade
from ..diffusion import GaussianDiffusion, betas_for
from ..diffusion.noise import Noise, as_noise
from ..nets.unet import UNet
from .common import with_schedule
from .decoder import stage_images
from .stage import Fit, FitRun, Recipe, StageContext

EVAL_IMAGES = 64  # held-out images upsampled for the PSNR comparison
VAL_ITEMS = 64
# Pixels per sampling chunk. On CPU the per-image cost of a forward at 64 px rises ~1.8x
# from 16 to 64 images a batch (activations fall out of cache: 64 ms vs 114 ms an image on
# one thread here), so whole images go through the net in chunks of at most 2^16 pixels
# (64 images at 32 px, 16 at 64 px).
CHUNK_PIXELS = 2**16


def crop_size(cfg: UpsamplerConfig, multiple: int) -> int:
    """Training crop side: crop_fraction of the target (0 = whole image), rounded to the
    UNet's size multiple so the down/up path lines up."""
    if cfg.crop_fraction <= 0:
        return cfg.resolution
    size = round(cfg.resolution * cfg.crop_fraction / multiple) * multiple
    return min(max(size, multiple), cfg.resolution)


def random_crops(x: Tensor, low: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """The same random (size x size) window of x and low, both (B, C, R, R), per item."""
    b, _, r, _ = x.shape
    if size >= r:
        return x, low
    oy, ox = torch.randint(0, r - size + 1, (2, b), device=x.device)  # (B,) each
    ar = torch.arange(size, device=x.device)
    rows = (oy[:, None] + ar)[:, None, :, None]  # (B, 1, s, 1)
    cols = (ox[:, None] + ar)[:, None, None, :]  # (B, 1, 1, s)
    items = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return x[items, chans, rows, cols], low[items, chans, rows, cols]  # (B, C, s, s)


class UpsamplerStage(pl.LightningModule):
    """(UNet with low-res input channels, diffusion); batches are uint8 (B, 3, R, R) images."""

    def __init__(self, cfg: UpsamplerConfig, low_resolution: int) -> None:
        super().__init__()
        if low_resolution >= cfg.resolution:
            raise ValueError(f"upsampler input {low_resolution} px >= output {cfg.resolution} px")
        self.cfg, self.low_resolution = cfg, low_resolution
        self.net = UNet(
            channels=cfg.channels, channel_mult=cfg.channel_mult,
            num_res_blocks=cfg.num_res_blocks, resolution=cfg.resolution, low_channels=3,
        )  # fmt: skip
        self.diffusion = GaussianDiffusion(betas_for(cfg.schedule, cfg.timesteps), cfg.prediction)
        self.crop = crop_size(cfg, 2 ** (len(cfg.channel_mult) - 1))

    def condition(self, x: Tensor, corrupt: bool) -> Tensor:
        """Target images x (B, 3, R, R) in [-1, 1] -> the upsampled (optionally corrupted)
        area-downsampled version the net is conditioned on, (B, 3, R, R)."""
        low = resize(x, self.low_resolution)  # (B, 3, r, r)
        if corrupt:
            hit = torch.rand(low.shape[0], device=low.device) < self.cfg.degrade_prob  # (B,)
            bad = degrade(low, self.cfg.degradation, self.cfg.blur_sigma)
            low = torch.where(hit[:, None, None, None], bad, low)
        return resize(low, self.cfg.resolution).clamp(-1, 1)

    def training_step(self, batch: tuple[Tensor], _: int) -> Tensor:
        x = to_model(batch[0])  # (B, 3, R, R)
        x, low = random_crops(x, self.condition(x, corrupt=True), self.crop)  # (B, 3, c, c)
        loss = self.diffusion.training_losses(self.net, x - low, low=low).mean()  # residual
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_loss(self, images: Tensor, idx: int = 0) -> Tensor:
        """Loss on whole uint8 images with clean conditioning; t and noise fixed by idx."""
        x = to_model(images.to(self.device))
        g = torch.Generator(device=x.device).manual_seed(idx)
        low = self.condition(x, corrupt=False)
        return self.diffusion.training_losses(self.net, x - low, generator=g, low=low).mean()

    def validation_step(self, batch: tuple[Tensor], idx: int) -> None:
        self.log("val/loss", self.validation_loss(batch[0], idx), batch_size=len(batch[0]))

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(self.parameters(), lr=self.cfg.lr, weight_decay=0.0)
        return with_schedule(opt, self.cfg.train_steps)  # constant lr

    @torch.inference_mode()
    def sample(
        self,
        low: Tensor,
        steps: int,
        eta: float,
        noise: Tensor | None = None,
        generator: Noise | torch.Generator | None = None,
    ) -> Tensor:
        """low (B, 3, r, r) in [-1, 1] -> (B, 3, R, R) in [-1, 1] by DDIM over `steps`,
        in chunks of CHUNK_PIXELS (each chunk draws from its rows of the noise source: a
        generator's draws in turn, a CRN stream's own rows)."""
        if low.shape[-1] != self.low_resolution:
            raise ValueError(f"expected {self.low_resolution} px input, got {low.shape[-1]} px")
        r = self.cfg.resolution
        size = max(1, CHUNK_PIXELS // (r * r))
        diffusion = self.diffusion.respaced(steps)
        out, source = [], as_noise(generator)
        for lo in range(0, len(low), size):
            up = resize(low[lo : lo + size].to(self.device, torch.float32), r).clamp(-1, 1)
            eps = None if noise is None else noise[lo : lo + size]
            residual = diffusion.ddim_sample(
                self.net, up.shape, eta=eta, noise=eps, generator=source.rows(lo, lo + size),
                device=self.device,
                low=up, clip_denoised=(-2.0, 2.0),  # the residual's range
            )  # fmt: skip
            out.append((up + residual).clamp(-1, 1))  # (b, 3, R, R)
        return torch.cat(out)


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR (dB) between uint8 images (B, 3, H, W) -> (B,)."""
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse.clamp(min=1e-10))


def evaluate_upsampler(up: UpsamplerStage, images: Tensor, seed: int) -> dict[str, Any]:
    """PSNR of upsampling held-out area-downsampled images (B, 3, R, R uint8) vs bicubic."""
    x = to_model(images)
    low = resize(x, up.low_resolution)  # (B, 3, r, r), clean: what a real cascade hands over
    g = torch.Generator().manual_seed(seed)
    sample = up.sample(low, up.cfg.steps, up.cfg.eta, generator=g)
    ours, bicubic = psnr(to_uint8(sample), images), psnr(to_uint8(resize(low, x.shape[-1])), images)
    se = len(images) ** -0.5
    return {
        "psnr": float(ours.mean()), "psnr_se": float(ours.std() * se),
        "psnr_bicubic": float(bicubic.mean()), "psnr_bicubic_se": float(bicubic.std() * se),
        "psnr_margin": float((ours - bicubic).mean()),
        "psnr_margin_se": float((ours - bicubic).std() * se),  # paired
        "beats_bicubic": float((ours > bicubic).float().mean()),
        "eval_images": len(images), "sampling_steps": up.cfg.steps,
    }  # fmt: skip


class UpsamplerRecipe(Recipe):
    """One upsampler of the cascade (config `section`): trained on random crops of the train
    split, its input the output of the nearest enabled section in `below` (low to high:
    the decoder, then the upsamplers before it); scored by PSNR against bicubic."""

    def __init__(self, section: str, below: tuple[str, ...]) -> None:
        super().__init__(section)
        self.below = below

    def enabled(self, cfg: Config) -> bool:
        return self.config(cfg).enabled

    def low_resolution(self, cfg: Config) -> int:
        """The previous stage's output size."""
        before = [value_at(cfg, s) for s in self.below]
        return [c for c in before if getattr(c, "enabled", True)][-1].resolution

    def key_inputs(self, cfg: Config) -> list[Any]:
        return [training_fields(cfg.data), self.low_resolution(cfg)]

    def build(self, ctx: StageContext, fresh: bool) -> UpsamplerStage:
        return UpsamplerStage(self.config(ctx.cfg), self.low_resolution(ctx.cfg))

    def prepare(self, ctx: StageContext, stage: UpsamplerStage) -> Fit:
        cfg, up = ctx.cfg, self.config(ctx.cfg)
        train_x = stage_images(cfg.data, "train", up.resolution, per_pair=False)
        val_x = stage_images(cfg.data, "val", up.resolution, per_pair=False)
        loader = DataLoader(
            TensorDataset(train_x),
            batch_size=min(up.batch_size, len(train_x)),
            shuffle=True,
            drop_last=True,
            num_workers=cfg.train.num_workers,
        )
        val = DataLoader(TensorDataset(val_x[:VAL_ITEMS]), batch_size=up.batch_size)  # pruning
        return Fit(steps=up.train_steps, train=loader, val=val, ema=up.ema, kept={"val_x": val_x})

    def evaluate(self, ctx: StageContext, stage: UpsamplerStage, run: FitRun) -> dict[str, Any]:
        val_x = run.kept["val_x"]
        with torch.inference_mode():  # once, on the final (EMA) weights
            val_loss = float(stage.validation_loss(val_x[:VAL_ITEMS]))
        metrics = evaluate_upsampler(stage, val_x[:EVAL_IMAGES], ctx.cfg.seed)
        return metrics | {"input_resolution": stage.low_resolution,
                          "resolution": stage.cfg.resolution, "crop": stage.crop,
                          "val_loss": val_loss}  # fmt: skip

    def shape(self, ctx: StageContext) -> dict[str, Any]:
        return {"low_resolution": self.low_resolution(ctx.cfg)}
