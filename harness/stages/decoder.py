"""unCLIP decoder stage: a GLIDE-style diffusion UNet that inverts CLIP image embeddings.

p(x | z_i, y) (Ramesh et al. 2022, §2.1). Classifier-free guidance is trained by dropping the
conditioning: z_i is replaced by the null embedding (zero or learned, `clip_null`) with
probability `clip_drop` (paper 0.1), and the caption by an all-pad caption with probability
`text_drop` (paper 0.5). Sampling guides on both at once, as the paper does.
"""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytorch_lightning as pl
import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from ..atomic import atomic_write
from ..config import Config, DataConfig, DecoderConfig
from ..config.hashing import training_fields
from ..data import build_source
from ..data.images import resize, to_model, to_uint8
from ..diffusion import GaussianDiffusion, betas_for, guided
from ..diffusion.noise import Noise
from ..errors import ArgumentError
from ..nets.text_encoder import CLIP_VOCAB, TextEncoder
from ..nets.unet import UNet
from .common import with_schedule
from .stage import Fit, FitRun, Recipe, StageContext, clip_embeddings

GRID_FILE, CAPTIONS_FILE = "samples.png", "samples.txt"
EVAL_SAMPLES = 256  # held-out images decoded for the stage figures (SE of the margin ~0.025)
VAL_ITEMS = 256  # held-out images in the validation loss


# ------------------------------------------------------------------ shared stage helpers
def stage_images(
    data_cfg: DataConfig, split: str, resolution: int, per_pair: bool = True
) -> Tensor:
    """uint8 (N, 3, r, r): the split rendered once at data.resolution, area-resized to r, so
    every stage of the cascade sees the same pixels. per_pair: row i is item i of the
    source, as in its embeddings (an image with several captions repeats); else one row per
    distinct image (the upsamplers read no caption)."""
    source = build_source(data_cfg, split)
    if hasattr(source, "images"):  # held in memory: (M, H, W, 3), one row per image
        full = torch.from_numpy(np.asarray(source.images)).permute(0, 3, 1, 2)
    else:
        full = torch.stack([source[i][0] for i in range(len(source))])
        per_pair = False  # already one row per item
    out = [
        resize(to_model(full[i : i + 1024]), resolution).add(1).mul(127.5).round().clamp(0, 255)
        for i in range(0, len(full), 1024)  # chunks: the float copy of 12k 64 px images is 600 MB
    ]
    images = torch.cat(out).to(torch.uint8).contiguous()
    index = getattr(source, "image_index", None)  # bring-your-own sources: pair -> image row
    if per_pair and index is not None:
        images = images[torch.from_numpy(np.asarray(index))]
    return images


