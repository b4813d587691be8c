"""The unCLIP decoder stage: conditioning dropout, guided batched sampling, train/load."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from harness.config import ClipConfig, Config, DecoderConfig
from harness.errors import HarnessError
from harness.stages.clip import ClipStage
from harness.stages.decoder import DecoderStage
from harness.stages.graph import DECODER
from harness.stages.stage import StageContext

TINY = dict(resolution=8, channels=8, channel_mult=[1, 2], attn_resolutions=[4], heads=2,
            text_width=16, text_layers=1, timesteps=50, batch_size=8, steps=3)  # fmt: skip


def stage(**kw) -> DecoderStage:
    torch.manual_seed(0)
    dec = DecoderStage(DecoderConfig(**{**TINY, **kw}), clip_dim=6, context_length=8)
    for p in dec.net.parameters():  # leave the zero-initialised output: outputs must vary
        p.data.normal_(0, 0.2)
    return dec


def test_conditioning_dropout() -> None:
    z, tokens = torch.randn(64, 6), torch.randint(1, 100, (64, 8))
    dec = stage(clip_drop=1.0, text_drop=0.0)
    z2, t2 = dec.drop_conditioning(z, tokens)
    assert torch.equal(z2, torch.zeros_like(z)) and torch.equal(t2, tokens)
    dec = stage(clip_drop=0.0, text_drop=1.0)
    z2, t2 = dec.drop_conditioning(z, tokens)
    assert torch.equal(z2, z) and (t2 == 0).all()
    dec = stage(clip_drop=0.5, text_drop=0.5, clip_null="learned")
    torch.manual_seed(3)
    z2, t2 = dec.drop_conditioning(z, tokens)
    dropped = (z2 == dec.clip_null).all(1)
    assert 10 < int(dropped.sum()) < 54 and 10 < int((t2 == 0).all(1).sum()) < 54
    assert isinstance(dec.clip_null, torch.nn.Parameter)


def test_training_levers_reach_the_optimizer_diffusion_and_net() -> None:
    """decoder.lr_warmup / lr_floor shape the LR per step; snr_gamma and coords reach the
    diffusion and the UNet (the defaults: a constant LR, unweighted loss, no coordinates)."""
    dec = stage(train_steps=100, lr=1e-3, lr_warmup=0.1, lr_floor=0.0, snr_gamma=5.0,
                coords=True)  # fmt: skip
    sched = dec.configure_optimizers()["lr_scheduler"]["scheduler"]
    factor = sched.lr_lambdas[0]
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5) and factor(100) == pytest.approx(0.0)
    assert dec.diffusion.snr_gamma == 5.0 and dec.net.input.in_channels == 5
    plain = stage(train_steps=100)
    assert all(plain.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0](k) == 1
               for k in (0, 50, 99))  # fmt: skip
    assert plain.diffusion.snr_gamma == 0 and plain.net.input.in_channels == 3


def test_learned_null_embedding_is_trained() -> None:
    dec = stage(clip_drop=1.0, clip_null="learned")
    batch = (torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8), torch.randn(4, 6),
             torch.randint(1, 100, (4, 8)))  # fmt: skip
    dec.training_step(batch, 0).backward()
    assert dec.clip_null.grad is not None and dec.clip_null.grad.abs().sum() > 0


def test_sampling_is_batched_guided_and_reproducible() -> None:
    dec = stage()
    z, noise = torch.randn(3, 6), torch.randn(3, 3, 8, 8)
    caps = ["a red circle", "a blue square", "a small green diamond"]
    a = dec.sample(z, caps, guidance_scale=2.0, eta=0.0, steps=3, noise=noise)
    assert a.shape == (3, 3, 8, 8) and a.abs().max() <= 1
    # an item's sample does not depend on the rest of the batch
    one = dec.sample(z[1:2], caps[1:2], guidance_scale=2.0, eta=0.0, steps=3, noise=noise[1:2])
    torch.testing.assert_close(a[1:2], one, atol=1e-5, rtol=1e-5)
    b = dec.sample(z, caps, guidance_scale=1.0, eta=0.0, steps=3, noise=noise)
    assert not torch.allclose(a, b)  # guidance changes the result
    baseline = dec.sample(None, caps, guidance_scale=2.0, eta=0.0, steps=3, noise=noise)
    assert not torch.allclose(a, baseline)  # caption_only: z_i is the null embedding
    g = torch.Generator().manual_seed(0)
    c = dec.sample(z, caps, 2.0, eta=1.0, steps=3, generator=g, sampler="ddpm")
    d = dec.sample(z, caps, 2.0, eta=1.0, steps=3, generator=torch.Generator().manual_seed(0),
                   sampler="ddpm")  # fmt: skip
    torch.testing.assert_close(c, d)
    no_text = stage(text_cond=False)
    assert no_text.net.text_encoder is None
    assert no_text.sample(z, None, 1.5, 0.0, 3, noise=noise).shape == (3, 3, 8, 8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg = Config()
    cfg.data = replace(cfg.data, resolution=16, n_train=48, n_val=24, n_test=8)
    cfg.clip = ClipConfig(image_size=16, embed_dim=16, vision_width=32, vision_layers=1,
                          patch_size=8, text_width=32, text_layers=1, context_length=16,
                          train_steps=0)  # fmt: skip
    cfg.decoder = DecoderConfig(**{**TINY, "train_steps": 3})
    cfg.sample = replace(cfg.sample, grid=4)
    torch.manual_seed(0)
    clip = ClipStage(cfg.clip).eval().requires_grad_(False)  # untrained is enough for wiring
    root = tmp_path_factory.mktemp("decoder")
    ctx = StageContext(cfg, root / "dec", inputs={"clip": clip}, dirs={"clip": root / "clip"})
    return cfg, clip, DECODER.train(ctx), root / "dec"


def load_decoder(out, cfg: Config, clip: ClipStage) -> DecoderStage:
    return DECODER.load(StageContext(cfg, inputs={"clip": clip}), out)


def test_train_decoder_writes_its_artifacts(trained) -> None:
    cfg, _, dec, out = trained
    metrics = json.loads((out / "stage_metrics.json").read_text())
    assert metrics["train_steps"] == 3 and metrics["eval_samples"] == 24
    for key in ("clip_cos_matched", "clip_cos_shuffled"):
        assert -1.0 <= metrics[key] <= 1.0
    assert metrics["val_loss"] > 0 and metrics["images_per_second"] > 0
    assert metrics["evaluator"].startswith("conditioning_clip")
    assert (out / "samples.png").stat().st_size > 0
    assert len((out / "samples.txt").read_text().splitlines()) == 4


def test_load_decoder_round_trip(trained) -> None:
    cfg, clip, dec, out = trained
    loaded = load_decoder(out, cfg, clip)
    z, noise = torch.randn(2, clip.embed_dim), torch.randn(2, 3, 8, 8)
    caps = ["a red circle in the top", "a blue square in the center"]
    torch.testing.assert_close(dec.sample(z, caps, 1.25, 0.0, 3, noise=noise),
                               loaded.sample(z, caps, 1.25, 0.0, 3, noise=noise))  # fmt: skip
    knobs = replace(cfg, decoder=replace(cfg.decoder, guidance_scale=3.0, steps=7))
    load_decoder(out, knobs, clip)  # sampling knobs never block loading
    with pytest.raises(HarnessError, match="channels"):
        load_decoder(out, replace(cfg, decoder=replace(cfg.decoder, channels=16)), clip)
    with pytest.raises(HarnessError, match="clip_dim"):  # built for another CLIP
        load_decoder(out, cfg, ClipStage(replace(cfg.clip, embed_dim=8)))
    with pytest.raises(HarnessError, match="missing"):
        load_decoder(out / "nowhere", cfg, clip)


def test_stage_images_pair_with_the_embeddings_rows(tmp_path) -> None:
    """A folder image with two captions is two pairs: the decoder's image rows follow the
    pairs (as its z_i rows do), the upsamplers' follow the distinct images."""
    from PIL import Image

    from harness.config import DataConfig
    from harness.data import build_source
    from harness.stages.decoder import stage_images

    lines = []
    for i in range(40):
        Image.new("RGB", (8, 8), (6 * i, 255 - 6 * i, 40)).save(tmp_path / f"{i:03d}.png")
        lines += [json.dumps({"file": f"{i:03d}.png", "caption": f"{c} {i}"}) for c in "ab"]
    (tmp_path / "captions.jsonl").write_text("\n".join(lines) + "\n")
    cfg = DataConfig(source="folder", path=str(tmp_path), resolution=8, n_train=64)
    source = build_source(cfg, "train")
    pairs, images = stage_images(cfg, "train", 8), stage_images(cfg, "train", 8, per_pair=False)
    assert len(pairs) == len(source) == 2 * len(images)
    for k in range(len(source)):
        assert torch.equal(pairs[k], source[k][0])  # same size: the resize is exact
