"""How each unCLIP stage is trained into, and loaded from, a stage-cache directory.

The runner and the sweep resolve stages only through this table, so the order of
dependencies (CLIP before prior and decoder) and the load signatures live in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config

Loaded = dict[str, Any]  # stage name -> loaded module (upstream stages for downstream ones)
Paths = dict[str, Path]  # stage name -> cache directory


@dataclass(frozen=True)
class StageSpec:
    name: str
    needs: tuple[str, ...]  # upstream stages that must be loaded first
    train: Callable[[Config, Path, Loaded, Paths, bool], None]
    load: Callable[[Config, Path, Loaded], Any]


def _train_clip(which: str) -> Callable[[Config, Path, Loaded, Paths, bool], None]:
    def train(cfg: Config, out: Path, loaded: Loaded, paths: Paths, progress: bool) -> None:
        from .clip import train_clip

        train_clip(cfg, which, out, progress=progress)

    return train


def _load_clip(which: str) -> Callable[[Config, Path, Loaded], Any]:
    def load(cfg: Config, path: Path, loaded: Loaded) -> Any:
        from .clip import load_clip

        return load_clip(path, cfg.clip if which == "clip" else cfg.eval.clip)

    return load


def _train_prior(cfg: Config, out: Path, loaded: Loaded, paths: Paths, progress: bool) -> None:
    from ..embeddings import compute_embeddings
    from .prior import train_prior

    clip = loaded["clip"]
    train = compute_embeddings(clip, paths["clip"], cfg.data, "train")
    val = compute_embeddings(clip, paths["clip"], cfg.data, "val")
    train_prior(cfg, train, val, out, progress=progress)


def _load_prior(cfg: Config, path: Path, loaded: Loaded) -> Any:
    from .prior import load_prior

    return load_prior(path, cfg, loaded["clip"].embed_dim, loaded["clip"].text_width)


def _train_decoder(cfg: Config, out: Path, loaded: Loaded, paths: Paths, progress: bool) -> None:
    from .decoder import train_decoder

    train_decoder(
        cfg,
        loaded["clip"],
        out,
        evaluator=loaded["eval_clip"],
        progress=progress,
        clip_dir=paths["clip"],
    )


def _load_decoder(cfg: Config, path: Path, loaded: Loaded) -> Any:
    from .decoder import load_decoder

    return load_decoder(path, cfg, loaded["clip"].embed_dim)


def _train_upsampler(which: str) -> Callable[[Config, Path, Loaded, Paths, bool], None]:
    def train(cfg: Config, out: Path, loaded: Loaded, paths: Paths, progress: bool) -> None:
        from .upsampler import train_upsampler

        train_upsampler(cfg, which, out, progress=progress)

    return train


def _load_upsampler(which: str) -> Callable[[Config, Path, Loaded], Any]:
    def load(cfg: Config, path: Path, loaded: Loaded) -> Any:
        from .upsampler import load_upsampler

        return load_upsampler(path, cfg, which)

    return load


SPECS: dict[str, StageSpec] = {
    s.name: s
    for s in (
        StageSpec("clip", (), _train_clip("clip"), _load_clip("clip")),
        StageSpec("eval_clip", (), _train_clip("eval_clip"), _load_clip("eval_clip")),
        StageSpec("prior", ("clip",), _train_prior, _load_prior),
        StageSpec("decoder", ("clip", "eval_clip"), _train_decoder, _load_decoder),
        StageSpec("upsampler1", (), _train_upsampler("first"), _load_upsampler("first")),
        StageSpec("upsampler2", (), _train_upsampler("second"), _load_upsampler("second")),
    )
}