def write_grid(
    out_dir: Path, real: Tensor, samples: Tensor, captions: list[str], cols: int = 4, cell: int = 64
) -> Path:
    """samples.png: per held-out caption its real image (left) and the decoding of that
    image's z_i (right), the caption below; samples.txt lists the captions in grid order.
    real: uint8 (K, 3, r, r); samples: float (K, 3, r, r) in [-1, 1]."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = torch.cat([real.to(torch.uint8), to_uint8(samples.cpu())], dim=3)  # (K, 3, r, 2r)
    pairs = torch.nn.functional.interpolate(pairs.float(), size=(cell, 2 * cell), mode="nearest")
    text_h, w = 40, 2 * cell + 8
    rows = -(-len(captions) // cols)
    grid = Image.new("RGB", (cols * w, rows * (cell + text_h)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (img, caption) in enumerate(zip(pairs.to(torch.uint8), captions, strict=True)):
        x, y = (i % cols) * w, (i // cols) * (cell + text_h)
        grid.paste(Image.fromarray(img.permute(1, 2, 0).numpy()), (x, y))
        lines = textwrap.wrap(caption, 22)[:3]  # ~22 characters fit PIL's default font
        draw.text((x + 2, y + cell + 2), "\n".join(lines), fill="black")
    atomic_write(out_dir / GRID_FILE, lambda p: grid.save(p, format="PNG"))
    atomic_write(out_dir / CAPTIONS_FILE, lambda p: p.write_text("\n".join(captions) + "\n"))
    return out_dir / GRID_FILE


@functools.cache
def _tokenizer() -> Any:
    return open_clip.SimpleTokenizer()  # reading its BPE merges takes seconds: build once


# ------------------------------------------------------------------------------- module
def build_unet(cfg: DecoderConfig, clip_dim: int, context_length: int, vocab_size: int) -> UNet:
    text = None
    if cfg.text_cond:
        heads = max(1, cfg.text_width // 32)  # one per 32 channels
        try:
            text = TextEncoder(context_length, cfg.text_width, cfg.text_layers, heads, vocab_size)
        except ArgumentError as err:  # its width is decoder.text_width
            raise ArgumentError("text_width", str(err)) from None
    return UNet(
        channels=cfg.channels, channel_mult=cfg.channel_mult, num_res_blocks=cfg.num_res_blocks,
        resolution=cfg.resolution, attn_resolutions=cfg.attn_resolutions, heads=cfg.heads,
        clip_dim=clip_dim, clip_tokens=cfg.clip_tokens, context_width=cfg.text_width,
        text_encoder=text, coords=cfg.coords,
    )  # fmt: skip


class DecoderStage(pl.LightningModule):
    """(UNet, diffusion) pair; batches are (uint8 images (B,3,r,r), z_i (B,D), tokens (B,L))."""

    def __init__(
        self, cfg: DecoderConfig, clip_dim: int, context_length: int, vocab_size: int = CLIP_VOCAB
    ) -> None:
        super().__init__()
        self.cfg, self.clip_dim = cfg, clip_dim
        self.context_length, self.vocab_size = context_length, vocab_size
        self.net = build_unet(cfg, clip_dim, context_length, vocab_size)
        self.diffusion = GaussianDiffusion(
            betas_for(cfg.schedule, cfg.timesteps), cfg.prediction, snr_gamma=cfg.snr_gamma
        )
        if cfg.clip_null == "learned":
            self.clip_null = nn.Parameter(torch.randn(clip_dim) / clip_dim**0.5)
        else:
            self.register_buffer("clip_null", torch.zeros(clip_dim))

    # ------------------------------------------------------------------- training
    def drop_conditioning(self, z_i: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Null z_i with prob clip_drop and an all-pad caption with prob text_drop, per item."""
        b = z_i.shape[0]
        drop_z = torch.rand(b, device=z_i.device) < self.cfg.clip_drop  # (B,)
        z_i = torch.where(drop_z[:, None], self.clip_null.to(z_i.dtype).expand_as(z_i), z_i)
        drop_y = torch.rand(b, device=tokens.device) < self.cfg.text_drop  # (B,)
        return z_i, tokens.masked_fill(drop_y[:, None], 0)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], _: int) -> Tensor:
        images, z_i, tokens = batch
        z_i, tokens = self.drop_conditioning(z_i.float(), tokens)
        loss = self.diffusion.training_losses(self.net, to_model(images), z_i=z_i, tokens=tokens)
        loss = loss.mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_loss(self, batch: tuple[Tensor, Tensor, Tensor], idx: int = 0) -> Tensor:
        """Conditional loss (no dropout) with t and noise fixed by `idx`, so two evaluations
        differ by the model only."""
        images, z_i, tokens = batch
        x0 = to_model(images.to(self.device))
        g = torch.Generator(device=x0.device).manual_seed(idx)
        loss = self.diffusion.training_losses(self.net, x0, generator=g, z_i=z_i.to(x0),
                                              tokens=tokens.to(self.device))  # fmt: skip
        return loss.mean()

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], idx: int) -> None:
        self.log("val/loss", self.validation_loss(batch, idx), batch_size=len(batch[0]))

    def configure_optimizers(self) -> dict[str, Any]:
        c = self.cfg
        opt = torch.optim.AdamW(self.parameters(), lr=c.lr, weight_decay=0.0)
        return with_schedule(opt, c.train_steps, round(c.lr_warmup * c.train_steps), c.lr_floor)

    # ------------------------------------------------------------------- sampling
    def tokenize(self, captions: list[str]) -> Tensor:
        """open_clip's SimpleTokenizer (that of `arch: custom` and the OpenAI CLIPs); for a
        CLIP with another tokenizer pass its token ids instead of strings."""
        return _tokenizer()(list(captions), context_length=self.context_length)

    def _batch(self, z_i: Tensor | None, captions: Any, noise: Tensor | None) -> int:
        for x in (z_i, captions, noise):
            if x is not None:
                return len(x)
        raise ValueError("pass z_i, captions or noise: the batch size is unknown")

    @torch.inference_mode()
    def sample(
        self,
        z_i: Tensor | None,
        captions: list[str] | Tensor | None,
        guidance_scale: float,
        eta: float,
        steps: int | str,  # K, or "ddimK" (see GaussianDiffusion.respaced)
        noise: Tensor | None = None,
        generator: Noise | torch.Generator | None = None,
        sampler: str = "ddim",
        clip_denoised: bool = True,
    ) -> Tensor:
        """Decode z_i (B, D) (None: the null embedding, the caption_only baseline) and
        captions (strings or (B, L) tokens; None: no caption) -> images (B, 3, r, r) in [-1, 1].

        Guidance (scale != 1) contrasts (z_i, caption) with (null z_i, all-pad caption).
        """
        b, dev, r = self._batch(z_i, captions, noise), self.device, self.cfg.resolution
        null = self.clip_null.detach()
        z = null.expand(b, -1) if z_i is None else z_i.to(dev, torch.float32)
        cond: dict[str, Any] = {"z_i": z.contiguous()}
        uncond: dict[str, Any] = {"z_i": null}
        if self.cfg.text_cond:
            if captions is None:
                tokens = torch.zeros(b, self.context_length, dtype=torch.long)
            elif isinstance(captions, Tensor):
                tokens = captions
            else:
                tokens = self.tokenize(captions)
            cond["tokens"], uncond["tokens"] = tokens.to(dev), torch.zeros_like
        model = self.net if guidance_scale == 1 else guided(self.net, guidance_scale, uncond)
        diffusion = self.diffusion.respaced(steps)
        if sampler not in ("ddim", "ddpm"):
            raise ValueError(f"sampler must be ddim or ddpm, got {sampler!r}")
        # Reconstructing a DDIM-inverted x_T needs clip_denoised=False: inversion never clips.
        kw = {"noise": noise, "generator": generator, "device": dev,
              "clip_denoised": clip_denoised, **cond}  # fmt: skip
        if sampler == "ddim":
            x = diffusion.ddim_sample(model, (b, 3, r, r), eta=eta, **kw)
        else:
            x = diffusion.ddpm_sample(model, (b, 3, r, r), **kw)
        return x.clamp(-1, 1)


