"""Metric validity on shapes: clean real images vs the same images blurred, noised, or with
shuffled captions -- every metric must move the right way, beyond its 95% interval. Uses a
briefly trained evaluator CLIP and attribute classifier (tiny; the real ones are bigger)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import gaussian_blur

from harness.cache import StageCache
from harness.config import ClipConfig, Config, DataConfig, EvalConfig
from harness.data import build_source
from harness.errors import HarnessError
from harness.metrics import uncertainty as U
from harness.metrics.compositional import cached_classifier, classifier_key
from harness.metrics.inference import differ
from harness.metrics.score import Evaluators, score_folders, score_images
from harness.metrics.suite import load_suite, parse_suite
from harness.stages import graph
from harness.stages.clip import load_clip_dir
from harness.stages.stage import StageContext
from tests.conftest import run_cli

DATA = DataConfig(resolution=32, n_train=1500, n_val=256, n_test=256)
EVAL_CLIP = ClipConfig(
    image_size=16, embed_dim=32, vision_width=32, vision_layers=1, patch_size=4,
    text_width=32, text_layers=1, context_length=24, train_steps=200, batch_size=64, lr=3e-3,
)  # fmt: skip
CLASSIFIER_STEPS = 150


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("metrics")
    cfg = Config(data=DATA, eval=EvalConfig(clip=EVAL_CLIP))
    graph.EVAL_CLIP.train(StageContext(cfg, root / "eval_clip"))
    clip = load_clip_dir(root / "eval_clip")
    classifier, _ = cached_classifier(DATA, root / "cache", steps=CLASSIFIER_STEPS)
    test, val = build_source(DATA, "test"), build_source(DATA, "val")
    return {
        "root": root,
        "ev": Evaluators(clip=clip, classifier=classifier),
        "images": torch.from_numpy(test.images).permute(0, 3, 1, 2).contiguous(),
        "captions": test.captions,
        "claims": list(test.claims),  # what each caption states (issue 20)
        "reference": torch.from_numpy(val.images).permute(0, 3, 1, 2).contiguous(),
    }


SUITE = parse_suite(
    {"metrics": ["fd", "kd", "clip_score", "compositional", "diversity"],
     "features": "evaluator_clip", "n_bootstrap": 100, "kid_subsets": 10,
     "kid_subset_size": 200},
    "test",
)  # fmt: skip


def scores(world: dict, images: torch.Tensor, captions: list[str], claims=None) -> dict:
    return score_images(
        SUITE, world["ev"], images, world["reference"], captions, claims or world["claims"]
    )


def worse(clean: U.Estimate, bad: U.Estimate, higher_is_better: bool) -> bool:
    """`bad` moved the wrong-for-quality way, beyond the clean interval, and the two differ
    by the harness's own rule (the difference's interval excludes 0)."""
    beyond = bad.value < clean.lo if higher_is_better else bad.value > clean.hi
    return beyond and differ(clean, bad)


def test_every_metric_moves_the_right_way(world):
    images, captions = world["images"], world["captions"]
    clean = scores(world, images, captions)
    assert set(clean) == {"fd_clip", "kd_clip", "clip_score", "compositional_acc", "object_recall"}
    assert clean["compositional_acc"].value > 0.3  # the classifier reads real scenes
    assert clean["object_recall"].value >= clean["compositional_acc"].value  # graded, looser
    blurred = gaussian_blur(images, kernel_size=11, sigma=3.0)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(images.shape, generator=gen) * 60
    noised = (images.float() + noise).clamp(0, 255).to(torch.uint8)
    for name, corrupt in (("blur", blurred), ("noise", noised)):
        bad = scores(world, corrupt, captions)
        for metric in ("fd_clip", "kd_clip"):
            assert worse(clean[metric], bad[metric], False), (name, metric, clean, bad)
        for metric in ("clip_score", "compositional_acc", "object_recall"):
            assert worse(clean[metric], bad[metric], True), (name, metric, clean, bad)
    perm = np.roll(np.arange(len(captions)), 1)
    shuffled = scores(
        world, images, [captions[i] for i in perm], [world["claims"][i] for i in perm]
    )
    assert shuffled["fd_clip"].value == clean["fd_clip"].value  # images unchanged
    for metric in ("clip_score", "compositional_acc", "object_recall"):
        assert worse(clean[metric], shuffled[metric], True), (metric, clean, shuffled)


def test_diversity_moves_the_right_way(world):
    src = world["images"][:24]
    gen = torch.Generator().manual_seed(1)
    faithful = src[:, None].float() + torch.randn(24, 4, *src.shape[1:], generator=gen) * 8
    faithful = faithful.clamp(0, 255).to(torch.uint8)  # (24, 4, 3, H, W): near-copies
    strangers = world["images"][24 : 24 + 96].reshape(24, 4, *src.shape[1:])  # other scenes
    low = score_images(SUITE, world["ev"], src, variations=(src, faithful))
    high = score_images(SUITE, world["ev"], src, variations=(src, strangers))
    name = next(k for k in low if k.startswith("diversity_"))
    keep = name.replace("diversity_", "preservation_")
    assert worse(high[name], low[name], True)  # strangers are more diverse
    assert worse(low[keep], high[keep], True)  # and keep less of the source


def test_classifier_reports_its_heldout_accuracy(world):
    cache = StageCache(world["root"] / "cache")
    metrics = json.loads(
        (cache.path("attribute_classifier", classifier_key(DATA, CLASSIFIER_STEPS))
         / "stage_metrics.json").read_text()
    )  # fmt: skip
    assert 0.0 <= metrics["scene_acc"] <= metrics["occupant_acc"] <= 1.0
    assert metrics["n_heldout"] == DATA.n_val


def test_score_cli_scores_two_folders(world, tmp_path):
    gen_dir, ref_dir = tmp_path / "gen", tmp_path / "ref"
    gen_dir.mkdir(), ref_dir.mkdir()
    lines = []
    for i, im in enumerate(world["images"][:64]):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(gen_dir / f"{i:03d}.png")
        lines.append(f"{i:03d}.png\t{world['captions'][i]}")
    for i, im in enumerate(world["reference"][:64]):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(ref_dir / f"{i:03d}.png")
    (tmp_path / "caps.tsv").write_text("\n".join(lines) + "\n")
    cache = tmp_path / "cache"  # the default classifier key, filled with the tiny one
    tiny = world["root"] / "cache" / "attribute_classifier" / classifier_key(DATA, 150)

    def copy_tiny(tmp: Path) -> None:
        shutil.copytree(tiny, tmp, dirs_exist_ok=True)

    StageCache(cache).resolve("attribute_classifier", classifier_key(DataConfig()), copy_tiny)
    args = ["score", str(gen_dir), str(ref_dir), "--suite", "quick", "--json"]
    args += [
        "--captions",
        str(tmp_path / "caps.tsv"),
        "--evaluator",
        str(world["root"] / "eval_clip"),
    ]
    out = run_cli(*args, "--cache", str(cache))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert {"fd_clip", "kd_clip", "clip_score", "compositional_acc"} <= set(got)
    assert "fid" not in got and got["clip_score"]["lo"] <= got["clip_score"]["value"]
    with pytest.raises(HarnessError, match="nope: not a folder"):  # before training anything
        score_folders(gen_dir, tmp_path / "nope", load_suite("quick"), cache_dir=cache)
