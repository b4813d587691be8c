"""The metric registry, the new registry entries (sample_diversity, fd_inf), the real row
and the `compare` verb -- on synthetic images and a toy evaluator, nothing trained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.compare import compare_run, format_comparisons
from harness.config import DataConfig
from harness.errors import ConfigError, HarnessError
from harness.metrics import registry
from harness.metrics import uncertainty as U
from harness.metrics.inputs import Evaluators, Inputs
from harness.metrics.real import real_images, score_real
from harness.metrics.registry import Context, Output, register_metric
from harness.metrics.sample_diversity import sample_diversity
from harness.metrics.score import score_images
from harness.metrics.suite import Suite, parse_suite
from harness.results import save_replicates, write_json
from harness.sweep.objectives import parse_objectives
from tests.conftest import run_cli


class ToyClip:
    """A fixed random projection of pooled pixels as z_i; a hashed bag of words as z_t."""

    def __init__(self, dim: int = 16) -> None:
        self.proj = torch.randn(3 * 4 * 4, dim, generator=torch.Generator().manual_seed(0))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(images.double() / 255, 4).flatten(1)
        z = (pooled - 0.5) @ self.proj.double()
        return z / z.norm(dim=-1, keepdim=True)

    def encode_text(self, captions: list[str]) -> torch.Tensor:
        z = torch.zeros(len(captions), self.proj.shape[1], dtype=torch.float64)
        for i, c in enumerate(captions):
            for w in c.split():
                z[i, sum(map(ord, w)) % z.shape[1]] += 1.0
        return z / z.norm(dim=-1, keepdim=True).clamp_min(1e-9)


def images(n: int, seed: int, spread: float = 60.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 1, 1, generator=g) * 255
    noise = torch.randn(n, 3, 16, 16, generator=g) * spread
    return (base + noise).clamp(0, 255).to(torch.uint8)


def test_every_figure_has_one_entry_with_its_direction():
    assert {"fd", "fd_inf", "kd", "clip_score", "compositional", "diversity",
            "sample_diversity"} <= set(registry.METRICS)  # fmt: skip
    lower = ("fd_clip", "fd_clip_inf", "fid_inf", "kid")
    higher = ("clip_score", "object_recall", "sample_diversity_lpips", "preservation_clip")
    for name in lower + higher:
        assert registry.higher_is_better(name) is (name in higher), name
    assert registry.output_of("fd_clip_inf").kind == "set"
    assert registry.output_of("clip_score").kind == "sample"
    assert registry.higher_is_better("mystery") is None
    assert parse_objectives(["fd_clip_inf", "clip_score"], "s.yaml")[0].direction == "minimize"
    ctx = Context(net="clip", space="clip", shapes=False)
    assert "compositional_acc" not in registry.produced(["compositional", "fd"], ctx)


def test_unknown_metric_in_a_suite_is_one_line_with_did_you_mean():
    with pytest.raises(ConfigError, match=r"x\.yaml: metrics\[1\]: unknown value 'fd_inff'.*"
                       r"did you mean fd_inf"):  # fmt: skip
        parse_suite({"metrics": ["fd", "fd_inff"]}, "x.yaml")
    with pytest.raises(ConfigError, match="fd_inf_fractions"):
        parse_suite({"fd_inf_fractions": [0.5, 1.0]}, "x.yaml")


def test_a_plugin_metric_is_one_decorated_function():
    @register_metric("brightness", [Output("brightness", higher_is_better=True)], needs=("gen",))
    def brightness(inp: Inputs) -> dict[str, U.Estimate]:
        per_image = inp.gen.double().mean((1, 2, 3)).numpy()
        return {"brightness": U.bootstrap_mean(per_image, inp.suite.n_bootstrap, inp.seed)}

    try:
        suite = parse_suite({"metrics": ["brightness", "clip_score"], "n_bootstrap": 20}, "p")
        out = score_images(suite, Evaluators(), images(8, 0))  # no CLIP: clip_score skipped
        assert set(out) == {"brightness"} and out["brightness"].draws.n == 8
        with pytest.raises(ValueError, match="registered twice"):
            register_metric("brightness", [], needs=())(brightness)
    finally:
        registry.METRICS.remove("brightness")


def test_score_images_names_match_what_the_registry_says_it_produces():
    clip = ToyClip()
    suite = Suite(metrics=["fd", "fd_inf", "kd", "clip_score", "sample_diversity"],
                  features="evaluator_clip", n_bootstrap=20, resolution=16)  # fmt: skip
    groups = images(24, 3).reshape(6, 4, 3, 16, 16)
    out = score_images(suite, Evaluators(clip=clip), images(32, 1), images(64, 2),
                       captions=["a red square"] * 32, groups=groups)  # fmt: skip
    assert list(out) == registry.produced(suite.metrics, Context(net="clip", space="clip"))
    assert all(e.n == (6 if k.startswith("sample") else 32) for k, e in out.items())


def test_sample_diversity_is_zero_for_copies_and_finds_planted_diversity():
    def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a.float() - b.float()).abs().mean((1, 2, 3)) / 255

    one = images(12, 4)  # 12 captions' first samples
    copies = one[:, None].expand(-1, 4, -1, -1, -1)  # (12, 4, 3, H, W): K identical samples
    assert sample_diversity(copies, l1, "l1", 50)["sample_diversity_l1"].value == 0.0
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(copies.shape, generator=g)
    low = (copies.float() + noise * 10).clamp(0, 255).to(torch.uint8)
    high = (copies.float() + noise * 50).clamp(0, 255).to(torch.uint8)
    lo = sample_diversity(low, l1, "l1", 100)["sample_diversity_l1"]
    hi = sample_diversity(high, l1, "l1", 100)["sample_diversity_l1"]
    assert lo.value > 0 and hi.lo > lo.hi  # planted: more spread among a caption's samples
    with pytest.raises(ValueError, match="K>=2"):
        sample_diversity(one[:, None], l1, "l1")


DATA = DataConfig(resolution=16, n_val=32, n_test=32)


def test_real_row_scores_the_captions_own_images_against_another_split():
    from harness.data import build_source

    test = build_source(DATA, "test")
    captions = list(test.captions[:12])
    got = real_images(DATA, Suite(split="test", reference_split="val"), captions)
    assert torch.equal(got, torch.stack([test[i][0] for i in range(12)]))
    with pytest.raises(HarnessError, match="reference split .* holds the real row"):
        real_images(DATA, Suite(split="test", reference_split="test"), captions)
    with pytest.raises(HarnessError, match="caption 1 "):
        real_images(DATA, Suite(), [captions[0], "a dog", *captions[2:]])
    suite = Suite(metrics=["fd", "clip_score"], features="evaluator_clip", n_bootstrap=20)
    val = torch.stack([build_source(DATA, "val")[i][0] for i in range(32)])
    out = score_real(suite, Evaluators(clip=ToyClip()), DATA, val, captions)
    assert set(out) == {"fd_clip", "clip_score"} and out["clip_score"].draws.n == 12


def finished_run(tmp_path, effects: dict[str, float], legacy: bool = False) -> None:
    """A run directory as `run` leaves it: results.json rows and replicates.npz (`legacy`:
    as runs before issue 15 left it, without the bootstrap draws)."""
    rng = np.random.default_rng(0)
    captions = rng.normal(0, 10, 128)
    rows = []
    for arm, effect in effects.items():
        metrics = {"clip_score": U.bootstrap_mean(captions + effect + rng.normal(0, 1, 128)),
                   "fd_clip": U.bootstrap_mean(rng.normal(0.1, 0.01, 128))}  # fmt: skip
        out = tmp_path / arm / "seed0"
        out.mkdir(parents=True)
        save_replicates(out / "replicates.npz", metrics)
        saved = {k: e.as_dict() for k, e in metrics.items()}
        if legacy:
            saved = {k: {f: v for f, v in e.items() if f != "draws"} for k, e in saved.items()}
        rows.append({"arm": arm, "seed": 0, "axes": {}, "dir": str(out), "metrics": saved})
    write_json(tmp_path / "results.json", {"experiment": "toy", "rows": rows})


def test_compare_verb_prints_paired_difference_and_holm_p(tmp_path):
    finished_run(tmp_path, {"prior.kind=diffusion": 2.0, "prior.kind=caption_only": 0.0})
    out = run_cli("compare", str(tmp_path), "prior.kind=diffusion", "prior.kind=caption_only",
                  "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = {c["metric"]: c for c in json.loads(out.stdout)}
    assert got["clip_score"]["paired"] and got["clip_score"]["lo"] > 1.0
    assert got["clip_score"]["p_holm"] < 0.05 and got["fd_clip"]["p_holm"] >= got["fd_clip"]["p"]
    comps = compare_run(tmp_path, "prior.kind=diffusion", "prior.kind=caption_only")
    text = format_comparisons(comps, "prior.kind=diffusion", "prior.kind=caption_only")
    assert "clip_score" in text and "Holm over 2 metrics" in text and "unpaired" not in text
    bad = run_cli("compare", str(tmp_path), "prior.kind=diffusoin", "prior.kind=caption_only")
    assert bad.returncode == 2 and "did you mean prior.kind=diffusion" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_compare_on_a_run_without_draws_falls_back_to_unpaired(tmp_path):
    finished_run(tmp_path, {"a": 2.0, "b": 0.0}, legacy=True)
    comps = compare_run(tmp_path, "a", "b")
    assert comps and not any(c.diff.paired for c in comps)
    assert "unpaired: draws differ" in format_comparisons(comps, "a", "b")
