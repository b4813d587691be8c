"""Per-sample results of one arm: per_sample.csv, a W&B Table keyed by caption index, and
the experiment's results files as a W&B artifact.

Every arm samples the same captions in the same order (caption index i is the same caption
for every arm, with the same noise), so a table keyed by `index` lines the arms up side by
side in a W&B comparison, and per_sample.csv files join on `index` with pandas.

The runner calls `write_arm` after scoring an arm, `log_per_sample` in its W&B run, and
`log_results_artifact` in the experiment's `results` run once results.csv/json exist.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .atomic import atomic_write

PER_SAMPLE_FILE = "per_sample.csv"
FIXED = ("index", "caption", "image")  # the columns before the metrics


def save_images(images: np.ndarray, folder: Path) -> list[Path]:
    """uint8 (N, 3, H, W) -> folder/NNNNN.png, one per sample, in caption order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i:05d}.png"
        if not path.is_file():  # a rerun of the same samples rewrites nothing
            pil = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)))
            atomic_write(path, lambda tmp, pil=pil: pil.save(tmp, format="PNG"))
        paths.append(path)
    return paths


def write_per_sample(
    path: Path,
    captions: Sequence[str],
    images: Sequence[Path],
    metrics: dict[str, np.ndarray],
) -> Path:
    """One row per sample: caption index, caption, image file (relative to `path`'s folder),
    then each per-sample metric (NaN where a metric has no value for that sample)."""
    n = len(captions)
    if len(images) != n:
        raise ValueError(f"{len(images)} images for {n} captions")
    for name, values in metrics.items():
        if len(values) != n:
            raise ValueError(f"{name}: {len(values)} values for {n} captions")
    names = sorted(metrics)

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow([*FIXED, *names])
            for i in range(n):
                image = Path(images[i])
                rel = image.relative_to(path.parent) if image.is_relative_to(path.parent) else image
                w.writerow([i, captions[i], str(rel), *(float(metrics[m][i]) for m in names)])

    return atomic_write(path, write)


def per_sample_values(metrics: dict[str, Any], n: int) -> dict[str, np.ndarray]:
    """The per-sample values of each mean-type metric, as (n,) by caption index: a metric of
    the first m < n captions (sample diversity, variations of the split's first images) is
    NaN beyond them. Set-level figures (FD, KD) have no per-sample value."""
    out = {}
    for name, e in metrics.items():
        v = getattr(e, "per_sample", None)
        if v is not None and len(v) <= n:
            out[name] = np.concatenate([v, np.full(n - len(v), np.nan)])
    return out


def write_arm(out: Path, samples: Path, metrics: dict[str, Any]) -> Path:
    """An arm's per_sample.csv from its cached samples folder and its metrics."""
    images = np.load(samples / "images.npy")
    captions = json.loads((samples / "captions.json").read_text())
    paths = save_images(images, out / "samples")
    return write_per_sample(out / PER_SAMPLE_FILE, captions, paths,
                            per_sample_values(metrics, len(captions)))  # fmt: skip


def read_per_sample(path: Path) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of a per_sample.csv, numbers as numbers (NaN as None)."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        columns = next(reader)
        rows = []
        for row in reader:
            values = [float(v) for v in row[len(FIXED) :]]
            rows.append([int(row[0]), row[1], row[2],
                         *(None if math.isnan(v) else v for v in values)])  # fmt: skip
    return columns, rows


def log_per_sample(run: Any | None, path: Path, key: str = "per_sample") -> None:
    """The arm's per_sample.csv as a W&B Table: index, caption, the image, every score."""
    if run is None:
        return
    import wandb

    columns, rows = read_per_sample(path)
    for row in rows:
        row[2] = wandb.Image(str(path.parent / row[2]), caption=row[1])
    run.log({key: wandb.Table(columns=columns, data=rows)})


def log_results_artifact(run: Any | None, experiment: str, files: Sequence[Path]) -> None:
    """results.csv / results.json (those present) as one W&B artifact of type `results`."""
    if run is None:
        return
    import wandb

    artifact = wandb.Artifact(f"{experiment}-results", type="results")
    for f in files:
        if Path(f).is_file():
            artifact.add_file(str(f))
    run.log_artifact(artifact)
