"""The decoder's own small caption encoder (GLIDE keeps one inside the decoder).

A few pre-norm Transformer layers over token embeddings of the CLIP tokenizer's ids. Pad
tokens (id 0, open_clip's convention) are masked as keys, so a caption's encoding does not
depend on the padding; an all-pad caption (the dropped caption of classifier-free guidance)
attends over everything, which keeps the softmax finite, and is masked later by the UNet.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ArgumentError

PAD_ID = 0  # open_clip pads with 0
CLIP_VOCAB = 49408  # open_clip's SimpleTokenizer: 512 byte tokens, 48,894 merges, SOT, EOT


def token_mask(tokens: Tensor) -> Tensor:
    """(B, L) ids -> (B, L) bool, True = a real token (start/end included)."""
    return tokens != PAD_ID


class TextEncoder(nn.Module):
    """tokens (B, L) int64 -> per-token features (B, L, width)."""

    def __init__(
        self,
        context_length: int,
        width: int,
        layers: int,
        heads: int,
        vocab_size: int = CLIP_VOCAB,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ArgumentError("width", f"width {width} is not divisible by {heads} heads")
        self.context_length, self.width = context_length, width
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, width) * 0.01)
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            4 * width,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # enable_nested_tensor needs post-norm; we use pre-norm (stabler at small batch).
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln_final = nn.LayerNorm(width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (B, L) with L <= context_length -> (B, L, width)."""
        if tokens.shape[1] > self.context_length:
            raise ValueError(f"{tokens.shape[1]} tokens > context_length {self.context_length}")
        x = self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]  # (B, L, W)
        mask = token_mask(tokens)  # (B, L)
        # A row with no real token would make every key masked (NaN); let it see everything.
        pad = ~(mask | ~mask.any(dim=1, keepdim=True))  # (B, L) True = ignore this key
        x = self.transformer(x, src_key_padding_mask=pad)  # (B, L, W)
        return self.ln_final(x)
