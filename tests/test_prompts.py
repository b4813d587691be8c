"""The prompt benchmark's sampling: every arm draws a prompt's noise from the same streams."""

from __future__ import annotations

import dataclasses

import torch

from harness.prompts import sample_prompts
from harness.runner import load_setup
from tests.conftest import MICRO


def test_same_prompts_same_noise_and_replicas_differ(micro_cache):
    pipe = load_setup(MICRO, [], cache_dir=micro_cache)
    prompts = ["a red circle", "a blue square", "a green triangle"]
    a = sample_prompts(pipe, pipe.cfg, prompts, 2)
    assert a.shape[:2] == (3, 2) and a.dtype == torch.uint8
    assert torch.equal(a, sample_prompts(pipe, pipe.cfg, prompts, 2))  # fixed streams
    assert not torch.equal(a[:, 0], a[:, 1])  # replica k has its own stream
    # a prompt's noise is keyed by its index, not by the batch it lands in
    small = dataclasses.replace(pipe.cfg, sample=dataclasses.replace(pipe.cfg.sample, batch_size=1))
    b = sample_prompts(pipe, small, prompts, 2)
    assert (a.int() - b.int()).abs().max() <= 1  # batched float sums may round differently
