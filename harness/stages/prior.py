"""The prior p(z_i | y) of unCLIP: what the AR and diffusion priors share, and one dispatch.

Four `prior.kind`s (Ramesh et al. 2022, §2.1 and §5.1):
  diffusion       a trained diffusion prior (stages/prior_diffusion.py)
  ar              a trained autoregressive prior over PCA codes (stages/prior_ar.py)
  caption_only    no z_i at all: `sample_z_i` returns None and the decoder uses its null z_i
  text_embedding  z_t fed in place of z_i
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from ..config import Config, PriorConfig
from .common import make_trainer, seed_all, write_stage_metrics

MODEL_FILE = "model.pt"
TRAINED = ("diffusion", "ar")
KINDS = ("diffusion", "ar", "caption_only", "text_embedding")


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
    """Base of the trained priors: data, optimisation, saving. Subclasses add a net, a
    `training_step` and `sample(z_t, text_enc, text_mask, cfg, generator) -> (B, D)`."""

    kind: str = ""

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
        self.log("loss", loss, prog_bar=True)

    def keep_mask(self, batch_size: int) -> Tensor:
        """(B,) bool: False drops the caption (tokens and z_t) with probability text_drop."""
        return torch.rand(batch_size, device=self.device) >= self.cfg.text_drop

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.cfg.lr, betas=(0.9, 0.99), weight_decay=0.01
        )
        total = max(self.cfg.train_steps, 1)
        warmup = max(1, min(100, total // 10))

        def factor(step: int) -> float:  # linear warmup, then cosine down to 10%
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ artifact
    def extra_state(self) -> dict[str, Any]:
        """Non-parameter state a subclass needs to rebuild (e.g. the AR quantizer)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def eval_metrics(self, val: Embeddings) -> dict[str, float]:
        """Subclass-specific figures for stage_metrics.json (e.g. quantization error)."""
        return {}

    def save(self, out_dir: Path) -> Path:
        """model.pt: state dict, the shapes to rebuild the net, and subclass extras."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "kind": self.kind,
            "clip_dim": self.clip_dim,
            "text_width": self.text_width,
            "context_length": self.context_length,
            "prior": dataclasses.asdict(self.cfg),
            "state_dict": {k: v.cpu() for k, v in self.state_dict().items()},
            "extra": self.extra_state(),
        }
        path = out_dir / MODEL_FILE
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        return path


def _stage_class(kind: str) -> type[PriorStage]:
    if kind == "diffusion":
        from .prior_diffusion import DiffusionPrior

        return DiffusionPrior
    if kind == "ar":
        from .prior_ar import ARPrior

        return ARPrior
    raise ValueError(f"prior.kind {kind!r} has no trained prior (trained kinds: {TRAINED})")


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
    return out


# --------------------------------------------------------------------- dispatch
def train_prior(
    cfg: Config, train: Embeddings, val: Embeddings, out_dir: Path, progress: bool = True
) -> PriorStage:
    """Train the prior `cfg.prior.kind` ("diffusion" | "ar") on `train`, score it on `val`,
    and write model.pt + stage_metrics.json into `out_dir`."""
    seed_all(cfg.seed)
    clip_dim, context = int(train.z_i.shape[1]), int(train.text_enc.shape[1])
    stage = _stage_class(cfg.prior.kind)(cfg.prior, clip_dim, int(train.text_enc.shape[2]), context)
    stage.set_train_data(train, cfg.seed)
    start = time.perf_counter()
    if cfg.prior.train_steps > 0:
        trainer = make_trainer(
            cfg.train, cfg.prior.train_steps, ema=cfg.prior.ema, progress=progress
        )
        trainer.fit(stage)
    seconds = time.perf_counter() - start
    stage.train_data = None  # do not keep the split alive with the module
    stage.eval()
    metrics = {
        "kind": stage.kind,
        "train_seconds": seconds,
        "train_steps": cfg.prior.train_steps,
        "final_loss": stage.loss_avg,
        **evaluate_prior(stage, cfg, train, val),
    }
    metrics.update(stage.eval_metrics(val))
    stage.save(out_dir)
    write_stage_metrics(out_dir, metrics)
    return stage


def load_prior(out_dir: Path, cfg: Config, clip_dim: int, text_width: int) -> PriorStage:
    """The prior trained into `out_dir`, in eval mode; its net is rebuilt from `cfg.prior`."""
    path = Path(out_dir) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no trained prior at {path}: train it with train_prior first")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload["kind"] != cfg.prior.kind:
        raise ValueError(f"{path} holds a {payload['kind']!r} prior, cfg asks {cfg.prior.kind!r}")
    if (payload["clip_dim"], payload["text_width"]) != (clip_dim, text_width):
        raise ValueError(
            f"{path} was trained for CLIP dim {payload['clip_dim']} / text width "
            f"{payload['text_width']}, not {clip_dim} / {text_width}"
        )
    stage = _stage_class(cfg.prior.kind)(cfg.prior, clip_dim, text_width, payload["context_length"])
    stage.load_extra_state(payload["extra"])
    stage.load_state_dict(payload["state_dict"])
    return stage.eval().requires_grad_(False)


def sample_z_i(
    cfg: Config,
    prior: PriorStage | None,
    z_t: Tensor,
    text_enc: Tensor,
    text_mask: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor | None:
    """z_i for a batch of captions under `cfg.prior.kind`, with the sampling knobs of
    `cfg.prior`: (B, D) L2-normalised, or None for caption_only (the decoder's null z_i).

    z_t (B, D), text_enc (B, L, Wt), text_mask (B, L) bool, from the conditioning CLIP.
    """
    kind = cfg.prior.kind
    if kind == "caption_only":
        return None
    if kind == "text_embedding":
        return F.normalize(z_t.float(), dim=-1)
    if kind not in TRAINED:
        raise ValueError(f"unknown prior.kind {kind!r}; expected one of {KINDS}")
    if prior is None or prior.kind != kind:
        got = None if prior is None else prior.kind
        raise ValueError(f"prior.kind {kind!r} needs a trained {kind} prior, got {got}")
    n = text_length(text_mask.cpu())
    dev = prior.device
    with torch.no_grad():
        z = prior.sample(
            z_t.to(dev).float(),
            text_enc[:, :n].to(dev).float(),
            text_mask[:, :n].to(dev).bool(),
            cfg.prior,
            generator=generator,
        )
    return F.normalize(z, dim=-1)
