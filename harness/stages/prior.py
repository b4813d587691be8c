"""The prior p(z_i | y) of unCLIP: what the trained priors share, the prior kinds, and the
prior stage's recipe.

`prior.kind` names an entry of harness.registry.PRIOR_KINDS (Ramesh et al. 2022, §2.1, §5.1;
the built-ins are registered in stages/prior_kinds.py):
  diffusion       a trained diffusion prior (stages/prior_diffusion.py)
  ar              a trained autoregressive prior over PCA codes (stages/prior_ar.py)
  caption_only    no z_i at all: `sample_z_i` returns None and the decoder uses its null z_i
  text_embedding  z_t fed in place of z_i
Every kind answers `sample_z_i` the same way; a kind with a `module` is a trained stage.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from ..config import Config, PriorConfig
from ..config.hashing import training_fields
from ..diffusion.noise import Noise
from ..registry import PRIOR_KINDS
from .common import with_schedule
from .stage import Fit, FitRun, Recipe, StageContext, clip_embeddings


class Embeddings(Protocol):
    """What a prior reads from harness.embeddings.Embeddings (one CLIP, one split)."""

    z_i: np.ndarray  # (N, D) float32, L2-normalised
    z_t: np.ndarray  # (N, D) float32, L2-normalised
    text_enc: np.ndarray  # (N, L, Wt) float16
    text_mask: np.ndarray  # (N, L) bool


def text_length(text_mask: Tensor | np.ndarray) -> int:
    """Columns up to the last real token anywhere in the batch (at least 1).

    Trailing all-padding columns change nothing (padding is never attended to and the prefix
    positions of real tokens do not depend on L), so cutting them only saves compute.
    """
    cols = np.flatnonzero(np.asarray(text_mask).any(axis=0))
    return int(cols[-1]) + 1 if len(cols) else 1


def tensors(emb: Embeddings) -> dict[str, Tensor]:
    """The split as float32/bool tensors in memory, text trimmed to its longest caption."""
    n = text_length(emb.text_mask)
    return {
        "z_i": torch.from_numpy(np.array(emb.z_i, dtype=np.float32)),
        "z_t": torch.from_numpy(np.array(emb.z_t, dtype=np.float32)),
        "text_enc": torch.from_numpy(np.array(emb.text_enc[:, :n], dtype=np.float32)),
        "text_mask": torch.from_numpy(np.array(emb.text_mask[:, :n], dtype=bool)),
    }


class RandomBatches(IterableDataset):
    """Endless shuffled batches of rows (dicts of tensors); Trainer's max_steps ends training."""

    def __init__(self, data: dict[str, Tensor], batch_size: int, seed: int) -> None:
        self.data, self.batch_size, self.seed = data, batch_size, seed

    def __iter__(self):
        n = len(self.data["z_i"])
        bs = min(self.batch_size, n)
        gen = torch.Generator().manual_seed(self.seed)
        while True:
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n - bs + 1, bs):  # drop the ragged tail: constant batch size
                idx = perm[i : i + bs]
                yield {k: v[idx] for k, v in self.data.items()}


def best_of(candidates: Tensor, z_t: Tensor) -> Tensor:
    """candidates (n, B, D), z_t (B, D) -> (B, D): per row the candidate with the largest
    z_i . z_t (the paper samples 2 and keeps the more caption-like one)."""
    dots = (candidates * z_t[None]).sum(-1)  # (n, B)
    pick = dots.argmax(0)  # (B,)
    return candidates[pick, torch.arange(z_t.shape[0], device=z_t.device)]


