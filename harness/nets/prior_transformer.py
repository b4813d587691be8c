"""Decoder-only (causal) Transformers for the two unCLIP priors (Ramesh et al. 2022, §2.1).

Both read the caption as a prefix [encoded caption tokens (L), z_t] and differ in what
follows: the diffusion prior appends [timestep embedding, noised z_i, final query] and reads
the un-noised z_i off the query; the AR prior appends [quantized z_i . z_t, code_1..code_K]
and predicts each token from the one before.

Dropping the caption for classifier-free guidance (`keep` False) removes BOTH the token
encodings and z_t (z_t becomes a learned null token). Dropping only the token encodings would
leave z_t, which alone pins z_i down almost as well as the whole caption, so the
"unconditional" branch would barely differ from the conditional one and guidance would have
nothing to push against. The same null is what sampling uses for the unconditional half.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ArgumentError


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding (B,) -> (B, dim) of (original-space) timesteps."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class Block(nn.Module):
    """Pre-LN Transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ArgumentError("heads", f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: Tensor, attend: Tensor) -> Tensor:
        """x (B, S, W); attend (B, 1, S, S) bool, True = query may read key."""
        b, s, w = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, self.heads, w // self.heads).unbind(2)
        q, k, v = (u.transpose(1, 2) for u in (q, k, v))  # (B, H, S, W/H)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)  # (B, H, S, W/H)
        x = x + self.proj(a.transpose(1, 2).reshape(b, s, w))
        return x + self.mlp(self.ln2(x))


class CausalTransformer(nn.Module):
    """A stack of causal blocks with padding: position i reads positions j <= i that are valid."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_final = nn.LayerNorm(width)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x (B, S, W), valid (B, S) bool (False = padding or dropped) -> (B, S, W)."""
        s = x.shape[1]
        causal = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()  # (S, S)
        # A query always reads itself, so a fully dropped caption prefix never leaves a row
        # with no key (NaN softmax); no later position reads an invalid one.
        eye = torch.eye(s, dtype=torch.bool, device=x.device)
        attend = (causal & (valid[:, None, :] | eye))[:, None]  # (B, 1, S, S)
        for block in self.blocks:
            x = block(x, attend)
        return self.ln_final(x)


class CaptionPrefix(nn.Module):
    """Embeds [caption token encodings (L), z_t] as the shared prefix of both priors."""

    def __init__(self, clip_dim: int, text_width: int, width: int, context_length: int) -> None:
        super().__init__()
        self.text_in = nn.Linear(text_width, width)
        self.text_pos = nn.Parameter(torch.randn(context_length, width) * 0.02)
        self.z_t_in = nn.Linear(clip_dim, width)
        self.null_z_t = nn.Parameter(torch.randn(width) * 0.02)  # z_t when the caption is dropped

    def forward(
        self, z_t: Tensor, text_enc: Tensor, text_mask: Tensor, keep: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """z_t (B, D), text_enc (B, L, Wt), text_mask (B, L), keep (B,) bool or None (= all).

        Returns tokens (B, L + 1, W) and their validity (B, L + 1).
        """
        b, n = text_enc.shape[:2]
        keep = torch.ones(b, dtype=torch.bool, device=z_t.device) if keep is None else keep
        text = self.text_in(text_enc.to(self.text_pos.dtype)) + self.text_pos[:n]  # (B, L, W)
        z = torch.where(keep[:, None], self.z_t_in(z_t), self.null_z_t)  # (B, W)
        tokens = torch.cat([text, z[:, None]], dim=1)  # (B, L + 1, W)
        valid = torch.cat([text_mask.bool() & keep[:, None], keep.new_ones(b, 1)], dim=1)
        return tokens, valid


class DiffusionPriorNet(nn.Module):
    """[caption tokens, z_t, timestep, noised z_i, query] -> un-noised z_i (or eps / v).

    Called as ``net(x_t, t, z_t=, text_enc=, text_mask=, keep=)`` so it plugs into
    GaussianDiffusion and ClassifierFreeGuidance (null: ``keep`` all False).
    """

    def __init__(
        self,
        clip_dim: int,
        text_width: int,
        width: int,
        layers: int,
        heads: int,
        context_length: int,
    ) -> None:
        super().__init__()
        self.width = width
        self.prefix = CaptionPrefix(clip_dim, text_width, width, context_length)
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.x_in = nn.Linear(clip_dim, width)
        self.query = nn.Parameter(torch.randn(width) * 0.02)
        self.tail_pos = nn.Parameter(torch.randn(3, width) * 0.02)  # timestep, z_i, query
        self.transformer = CausalTransformer(width, layers, heads)
        self.out = nn.Linear(width, clip_dim)

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        *,
        z_t: Tensor,
        text_enc: Tensor,
        text_mask: Tensor,
        keep: Tensor | None = None,
    ) -> Tensor:
        """x_t (B, D) noised z_i, t (B,) -> (B, D)."""
        prefix, valid = self.prefix(z_t, text_enc, text_mask, keep)  # (B, L+1, W)
        b = x_t.shape[0]
        t_tok = self.time_mlp(timestep_embedding(t, self.width))  # (B, W)
        tail = torch.stack([t_tok, self.x_in(x_t), self.query.expand(b, -1)], dim=1)  # (B, 3, W)
        h = torch.cat([prefix, tail + self.tail_pos], dim=1)  # (B, L+4, W)
        h = self.transformer(h, torch.cat([valid, valid.new_ones(b, 3)], dim=1))
        return self.out(h[:, -1])  # the final query's output


