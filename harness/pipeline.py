"""unCLIP end to end: caption -> prior -> z_i -> decoder -> upsamplers -> image.

p(x|y) = p(x|z_i, y) p(z_i|y) (Ramesh et al. 2022, eq. 1): the prior samples z_i from the
caption's CLIP text embedding z_t and token encodings; the decoder inverts CLIP's image
encoder; the upsamplers raise the resolution.

Each cached entry point declares what it reads (`Pipeline.READS`): the stages whose weights
and the config paths its output depends on. The runner keys cached samples and variations
by exactly that (`reads_key`), and tests/test_pipeline_reads.py checks each entry point
reads nothing it does not declare and that every sampling knob is declared somewhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .config import Config
from .config.hashing import digest, value_at
from .data.images import resize, to_model
from .diffusion.noise import Noise, NoiseStreams, as_noise
from .stages.graph import CLIP, DECODER, PRIOR, UPSAMPLERS
from .stages.prior import sample_z_i

# Fixed-point iterations per inversion step towards the exact inverse of the eta=0 DDIM step
# (one extra decoder call each). Tiny decoder, 16 px, ddim50: 34.0 dB -> 37.7 dB with 2.
INVERT_REFINE = 2


@dataclass(frozen=True)
class Reads:
    """What an entry point's output depends on: stage names (their keys) and dotted config
    paths (a section covers every field below it)."""

    stages: tuple[str, ...]
    config: tuple[str, ...]


IMAGE_STAGES = (DECODER.name, *(u.name for u in UPSAMPLERS))
# Where a pipeline call draws its noise: common random numbers (NoiseStreams: each stage its
# own stream per caption row) or one torch.Generator shared by every stage in turn.
Rng = NoiseStreams | torch.Generator | None


def stage_noise(rng: Rng, stage: str) -> Noise:
    """The noise source of `stage` for this call."""
    return rng.stage(stage) if isinstance(rng, NoiseStreams) else as_noise(rng)


# Sampling knobs no cached entry point reads (each must say why); none today.
UNUSED_KNOBS: dict[str, str] = {}


@dataclass
class Pipeline:
    cfg: Config
    clip: Any  # ClipStage: the conditioning CLIP
    prior: Any | None  # PriorStage, or None for the no-prior baselines
    decoder: Any  # DecoderStage
    upsamplers: list[Any] = field(default_factory=list)  # UpsamplerStage, low to high

    READS = {
        # captions -> images: the prior kind's knobs, the decoder's and the cascade's
        "generate": Reads(
            (CLIP.name, PRIOR.name, *IMAGE_STAGES),
            ("prior", "decoder", "upsamplers", "sample.seed"),
        ),
        # Unguided DDIM over ddim{decoder.steps} at variation_eta: the decoder's guidance
        # scale, eta and sampler do not reach it, so arms over those share variations.
        "vary": Reads(
            (CLIP.name, *IMAGE_STAGES),
            ("decoder.steps", "upsamplers", "sample.variation_eta", "sample.seed"),
        ),
    }

    def prior_z_i(
        self, z_t: Tensor, text_enc: Tensor, text_mask: Tensor, rng: Rng
    ) -> Tensor | None:
        """(B, D) z_i for the captions (None: the decoder's null z_i, `caption_only`)."""
        noise = stage_noise(rng, PRIOR.name)
        return sample_z_i(self.cfg, self.prior, z_t, text_enc, text_mask, generator=noise)

    def decode(
        self,
        z_i: Tensor | None,
        tokens: Tensor | None,
        rng: Rng,
        noise: Tensor | None = None,
        eta: float | None = None,
    ) -> Tensor:
        """z_i (B, D) [+ caption tokens (B, L)] -> decoder-resolution images (B, 3, r, r)."""
        d = self.cfg.decoder
        return self.decoder.sample(
            z_i,
            tokens,
            d.guidance_scale,
            d.eta if eta is None else eta,
            d.steps,
            noise=noise,
            generator=stage_noise(rng, DECODER.name),
            sampler=d.sampler,
        )

    def upsample(self, x: Tensor, rng: Rng) -> Tensor:
        """Run the cascade: (B, 3, r, r) -> (B, 3, R, R) in [-1, 1], each upsampler with
        the sampling knobs of this config's section (a module is shared by every arm with
        its stage key, whatever steps and eta those arms sample with)."""
        stages = [s for s in UPSAMPLERS if s.enabled(self.cfg)]
        for up, stage in zip(self.upsamplers, stages, strict=True):
            knobs = stage.recipe.config(self.cfg)
            x = up.sample(x, knobs.steps, knobs.eta, generator=stage_noise(rng, stage.name))
        return x

    def generate(
        self,
        z_t: Tensor,
        text_enc: Tensor,
        text_mask: Tensor,
        tokens: Tensor,
        rng: Rng,
    ) -> dict[str, Tensor | None]:
        """Captions (as CLIP encodings and tokens) -> z_i, the decoder's image, the final one.
        With NoiseStreams every stage draws from its own per-caption stream, so arms that
        differ only upstream of a stage share that stage's noise."""
        z_i = self.prior_z_i(z_t, text_enc, text_mask, rng)
        low = self.decode(z_i, tokens, rng)
        return {"z_i": z_i, "low": low, "images": self.upsample(low, rng)}

    @property
    def latent_steps(self) -> str:
        """The respacing shared by DDIM inversion and decoding from an inverted x_T:
        stride T/K ("ddimK"), whose top step stays below t = T-1. At T-1 the cosine schedule
        has abar ~ 2e-9, so x0 = (x_T - sigma eps) / alpha magnifies any eps mismatch ~2e4
        and the inversion cannot be undone."""
        return f"ddim{self.cfg.decoder.steps}"

    @torch.inference_mode()
    def invert(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The bipartite latent (z_i, x_T) of images (uint8 (B, 3, H, W)) by DDIM inversion
        of the decoder conditioned on z_i (and the empty caption: a user image has none)."""
        d = self.decoder
        z_i = self.clip.encode_images(images).float()  # (B, D)
        x0 = resize(to_model(images).to(d.device), d.cfg.resolution)  # (B, 3, r, r)
        cond: dict[str, Tensor] = {"z_i": z_i.to(d.device)}
        if d.cfg.text_cond:
            cond["tokens"] = torch.zeros(
                len(x0), d.context_length, dtype=torch.long, device=d.device
            )
        diffusion = d.diffusion.respaced(self.latent_steps)
        return z_i, diffusion.ddim_invert(d.net, x0, refine=INVERT_REFINE, **cond)

    def decode_latent(self, z_i: Tensor, x_t: Tensor, eta: float, rng: Rng) -> Tensor:
        """Decode (z_i (B, D), inverted x_T (B, 3, r, r)) unguided, as inverted, over the same
        respacing; eta = 0 reconstructs. Then the upsampler cascade -> (B, 3, R, R).
        No x0 clipping: the inversion never clipped (measured 34.0 dB without, 23.0 with)."""
        low = self.decoder.sample(
            z_i,
            None,
            1.0,
            eta,
            self.latent_steps,
            noise=x_t,
            generator=stage_noise(rng, DECODER.name),
            clip_denoised=False,
        )
        return self.upsample(low, rng)

    def vary(self, images: Tensor, n: int, eta: float | None, rng: Rng) -> Tensor:
        """n variations of each image: decode its inverted (z_i, x_T) with DDIM at `eta`
        (None: sample.variation_eta; 0 reconstructs). -> (B, n, 3, R, R) in [-1, 1].
        With NoiseStreams, pass B n rows: variation k of image b is row b n + k."""
        eta = self.cfg.sample.variation_eta if eta is None else eta
        z_i, x_t = self.invert(images)
        z = z_i.repeat_interleave(n, dim=0)  # (B n, D)
        noise = x_t.repeat_interleave(n, dim=0)  # (B n, 3, r, r)
        out = self.decode_latent(z, noise, eta, rng)
        return out.reshape(len(images), n, *out.shape[1:])


def reads_key(entry: str, cfg: Config, keys: dict[str, str | None], *extra: Any) -> str:
    """Cache key of an entry point's output: what it declares it reads, plus `extra` (what
    the caller decides: split, sample count, batch size, seed...)."""
    reads = Pipeline.READS[entry]
    values = {p: _plain(value_at(cfg, p)) for p in reads.config}
    return digest(entry, {s: keys.get(s) for s in reads.stages}, values, *extra)


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
