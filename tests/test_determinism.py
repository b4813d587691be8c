"""The same config and seed give the same numbers on CPU (GPU: see docs/failures.md).

Across two runs: test_crash.py's chain of killed and resumed runs is a second, independent
computation of the micro experiment's CLIP, decoder, every sample and every score, in other
processes; it asserts the session run's results.csv exactly and the CLIP's and decoder's
weights bit for bit. Here, more cheaply: a stage trained twice with one seed has identical
weights, and whether a stage's CLIP embeddings were cached cannot change its weights.
"""

from __future__ import annotations

import pytest
import torch

from harness.config import load_experiment
from tests.conftest import MICRO


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def cfg():
    exp = load_experiment(MICRO)
    return exp.config(exp.arms[0], 0)


def test_training_twice_with_one_seed_gives_identical_weights(cfg, tmp_path) -> None:
    """The upsampler: test_crash.py retrains the CLIP and the decoder, not the upsamplers."""
    from harness.stages.graph import UPSAMPLER1
    from harness.stages.stage import StageContext

    first = weights(UPSAMPLER1.train(StageContext(cfg, tmp_path / "a")))
    again = weights(UPSAMPLER1.train(StageContext(cfg, tmp_path / "b")))
    assert same(first, again)


def test_computing_embeddings_leaves_the_global_rng_alone(cfg, tmp_path) -> None:
    """A stage seeds, computes (or loads) its CLIP embeddings, then builds its net: a cache
    miss must not move the RNG that initialises the net (it once did, via a DataLoader)."""
    from harness.embeddings import compute_embeddings
    from harness.stages.clip import ClipStage

    clip = ClipStage(cfg.clip).eval()
    torch.manual_seed(0)
    compute_embeddings(clip, tmp_path, cfg.data, "val")  # a miss: computed now
    after_miss = torch.rand(4)
    torch.manual_seed(0)
    assert torch.equal(after_miss, torch.rand(4))
