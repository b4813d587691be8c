"""AR prior: PCA + quantization round trip, the dot-token percentile rule, causality."""

from __future__ import annotations

import pytest
import torch
from test_prior import make_embeddings, tiny_config

from harness.nets.prior_transformer import ARPriorNet
from harness.stages.prior import tensors
from harness.stages.prior_ar import ARPrior, Quantizer, draw_dot, percentile_floor


def _fit(components: int, buckets: int, n: int = 2000) -> tuple[Quantizer, dict]:
    data = tensors(make_embeddings(n))
    return Quantizer.fit(data["z_i"], data["z_t"], components, buckets), data


def test_pca_quantization_round_trip_is_bounded() -> None:
    q, data = _fit(components=8, buckets=64)
    z = data["z_i"]
    assert q.explained == pytest.approx(1.0, abs=1e-6)  # all 8 of 8 dims kept
    # Each training coordinate decodes to the mean of its own bin, so its error is at most
    # the bin's width (outer bins end at the data's min / max).
    x = q.project(z)  # (N, K)
    codes = q.encode(z)
    lo = torch.cat([x.min(0).values[:, None], q.edges], 1)
    hi = torch.cat([q.edges, x.max(0).values[:, None]], 1)
    width = torch.gather(hi - lo, 1, codes.T).T  # (N, K)
    err = (torch.gather(q.centers, 1, codes.T).T - x).abs()
    assert (err <= width + 1e-6).all()
    # Equal-mass bins: every bucket is used about equally often.
    counts = torch.stack([torch.bincount(c, minlength=64) for c in codes.T])
    assert counts.min() > 0.5 * len(z) / 64
    rt = q.roundtrip(z)
    assert rt["pca_mse"] < 1e-8
    assert 0 < rt["quant_rel_mse"] < 0.01 and rt["quant_cos"] > 0.99
    # Fewer components keep less variance and lose more in the round trip.
    q4, _ = _fit(components=4, buckets=64)
    assert q4.explained < q.explained
    rt4 = q4.roundtrip(z)
    assert rt4["pca_mse"] > 0.05 and rt4["quant_mse"] >= rt4["pca_mse"] - 1e-6
    assert 1 - rt4["quant_rel_mse"] == pytest.approx(q4.explained, abs=0.05)


def test_percentile_floor() -> None:
    probs = torch.tensor([[0.1] * 10, [0.5, 0.3, 0.1, 0.1, 0, 0, 0, 0, 0, 0]])
    assert percentile_floor(probs, 50).tolist() == [4, 0]  # cdf reaches 0.5 at bins 4 and 0
    assert percentile_floor(probs, 0).tolist() == [0, 0]
    assert percentile_floor(probs, 85).tolist() == [8, 2]
    assert percentile_floor(probs, 100).tolist() == [9, 3]  # float cdf 0.9999999 still counts


def test_dot_token_follows_the_percentile_rule() -> None:
    """Draws never fall below the percentile-th quantile bin and, above it, follow the
    predicted distribution renormalised."""
    probs = torch.tensor([0.05, 0.15, 0.2, 0.1, 0.2, 0.05, 0.25])
    logits = probs.log()[None].expand(20000, -1)
    gen = torch.Generator().manual_seed(0)
    draws = draw_dot(logits, percentile=50, temperature=1.0, generator=gen)
    floor = 3  # cdf: .05 .2 .4 .5 -> bin 3 is the 50th percentile
    assert int(draws.min()) == floor
    freq = torch.bincount(draws, minlength=7).float() / len(draws)
    expect = torch.zeros(7)
    expect[floor:] = probs[floor:] / probs[floor:].sum()
    torch.testing.assert_close(freq, expect, rtol=0, atol=0.015)
    # percentile 0 is the whole distribution; temperature 0 the top bin's argmax.
    full = draw_dot(logits, 0.0, 1.0, gen)
    assert int(full.min()) == 0
    assert draw_dot(logits[:2], 50, 0.0).tolist() == [6, 6]


def test_ar_net_is_causal() -> None:
    """The logits for code k+1 never change when code k+1 or a later one changes."""
    torch.manual_seed(0)
    net = ARPriorNet(
        clip_dim=8,
        text_width=8,
        width=16,
        layers=2,
        heads=2,
        context_length=9,
        components=5,
        buckets=11,
    ).eval()
    data = tensors(make_embeddings(3))
    cond = {"z_t": data["z_t"], "text_enc": data["text_enc"], "text_mask": data["text_mask"]}
    dot, codes = torch.randint(0, 11, (3,)), torch.randint(0, 11, (3, 5))
    dl, cl = net(dot, codes, **cond)  # cl (3, 6, 11): entry j predicts code j+1
    for k in range(5):
        changed = codes.clone()
        changed[:, k] = (changed[:, k] + 1) % 11
        dl2, cl2 = net(dot, changed, **cond)
        torch.testing.assert_close(dl2, dl, rtol=0, atol=1e-6)
        torch.testing.assert_close(cl2[:, : k + 1], cl[:, : k + 1], rtol=0, atol=1e-6)
        assert (cl2[:, k + 1 :] - cl[:, k + 1 :]).abs().max() > 1e-4


def test_sampling_is_batched_and_guided() -> None:
    cfg = tiny_config("ar").prior
    stage = ARPrior(cfg, clip_dim=8, text_width=8, context_length=9)
    emb = make_embeddings(300)
    stage.set_train_data(emb, seed=0)
    stage.eval()
    assert stage.train_data["codes"].shape == (300, 8)
    data = tensors(make_embeddings(5, seed=2))
    args = (data["z_t"], data["text_enc"], data["text_mask"])
    a = stage.sample(*args, cfg, generator=torch.Generator().manual_seed(0))
    cfg.guidance_scale = 2.0
    b = stage.sample(*args, cfg, generator=torch.Generator().manual_seed(0))
    assert a.shape == b.shape == (5, 8) and not torch.allclose(a, b)
    torch.testing.assert_close(b.norm(dim=-1), torch.ones(5))
