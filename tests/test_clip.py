"""CLIP stage contract, training round trip, offline pretrained errors, embedding cache."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import huggingface_hub
import pytest
import torch

from harness.config import ClipConfig, Config, DataConfig
from harness.data import build_source
from harness.embeddings import compute_embeddings
from harness.errors import HarnessError
from harness.stages.clip import ClipStage, load_clip_dir, pretrained_checkpoint, retrieval_top1
from harness.stages.common import seed_all, warmup_cosine
from harness.stages.graph import CLIP, EVAL_CLIP
from harness.stages.stage import StageContext

TINY_CLIP = ClipConfig(
    image_size=8, embed_dim=16, vision_width=16, vision_layers=1, patch_size=4,
    text_width=16, text_layers=1, context_length=16, train_steps=12, batch_size=16, lr=3e-3,
)  # fmt: skip
TINY_DATA = DataConfig(resolution=16, n_train=64, n_val=64, n_test=8)


def tiny_cfg() -> Config:
    cfg = Config(data=TINY_DATA, clip=TINY_CLIP)
    cfg.eval.clip = replace(TINY_CLIP, vision_width=24)
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Config, Path, ClipStage]:
    torch.set_num_threads(1)
    cfg = tiny_cfg()
    out = tmp_path_factory.mktemp("clip")
    return cfg, out, CLIP.train(StageContext(cfg, out))


def test_contract_of_an_untrained_clip() -> None:
    torch.manual_seed(0)
    clip = ClipStage(TINY_CLIP)
    assert (clip.embed_dim, clip.text_width, clip.context_length, clip.image_size) == (
        16, 16, 16, 8,
    )  # fmt: skip
    captions = ["a small red circle in the top left", "a large blue square"]
    tokens = clip.tokenize(captions)
    assert tokens.shape == (2, 16) and tokens.dtype == torch.long
    with torch.no_grad():
        z_t, text_enc, mask = clip.encode_tokens(tokens)
        assert z_t.shape == (2, 16) and text_enc.shape == (2, 16, 16) and mask.dtype == torch.bool
        assert torch.equal(mask, tokens != 0) and mask[:, 0].all() and not mask.all()
        assert torch.allclose(z_t.norm(dim=-1), torch.ones(2))
        # Same z_t as open_clip's own text path, and as encode_text.
        ref = torch.nn.functional.normalize(clip.model.encode_text(tokens), dim=-1)
        assert torch.allclose(z_t, ref, atol=1e-5)
        assert torch.allclose(clip.encode_text(captions), z_t, atol=1e-6)
        images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
        z_i = clip.encode_images(images)
        assert z_i.shape == (3, 16) and torch.allclose(z_i.norm(dim=-1), torch.ones(3))
        # uint8 and the same pixels in [-1, 1] give the same embedding; any input size works.
        as_float = images.float() / 127.5 - 1.0
        assert torch.allclose(clip.encode_images(as_float), z_i, atol=1e-5)
        assert clip.encode_images(torch.zeros(2, 3, 40, 40)).shape == (2, 16)


def test_retrieval_top1_math() -> None:
    z = torch.nn.functional.normalize(torch.randn(128, 8), dim=-1)
    assert retrieval_top1(z, z)["t2i_top1"] == 1.0
    shifted = torch.roll(z, 1, dims=0)  # every caption matched to another pair's image
    metrics = retrieval_top1(shifted, z, batch=64)
    assert metrics["t2i_top1"] < 0.1 and metrics["pairs"] == 128 and metrics["chance"] == 1 / 64
    assert retrieval_top1(z[:100], z[:100])["pairs"] == 64  # the partial batch is dropped
    with pytest.raises(HarnessError):
        retrieval_top1(z[:10], z[:10])


def test_warmup_cosine() -> None:
    f = warmup_cosine(100, warmup=10, floor=0.0)  # CLIP's schedule
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5, abs=0.02) and f(100) == pytest.approx(0.0)
    prior = warmup_cosine(100, warmup=10, floor=0.1)  # the priors': down to 10%
    assert prior(9) == pytest.approx(1.0) and prior(100) == pytest.approx(0.1)
    assert prior(55) == pytest.approx(0.55, abs=0.02)
    constant = warmup_cosine(100)  # the decoder's and the upsamplers'
    assert {constant(step) for step in range(0, 120, 7)} == {1.0}


def test_train_writes_and_load_reads_back(trained) -> None:
    cfg, out, clip = trained
    metrics = json.loads((out / "stage_metrics.json").read_text())
    assert metrics["train_steps"] == TINY_CLIP.train_steps and metrics["stage"] == "clip"
    assert metrics["retrieval_batch"] == 64 and metrics["retrieval_pairs"] == 64
    assert 0.0 <= metrics["val_t2i_top1"] <= 1.0 and 0.0 <= metrics["val_i2t_top1"] <= 1.0
    assert metrics["final_loss"] == pytest.approx(metrics["final_loss"])  # finite, not NaN
    loaded = CLIP.load(StageContext(cfg), out)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(loaded.encode_images(images), clip.encode_images(images))
        seed_all(cfg.seed)  # the initial weights of that training run: training moved them
        initial = ClipStage(cfg.clip).encode_images(images)
        assert not torch.allclose(initial, clip.encode_images(images), atol=1e-3)
    with pytest.raises(HarnessError, match="vision_width"):
        CLIP.load(StageContext(replace(cfg, clip=replace(cfg.clip, vision_width=32))), out)


def test_eval_clip_uses_its_own_config_and_seed(tmp_path: Path) -> None:
    cfg = tiny_cfg()
    cfg.eval.clip = replace(cfg.eval.clip, train_steps=1)
    clip = EVAL_CLIP.train(StageContext(cfg, tmp_path))
    assert clip.model.visual.transformer.width == 24
    metrics = json.loads((tmp_path / "stage_metrics.json").read_text())
    assert metrics["stage"] == "eval_clip" and metrics["seed"] == cfg.eval.clip_seed
    # `score --evaluator DIR`: the folder alone rebuilds it, from the config it recorded
    again = load_clip_dir(tmp_path)
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(again.encode_images(images), clip.encode_images(images))


def test_offline_pretrained_tag_fails_with_the_cache_location(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    cfg = ClipConfig(arch="ViT-B-32", pretrained="laion2b_s34b_b79k")
    with pytest.raises(HarnessError) as err:
        ClipStage(cfg)
    message = str(err.value)
    assert "ViT-B-32" in message and "laion2b_s34b_b79k" in message and str(cache) in message
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in message
    with pytest.raises(HarnessError, match="neither a file nor an open_clip tag"):
        pretrained_checkpoint("ViT-B-32", "no_such_tag")
    # The same tag once its file sits in the Hugging Face cache layout is found there.
    repo = cache / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    weights = repo / "snapshots" / "abc123" / "open_clip_model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"")
    assert Path(pretrained_checkpoint("ViT-B-32", "laion2b_s34b_b79k")) == weights
    local = tmp_path / "mine.pt"
    local.write_bytes(b"")
    assert pretrained_checkpoint("ViT-B-32", str(local)) == str(local)


def count_calls(clip: ClipStage, monkeypatch) -> dict[str, int]:
    calls = {"images": 0, "tokens": 0}
    encode_images, encode_tokens = clip.encode_images, clip.encode_tokens

    def images(x):
        calls["images"] += 1
        return encode_images(x)

    def tokens(t):
        calls["tokens"] += 1
        return encode_tokens(t)

    monkeypatch.setattr(clip, "encode_images", images)
    monkeypatch.setattr(clip, "encode_tokens", tokens)
    return calls


def test_embedding_cache_reused_and_invalidated(trained, tmp_path, monkeypatch) -> None:
    cfg, out, clip = trained
    clip_dir = tmp_path / "clip"
    calls = count_calls(clip, monkeypatch)
    first = compute_embeddings(clip, clip_dir, cfg.data, "val", batch_size=24)
    assert calls == {"images": 3, "tokens": 3}  # 64 pairs in batches of 24
    source = build_source(cfg.data, "val")
    assert len(first) == len(source) == 64 and first.captions == source.captions
    with torch.no_grad():
        image, caption = source[5]
        assert torch.allclose(torch.from_numpy(first.z_i[5].copy()),
                              clip.encode_images(image[None])[0], atol=1e-5)  # fmt: skip
        z_t, text_enc, mask = clip.encode_tokens(clip.tokenize([caption]))
    assert torch.allclose(torch.from_numpy(first.z_t[5].copy()), z_t[0], atol=1e-5)
    assert torch.allclose(torch.from_numpy(first.text_enc[5].astype("float32")), text_enc[0],
                          atol=1e-2)  # fmt: skip
    assert first.text_enc.dtype.name == "float16" and first.tokens.dtype.name == "int64"
    assert (first.text_mask[5] == mask[0].numpy()).all()
    assert list(first.z_i.shape) == [64, 16] and first.text_mask.dtype == bool
    calls.update(images=0, tokens=0)
    second = compute_embeddings(clip, clip_dir, cfg.data, "val", batch_size=24)
    assert calls == {"images": 0, "tokens": 0}  # nothing recomputed
    assert (second.z_i == first.z_i).all() and second.captions == first.captions
    # Another clip_dir, or other weights in the same clip_dir: computed afresh.
    compute_embeddings(clip, tmp_path / "other", cfg.data, "val")
    assert calls["images"] == 1
    other = ClipStage(cfg.clip)
    other_calls = count_calls(other, monkeypatch)
    third = compute_embeddings(other, clip_dir, cfg.data, "val")
    assert other_calls == {"images": 1, "tokens": 1}
    assert not (third.z_i == first.z_i).all()