class ARPriorNet(nn.Module):
    """[caption tokens, z_t, dot token, code_1..code_k] -> next-token logits.

    Codes are ranks (quantile buckets), so bucket b means "b-th quantile" in every component
    and one code embedding is shared across components (plus a per-component position).
    """

    def __init__(
        self,
        clip_dim: int,
        text_width: int,
        width: int,
        layers: int,
        heads: int,
        context_length: int,
        components: int,
        buckets: int,
    ) -> None:
        super().__init__()
        self.prefix = CaptionPrefix(clip_dim, text_width, width, context_length)
        self.dot_emb = nn.Embedding(buckets, width)
        self.code_emb = nn.Embedding(buckets, width)
        self.code_pos = nn.Parameter(torch.randn(components, width) * 0.02)
        self.transformer = CausalTransformer(width, layers, heads)
        self.dot_head = nn.Linear(width, buckets)
        self.code_head = nn.Linear(width, buckets)
        # GPT-style small init: nn.Embedding's N(0, 1) would make code tokens ~50x larger
        # than the caption prefix in the residual stream and drown what they attend to.
        for emb in (self.dot_emb, self.code_emb):
            nn.init.normal_(emb.weight, std=0.02)

    def forward(
        self,
        dot: Tensor | None,
        codes: Tensor,
        *,
        z_t: Tensor,
        text_enc: Tensor,
        text_mask: Tensor,
        keep: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """dot (B,) long or None (not yet drawn), codes (B, k) long with k >= 0.

        Returns dot logits (B, buckets) read at z_t, and code logits (B, k + 1, buckets) when
        a dot token is given: entry j predicts code_{j+1} from everything before it.
        """
        prefix, valid = self.prefix(z_t, text_enc, text_mask, keep)  # (B, L+1, W)
        b, n = prefix.shape[0], prefix.shape[1]
        parts = [prefix]
        if dot is not None:
            k = codes.shape[1]
            parts += [self.dot_emb(dot)[:, None], self.code_emb(codes) + self.code_pos[:k]]
        h = torch.cat(parts, dim=1)  # (B, L+1[+1+k], W)
        valid = torch.cat([valid, valid.new_ones(b, h.shape[1] - n)], dim=1)
        h = self.transformer(h, valid)
        dot_logits = self.dot_head(h[:, n - 1])  # (B, buckets)
        code_logits = self.code_head(h[:, n:])  # (B, k+1, buckets) (empty without a dot)
        return dot_logits, code_logits
