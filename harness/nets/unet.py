"""GLIDE-style diffusion UNet, used by the unCLIP decoder and (without conditioning) the
upsamplers.

Decoder (Ramesh et al. 2022, §2.1): the CLIP image embedding z_i is (a) projected and added
to the timestep embedding and (b) projected into `clip_tokens` extra context tokens that are
concatenated to the outputs of a small text encoder over the caption. Attention blocks at
the low resolutions attend over [context; image] jointly, as GLIDE's encoder_kv does.

Upsampler: the bicubically upsampled low-resolution image is concatenated to x_t as extra
input channels; no z_i, no caption, no attention, so the net is fully convolutional and a
model trained on crops samples whole images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ArgumentError
from .text_encoder import TextEncoder, token_mask


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of timesteps t (B,) -> (B, dim) (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def trim_padding(tokens: Tensor) -> Tensor:
    """(B, L) ids -> (B, L'): drop the trailing columns that are padding in every row.

    Padding is masked wherever it is read (as keys in the text encoder, in the UNet's
    attention), so the output is unchanged up to float rounding, while the caption encoder
    and every attention over the context get cheaper: a caption fills ~12 of the 32 (or
    open_clip's 77) positions. CPU only: on a GPU, reading the length back would stall it.
    """
    if tokens.device.type != "cpu":
        return tokens
    used = token_mask(tokens).any(dim=0).nonzero()  # (n, 1) columns with a real token
    return tokens[:, : int(used[-1]) + 1 if len(used) else 1]


def coord_grid(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 2, H, W): each pixel's row and column, scaled to [-1, 1]."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij")).expand(b, -1, -1, -1)


def norm(channels: int) -> nn.GroupNorm:
    # GLIDE uses 32 groups; at our widths (32-64 channels) 8 keeps several channels per group.
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


def zero(module: nn.Module) -> nn.Module:
    """Zero-initialise a residual branch's last layer: each block starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Conv block whose second norm is modulated by the embedding (scale-shift norm)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.out_norm = norm(c_out)
        self.out_conv = zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x (B, c_in, H, W), emb (B, E) -> (B, c_out, H, W)."""
        h = self.in_layers(x)  # (B, c_out, H, W)
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)  # (B, c_out, 1, 1)
        h = self.out_norm(h) * (1 + scale) + shift
        return self.skip(x) + self.out_conv(F.silu(h))


class AttentionBlock(nn.Module):
    """Self-attention over the pixels, with the context tokens as extra keys/values."""

    def __init__(self, channels: int, heads: int, context_width: int) -> None:
        super().__init__()
        if channels % heads:
            raise ArgumentError("heads", f"{channels} channels are not divisible by {heads} heads")
        self.heads = heads
        self.norm = norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.context_kv = nn.Linear(context_width, 2 * channels) if context_width else None
        self.proj = zero(nn.Conv1d(channels, channels, 1))

    def _split(self, x: Tensor) -> Tensor:
        b, n, c = x.shape  # (B, N, C) -> (B, heads, N, C / heads)
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor | None, context_mask: Tensor | None) -> Tensor:
        """x (B, C, H, W); context (B, Lc, Wc); context_mask (B, Lc) bool, True = attend."""
        b, c, h, w = x.shape
        # Pixels as tokens (B, HW, C): a free view of a channels_last map. The 1x1 convs run
        # as matmuls on it (same weights, so checkpoints are unchanged).
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
        q, k, v = F.linear(tokens, self.qkv.weight[:, :, 0], self.qkv.bias).chunk(3, dim=2)
        mask = None
        if context is not None and self.context_kv is not None:
            ck, cv = self.context_kv(context).chunk(2, dim=2)  # (B, Lc, C) each
            k, v = torch.cat([ck, k], dim=1), torch.cat([cv, v], dim=1)  # (B, Lc + HW, C)
            pixels = torch.ones(b, h * w, dtype=torch.bool, device=x.device)
            mask = torch.cat([context_mask, pixels], dim=1)[:, None, None, :]  # (B, 1, 1, Lc+HW)
        out = F.scaled_dot_product_attention(
            self._split(q), self._split(k), self._split(v), attn_mask=mask
        )  # (B, heads, HW, C / heads)
        out = F.linear(
            out.transpose(1, 2).reshape(b, h * w, c), self.proj.weight[:, :, 0], self.proj.bias
        )  # (B, HW, C)
        return x + out.reshape(b, h, w, c).permute(0, 3, 1, 2)  # (B, C, H, W)


class Stage(nn.ModuleList):
    """A sequence of res/attention/resampling layers fed what each kind needs."""

    def forward(self, x: Tensor, emb: Tensor, ctx: Tensor | None, mask: Tensor | None) -> Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, AttentionBlock):
                x = layer(x, ctx, mask)
            else:
                x = layer(x)
        return x


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Blocks:
    """Builds the UNet's down and up paths (ResBlocks, attention at `attn_resolutions`)."""

    def __init__(self, channels: int, emb_dim: int, heads: int, ctx_w: int, attn_res) -> None:
        self.channels, self.emb_dim, self.heads, self.ctx_w = channels, emb_dim, heads, ctx_w
        self.attn_res = attn_res

    def attn(self, ch: int, res: int | None) -> list[nn.Module]:
        """An attention block at resolution `res` if listed (None: the middle, always)."""
        if res is None or res in self.attn_res:
            return [AttentionBlock(ch, self.heads, self.ctx_w)]
        return []

    def down(self, channel_mult: Sequence[int], num_res_blocks: int, res: int):
        """-> (stages, skip channels, channels out, resolution out)."""
        ch, skips, stages = self.channels, [self.channels], nn.ModuleList()
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                stages.append(Stage([ResBlock(ch, self.channels * mult, self.emb_dim)]))
                ch = self.channels * mult
                stages[-1].extend(self.attn(ch, res))
                skips.append(ch)
            if level < len(channel_mult) - 1:
                stages.append(Stage([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
                res //= 2
        return stages, skips, ch, res

    def up(self, channel_mult: Sequence[int], num_res_blocks: int, ch: int, res: int, skips):
        """-> (stages, channels out); consumes `skips` from the end."""
        stages = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                stages.append(Stage([ResBlock(ch + skips.pop(), self.channels * mult,
                                              self.emb_dim)]))  # fmt: skip
                ch = self.channels * mult
                stages[-1].extend(self.attn(ch, res))
                if level > 0 and i == num_res_blocks:
                    stages[-1].append(Upsample(ch))
                    res *= 2
        return stages, ch


class UNet(nn.Module):
    """eps/x0/v network for images (B, out_channels, H, W).

    clip_dim > 0 enables z_i conditioning; text_encoder enables the caption pathway;
    low_channels > 0 makes it an upsampler (the upsampled low-res image is concatenated).
    `attn_resolutions` are feature-map sizes, with `resolution` the input size.
    """

    # Activations in channels_last (NHWC) let oneDNN run the convolutions without reordering
    # every feature map to its blocked layout and back: 1.1-1.5x for a CPU forward without
    # autograd (benchmarks/README.md). None: on for such forwards (sampling), off when
    # training (no clear gain measured) and on GPU (unmeasured). Results match to rounding.
    channels_last: bool | None = None

    def __init__(
        self,
        *,
        channels: int,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        resolution: int,
        attn_resolutions: Sequence[int] = (),
        heads: int = 4,
        out_channels: int = 3,
        low_channels: int = 0,
        clip_dim: int = 0,
        clip_tokens: int = 4,
        context_width: int = 64,
        text_encoder: TextEncoder | None = None,
        coords: bool = False,
    ) -> None:
        super().__init__()
        # Two extra input channels holding each pixel's (y, x) in [-1, 1] (CoordConv, Liu et
        # al. 2018): a caption's "top left" names a place, which zero padding alone lets a
        # small net locate only slowly.
        self.coords = coords
        if text_encoder is not None and text_encoder.width != context_width:
            raise ValueError("the text encoder's width must equal context_width")
        if not channel_mult:
            raise ArgumentError("channel_mult", "needs at least one level")
        down = 2 ** (len(channel_mult) - 1)
        if resolution % down:
            raise ArgumentError("resolution", f"{resolution} px is not divisible by {down} "
                                "(one halving per channel_mult level after the first)")  # fmt: skip
        self.levels, self.low_channels = len(channel_mult), low_channels
        self.clip_dim, self.clip_tokens, self.context_width = clip_dim, clip_tokens, context_width
        self.text_encoder = text_encoder
        emb_dim = 4 * channels
        ctx_w = self._conditioning(channels, emb_dim)
        blocks = _Blocks(channels, emb_dim, heads, ctx_w, attn_resolutions)
        # Module creation order is the order of the random initial weights: keep it.
        self.input = nn.Conv2d(3 + low_channels + 2 * coords, channels, 3, padding=1)
        self.down, skips, ch, res = blocks.down(channel_mult, num_res_blocks, resolution)
        mid_attn = blocks.attn(ch, None) if attn_resolutions else []
        self.middle = Stage([ResBlock(ch, ch, emb_dim), *mid_attn, ResBlock(ch, ch, emb_dim)])
        self.up, ch = blocks.up(channel_mult, num_res_blocks, ch, res, skips)
        self.out = nn.Sequential(
            norm(ch), nn.SiLU(), zero(nn.Conv2d(ch, out_channels, 3, padding=1))
        )

    def _conditioning(self, channels: int, emb_dim: int) -> int:
        """The timestep embedding and the z_i / caption context layers; returns the width
        the attention blocks read the context at (0: no context)."""
        self.time_embed = nn.Sequential(
            nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        conditioned = self.clip_dim > 0 or self.text_encoder is not None
        if self.clip_dim:
            self.clip_emb = nn.Linear(self.clip_dim, emb_dim)  # z_i -> added to the timestep emb
            # z_i -> clip_tokens extra context tokens
            self.clip_ctx = nn.Linear(self.clip_dim, self.clip_tokens * self.context_width)
        if conditioned:
            self.ln_context = nn.LayerNorm(self.context_width)
        return self.context_width if conditioned else 0

    def context(self, z_i: Tensor | None, tokens: Tensor | None) -> tuple[Tensor, Tensor] | None:
        """[z_i tokens; caption tokens] (B, K + L, Wc) and their mask (B, K + L), or None."""
        parts, masks = [], []
        if self.clip_dim:
            ctx = self.clip_ctx(z_i).reshape(-1, self.clip_tokens, self.context_width)  # (B,K,Wc)
            parts.append(ctx)
            masks.append(torch.ones(ctx.shape[:2], dtype=torch.bool, device=ctx.device))
        if self.text_encoder is not None:
            if tokens is None:
                raise ValueError("this UNet conditions on the caption: pass tokens")
            tokens = trim_padding(tokens)  # (B, L' <= L)
            parts.append(self.text_encoder(tokens))  # (B, L', Wc)
            masks.append(token_mask(tokens))  # an all-pad (dropped) caption is fully masked
        if not parts:
            return None
        return self.ln_context(torch.cat(parts, dim=1)), torch.cat(masks, dim=1)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        z_i: Tensor | None = None,
        tokens: Tensor | None = None,
        low: Tensor | None = None,
    ) -> Tensor:
        """x_t (B, 3, H, W), t (B,) original timesteps, z_i (B, D), tokens (B, L),
        low (B, 3, H, W) upsampled conditioning image -> (B, out_channels, H, W)."""
        if x.shape[-1] % 2 ** (self.levels - 1) or x.shape[-2] % 2 ** (self.levels - 1):
            raise ValueError(f"H, W must be divisible by {2 ** (self.levels - 1)}: {x.shape}")
        emb = self.time_embed(timestep_embedding(t, self.input.out_channels))  # (B, E)
        if self.clip_dim:
            if z_i is None:
                raise ValueError("this UNet conditions on z_i: pass it (or the null embedding)")
            emb = emb + self.clip_emb(z_i)
        ctx = self.context(z_i, tokens)
        ctx, mask = ctx if ctx is not None else (None, None)
        if self.low_channels:
            if low is None:
                raise ValueError("this UNet is an upsampler: pass the low-resolution image")
            x = torch.cat([x, low], dim=1)  # (B, 3 + low_channels, H, W)
        if self.coords:
            x = torch.cat([x, coord_grid(x)], dim=1)  # (B, C + 2, H, W)
        h = self.input(x.contiguous(memory_format=self._layout(x)))
        hs = [h]
        for stage in self.down:
            h = stage(h, emb, ctx, mask)
            hs.append(h)
        h = self.middle(h, emb, ctx, mask)
        for stage in self.up:
            h = stage(torch.cat([h, hs.pop()], dim=1), emb, ctx, mask)
        return self.out(h).contiguous()  # callers get the usual (B, C, H, W) layout

    def _layout(self, x: Tensor) -> torch.memory_format:
        auto = x.device.type == "cpu" and not torch.is_grad_enabled()
        on = auto if self.channels_last is None else self.channels_last
        return torch.channels_last if on else torch.contiguous_format