class PriorStage(pl.LightningModule):
    """Base of the trained priors: data and optimisation. Subclasses add a net, a
    `training_step` and `sample(z_t, text_enc, text_mask, cfg, generator) -> (B, D)`."""

    def __init__(self, cfg: PriorConfig, clip_dim: int, text_width: int, context_length: int):
        super().__init__()
        self.cfg = cfg
        self.clip_dim, self.text_width, self.context_length = clip_dim, text_width, context_length
        self.train_data: dict[str, Tensor] | None = None
        self.seed = 0
        self.loss_avg: float | None = None  # running mean of the training loss, for metrics

    # ------------------------------------------------------------------ training
    def set_train_data(self, train: Embeddings, seed: int) -> None:
        self.train_data, self.seed = tensors(train), seed

    def train_dataloader(self) -> DataLoader:
        if self.train_data is None:
            raise RuntimeError("call set_train_data before fitting")
        batches = RandomBatches(self.train_data, self.cfg.batch_size, self.seed)
        return DataLoader(batches, batch_size=None, num_workers=0)

    def track_loss(self, loss: Tensor) -> None:
        value = float(loss.detach())
        self.loss_avg = value if self.loss_avg is None else 0.98 * self.loss_avg + 0.02 * value
        self.log("train/loss", loss, prog_bar=True)

    def keep_mask(self, batch_size: int) -> Tensor:
        """(B,) bool: False drops the caption (tokens and z_t) with probability text_drop."""
        return torch.rand(batch_size, device=self.device) >= self.cfg.text_drop

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.cfg.lr, betas=(0.9, 0.99), weight_decay=0.01
        )
        total = max(self.cfg.train_steps, 1)
        warmup = max(1, min(100, total // 10))
        return with_schedule(opt, total, warmup, floor=0.1)  # cosine down to 10%

    # ------------------------------------------------------------------ artifact
    def extra_state(self) -> dict[str, Any]:
        """Non-parameter state a subclass needs to rebuild (e.g. the AR quantizer)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def eval_metrics(self, val: Embeddings) -> dict[str, float]:
        """Subclass-specific figures for stage_metrics.json (e.g. quantization error)."""
        return {}


# ------------------------------------------------------------------------- prior kinds
class PriorKind:
    """One way to get z_i for a batch of captions: an entry of PRIOR_KINDS."""

    module: type[PriorStage] | None = None  # the LightningModule it trains (None: nothing)
    unused: tuple[str, ...] = ()  # prior.* fields it never reads: left out of its key

    def fields(self, p: PriorConfig) -> dict[str, Any]:
        return training_fields(p, drop=self.unused)

    def sample_z_i(
        self,
        p: PriorConfig,
        prior: PriorStage | None,
        z_t: Tensor,
        text_enc: Tensor,
        text_mask: Tensor,
        generator: Noise | torch.Generator | None,
    ) -> Tensor | None:
        """(B, D) L2-normalised z_i (None: the decoder's null z_i), with p's sampling knobs.
        z_t (B, D), text_enc (B, L, Wt), text_mask (B, L) bool, from the conditioning CLIP."""
        raise NotImplementedError


class TrainedPrior(PriorKind):
    """A kind whose z_i come from a trained PriorStage subclass's `sample`."""

    def __init__(self, module: type[PriorStage], unused: tuple[str, ...] = ()) -> None:
        self.module, self.unused = module, unused

    def sample_z_i(
        self,
        p: PriorConfig,
        prior: PriorStage | None,
        z_t: Tensor,
        text_enc: Tensor,
        text_mask: Tensor,
        generator: Noise | torch.Generator | None,
    ) -> Tensor | None:
        if not isinstance(prior, self.module):
            got = None if prior is None else type(prior).__name__
            raise ValueError(f"prior.kind needs a trained {self.module.__name__}, got {got}")
        n = text_length(text_mask.cpu())
        dev = prior.device
        with torch.no_grad():
            z = prior.sample(z_t.to(dev).float(), text_enc[:, :n].to(dev).float(),
                             text_mask[:, :n].to(dev).bool(), p, generator=generator)  # fmt: skip
        return F.normalize(z, dim=-1)


class CaptionOnly(PriorKind):
    """§5.1 baseline: no z_i at all; the decoder decodes its null z_i and the caption."""

    def sample_z_i(
        self,
        p: PriorConfig,
        prior: PriorStage | None,
        z_t: Tensor,
        text_enc: Tensor,
        text_mask: Tensor,
        generator: Noise | torch.Generator | None,
    ) -> Tensor | None:
        return None


class TextEmbedding(PriorKind):
    """§5.1 baseline: the caption's CLIP text embedding z_t fed in place of z_i."""

    def sample_z_i(
        self,
        p: PriorConfig,
        prior: PriorStage | None,
        z_t: Tensor,
        text_enc: Tensor,
        text_mask: Tensor,
        generator: Noise | torch.Generator | None,
    ) -> Tensor | None:
        return F.normalize(z_t.float(), dim=-1)


def kind_of(cfg: Config) -> PriorKind:
    return PRIOR_KINDS.get(cfg.prior.kind, "prior.kind")


def sample_z_i(
    cfg: Config,
    prior: PriorStage | None,
    z_t: Tensor,
    text_enc: Tensor,
    text_mask: Tensor,
    generator: Noise | torch.Generator | None = None,
) -> Tensor | None:
    """z_i for a batch of captions under `cfg.prior.kind` (see PriorKind.sample_z_i)."""
    return kind_of(cfg).sample_z_i(cfg.prior, prior, z_t, text_enc, text_mask, generator)


# ---------------------------------------------------------------------- metrics
@torch.no_grad()
def evaluate_prior(
    stage: PriorStage | None, cfg: Config, train: Embeddings, val: Embeddings, batch_size: int = 256
) -> dict[str, float]:
    """Held-out captions: how close sampled z_i come to the true z_i of each caption's image,
    against z_t as z_i (text_embedding baseline) and the train-mean z_i (no caption at all)."""
    data = tensors(val)
    z_i, z_t = data["z_i"], data["z_t"]
    gen = torch.Generator(device=stage.device if stage is not None else "cpu")
    gen.manual_seed(cfg.seed)
    samples = []
    for i in range(0, len(z_i), batch_size):
        chunk = slice(i, i + batch_size)
        s = sample_z_i(
            cfg, stage, z_t[chunk], data["text_enc"][chunk], data["text_mask"][chunk], generator=gen
        )
        samples.append(s.cpu() if s is not None else None)
    mean = F.normalize(torch.from_numpy(np.array(train.z_i, np.float32)).mean(0), dim=0)
    cos_t = (z_t * z_i).sum(-1)
    out = {
        "n_val": len(z_i),
        "cos_text_embedding": float(cos_t.mean()),
        "cos_train_mean": float((mean[None] * z_i).sum(-1).mean()),
        "dot_real": float(cos_t.mean()),  # z_i . z_t of true pairs (both unit: = cosine)
    }
    if samples and samples[0] is not None:
        z = torch.cat(samples)
        cos = (z * z_i).sum(-1)
        out["cos_prior"] = float(cos.mean())
        out["cos_prior_sem"] = float(cos.std() / math.sqrt(len(cos)))
        out["dot_samples"] = float((z * z_t).sum(-1).mean())
        gain = cos - cos_t  # paired, per caption: the prior's z_i against z_t as z_i
        out["cos_prior_minus_text"] = float(gain.mean())
        out["cos_prior_minus_text_sem"] = float(gain.std() / math.sqrt(len(gain)))
    return out


# ------------------------------------------------------------------------ the stage
class PriorRecipe(Recipe):
    """The prior stage: trained when `prior.kind` names a kind with a module, on the
    conditioning CLIP's embeddings of the train split (input role "clip")."""

    def enabled(self, cfg: Config) -> bool:
        return kind_of(cfg).module is not None

    def fields(self, cfg: Config) -> dict[str, Any]:
        return kind_of(cfg).fields(cfg.prior)

    def build(self, ctx: StageContext, fresh: bool) -> PriorStage:
        module, clip = kind_of(ctx.cfg).module, ctx.inputs["clip"]
        if module is None:
            raise ValueError(f"prior.kind {ctx.cfg.prior.kind!r} trains nothing")
        return module(ctx.cfg.prior, clip.embed_dim, clip.text_width, clip.context_length)

    def prepare(self, ctx: StageContext, stage: PriorStage) -> Fit:
        train, val = clip_embeddings(ctx, "train"), clip_embeddings(ctx, "val")
        stage.set_train_data(train, ctx.cfg.seed)
        p = ctx.cfg.prior  # batches: the module's own train_dataloader
        return Fit(steps=p.train_steps, ema=p.ema, kept={"train": train, "val": val})

    def evaluate(self, ctx: StageContext, stage: PriorStage, run: FitRun) -> dict[str, Any]:
        stage.train_data = None  # do not keep the split alive with the module
        train, val = run.kept["train"], run.kept["val"]
        metrics = {"kind": ctx.cfg.prior.kind, "final_loss": stage.loss_avg}
        return metrics | evaluate_prior(stage, ctx.cfg, train, val) | stage.eval_metrics(val)

    def shape(self, ctx: StageContext) -> dict[str, Any]:
        clip = ctx.inputs["clip"]
        return {"clip_dim": clip.embed_dim, "text_width": clip.text_width,
                "context_length": clip.context_length}  # fmt: skip

    def extra(self, stage: PriorStage) -> dict[str, Any]:
        return stage.extra_state()

    def restore(self, stage: PriorStage, extra: dict[str, Any]) -> None:
        stage.load_extra_state(extra)
