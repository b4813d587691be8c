"""The autoregressive prior (Ramesh et al. 2022, §2.1): z_i as a sequence of discrete codes.

z_i is projected on its top `prior.ar.components` PCA directions (ordered by eigenvalue) and
each coordinate is quantized into `prior.ar.buckets` bins. Bin edges are per-component
QUANTILES of the training projections: every bin holds the same share of the data, so all
codes are used (no dead tails, as uniform bins over a long-tailed coordinate would leave) and
resolution is finest where the data is densest; a bin decodes to the mean of the training
values that fell in it (the MSE-optimal value for that bin). The prepended token holds
z_i . z_t, quantized the same way. A causal Transformer predicts [dot, code_1..code_K] after
the caption prefix [caption tokens, z_t]; at sampling the dot token is drawn from the top of
its distribution (`prior.ar.dot_percentile`), and guidance mixes logits with those of the
caption-dropped prefix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import PriorConfig
from ..diffusion.noise import Noise, as_noise
from ..errors import ArgumentError
from ..nets.prior_transformer import ARPriorNet
from .prior import Embeddings, PriorStage


def _quantile_bins(x: Tensor, buckets: int) -> tuple[Tensor, Tensor]:
    """x (N, K) -> edges (K, buckets-1) at equal-mass quantiles, centers (K, buckets)."""
    qs = torch.arange(1, buckets, dtype=x.dtype) / buckets
    edges = torch.quantile(x, qs, dim=0).T.contiguous()  # (K, n-1)
    codes = torch.searchsorted(edges, x.T.contiguous(), right=True)  # (K, N)
    k = x.shape[1]
    sums = torch.zeros(k, buckets, dtype=x.dtype).scatter_add_(1, codes, x.T)
    counts = torch.zeros(k, buckets, dtype=x.dtype).scatter_add_(1, codes, torch.ones_like(x.T))
    # An empty bin (ties at an edge) decodes to the middle of its edges.
    lo = torch.cat([x.min(0).values[:, None], edges], dim=1)  # (K, n)
    hi = torch.cat([edges, x.max(0).values[:, None]], dim=1)
    centers = torch.where(counts > 0, sums / counts.clamp(min=1), (lo + hi) / 2)
    return edges, centers


class Quantizer:
    """PCA (top K components of z_i) + per-component quantile buckets, and the dot buckets.

    Plain tensors, not module buffers, so EMA weight averaging never touches them.
    """

    def __init__(
        self,
        mean: Tensor,
        basis: Tensor,
        explained: float,
        edges: Tensor,
        centers: Tensor,
        dot_edges: Tensor,
        dot_centers: Tensor,
    ) -> None:
        self.mean, self.basis, self.explained = mean, basis, explained  # (D,), (K, D)
        self.edges, self.centers = edges, centers  # (K, n-1), (K, n)
        self.dot_edges, self.dot_centers = dot_edges, dot_centers  # (n-1,), (n,)

    @classmethod
    def fit(cls, z_i: Tensor, z_t: Tensor, components: int, buckets: int) -> Quantizer:
        """z_i, z_t (N, D) training embeddings."""
        x = z_i.double()
        mean = x.mean(0)
        cov = (x - mean).T @ (x - mean) / max(len(x) - 1, 1)  # (D, D)
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        order = evals.flip(0).clamp(min=0)
        k = min(components, x.shape[1])
        basis = evecs.flip(1)[:, :k].T.float()  # (K, D), by decreasing eigenvalue
        explained = float(order[:k].sum() / order.sum().clamp(min=1e-30))
        mean = mean.float()
        edges, centers = _quantile_bins((z_i - mean) @ basis.T, buckets)
        dot = (z_i * z_t).sum(-1, keepdim=True)  # (N, 1)
        dot_edges, dot_centers = _quantile_bins(dot, buckets)
        return cls(mean, basis, explained, edges, centers, dot_edges[0], dot_centers[0])

    @property
    def components(self) -> int:
        return self.basis.shape[0]

    def project(self, z: Tensor) -> Tensor:
        """(B, D) -> PCA coordinates (B, K)."""
        return (z - self.mean) @ self.basis.T

    def encode(self, z: Tensor) -> Tensor:
        """(B, D) -> codes (B, K) long: bin b holds edges[b-1] <= x < edges[b]."""
        return torch.searchsorted(self.edges, self.project(z).T.contiguous(), right=True).T

    def decode(self, codes: Tensor) -> Tensor:
        """codes (B, K) -> z (B, D), not normalised."""
        coords = torch.gather(self.centers.expand(codes.shape[0], -1, -1), 2, codes[..., None])
        return self.mean + coords[..., 0] @ self.basis  # (B, D)

    def encode_dot(self, dot: Tensor) -> Tensor:
        """z_i . z_t (B,) -> dot token (B,) long."""
        return torch.searchsorted(self.dot_edges, dot.contiguous(), right=True)

    def roundtrip(self, z_i: Tensor) -> dict[str, float]:
        """Errors of PCA truncation alone and of the full encode/decode, on unit z_i (N, D)."""
        pca = self.mean + self.project(z_i) @ self.basis
        quant = self.decode(self.encode(z_i))
        total = ((z_i - z_i.mean(0)) ** 2).sum(-1).mean()
        pca_mse = ((pca - z_i) ** 2).sum(-1).mean()
        quant_mse = ((quant - z_i) ** 2).sum(-1).mean()
        return {
            "pca_mse": float(pca_mse),  # squared L2 error per embedding
            "quant_mse": float(quant_mse),
            "quant_rel_mse": float(quant_mse / total),  # share of z_i's variance lost
            "quant_cos": float(F.cosine_similarity(quant, z_i, dim=-1).mean()),
        }

    def state(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Quantizer:
        return cls(**state)

    def to(self, device: torch.device | str) -> Quantizer:
        moved = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in vars(self).items()}
        return Quantizer(**moved)


def percentile_floor(probs: Tensor, percentile: float) -> Tensor:
    """probs (B, n) over ascending bins -> (B,) index of the percentile-th quantile bin:
    the first bin whose cumulative probability reaches percentile / 100."""
    cdf = probs.cumsum(-1)
    below = (cdf < percentile / 100.0 - 1e-6).sum(-1)  # tolerance: cdf may end at 0.9999999
    return below.clamp(max=probs.shape[-1] - 1)


def draw(
    logits: Tensor,
    temperature: float,
    generator: Noise | torch.Generator | None,
    allowed: Tensor | None = None,
) -> Tensor:
    """Sample (B,) from logits (B, n) at `temperature` (0: argmax), restricted to `allowed`.

    By inverse CDF on one uniform per row from the noise source (not torch.multinomial): a
    row's token then depends only on its own stream (common random numbers, noise.py) and
    the uniforms are drawn on the CPU whatever the logits' device."""
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, n)
    cdf = probs.cumsum(-1)
    u = as_noise(generator).rand((logits.shape[0], 1), cdf.device, cdf.dtype) * cdf[:, -1:]
    pick = (cdf <= u).sum(-1)  # the first bin whose cdf exceeds u
    bins = torch.arange(probs.shape[-1], device=probs.device)
    last = ((probs > 0) * bins).amax(-1)  # rounding may put u at the total: stay on mass
    return torch.minimum(pick, last)


