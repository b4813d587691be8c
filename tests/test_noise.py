"""Common random numbers (harness/diffusion/noise.py): every sampling draw comes from a stream
keyed by (seed, sampling seed, caption index, stage, replica), so arms that differ only
upstream of a stage share that stage's noise bit for bit, whatever the batch size."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from harness.diffusion.noise import NoiseStreams, RowNoise, stream_seed
from harness.pipeline import Pipeline
from tests.tiny import pipeline, tiny_config


def test_a_rows_draws_do_not_depend_on_the_rest_of_its_batch() -> None:
    whole = NoiseStreams.of(0, 0, range(8)).stage("decoder").randn((8, 3, 4, 4))
    part = NoiseStreams.of(0, 0, range(2, 6)).stage("decoder").randn((4, 3, 4, 4))
    assert torch.equal(whole[2:6], part)
    chunk = NoiseStreams.of(0, 0, range(8)).stage("decoder").rows(2, 6).randn((4, 3, 4, 4))
    assert torch.equal(chunk, part)


def test_k_items_per_row_sit_at_c_times_b_plus_r() -> None:
    """The diffusion prior draws n candidates per caption as (n B, D), candidate c of row r
    at c B + r: each row's candidates come from its own stream."""
    b, d = 3, 5
    both = NoiseStreams.of(0, 0, range(b)).stage("prior").randn((2 * b, d))
    for r in range(b):
        alone = NoiseStreams.of(0, 0, [r]).stage("prior").randn((2, d))
        assert torch.equal(both[r], alone[0]) and torch.equal(both[b + r], alone[1])
    with pytest.raises(ValueError, match="multiple"):
        RowNoise([1, 2]).randn((3, d))


def test_streams_differ_by_every_part_of_their_key() -> None:
    def draw(seed=0, sample_seed=0, index=0, stage="decoder", replica=0, purpose="sample"):
        streams = NoiseStreams(seed, sample_seed, [(index, replica)], purpose)
        return streams.stage(stage).randn((1, 16))

    base = draw()
    assert torch.equal(base, draw())
    for change in ({"seed": 1}, {"sample_seed": 1}, {"index": 1}, {"stage": "prior"},
                   {"replica": 1}, {"purpose": "variation"}):  # fmt: skip
        assert not torch.equal(base, draw(**change)), change
    assert stream_seed(0, "a", 1) == stream_seed(0, "a", 1) < 2**63


def recorded_noise(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Every noise tensor each stage draws from now on (while patched), by stage."""
    import harness.pipeline as pipeline_module

    seen: dict[str, list] = {}
    original = pipeline_module.stage_noise

    class Recording:
        def __init__(self, source, stage: str) -> None:
            self.source, self.stage = source, stage

        def randn(self, *a, **k):
            out = self.source.randn(*a, **k)
            seen.setdefault(self.stage, []).append(out.clone())
            return out

        def rand(self, *a, **k):
            out = self.source.rand(*a, **k)
            seen.setdefault(self.stage, []).append(out.clone())
            return out

        def rows(self, lo: int, hi: int):
            return Recording(self.source.rows(lo, hi), self.stage)

    monkeypatch.setattr(pipeline_module, "stage_noise",
                        lambda rng, stage: Recording(original(rng, stage), stage))  # fmt: skip
    return seen


def generate(pipe: Pipeline, rows: range) -> torch.Tensor:
    """Images of captions `rows` (of 8 fixed random captions) under CRN streams."""
    g = torch.Generator().manual_seed(1)
    length, pick = pipe.clip.context_length, slice(rows.start, rows.stop)
    z_t = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)[pick]
    text_enc = torch.randn(8, length, 16, generator=g)[pick]
    mask = torch.ones(len(rows), length, dtype=torch.bool)
    tokens = pipe.clip.tokenize(["a red circle"] * len(rows))
    return pipe.generate(z_t, text_enc, mask, tokens, NoiseStreams.of(0, 0, rows))["images"]


@pytest.mark.parametrize("other", ["text_embedding", "ar", "caption_only"])
def test_prior_arms_share_the_decoders_and_upsamplers_noise(
    other: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """x_T, the per-step noise (eta 1) and the upsamplers' noise of an arm with a diffusion
    prior equal, bit for bit, those of an arm with another prior: the prior's own draws
    (candidates, AR tokens) come from its own stream and shift nothing downstream."""
    draws = {}
    for kind in ("diffusion", other):
        cfg = tiny_config(kind)
        cfg = replace(cfg, decoder=replace(cfg.decoder, eta=1.0))
        with monkeypatch.context() as patch:
            draws[kind] = recorded_noise(patch)
            generate(pipeline(cfg), range(4))
    assert "prior" in draws["diffusion"]  # the diffusion prior did draw noise
    for stage in ("decoder", "upsampler1", "upsampler2"):
        a, b = draws["diffusion"][stage], draws[other][stage]
        assert len(a) == len(b) > 0, stage
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True)), stage


def test_a_no_op_change_gives_identical_images() -> None:
    """The same arm twice (two pipelines, a config copy that changes nothing sampled)."""
    cfg = tiny_config("diffusion")
    first = generate(pipeline(cfg), range(4))
    again = generate(pipeline(replace(cfg, tracking=replace(cfg.tracking, project="x"))),
                     range(4))  # fmt: skip
    assert torch.equal(first, again)


def test_a_captions_noise_does_not_depend_on_the_batch_it_is_sampled_in() -> None:
    """Rows 2-3 sampled alone draw exactly the noise they draw inside rows 0-3."""
    cfg = tiny_config("diffusion")
    whole = NoiseStreams.of(0, 0, range(4))
    part = NoiseStreams.of(0, 0, range(2, 4))
    for stage in ("prior", "decoder", "upsampler1", "upsampler2"):
        assert torch.equal(whole.stage(stage).randn((4, 7))[2:], part.stage(stage).randn((2, 7)))
    assert cfg.sample.seed == 0  # the sampling seed keys the streams (default 0)
