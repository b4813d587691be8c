"""The diffusion upsampler stages: crops, residual sampling, PSNR metric, train/load."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from harness.config import Config, UpsamplerConfig
from harness.data.images import resize
from harness.errors import HarnessError
from harness.stages.graph import UPSAMPLER1, UPSAMPLER2
from harness.stages.stage import StageContext
from harness.stages.upsampler import UpsamplerStage, crop_size, psnr, random_crops

STAGE = {"first": UPSAMPLER1, "second": UPSAMPLER2}

TINY = dict(resolution=16, channels=8, channel_mult=[1, 2], timesteps=50, batch_size=8,
            steps=3, train_steps=3)  # fmt: skip


def test_crops_are_aligned_and_sized() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 3, 16, 16)
    cx, cl = random_crops(x, x + 1.0, 4)
    assert cx.shape == (5, 3, 4, 4)
    torch.testing.assert_close(cl, cx + 1.0)  # the same window of target and condition
    starts = {(int(torch.nonzero(x[i, 0] == cx[i, 0, 0, 0])[0, 0])) for i in range(5)}
    assert len(starts) > 1  # windows differ per item
    assert crop_size(UpsamplerConfig(resolution=32, crop_fraction=0.25), 2) == 8
    assert crop_size(UpsamplerConfig(resolution=64, crop_fraction=0.25), 4) == 16
    assert crop_size(UpsamplerConfig(resolution=32, crop_fraction=0.0), 2) == 32


def test_input_resolution_follows_the_cascade() -> None:
    cfg = Config()
    low = {name: s.recipe.low_resolution for name, s in STAGE.items()}
    assert low["first"](cfg) == cfg.decoder.resolution
    assert low["second"](cfg) == cfg.upsamplers.first.resolution
    off = replace(cfg, upsamplers=replace(cfg.upsamplers, first=replace(
        cfg.upsamplers.first, enabled=False)))  # fmt: skip
    assert low["second"](off) == cfg.decoder.resolution
    assert not UPSAMPLER1.enabled(off) and UPSAMPLER2.enabled(off)


def test_untrained_x0_upsampler_returns_bicubic_and_trained_ones_differ() -> None:
    # The diffusion runs over the residual from bicubic; a zero-initialised x0 net predicts
    # a zero residual, so sampling gives exactly the bicubic upsampling.
    up = UpsamplerStage(UpsamplerConfig(**TINY, prediction="x0"), low_resolution=8)
    low = torch.rand(2, 3, 8, 8) * 2 - 1
    out = up.sample(low, steps=3, eta=0.0, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 16, 16)
    torch.testing.assert_close(out, resize(low, 16).clamp(-1, 1))
    for p in up.net.out.parameters():
        p.data.normal_(0, 0.1)
    assert not torch.allclose(up.sample(low, 3, 0.0, noise=torch.randn(2, 3, 16, 16)), out)
    with pytest.raises(ValueError, match="8 px"):
        up.sample(torch.zeros(1, 3, 4, 4), 3, 0.0)


def test_psnr() -> None:
    a = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    b = a.clone()
    b[0] += 10  # MSE 100 -> 10 log10(255^2 / 100)
    assert psnr(a, b)[0].item() == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr(a, b)[1].item() > 90  # identical images: capped, not infinite


@pytest.mark.parametrize("which", ["first", "second"])
def test_train_and_load(tmp_path, which: str) -> None:
    cfg = Config()
    cfg.data = replace(cfg.data, resolution=32, n_train=32, n_val=8, n_test=8)
    cfg.decoder = replace(cfg.decoder, resolution=8)
    first = UpsamplerConfig(**TINY, degradation="blur")
    second = UpsamplerConfig(**{**TINY, "resolution": 32}, degradation="bsr")
    cfg.upsamplers = replace(cfg.upsamplers, first=first, second=second)
    stage = STAGE[which].train(StageContext(cfg, tmp_path))
    m = json.loads((tmp_path / "stage_metrics.json").read_text())
    assert m["train_steps"] == 3 and m["eval_images"] == 8 and m["stage"] == STAGE[which].name
    assert m["psnr_bicubic"] > 10 and math.isfinite(m["psnr"]) and math.isfinite(m["val_loss"])
    assert m["input_resolution"] == {"first": 8, "second": 16}[which]
    loaded = STAGE[which].load(StageContext(cfg), tmp_path)
    low, noise = torch.rand(2, 3, stage.low_resolution, stage.low_resolution), None
    noise = torch.randn(2, 3, stage.cfg.resolution, stage.cfg.resolution)
    torch.testing.assert_close(stage.sample(low, 3, 0.0, noise=noise),
                               loaded.sample(low, 3, 0.0, noise=noise))  # fmt: skip
    other = replace(getattr(cfg.upsamplers, which), channels=16)
    with pytest.raises(HarnessError, match="channels"):
        changed = replace(cfg, upsamplers=replace(cfg.upsamplers, **{which: other}))
        STAGE[which].load(StageContext(changed), tmp_path)