def draw_dot(
    logits: Tensor,
    percentile: float,
    temperature: float,
    generator: Noise | torch.Generator | None = None,
) -> Tensor:
    """The dot token (B,): the predicted distribution (at temperature 1) restricted to the bins
    at or above its percentile-th quantile, renormalised, then sampled at `temperature`.
    Paper: percentile 50 (the top half) beat 70/85/95."""
    floor = percentile_floor(torch.softmax(logits.float(), -1), percentile)  # (B,)
    allowed = torch.arange(logits.shape[-1], device=logits.device)[None] >= floor[:, None]
    return draw(logits, temperature, generator, allowed)


class ARPrior(PriorStage):
    def __init__(self, cfg: PriorConfig, clip_dim: int, text_width: int, context_length: int):
        super().__init__(cfg, clip_dim, text_width, context_length)
        if cfg.ar.components > clip_dim:  # PCA of D-dim z_i has at most D components
            raise ArgumentError("ar.components", f"{cfg.ar.components} PCA components exceed "
                                f"the CLIP's {clip_dim} dimensions (clip.embed_dim)")  # fmt: skip
        self.n_components = cfg.ar.components
        self.net = ARPriorNet(
            clip_dim,
            text_width,
            cfg.width,
            cfg.layers,
            cfg.heads,
            context_length,
            self.n_components,
            cfg.ar.buckets,
        )
        self.quantizer: Quantizer | None = None

    def set_train_data(self, train: Embeddings, seed: int) -> None:
        """Fit PCA + buckets on the training z_i, and code the split once."""
        super().set_train_data(train, seed)
        data = self.train_data
        self.quantizer = Quantizer.fit(
            data["z_i"], data["z_t"], self.n_components, self.cfg.ar.buckets
        )
        data["codes"] = self.quantizer.encode(data["z_i"])  # (N, K)
        data["dot"] = self.quantizer.encode_dot((data["z_i"] * data["z_t"]).sum(-1))  # (N,)

    def extra_state(self) -> dict[str, Any]:
        return {"quantizer": self.quantizer.state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.quantizer = Quantizer.from_state(state["quantizer"])

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        codes, dot = batch["codes"], batch["dot"]  # (B, K), (B,)
        dot_logits, code_logits = self.net(
            dot,
            codes[:, :-1],
            z_t=batch["z_t"],
            text_enc=batch["text_enc"],
            text_mask=batch["text_mask"],
            keep=self.keep_mask(dot.shape[0]),
        )  # (B, n), (B, K, n)
        # Mean over all K + 1 predicted tokens: the dot token weighs as much as one code.
        ce_dot = F.cross_entropy(dot_logits, dot)
        ce_codes = F.cross_entropy(code_logits.flatten(0, 1), codes.flatten())
        k = codes.shape[1]
        loss = (ce_dot + k * ce_codes) / (k + 1)
        self.track_loss(loss)
        return loss

    def _logits(
        self, dot: Tensor | None, codes: Tensor, cond: dict[str, Tensor], scale: float
    ) -> tuple[Tensor, Tensor]:
        """Next-token logits; with guidance, u + scale (c - u) against the dropped prefix."""
        if scale == 1.0:
            return self.net(dot, codes, **cond)
        b = codes.shape[0]
        both = {k: torch.cat([v, v]) for k, v in cond.items()}
        both["keep"] = torch.cat([cond["keep"], torch.zeros_like(cond["keep"])])
        dd = None if dot is None else torch.cat([dot, dot])
        dl, cl = self.net(dd, torch.cat([codes, codes]), **both)
        return (torch.lerp(dl[b:], dl[:b], scale), torch.lerp(cl[b:], cl[:b], scale))

    @torch.no_grad()
    def sample(
        self,
        z_t: Tensor,
        text_enc: Tensor,
        text_mask: Tensor,
        cfg: PriorConfig,
        generator: Noise | torch.Generator | None = None,
    ) -> Tensor:
        """z_t (B, D), text_enc (B, L, Wt), text_mask (B, L) -> z_i (B, D) L2-normalised.

        Batched, without a KV cache: K + 1 forward passes over the growing sequence.
        """
        b = z_t.shape[0]
        cond = {
            "z_t": z_t,
            "text_enc": text_enc,
            "text_mask": text_mask,
            "keep": torch.ones(b, dtype=torch.bool, device=z_t.device),
        }
        codes = torch.zeros(b, 0, dtype=torch.long, device=z_t.device)
        dot_logits, _ = self._logits(None, codes, cond, cfg.guidance_scale)
        dot = draw_dot(dot_logits, cfg.ar.dot_percentile, cfg.ar.temperature, generator)
        for _ in range(self.n_components):
            _, code_logits = self._logits(dot, codes, cond, cfg.guidance_scale)
            nxt = draw(code_logits[:, -1], cfg.ar.temperature, generator)  # (B,)
            codes = torch.cat([codes, nxt[:, None]], dim=1)
        z = self.quantizer.to(z_t.device).decode(codes)
        return F.normalize(z, dim=-1)

    def eval_metrics(self, val: Embeddings) -> dict[str, float]:
        """PCA explained variance (train fit) and the quantization round trip on val z_i."""
        out = {
            "pca_explained_variance": self.quantizer.explained,
            "pca_components": self.n_components,
            "buckets": self.cfg.ar.buckets,
        }
        z_i = torch.from_numpy(np.array(val.z_i, dtype=np.float32))
        out.update({f"val_{k}": v for k, v in self.quantizer.roundtrip(z_i).items()})
        return out
