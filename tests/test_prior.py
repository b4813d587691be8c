"""The prior dispatch (all four prior.kinds) and what both trained priors share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.config import Config
from harness.errors import HarnessError
from harness.registry import PRIOR_KINDS
from harness.stages import stage as stage_module
from harness.stages.graph import PRIOR
from harness.stages.prior import best_of, sample_z_i, tensors, text_length
from harness.stages.stage import StageContext


@dataclass
class FakeEmbeddings:
    """Same attributes as harness.embeddings.Embeddings (the part a prior reads)."""

    z_i: np.ndarray
    z_t: np.ndarray
    text_enc: np.ndarray
    text_mask: np.ndarray

    def __len__(self) -> int:
        return len(self.z_i)


def make_embeddings(
    n: int, dim: int = 8, width: int = 8, length: int = 6, captions: int = 12, seed: int = 0
) -> FakeEmbeddings:
    """Synthetic (caption, image) embeddings with CLIP's structure: each row draws one of
    `captions` contents; z_i varies around it (images of one caption differ), z_t sits near
    it but offset by a shared vector (CLIP's modality gap), so a prior can beat z_t as z_i.
    Caption tokens (variable length, zero padded) are a fixed function of the content."""
    g = torch.Generator().manual_seed(1234)  # the "world" is the same for every split
    proto = torch.randn(captions, dim, generator=g)
    gap = 2.0 * torch.randn(dim, generator=g)
    token_table = torch.randn(captions, length, width, generator=g)
    lengths = torch.randint(2, length + 1, (captions,), generator=g)
    g.manual_seed(seed)
    c = torch.randint(0, captions, (n,), generator=g)
    z_i = F.normalize(proto[c] + 0.4 * torch.randn(n, dim, generator=g), dim=-1)
    z_t = F.normalize(proto[c] + gap + 0.2 * torch.randn(n, dim, generator=g), dim=-1)
    mask = torch.arange(length)[None] < lengths[c][:, None]  # (n, L)
    # Pad past the longest caption, as a real tokenizer's context does.
    pad = 3
    enc = torch.cat([token_table[c] * mask[..., None], torch.zeros(n, pad, width)], 1)
    mask = torch.cat([mask, torch.zeros(n, pad, dtype=torch.bool)], 1)
    return FakeEmbeddings(z_i.numpy(), z_t.numpy(), enc.half().numpy(), mask.numpy())


@dataclass
class FakeClip:
    """What the prior stage reads of its conditioning CLIP: the embedding shapes."""

    embed_dim: int = 8
    text_width: int = 8
    context_length: int = 9  # make_embeddings: 6 caption tokens + 3 padding


def prior_context(cfg: Config, out: Path) -> StageContext:
    return StageContext(cfg, out, inputs={"clip": FakeClip()})


def tiny_config(kind: str, steps: int = 120) -> Config:
    cfg = Config()
    p = cfg.prior
    p.kind, p.width, p.layers, p.heads, p.train_steps, p.batch_size = kind, 32, 1, 2, steps, 64
    p.lr, p.ema, p.timesteps, p.steps = 1e-2, 0.9, 100, 10
    p.ar.components, p.ar.buckets = 8, 16
    cfg.train.threads = 1
    return cfg


def test_sample_z_i_baselines_need_no_prior() -> None:
    data = tensors(make_embeddings(5))
    args = (data["z_t"] * 3, data["text_enc"], data["text_mask"])
    cfg = Config()
    cfg.prior.kind = "caption_only"
    assert sample_z_i(cfg, None, *args) is None
    cfg.prior.kind = "text_embedding"
    z = sample_z_i(cfg, None, *args)
    torch.testing.assert_close(z, data["z_t"])  # z_t, re-normalised
    cfg.prior.kind = "diffusion"
    with pytest.raises(ValueError, match="needs a trained DiffusionPrior"):
        sample_z_i(cfg, None, *args)


def test_prior_kinds_are_registered_in_order() -> None:
    assert PRIOR_KINDS.names()[:4] == ["diffusion", "ar", "caption_only", "text_embedding"]
    assert [PRIOR_KINDS[k].module is not None for k in PRIOR_KINDS.names()[:4]] == [
        True, True, False, False,
    ]  # fmt: skip


def test_best_of_keeps_the_candidate_closer_to_z_t() -> None:
    z_t = F.normalize(torch.randn(6, 4), dim=-1)
    cands = F.normalize(torch.randn(3, 6, 4), dim=-1)
    picked = best_of(cands, z_t)
    dots = (cands * z_t).sum(-1)  # (3, 6)
    for r in range(6):
        c = int(dots[:, r].argmax())
        assert torch.equal(picked[r], cands[c, r])
        assert (picked[r] @ z_t[r]) >= dots[:, r].max() - 1e-6


def test_text_is_trimmed_to_the_longest_caption() -> None:
    emb = make_embeddings(50)
    assert text_length(emb.text_mask) == 6  # the pad columns go
    assert tensors(emb)["text_enc"].shape == (50, 6, 8)


def test_load_prior_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="model.pt"):
        PRIOR.load(prior_context(tiny_config("ar"), tmp_path), tmp_path)


@pytest.mark.parametrize("kind", ["diffusion", "ar"])
def test_both_priors_beat_z_t_as_z_i(kind: str, tmp_path: Path, monkeypatch) -> None:
    """A short run already lands closer to the true z_i than z_t does (the §5.1 baseline)
    and than the caption-blind mean z_i; the artifact reloads to the same samples."""
    train, val = make_embeddings(1500, seed=0), make_embeddings(200, seed=1)
    splits = {"train": train, "val": val}  # in place of a CLIP's embeddings of the data
    monkeypatch.setattr(stage_module, "compute_embeddings", lambda *a: splits[a[3]])
    cfg = tiny_config(kind)
    stage = PRIOR.train(prior_context(cfg, tmp_path))

    m = json.loads((tmp_path / "stage_metrics.json").read_text())
    assert m["kind"] == kind and m["n_val"] == 200
    assert m["cos_prior"] > m["cos_text_embedding"] + 0.08, m
    assert m["cos_prior"] > m["cos_train_mean"] + 0.05, m
    # Samples are about as caption-like as the real images are.
    assert abs(m["dot_samples"] - m["dot_real"]) < 0.25, m

    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    assert payload["fields"]["kind"] == kind and payload["format"] == 2  # the training fields
    loaded = PRIOR.load(prior_context(cfg, tmp_path), tmp_path)
    data = tensors(val)
    args = (data["z_t"][:16], data["text_enc"][:16], data["text_mask"][:16])
    a = sample_z_i(cfg, stage, *args, generator=torch.Generator().manual_seed(3))
    b = sample_z_i(cfg, loaded, *args, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(16))