# -------------------------------------------------------------------------------- stage
class DecoderRecipe(Recipe):
    """The decoder stage: trained on the train split's images and their z_i under the
    conditioning CLIP (input role "clip"); scores its held-out decodings with the evaluator
    CLIP (role "evaluator"; without one the conditioning CLIP, which flatters it, and the
    metrics say so) and writes a sample grid (samples.png + samples.txt)."""

    def fields(self, cfg: Config) -> dict[str, Any]:
        d = cfg.decoder
        if not d.text_cond:  # no text pathway: its size and drop rate are irrelevant
            return training_fields(d, drop=("text_width", "text_layers", "text_drop"))
        return training_fields(d)

    def build(self, ctx: StageContext, fresh: bool) -> DecoderStage:
        clip = ctx.inputs["clip"]
        return DecoderStage(ctx.cfg.decoder, clip.embed_dim, clip.context_length)

    def prepare(self, ctx: StageContext, decoder: DecoderStage) -> Fit:
        cfg, d = ctx.cfg, ctx.cfg.decoder
        train_emb, val_emb = clip_embeddings(ctx, "train"), clip_embeddings(ctx, "val")
        train_x = stage_images(cfg.data, "train", d.resolution)
        val_x = stage_images(cfg.data, "val", d.resolution)
        train_set, val_set = (
            _pairs(train_emb, train_x, len(train_x)),
            _pairs(val_emb, val_x, VAL_ITEMS),
        )
        loader = DataLoader(train_set, batch_size=min(d.batch_size, len(train_set)), shuffle=True,
                            drop_last=True, num_workers=cfg.train.num_workers)  # fmt: skip
        val = DataLoader(val_set, batch_size=min(d.batch_size, len(val_set)))  # pruning
        kept = {"val_emb": val_emb, "val_x": val_x, "val_set": val_set}
        return Fit(steps=d.train_steps, train=loader, val=val, ema=d.ema, kept=kept)

    def evaluate(self, ctx: StageContext, decoder: DecoderStage, run: FitRun) -> dict[str, Any]:
        with torch.inference_mode():  # once, on the final (EMA) weights
            val_loss = float(decoder.validation_loss(run.kept["val_set"].tensors))
        evaluator = ctx.inputs.get("evaluator")
        metrics = evaluate_decoder(decoder, ctx.cfg, run.kept["val_emb"], run.kept["val_x"],
                                   evaluator or ctx.inputs["clip"], ctx.out,
                                   judge=ctx.inputs.get("judge"))  # fmt: skip
        rate = run.steps * ctx.cfg.decoder.batch_size / max(run.seconds, 1e-9)
        return metrics | {
            "images_per_second": round(rate, 1),
            "val_loss": val_loss,
            "evaluator": "evaluator_clip"
            if evaluator is not None
            else "conditioning_clip (biased)",
        }

    def shape(self, ctx: StageContext) -> dict[str, Any]:
        clip = ctx.inputs["clip"]
        return {"clip_dim": clip.embed_dim, "context_length": clip.context_length,
                "vocab_size": CLIP_VOCAB}  # fmt: skip


