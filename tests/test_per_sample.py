"""per_sample.csv and its W&B Table, unit level (test_run_statistics.py: what `run` writes)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from PIL import Image

from harness import per_sample
from tests.test_tracking import inspect


def arm_files(folder, seed: int, captions: list[str]):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (len(captions), 3, 8, 8), dtype=np.uint8)
    paths = per_sample.save_images(images, folder / "samples")
    scores = {"clip_score": rng.random(len(captions)), "claims_met": np.array([1.0, np.nan, 0.0])}
    path = per_sample.write_per_sample(folder / "per_sample.csv", captions, paths, scores)
    return images, scores, path


def test_rows_hold_caption_image_and_every_score_and_join_across_arms(tmp_path):
    captions = ["a red circle", 'a, "quoted" square', "two\nlines"]
    images, scores, path = arm_files(tmp_path / "a", 0, captions)
    _, _, other = arm_files(tmp_path / "b", 1, captions)
    rows = list(csv.DictReader(path.open(newline="")))
    assert [r["caption"] for r in rows] == captions  # commas, quotes, newlines survive
    for i, r in enumerate(rows):
        assert int(r["index"]) == i and float(r["clip_score"]) == scores["clip_score"][i]
        assert np.array_equal(np.asarray(Image.open(path.parent / r["image"])),
                              images[i].transpose(1, 2, 0))  # fmt: skip
    assert math.isnan(float(rows[1]["claims_met"]))
    joined = {r["index"]: r["caption"] for r in csv.DictReader(other.open(newline=""))}
    assert all(joined[r["index"]] == r["caption"] for r in rows)  # same index, same caption
    with pytest.raises(ValueError, match="clip_score"):
        per_sample.write_per_sample(tmp_path / "x.csv", captions, [path] * 3,
                                    {"clip_score": np.zeros(2)})  # fmt: skip


def test_the_table_and_the_results_artifact_reach_wandb(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    captions = ["a red circle", "a blue square", "a green triangle"]
    _, _, path = arm_files(tmp_path, 0, captions)
    (tmp_path / "results.csv").write_text("arm,seed\nx,0\n")
    run = wandb.init(project="t", dir=str(tmp_path), mode="offline", reinit="create_new",
                     settings=wandb.Settings(console="off", silent=True))  # fmt: skip
    per_sample.log_per_sample(run, path)
    per_sample.log_results_artifact(run, "micro", [tmp_path / "results.csv", tmp_path / "nope"])
    run_dir = run.dir
    run.finish()
    records = inspect(tmp_path / "wandb" / next((tmp_path / "wandb").glob("offline-run-*")).name)
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    assert any(h.get("per_sample._type") == "table-file" for h in history)
    assert any(r["type"] == "artifact" for r in records), run_dir
