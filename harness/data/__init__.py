"""Captioned-image sources. Each yields (uint8 image tensor (3, H, W), caption str)."""

from __future__ import annotations

from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import ConfigError

SPLITS = ("train", "val", "test")


def split_size(cfg: DataConfig, split: str) -> int:
    return {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]


def build_source(cfg: DataConfig, split: str, resolution: int | None = None) -> Dataset:
    """The dataset `cfg` names, for one split, at `resolution` (default cfg.resolution)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    res = resolution or cfg.resolution
    if cfg.source == "shapes":
        from .shapes import ShapesDataset, ShapesSpec

        spec = ShapesSpec(
            resolution=res, max_objects=cfg.max_objects, min_objects=cfg.min_objects, seed=cfg.seed
        )
        return ShapesDataset(split, split_size(cfg, split), spec)
    raise ConfigError(f"data source {cfg.source!r} is not available in this version", "data.source")
