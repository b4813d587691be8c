"""The data sources by name (`data.source`): a registry, DiT-style, not an if-chain.

    shapes      synthetic captioned shapes, generated in-process (the embedded default)
    folder      a folder of images with captions.jsonl / captions.csv     (data.path)
    webdataset  tar shards of (image, caption) samples                     (data.path: glob)
    coco        COCO captions                        (data.path: images, data.annotations)

A plugin file adds one with `DATA_SOURCES.register(name, DataSource(build, needs=...))`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from torch.utils.data import Dataset

from ..config import DataConfig
from ..registry import DATA_SOURCES
from .coco import CocoCaptions
from .folder import FolderSource
from .records import log
from .shapes import ShapesDataset, ShapesSpec
from .webdataset import WebDatasetSource

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DataSource:
    """build(cfg, split, n, resolution) -> a Dataset of (uint8 image (3, R, R), caption)."""

    build: Callable[[DataConfig, str, int, int], Dataset]
    needs: tuple[str, ...] = ()  # data.* fields that must be set (files it reads)
    attributes: bool = False  # items carry ground-truth attributes (compositional metrics)


def _shapes(cfg: DataConfig, split: str, n: int, res: int) -> Dataset:
    spec = ShapesSpec(
        resolution=res, max_objects=cfg.max_objects, min_objects=cfg.min_objects, seed=cfg.seed,
        caption_detail=cfg.caption_detail,
    )  # fmt: skip
    return ShapesDataset(split, n, spec)


DATA_SOURCES.register("shapes", DataSource(_shapes, attributes=True))
DATA_SOURCES.register(
    "folder", DataSource(lambda c, s, n, r: FolderSource(c.path, s, n, r), needs=("path",))
)
DATA_SOURCES.register(
    "webdataset", DataSource(lambda c, s, n, r: WebDatasetSource(c.path, s, n, r), ("path",))
)
DATA_SOURCES.register(
    "coco",
    DataSource(lambda c, s, n, r: CocoCaptions(c.path, c.annotations, s, n, r),
               needs=("path", "annotations")),
)  # fmt: skip


def source_of(cfg: DataConfig) -> DataSource:
    return DATA_SOURCES.get(cfg.source, "data.source")


def split_size(cfg: DataConfig, split: str) -> int:
    return {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]


def build_source(cfg: DataConfig, split: str, resolution: int | None = None) -> Dataset:
    """The dataset `cfg` names, for one split, at `resolution` (default cfg.resolution)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return source_of(cfg).build(cfg, split, split_size(cfg, split), resolution or cfg.resolution)


def check_source(cfg: DataConfig) -> None:
    """Fail fast, naming the path, when some split of `cfg` has no usable pair.

    Reads each split only up to its first usable pair (seconds, even for a large dataset),
    so a wrong path, a captions file without usable rows, or a folder of unreadable images is
    found before any stage trains; the real build later counts and reports what it skips.
    """
    probe = replace(cfg, n_train=1, n_val=1, n_test=1)
    quiet, log.disabled = log.disabled, True  # the probe's one-pair summaries would mislead
    try:
        for split in SPLITS:
            build_source(probe, split, resolution=8)
    finally:
        log.disabled = quiet
