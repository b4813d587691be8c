"""Exact metric math: FD/KD against clean-fid, CLIP score by hand, intervals, suites, claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cleanfid.fid import fid_from_feats, kernel_distance

from harness.config import DataConfig
from harness.data import build_source
from harness.errors import ConfigError, HarnessError
from harness.metrics import fid, kd, registry
from harness.metrics import uncertainty as U
from harness.metrics.clip_score import clip_score, clip_scores
from harness.metrics.compositional import (
    claim_of,
    parse_caption,
    recall,
    satisfies,
    targets_as_cells,
)
from harness.metrics.diversity import variation_diversity
from harness.metrics.inference import differ, difference
from harness.metrics.score import data_reference
from harness.metrics.suite import Suite, load_suite, parse_suite, resolve_features


@pytest.fixture
def feats() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(200, 16)), rng.normal(size=(250, 16)) * 1.2 + 0.3


def test_frechet_equals_clean_fid(feats):
    a, b = feats
    ours = fid.frechet(a, fid.Reference.of(b))
    assert ours == pytest.approx(fid_from_feats(a, b), abs=1e-6)
    assert ours > 1.0  # a real difference, not a degenerate zero


def test_frechet_of_a_set_against_itself_is_zero(feats):
    a, _ = feats
    assert abs(fid.frechet(a, fid.Reference.of(a))) < 1e-6
    assert abs(fid.frechet_replicates(a, fid.Reference.of(a), np.arange(len(a))[None])[0]) < 1e-6


def test_fast_frechet_replicates_match_clean_fid(feats):
    a, b = feats
    idx = U.bootstrap_indices(len(a), 3, seed=1)
    fast = fid.frechet_replicates(a, fid.Reference.of(b), idx)
    slow = [fid_from_feats(a[i], b) for i in idx]
    np.testing.assert_allclose(fast, slow, rtol=1e-6)


def test_kd_equals_clean_fid_kernel_distance(feats):
    a, b = feats
    np.random.seed(3)
    theirs = kernel_distance(a, b, num_subsets=3, max_subset_size=100)
    ours = kd.clean_fid_kd(a, b, subsets=3, subset_size=100, seed=3)
    assert ours == pytest.approx(theirs, abs=1e-9)
    est = kd.kd_estimate(
        a, fid.Reference.of(b), "inception", n_boot=10, seed=3, subsets=3, subset_size=100
    )
    assert est.value == ours  # Inception features keep clean-fid's KID exactly


def test_kd_replicates_are_the_unbiased_mmd(feats):
    a, b = feats
    d = a.shape[1]
    k = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    n, m = len(a), len(b)
    kaa, kbb = k(a, a), k(b, b)
    direct = (
        (kaa.sum() - np.trace(kaa)) / (n * (n - 1))
        + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
        - 2 * k(a, b).mean()
    )
    got = kd.kd_replicates(a, fid.Reference.of(b), np.arange(n)[None], block=64)[0]
    assert got == pytest.approx(direct, rel=1e-9)
    for net in ("inception", "clip"):  # the cubic and the Gaussian kernel
        same = kd.kd_estimate(b[:120], fid.Reference.of(b[120:]), net, n_boot=50, subsets=3)
        assert same.lo < 0.02 and abs(same.value) < 0.05


def test_gaussian_kd_is_the_unbiased_mmd_with_the_reference_scale(feats):
    a, b = feats
    ell2 = 2 * np.var(b, axis=0, ddof=1).sum()
    sq = lambda x, y: ((x[:, None] - y[None]) ** 2).sum(-1)  # noqa: E731
    kaa, kbb, kab = (np.exp(-sq(x, y) / ell2) for x, y in ((a, a), (b, b), (a, b)))
    n, m = len(a), len(b)
    direct = ((kaa.sum() - n) / (n * (n - 1)) + (kbb.sum() - m) / (m * (m - 1))
              - 2 * kab.mean())  # fmt: skip
    assert kd.kd_estimate(a, fid.Reference.of(b), "clip", n_boot=10).value == pytest.approx(
        direct, rel=1e-9
    )


def test_distances_are_named_by_their_network(feats):
    a, b = feats
    keys = ["fd", "fd_inf", "kd"]
    assert registry.produced(keys, registry.Context(net="clip")) == [
        "fd_clip", "fd_clip_inf", "kd_clip"]  # fmt: skip
    assert registry.produced(keys, registry.Context(net="inception")) == ["fid", "fid_inf", "kid"]
    assert registry.lower_is_better("fd_clip_inf") and registry.higher_is_better("clip_score")
    assert registry.higher_is_better("fd_clip_extra") is None  # unknown: never ranked
    e = fid.fd_estimate(a, fid.Reference.of(b), n_boot=20)
    assert e.lo <= e.value <= e.hi and e.hi > e.lo


class HandClip:
    """Embeddings chosen by hand: image i -> e_(i mod D); caption c -> fixed vectors."""

    def __init__(self, text: dict[str, list[float]]) -> None:
        self.text = text

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        z = images[:, :2, 0, 0].double()
        return z / z.norm(dim=-1, keepdim=True)

    def encode_text(self, captions: list[str]) -> torch.Tensor:
        z = torch.tensor([self.text[c] for c in captions], dtype=torch.float64)
        return z / z.norm(dim=-1, keepdim=True)


def test_clip_score_matches_a_hand_computation():
    images = torch.zeros(3, 3, 2, 2, dtype=torch.uint8)
    images[0, :2, 0, 0] = torch.tensor([3, 4])  # direction (0.6, 0.8)
    images[1, :2, 0, 0] = torch.tensor([1, 0])
    images[2, :2, 0, 0] = torch.tensor([1, 0])
    clip = HandClip({"a": [0.0, 1.0], "b": [1.0, 1.0], "c": [-1.0, 0.0]})
    est = clip_score(clip, images, ["a", "b", "c"], n_boot=50)
    by_hand = [100 * 0.8, 100 * (1 / np.sqrt(2)), 0.0]  # cos clipped at 0 for "c"
    assert est.value == pytest.approx(np.mean(by_hand), abs=1e-9)
    z = torch.tensor([[1.0, 0.0]])
    assert clip_scores(z, -z)[0] == 0.0


def test_bootstrap_interval_covers_and_differ_rule():
    rng = np.random.default_rng(0)
    a = U.bootstrap_mean(rng.normal(0.0, 1.0, 400), seed=1)
    b = U.bootstrap_mean(rng.normal(0.5, 1.0, 400), seed=2)
    c = U.bootstrap_mean(rng.normal(0.02, 1.0, 400), seed=3)
    assert a.lo < 0.0 < a.hi and 0.1 < a.hi - a.lo < 0.4  # ~ 2 * 1.96 / sqrt(400)
    assert differ(a, b) and not differ(a, c)
    d = difference(b, a)
    assert d.lo > 0 and d.value == pytest.approx(b.value - a.value)
    plain = U.Estimate(1.0, 0.9, 1.1, 10)
    assert differ(plain, U.Estimate(1.3, 1.2, 1.4, 10))
    assert not differ(plain, U.Estimate(1.15, 1.05, 1.25, 10))


def test_across_seeds_widens_with_seed_spread():
    rng = np.random.default_rng(0)
    tight = [U.bootstrap_mean(rng.normal(0, 1, 200), seed=s) for s in range(3)]
    spread = [U.bootstrap_mean(rng.normal(s, 1, 200), seed=s) for s in range(3)]
    t, s = U.across_seeds(tight), U.across_seeds(spread)
    assert s.hi - s.lo > 3 * (t.hi - t.lo)
    assert s.value == pytest.approx(np.mean([e.value for e in spread]))


def test_diversity_of_identical_variations_is_zero():
    src = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    same = src[:, None].expand(-1, 3, -1, -1, -1)

    def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a.float() - b.float()).abs().mean((1, 2, 3)) / 255

    out = variation_diversity(src, same, l1, "l1", n_boot=20)
    assert out["diversity_l1"].value == 0.0 and out["preservation_l1"].value == 1.0
    noisy = (same.float() + torch.randn(same.shape) * 40).clamp(0, 255).to(torch.uint8)
    out = variation_diversity(src, noisy, l1, "l1", n_boot=20)
    assert out["diversity_l1"].lo > 0.05 and out["preservation_l1"].hi < 0.95


def test_suites_load_and_validate(write_yaml):
    quick = load_suite("quick")
    assert quick.name == "quick" and quick.features == "evaluator_clip" and quick.description
    assert load_suite("coco30k").n_samples == 30000
    bad = write_yaml("metrics/bad.yaml", "metrcs: [fd]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: metrcs: unknown key \(did you mean metrics"):
        load_suite(bad)
    with pytest.raises(ConfigError, match=r"metrics\[0\]: unknown value 'fdi'"):
        parse_suite({"metrics": ["fdi"]}, "x.yaml")
    with pytest.raises(ConfigError, match="n_samples: 1 is below the minimum 2"):
        parse_suite({"n_samples": 1}, "x.yaml")
    with pytest.raises(ConfigError, match="did you mean quick"):
        load_suite("quik")


def test_missing_inception_is_said_plainly(monkeypatch, tmp_path):
    monkeypatch.setattr(fid, "inception_path", lambda: tmp_path / fid.INCEPTION_FILE)
    with pytest.raises(HarnessError, match=f"{tmp_path}.*inception-2015-12-05.pt"):
        resolve_features(Suite(features="inception", fallback="none"))
    assert resolve_features(Suite(features="inception", fallback="evaluator_clip")) == (
        "evaluator_clip"
    )
    with pytest.raises(HarnessError, match="missing"):
        fid.InceptionFeatures()


def test_claims_round_trip_and_score_ground_truth():
    ds = build_source(DataConfig(max_objects=3, n_test=300, resolution=8), "test")
    truth = targets_as_cells(ds.attributes)
    claims = [claim_of(rows) for rows in ds.attributes]
    assert [parse_caption(c) for c in ds.captions] == claims
    assert all(satisfies(t, c) for t, c in zip(truth, claims, strict=True))
    shuffled = [satisfies(t, claims[(i + 1) % len(claims)]) for i, t in enumerate(truth)]
    assert np.mean(shuffled) < 0.1
    assert parse_caption("a photo of a dog") is None
    pair = parse_caption("a small red circle to the left of a large blue square")
    cells = np.full((9, 3), -1)
    cells[3], cells[5] = (0, 0, 0), (1, 2, 1)  # circle left, square right, same row
    assert satisfies(cells, pair)
    cells[3], cells[5] = (1, 2, 1), (0, 0, 0)  # swapped: relation broken
    assert not satisfies(cells, pair)
    assert recall(cells, pair) == 1.0  # ... but both objects are there
    cells[5] = (0, 1, 0)  # the circle in the wrong colour
    assert recall(cells, pair) == 0.5
    twins = parse_caption("a small red circle above a small red circle")
    cells[3] = (0, 0, 0)
    assert recall(cells, twins) == 0.5  # one circle found cannot stand for two
    assert np.mean([recall(t, c) for t, c in zip(truth, claims, strict=True)]) == 1.0


class CountingNet:
    """Mean colour per image as a 3-D feature; counts the images it saw."""

    name = "meancolour"

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        self.seen += len(images)
        return images.double().mean((2, 3)).numpy() + np.random.default_rng(0).normal(
            0, 1e-3, (len(images), 3)
        )


def test_data_reference_is_computed_once(tmp_path):
    data = DataConfig(resolution=16, n_val=40)
    suite = Suite(split="val", resolution=8)
    net = CountingNet()
    first = data_reference(data, suite, net, tmp_path)
    assert net.seen == 40 and first.feats.shape == (40, 3)
    again = data_reference(data, suite, net, tmp_path)
    assert net.seen == 40  # cached: nothing recomputed
    np.testing.assert_array_equal(first.sigma, again.sigma)
    data_reference(data, Suite(split="val", resolution=16), net, tmp_path)
    assert net.seen == 80  # another resolution is another entry