def _pairs(emb: Any, images: Tensor, n: int) -> TensorDataset:
    """(uint8 image, z_i, tokens) of the first n items."""
    z = torch.from_numpy(np.array(emb.z_i[:n], dtype=np.float32))
    return TensorDataset(images[:n], z, torch.from_numpy(np.array(emb.tokens[:n])))


def evaluate_decoder(
    decoder: DecoderStage,
    cfg: Config,
    emb: Any,
    images: Tensor,
    evaluator: Any,
    out_dir: Path,
    judge: Any = None,
) -> dict[str, Any]:
    """Decode held-out images' z_i (with their captions); evaluator-CLIP cosine between each
    decoding and its own image vs a shuffled image; with a judge (the metrics suite's
    attribute classifier), the decodings' object recall against their captions, beside the
    same judge's reading of the real images at the decoder's resolution (its ceiling there).
    Also writes the sample grid."""
    d = cfg.decoder
    n = min(EVAL_SAMPLES, len(images))
    g = torch.Generator().manual_seed(cfg.seed)
    z_i = torch.from_numpy(np.array(emb.z_i[:n], dtype=np.float32))
    tokens = torch.from_numpy(np.array(emb.tokens[:n]))
    samples = decoder.sample(z_i, tokens, d.guidance_scale, d.eta, d.steps, generator=g,
                             sampler=d.sampler)  # fmt: skip
    with torch.inference_mode():
        e_s, e_r = evaluator.encode_images(samples), evaluator.encode_images(images[:n])  # (n, D)
    perm = torch.randperm(n, generator=g)
    other = perm[torch.arange(n).add(1) % n]  # a derangement: item perm[k] -> perm[k + 1]
    shuffled_to = torch.empty_like(perm)
    shuffled_to[perm] = other
    matched = (e_s * e_r).sum(1).float()  # (n,)
    shuffled = (e_s * e_r[shuffled_to]).sum(1).float()  # (n,)
    k = min(cfg.sample.grid, n)
    write_grid(out_dir, images[:k], samples[:k], list(emb.captions[:k]))
    se = n**-0.5
    judged: dict[str, Any] = {}
    if judge is not None:
        judged = judge(cfg.data, "val", samples)
        real = judge(cfg.data, "val", images[:n])
        judged |= {f"real_{k}": v for k, v in real.items() if k != "judge"}
    return judged | {
        "clip_cos_matched": float(matched.mean()),
        "clip_cos_matched_se": float(matched.std() * se),
        "clip_cos_shuffled": float(shuffled.mean()),
        "clip_cos_shuffled_se": float(shuffled.std() * se),
        "clip_cos_margin": float((matched - shuffled).mean()),
        "clip_cos_margin_se": float((matched - shuffled).std() * se),  # paired
        "matched_beats_shuffled": float((matched > shuffled).float().mean()),
        "eval_samples": n,
        "guidance_scale": d.guidance_scale,
        "sampling_steps": d.steps,
    }
