"""What the issue-16 quality studies share: the default setup's stages from a stage cache,
the held-out data, the judge, and the decoder's quality figures.

The studies read (and, where a stage is missing, train) stages through the real stage
graph and cache, so a variant is a config override (`--set decoder.prediction=v`) and its
stage lands under its own key. Use a private cache (HARNESS_CACHE or --cache).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.cache import StageCache
from harness.config import Config, load_experiment
from harness.data import build_source
from harness.data.images import to_model
from harness.embeddings import compute_embeddings
from harness.metrics.compositional import (
    cached_classifier,
    claim_of,
    load_classifier,
    recall,
    satisfies,
)
from harness.stages.decoder import stage_images
from harness.stages.graph import stage_keys
from harness.stages.resolve import Resolver

ROOT = Path(__file__).resolve().parents[1]
Scores = dict[str, tuple[float, float]]


def threads_from_env() -> None:
    """One thread unless STUDY_THREADS says otherwise: CPU seconds then compare across rows."""
    torch.set_num_threads(int(os.environ.get("STUDY_THREADS", "1")))


def default_config(overrides: list[str] | None = None, arm: int = 0) -> Config:
    exp = load_experiment(ROOT / "experiments" / "prior_ablation.yaml", overrides or [])
    return exp.config(exp.arms[arm], exp.seeds[0])


def cache_root(arg: Path | None) -> Path:
    return Path(arg or os.environ.get("HARNESS_CACHE", "/tmp/quality-cache"))


def load_stages(cfg: Config, cache: Path, names: tuple[str, ...]) -> tuple[dict, dict]:
    """The named stages (and what they are keyed on) from `cache`, trained there if absent."""
    keys = stage_keys(cfg)
    images_only = all(n.startswith("upsampler") for n in names)  # they need no CLIP
    need = {*names} if images_only else {"clip", "eval_clip", *names}
    wanted = {k: (v if k in need else None) for k, v in keys.items()}
    res = Resolver(StageCache(cache), echo=lambda s: print(s, flush=True)).resolve(cfg, wanted)
    return res.loaded, res.dirs


@dataclass
class HeldOut:
    """The first n val items under the conditioning CLIP, with images and caption claims."""

    z_i: torch.Tensor  # (n, D)
    z_t: torch.Tensor  # (n, D)
    tokens: torch.Tensor  # (n, L)
    images64: torch.Tensor  # uint8 (n, 3, 64, 64)
    claims: list
    captions: list[str]


def held_out(cfg: Config, clip: Any, clip_dir: Path, n: int) -> HeldOut:
    emb = compute_embeddings(clip, clip_dir, cfg.data, "val")
    source = build_source(cfg.data, "val")

    def t(a: np.ndarray, dtype: Any = None) -> torch.Tensor:
        return torch.from_numpy(np.array(a[:n], dtype=dtype))

    return HeldOut(
        t(emb.z_i, np.float32), t(emb.z_t, np.float32), t(emb.tokens),
        stage_images(cfg.data, "val", cfg.data.resolution)[:n],
        [claim_of(a) for a in source.attributes[:n]], list(emb.captions[:n]),
    )  # fmt: skip


def judge(cfg: Config, cache: Path) -> Any:
    """The attribute classifier scoring recall: STUDY_CLASSIFIER (a trained classifier's
    folder) or an 800-step one trained once into the cache (the quick suite's 150-step
    classifier reads real images unevenly across thread counts, so it is no fixed judge)."""
    if os.environ.get("STUDY_CLASSIFIER"):
        return load_classifier(Path(os.environ["STUDY_CLASSIFIER"]))
    return cached_classifier(cfg.data, cache / "classifier", 800)[0]


def derangement(n: int, seed: int = 0) -> torch.Tensor:
    """Each item's shuffled partner, as the decoder's stage metrics pair them."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    to = torch.empty_like(perm)
    to[perm] = perm[torch.arange(n).add(1) % n]
    return to


def mean_se(x: Any) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))


@torch.inference_mode()
def image_scores(images: torch.Tensor, ho: HeldOut, evaluator: Any, classifier: Any) -> Scores:
    """images float (n, 3, r, r) in [-1, 1] decoding ho's first n items: evaluator-CLIP
    matched cosine, margin over a shuffled partner, object recall, compositional accuracy."""
    n = len(images)
    real = to_model(ho.images64[:n])
    e_s = evaluator.encode_images(images.clamp(-1, 1)).float()
    e_r = evaluator.encode_images(real).float()
    matched = (e_s * e_r).sum(1)
    shuffled = (e_s * e_r[derangement(n)]).sum(1)
    cells = classifier.predict(images.clamp(-1, 1)).numpy()
    claims = ho.claims[:n]
    rec = [recall(c, k) for c, k in zip(cells, claims, strict=True)]
    acc = [float(satisfies(c, k)) for c, k in zip(cells, claims, strict=True)]
    return {"cos": mean_se(matched.numpy()), "margin": mean_se((matched - shuffled).numpy()),
            "recall": mean_se(rec), "comp": mean_se(acc)}  # fmt: skip


def fmt(scores: Scores) -> str:
    return "  ".join(f"{k} {v[0]:.3f}±{v[1]:.3f}" for k, v in scores.items())


class Clock:
    """CPU seconds of this process: comparable between rows of one run on a shared machine."""

    def __enter__(self) -> Clock:
        self.start = time.process_time()
        return self

    def __exit__(self, *_: Any) -> None:
        self.seconds = time.process_time() - self.start
