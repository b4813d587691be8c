"""CLIP stage: an open_clip model, pretrained or trained from scratch with the contrastive loss.

unCLIP conditions everything on CLIP's joint space: the prior maps a caption to an image
embedding z_i, the decoder inverts z_i to pixels. Offline machines cannot download weights, so
the embedded default is a small CLIP (`clip.arch: custom`) trained here on the experiment's
own data; a pretrained open_clip model (`arch` + `pretrained` tag or local file) is used as is.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any

import open_clip
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from open_clip.constants import OPENAI_DATASET_MEAN as CLIP_MEAN
from open_clip.constants import OPENAI_DATASET_STD as CLIP_STD
from open_clip.loss import ClipLoss
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from torch.utils.data import DataLoader, Dataset

from ..config import ClipConfig, Config
from ..config.hashing import training_fields
from ..data import build_source
from ..data.images import resize
from ..errors import ArgumentError, HarnessError
from .checkpoint import read_checkpoint
from .common import with_schedule
from .stage import Fit, FitRun, Recipe, StageContext

HEAD_WIDTH = 32  # small towers: 96 -> 3 heads, 64 -> 2 (open_clip's 64 would give 1 head)
WARMUP_FRACTION = 0.1  # linear warmup, then cosine decay to 0 (standard for CLIP training)
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP paper: temperature clipped at 100
RETRIEVAL_BATCH = 64  # issue 3: retrieval among 64 candidates (chance 1/64)


def pretrained_checkpoint(arch: str, pretrained: str) -> str:
    """Local file of an open_clip pretrained tag or path; HarnessError if it is not on disk.

    Never downloads: a tag is looked up in the Hugging Face cache that open_clip downloads to,
    so an offline machine fails at once with a message that says where to put the file.
    """
    if os.path.isfile(pretrained):
        return pretrained
    tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise HarnessError(
            f"{pretrained!r} is neither a file nor an open_clip tag of {arch!r} "
            f"(tags: {', '.join(tags) or 'none'})",
            "clip.pretrained",
        )
    if "file" in tag_cfg:
        return tag_cfg["file"]
    from huggingface_hub import constants, try_to_load_from_cache

    repo, filename = os.path.split(tag_cfg["hf_hub"].rstrip("/") + "/")
    if not filename:  # open_clip's default name, and the safetensors copy it prefers
        repo, filename = tag_cfg["hf_hub"].rstrip("/"), HF_WEIGHTS_NAME
    names = [HF_SAFE_WEIGHTS_NAME, filename] if filename == HF_WEIGHTS_NAME else [filename]
    for name in names:
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str):
            return found
    raise HarnessError(
        f"pretrained CLIP {arch}:{pretrained} is not in the local cache and weights are never "
        f"downloaded at run time. Put {repo}/{names[-1]} into the Hugging Face cache at "
        f"{constants.HF_HUB_CACHE} (on a connected machine: `hf download {repo} {names[-1]}`, "
        f"then copy the cache; HF_HUB_CACHE moves it), or set clip.pretrained to the "
        f"checkpoint's local path",
        "clip.pretrained",
    )


def _custom_clip(cfg: ClipConfig) -> CLIP:
    """The small CLIP of `arch: custom`: one attention head per HEAD_WIDTH channels."""
    vision_heads = cfg.vision_width // min(HEAD_WIDTH, cfg.vision_width)
    text_heads = max(1, cfg.text_width // HEAD_WIDTH)
    for arg, width, heads in (("vision_width", cfg.vision_width, vision_heads),
                              ("text_width", cfg.text_width, text_heads)):  # fmt: skip
        if width % heads:  # open_clip would fail deep inside torch's attention
            raise ArgumentError(arg, f"{width} is not divisible by its {heads} attention heads "
                                f"(one per {HEAD_WIDTH} channels)")  # fmt: skip
    vision = CLIPVisionCfg(
        layers=cfg.vision_layers,
        width=cfg.vision_width,
        head_width=min(HEAD_WIDTH, cfg.vision_width),
        patch_size=cfg.patch_size,
        image_size=cfg.image_size,
    )
    text = CLIPTextCfg(
        context_length=cfg.context_length,
        width=cfg.text_width,
        heads=text_heads,
        layers=cfg.text_layers,
    )
    return CLIP(cfg.embed_dim, vision, text)


@functools.cache
def _tokenizer(arch: str, context_length: int) -> Any:
    # Reading the BPE merges takes seconds: once per process, not once per module.
    if arch == "custom":
        return open_clip.SimpleTokenizer(context_length=context_length)
    return open_clip.get_tokenizer(arch)


def _open_clip_model(cfg: ClipConfig, load_weights: bool) -> tuple[torch.nn.Module, Any, Any]:
    """(model, mean, std) for a named open_clip architecture, pretrained or not."""
    checkpoint, mean, std = None, CLIP_MEAN, CLIP_STD
    if cfg.pretrained and load_weights:
        checkpoint = pretrained_checkpoint(cfg.arch, cfg.pretrained)
    tag_cfg = open_clip.get_pretrained_cfg(cfg.arch, cfg.pretrained) if cfg.pretrained else {}
    mean, std = tag_cfg.get("mean", mean), tag_cfg.get("std", std)
    try:
        model = open_clip.create_model(
            cfg.arch, pretrained=checkpoint, pretrained_image=False, pretrained_text=False
        )
    except RuntimeError as err:
        raise HarnessError(str(err), "clip.arch") from err
    return model, mean, std


class ClipStage(pl.LightningModule):
    """An open_clip CLIP with the harness's pixel and token conventions.

    `ClipStage(cfg)` is the untrained model for `arch: custom` (or a named open_clip model
    with its pretrained weights when `cfg.pretrained` is set and `load_weights`).
    """

    def __init__(self, cfg: ClipConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.arch == "custom":
            self.model, mean, std = _custom_clip(cfg), CLIP_MEAN, CLIP_STD
        else:
            self.model, mean, std = _open_clip_model(cfg, load_weights)
        self._tokenizer = _tokenizer(cfg.arch, cfg.context_length)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.embed_dim = int(self.model.visual.output_dim)
        size = self.model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, tuple | list) else size)
        self.context_length = int(self.model.context_length)
        text = getattr(self.model, "text", self.model)  # CustomTextCLIP keeps it in .text
        self.text_width = int(text.transformer.width)
        self.loss = ClipLoss()
        self.total_steps = cfg.train_steps

    # ----------------------------------------------------------------- encoders
    def tokenize(self, captions: list[str]) -> torch.LongTensor:
        """Captions -> (B, L) token ids, L = context_length, 0 = padding."""
        # Datasets repeat captions a lot (shapes: ~4x); BPE each distinct one once.
        unique = list(dict.fromkeys(captions))
        ids = self._tokenizer(unique, context_length=self.context_length)
        if len(unique) == len(captions):
            return ids
        row = {c: i for i, c in enumerate(unique)}
        return ids[torch.tensor([row[c] for c in captions], dtype=torch.long)]

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) or float in [-1, 1] -> CLIP input (B, 3, S, S), S = image_size."""
        x = images.to(self.mean.device)
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float().add(1.0).mul(0.5)
        x = resize(x, self.image_size)
        return (x - self.mean) / self.std

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images (any H) -> z_i (B, D), L2-normalised."""
        return self.model.encode_image(self.prepare(images), normalize=True)

    def encode_text(self, captions: list[str]) -> torch.Tensor:
        """Captions -> z_t (B, D), L2-normalised."""
        return self.encode_tokens(self.tokenize(captions))[0]

    def encode_tokens(
        self, tokens: torch.LongTensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L) ids -> z_t (B, D) normalised, text_enc (B, L, W) after ln_final, mask (B, L).

        text_enc is what unCLIP's prior and decoder attend over; mask is True at real tokens
        (start and end included), False at padding.
        """
        tokens = tokens.to(self.mean.device)
        text_enc, pooled = self._text_tower(tokens)
        return F.normalize(pooled, dim=-1), text_enc, tokens != 0

    def _text_tower(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token outputs and projected pooled output of the text transformer."""
        m = self.model
        if hasattr(m, "text"):  # CustomTextCLIP: its TextTransformer can return the tokens
            if not hasattr(m.text, "output_tokens"):
                raise HarnessError(f"{self.cfg.arch}: text tower has no per-token outputs")
            keep, m.text.output_tokens = m.text.output_tokens, True
            try:
                pooled, text_enc = m.text(tokens)
            finally:
                m.text.output_tokens = keep
            return text_enc, pooled
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast) + m.positional_embedding.to(cast)  # (B, L, W)
        x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask))  # (B, L, W)
        pooled = open_clip.transformer.text_global_pool(
            x, tokens, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None)
        )  # (B, W)
        proj = m.text_projection
        if proj is not None:
            pooled = proj(pooled) if isinstance(proj, torch.nn.Linear) else pooled @ proj
        return x, pooled

    # ----------------------------------------------------------------- training
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        images, tokens = batch  # uint8 (B, 3, H, W), (B, L)
        z_i = self.encode_images(images)
        z_t = self.encode_tokens(tokens)[0]
        loss = self.loss(z_i, z_t, self.model.logit_scale.exp())
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, *_: Any) -> None:
        with torch.no_grad():  # CLIP: the learned temperature is clipped at 100
            self.model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)

    def configure_optimizers(self) -> dict[str, Any]:
        # No weight decay on gains, biases, embeddings and the temperature (open_clip's rule).
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            flat = p.ndim < 2 or "embedding" in name or "logit_scale" in name
            (no_decay if flat else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": self.cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, lr=self.cfg.lr, betas=(0.9, 0.98), eps=1e-6)
        warmup = max(1, int(self.total_steps * WARMUP_FRACTION))
        return with_schedule(opt, self.total_steps, warmup, floor=0.0)


class _TokenizedPairs(Dataset):
    """(uint8 image, token ids) pairs; captions are tokenized once up front."""

    def __init__(self, source: Dataset, tokens: torch.Tensor) -> None:
        self.source, self.tokens = source, tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.source[i][0], self.tokens[i]


def source_captions(source: Dataset) -> list[str]:
    """All captions of a source without decoding its images where it can."""
    captions = getattr(source, "captions", None)
    if captions is not None:
        return list(captions)
    return [source[i][1] for i in range(len(source))]


@torch.inference_mode()
def retrieval_top1(z_i: torch.Tensor, z_t: torch.Tensor, batch: int = RETRIEVAL_BATCH) -> dict:
    """Top-1 retrieval within consecutive batches of `batch` pairs (chance 1/batch).

    z_i, z_t: (N, D) normalised, row k of each from the same pair. A trailing partial batch
    is dropped so every query has the same number of candidates.
    """
    n = (len(z_i) // batch) * batch
    if n == 0:
        raise HarnessError(f"retrieval needs at least {batch} held-out pairs, got {len(z_i)}")
    zi = z_i[:n].view(-1, batch, z_i.shape[-1])  # (G, b, D)
    zt = z_t[:n].view(-1, batch, z_t.shape[-1])
    sim = zt @ zi.transpose(1, 2)  # (G, b text, b image)
    target = torch.arange(batch, device=sim.device)
    t2i = (sim.argmax(-1) == target).float().mean().item()
    i2t = (sim.argmax(-2) == target).float().mean().item()
    return {"t2i_top1": t2i, "i2t_top1": i2t, "batch": batch, "pairs": n, "chance": 1 / batch}


@torch.inference_mode()
def encode_source(clip: ClipStage, source: Dataset, batch_size: int = 256):
    """(z_i, z_t) (N, D) of every pair of a source."""
    loader = DataLoader(source, batch_size=batch_size, shuffle=False)
    z_i, z_t = [], []
    for images, captions in loader:
        z_i.append(clip.encode_images(images).float().cpu())
        z_t.append(clip.encode_text(list(captions)).float().cpu())
    return torch.cat(z_i), torch.cat(z_t)


class ClipRecipe(Recipe):
    """A CLIP stage (the conditioning CLIP or the evaluator): trained on the data's train
    split with the contrastive loss, or pretrained (nothing to train); scored by held-out
    retrieval. Which one is the graph's business: `section` and `seed` say where its
    settings are."""

    def key_inputs(self, cfg: Config) -> list[Any]:
        return [training_fields(cfg.data)]

    def build(self, ctx: StageContext, fresh: bool) -> ClipStage:
        return ClipStage(self.config(ctx.cfg), load_weights=fresh)

    def prepare(self, ctx: StageContext, clip: ClipStage) -> Fit:
        c, cfg = self.config(ctx.cfg), ctx.cfg
        if c.pretrained or c.train_steps <= 0:
            return Fit(steps=0)
        source = build_source(cfg.data, "train")
        pairs = _TokenizedPairs(source, clip.tokenize(source_captions(source)))
        loader = DataLoader(
            pairs,
            batch_size=min(c.batch_size, len(pairs)),
            shuffle=True,
            drop_last=True,
            num_workers=cfg.train.num_workers,
            persistent_workers=cfg.train.num_workers > 0,
        )
        return Fit(steps=c.train_steps, train=loader)

    def evaluate(self, ctx: StageContext, clip: ClipStage, run: FitRun) -> dict[str, Any]:
        clip.requires_grad_(False)
        z_i, z_t = encode_source(clip, build_source(ctx.cfg.data, "val"))
        metrics = {f"val_{k}" if k.endswith("top1") else f"retrieval_{k}": v
                   for k, v in retrieval_top1(z_i, z_t).items()}  # fmt: skip
        loss = run.logged.get("train/loss", float("nan"))
        return metrics | {"final_loss": loss, "pretrained": self.config(ctx.cfg).pretrained or None}


def load_clip_dir(out_dir: Path) -> ClipStage:
    """Whatever CLIP a stage folder holds (the conditioning one or an evaluator), rebuilt
    from the config its checkpoint records: `score --evaluator DIR`."""
    payload = read_checkpoint(out_dir, "CLIP")
    clip = ClipStage(ClipConfig(**payload["config"]), load_weights=False)
    clip.load_state_dict(payload["state_dict"])
    return clip.eval().requires_grad_(False)
