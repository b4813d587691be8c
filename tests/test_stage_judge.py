"""The decoder's held-out object recall (issue 16): the judge `run` hands the stages scores
decodings against their captions' claims with the metrics suite's attribute classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import harness.metrics.compositional as comp
from harness.config import DataConfig
from harness.data import build_source


class Oracle:
    """A classifier that reads each val image exactly (the generator's attributes)."""

    def __init__(self, images: torch.Tensor, attributes: np.ndarray) -> None:
        self.truth = {img.numpy().tobytes(): cells for img, cells in
                      zip(images, comp.targets_as_cells(attributes), strict=True)}  # fmt: skip

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.truth[i.numpy().tobytes()] for i in images]))


def test_the_judge_scores_truth_at_one_and_mismatched_images_lower(monkeypatch, tmp_path):
    data = DataConfig(resolution=32, n_train=64, n_val=48, n_test=16, caption_detail=0.6)
    val = build_source(data, "val")
    images = torch.from_numpy(np.asarray(val.images)).permute(0, 3, 1, 2).contiguous()
    oracle = Oracle(images, val.attributes)
    monkeypatch.setattr(comp, "cached_classifier", lambda *a, **k: (oracle, tmp_path / "k"))
    judge = comp.held_out_judge(tmp_path, steps=5)
    right = judge(data, "val", images)
    assert right["object_recall"] == 1.0 and right["compositional_acc"] == 1.0
    assert right["object_recall_se"] == 0.0 and "5 steps" in right["judge"]
    wrong = judge(data, "val", images.roll(1, 0))  # each image shows its neighbour's scene
    assert wrong["object_recall"] < 0.7 and wrong["compositional_acc"] < 0.5
    assert 0 < wrong["object_recall_se"] < 0.2
    first = judge(data, "val", images[:10])  # the first n items only
    assert first["object_recall"] == 1.0


def test_a_run_records_the_decoders_recall_beside_the_real_images(micro_cache: Path):
    (entry,) = [p for p in (micro_cache / "decoder").iterdir() if not p.name.startswith(".")]
    m = json.loads((entry / "stage_metrics.json").read_text())
    for name in ("object_recall", "real_object_recall", "compositional_acc"):
        assert 0.0 <= m[name] <= 1.0 and m[f"{name}_se"] >= 0.0, name
    key = m["judge"].split()[1]  # the classifier the arms are scored with, from the same cache
    assert (micro_cache / "classifier" / "attribute_classifier" / key / "model.pt").is_file()


class Partial(Oracle):
    """Reads a planted share of the images exactly and sees nothing in the rest: each
    image's recall is then exactly 1 or 0, so the population recall is the planted share."""

    def __init__(self, images: torch.Tensor, attributes: np.ndarray, share: float) -> None:
        super().__init__(images, attributes)
        self.share, self.rng = share, np.random.default_rng(0)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        cells = super().predict(images)
        blind = torch.from_numpy(self.rng.random(len(images)) >= self.share)
        cells[blind] = -1  # no object in any cell
        return cells


def test_the_judges_interval_covers_a_planted_recall_at_its_rate(monkeypatch, tmp_path):
    """mean +- 1.96 SE of the stage figure (benchmarks/quality.py's interval) must cover the
    planted recall about 95% of the time (Wald on 48 Bernoulli items: a little under)."""
    data = DataConfig(resolution=32, n_train=64, n_val=48, n_test=16, caption_detail=0.6)
    val = build_source(data, "val")
    images = torch.from_numpy(np.asarray(val.images)).permute(0, 3, 1, 2).contiguous()
    share = 0.6
    net = Partial(images, val.attributes, share)
    monkeypatch.setattr(comp, "cached_classifier", lambda *a, **k: (net, tmp_path / "k"))
    judge = comp.held_out_judge(tmp_path, steps=5)
    covered, repeats = 0, 300
    for _ in range(repeats):
        r = judge(data, "val", images)
        covered += abs(r["object_recall"] - share) <= 1.96 * r["object_recall_se"]
    print(f"\ncoverage {covered / repeats:.3f}")
    assert 0.88 <= covered / repeats <= 0.99, covered / repeats
