"""The GLIDE-style UNet, its text encoder and the conditioning-image degradations."""

from __future__ import annotations

import pytest
import torch

from harness.degradations import bsr, degrade, gaussian_blur
from harness.nets.text_encoder import TextEncoder
from harness.nets.unet import UNet


def decoder_net(text: bool = True, **kw) -> UNet:
    enc = (
        TextEncoder(context_length=8, width=16, layers=1, heads=2, vocab_size=50) if text else None
    )
    args = dict(
        channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        resolution=8,
        attn_resolutions=(4,),
        heads=2,
        clip_dim=6,
        clip_tokens=4,
        context_width=16,
    )
    return UNet(**{**args, **kw}, text_encoder=enc)


def perturb(net: UNet) -> None:
    # Zero-initialised output layers hide every dependence at init; randomise them.
    torch.manual_seed(1)
    for p in net.parameters():
        p.data.normal_(0, 0.3)


def test_shapes_and_conditioning_paths() -> None:
    net = decoder_net()
    perturb(net)
    x, t = torch.randn(3, 3, 8, 8), torch.tensor([0, 10, 999])
    z, tokens = torch.randn(3, 6), torch.tensor([[1, 5, 2, 0, 0, 0, 0, 0]] * 3)
    out = net(x, t, z_i=z, tokens=tokens)
    assert out.shape == (3, 3, 8, 8)
    assert not torch.allclose(out, net(x, t, z_i=z + 1, tokens=tokens))  # z_i matters
    other = tokens.clone()
    other[:, 1] = 7
    assert not torch.allclose(out, net(x, t, z_i=z, tokens=other))  # the caption matters
    with pytest.raises(ValueError, match="tokens"):
        net(x, t, z_i=z)


def test_coordinate_channels_reach_the_input_conv() -> None:
    """coords=True: the first conv reads x_t plus each pixel's (row, column) in [-1, 1]."""
    net = decoder_net(coords=True)
    seen = []
    net.input.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    x = torch.randn(2, 3, 8, 8)
    net(x, torch.tensor([3, 500]), z_i=torch.randn(2, 6), tokens=torch.ones(2, 8).long())
    (inp,) = seen
    assert inp.shape == (2, 5, 8, 8) and torch.equal(inp[:, :3], x)
    row, col = inp[:, 3], inp[:, 4]
    ramp = torch.linspace(-1, 1, 8)
    assert torch.equal(row, ramp[None, :, None].expand(2, 8, 8))
    assert torch.equal(col, ramp[None, None, :].expand(2, 8, 8))
    assert decoder_net().input.in_channels == 3


def test_padding_does_not_change_the_output_and_dropped_caption_is_finite() -> None:
    net = decoder_net()
    perturb(net)
    x, t, z = torch.randn(2, 3, 8, 8), torch.tensor([5, 500]), torch.randn(2, 6)
    short = torch.tensor([[1, 5, 2, 0, 0, 0], [1, 9, 2, 0, 0, 0]])
    long = torch.cat([short, torch.zeros(2, 2, dtype=torch.long)], dim=1)
    torch.testing.assert_close(net(x, t, z_i=z, tokens=short), net(x, t, z_i=z, tokens=long))
    dropped = net(x, t, z_i=z, tokens=torch.zeros(2, 8, dtype=torch.long))
    assert torch.isfinite(dropped).all()
    # a dropped (all-pad) caption is fully masked: which pad length it has is irrelevant
    torch.testing.assert_close(dropped, net(x, t, z_i=z, tokens=torch.zeros(2, 4).long()))


def test_items_are_independent() -> None:
    net = decoder_net()
    perturb(net)
    x, t, z = torch.randn(4, 3, 8, 8), torch.tensor([1, 2, 3, 4]), torch.randn(4, 6)
    tokens = torch.randint(1, 50, (4, 8))
    full = net(x, t, z_i=z, tokens=tokens)
    torch.testing.assert_close(full[2:], net(x[2:], t[2:], z_i=z[2:], tokens=tokens[2:]))


def test_text_pathway_can_be_switched_off() -> None:
    net = decoder_net(text=False)
    assert net.text_encoder is None
    out = net(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), z_i=torch.randn(2, 6))
    assert out.shape == (2, 3, 8, 8)


def test_upsampler_net_is_fully_convolutional() -> None:
    net = UNet(channels=8, channel_mult=(1, 2), num_res_blocks=1, resolution=16, low_channels=3)
    assert not any("Attention" in type(m).__name__ for m in net.modules())
    for size in (4, 8, 16):  # trained on crops, sampled on whole images
        x = torch.randn(2, 3, size, size)
        assert net(x, torch.tensor([3, 4]), low=x).shape == (2, 3, size, size)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 3, 5, 5), torch.tensor([1]), low=torch.randn(1, 3, 5, 5))


def test_blur_matches_the_paper_kernel() -> None:
    x = torch.zeros(1, 3, 7, 7)
    x[..., 3, 3] = 1.0
    y = gaussian_blur(x, 0.6, kernel=3)
    g = torch.exp(-torch.tensor([1.0, 0.0, 1.0]) / (2 * 0.6**2))
    k = torch.outer(g, g) / torch.outer(g, g).sum()  # kernel 3, sigma 0.6
    torch.testing.assert_close(y[0, 0, 2:5, 2:5], k)
    assert y.sum().item() == pytest.approx(3.0, abs=1e-5)  # blur preserves mass


def test_bsr_is_random_and_keeps_shape_and_range() -> None:
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    a = bsr(x, torch.Generator().manual_seed(0))
    b = bsr(x, torch.Generator().manual_seed(0))
    c = bsr(x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert not torch.allclose(a, c) and not torch.allclose(a, x)
    assert torch.equal(degrade(x, "none"), x)
    with pytest.raises(ValueError):
        degrade(x, "fog")
