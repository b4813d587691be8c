"""Tiny untrained unCLIP setups for tests that exercise sampling code paths, not quality."""

from __future__ import annotations

import numpy as np
import torch

from harness.config import ClipConfig, Config, DataConfig, DecoderConfig, PriorConfig
from harness.config.schema import ARPriorConfig, UpsamplerConfig, UpsamplersConfig
from harness.pipeline import Pipeline
from harness.registry import PRIOR_KINDS
from harness.stages.clip import ClipStage
from harness.stages.decoder import DecoderStage
from harness.stages.upsampler import UpsamplerStage

UP = dict(channels=8, channel_mult=[1, 2], timesteps=20, steps=2)


def tiny_config(kind: str) -> Config:
    return Config(
        data=DataConfig(resolution=32),
        clip=ClipConfig(image_size=8, embed_dim=16, vision_width=16, vision_layers=1,
                        patch_size=4, text_width=16, text_layers=1, context_length=12),
        prior=PriorConfig(kind=kind, width=16, layers=1, heads=2, timesteps=20, steps=2,
                          ar=ARPriorConfig(components=4, buckets=4)),
        decoder=DecoderConfig(resolution=8, channels=8, channel_mult=[1, 2],
                              attn_resolutions=[4], heads=2, text_width=16, text_layers=1,
                              timesteps=20, steps=2),
        upsamplers=UpsamplersConfig(first=UpsamplerConfig(resolution=16, **UP),
                                    second=UpsamplerConfig(resolution=32, **UP)),
    )  # fmt: skip


class Embeddings:
    def __init__(self, n: int, dim: int, length: int) -> None:
        g = np.random.default_rng(0)
        self.z_i = g.normal(size=(n, dim)).astype(np.float32)
        self.z_t = g.normal(size=(n, dim)).astype(np.float32)
        self.text_enc = g.normal(size=(n, length, dim)).astype(np.float16)
        self.text_mask = np.ones((n, length), bool)


def pipeline(cfg: Config) -> Pipeline:
    torch.manual_seed(0)
    clip = ClipStage(cfg.clip).eval()
    prior = None
    module = PRIOR_KINDS[cfg.prior.kind].module
    if module is not None:
        prior = module(cfg.prior, clip.embed_dim, clip.text_width, clip.context_length)
        prior.set_train_data(Embeddings(64, clip.embed_dim, clip.context_length), 0)
        prior.eval()
    decoder = DecoderStage(cfg.decoder, clip.embed_dim, clip.context_length).eval()
    ups = [UpsamplerStage(cfg.upsamplers.first, 8).eval(),
           UpsamplerStage(cfg.upsamplers.second, 16).eval()]  # fmt: skip
    return Pipeline(cfg, clip, prior, decoder, ups)
