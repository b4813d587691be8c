"""Diffusion prior: causality of its Transformer, the guidance null, and best-of-N sampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from test_prior import make_embeddings, tiny_config

from harness.nets.prior_transformer import CausalTransformer, DiffusionPriorNet
from harness.stages.prior import tensors
from harness.stages.prior_diffusion import DiffusionPrior


def test_causal_mask_is_causal() -> None:
    """Changing position k changes no output before k, and does change k and later."""
    torch.manual_seed(0)
    net = CausalTransformer(width=16, layers=2, heads=2).eval()
    x = torch.randn(2, 7, 16)
    valid = torch.ones(2, 7, dtype=torch.bool)
    base = net(x, valid)
    for k in range(7):
        y = x.clone()
        y[:, k] += torch.randn(2, 16)
        out = net(y, valid)
        torch.testing.assert_close(out[:, :k], base[:, :k], rtol=0, atol=1e-6)
        assert (out[:, k:] - base[:, k:]).abs().amax(-1).min() > 1e-4


def _net_and_inputs(b: int = 4):
    torch.manual_seed(0)
    net = DiffusionPriorNet(
        clip_dim=8, text_width=8, width=16, layers=2, heads=2, context_length=9
    ).eval()
    data = tensors(make_embeddings(b))
    cond = {"z_t": data["z_t"], "text_enc": data["text_enc"], "text_mask": data["text_mask"]}
    return net, torch.randn(b, 8), torch.full((b,), 500), cond


def test_padding_and_dropped_caption_are_never_read() -> None:
    net, x, t, cond = _net_and_inputs()
    out = net(x, t, **cond)
    # Garbage in padded token slots, and extra all-padding columns: same output.
    junk = cond["text_enc"] + 5 * (~cond["text_mask"])[..., None] * torch.randn_like(
        cond["text_enc"]
    )
    longer = {
        **cond,
        "text_enc": F.pad(junk, (0, 0, 0, 3), value=7.0),
        "text_mask": F.pad(cond["text_mask"], (0, 3)),
    }
    torch.testing.assert_close(net(x, t, **longer), out, rtol=0, atol=1e-5)
    # With the caption dropped (the guidance null), neither the tokens nor z_t matter.
    keep = torch.zeros(4, dtype=torch.bool)
    null = net(x, t, **cond, keep=keep)
    other = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in cond.items()}
    torch.testing.assert_close(net(x, t, **other, keep=keep), null, rtol=0, atol=1e-5)
    assert (null - out).abs().max() > 1e-3


def test_best_of_two_picks_the_larger_dot_product() -> None:
    """Candidate 0 of a best-of-2 draw is the best-of-1 sample (same noise stream): the kept
    z_i is never less caption-like than it, and it is one of the two candidates."""
    cfg = tiny_config("diffusion").prior
    stage = DiffusionPrior(cfg, clip_dim=8, text_width=8, context_length=9).eval()
    data = tensors(make_embeddings(6))
    args = (data["z_t"], data["text_enc"], data["text_mask"])
    cfg.candidates, cfg.steps = 1, 5
    one = stage.sample(*args, cfg, generator=torch.Generator().manual_seed(0))
    cfg.candidates = 2
    two = stage.sample(*args, cfg, generator=torch.Generator().manual_seed(0))
    z_t = data["z_t"]
    assert ((two * z_t).sum(-1) >= (one * z_t).sum(-1) - 1e-5).all()
    assert not torch.allclose(one, two)  # the second candidate won somewhere
    torch.testing.assert_close(two.norm(dim=-1), torch.ones(6))


def test_guided_sampling_runs_and_differs_from_unguided() -> None:
    cfg = tiny_config("diffusion").prior
    stage = DiffusionPrior(cfg, clip_dim=8, text_width=8, context_length=9).eval()
    data = tensors(make_embeddings(3))
    args = (data["z_t"], data["text_enc"], data["text_mask"])
    cfg.candidates, cfg.steps = 1, 4
    plain = stage.sample(*args, cfg, generator=torch.Generator().manual_seed(0))
    cfg.guidance_scale = 3.0
    pushed = stage.sample(*args, cfg, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(pushed).all() and not torch.allclose(plain, pushed)
