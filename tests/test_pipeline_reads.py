"""Cached samples and variations are keyed by what each Pipeline entry point declares it
reads (Pipeline.READS). Here every entry point runs on tiny untrained nets with a config
that records each field read, and must read nothing it does not declare; and every
sampling knob of the schema must be declared by some entry point (or named unused)."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest
import torch

from harness.config import Config
from harness.pipeline import UNUSED_KNOBS, Pipeline, reads_key
from tests.tiny import pipeline, tiny_config


class Recorder:
    """A config (sub)tree whose attribute reads are recorded as dotted paths."""

    def __init__(self, obj: object, seen: set[str], prefix: str = "") -> None:
        self._obj, self._seen, self._prefix = obj, seen, prefix

    def __getattr__(self, name: str) -> object:
        value = getattr(self._obj, name)
        path = f"{self._prefix}{name}"
        if dataclasses.is_dataclass(value):
            return Recorder(value, self._seen, f"{path}.")
        self._seen.add(path)
        return value


def covered(path: str, declared: tuple[str, ...]) -> bool:
    return any(path == d or path.startswith(f"{d}.") for d in declared)


def reads_of(pipe: Pipeline, call) -> set[str]:
    seen: set[str] = set()
    pipe.cfg = Recorder(pipe.cfg, seen)
    with torch.no_grad():
        call(pipe)
    return seen


@pytest.mark.parametrize("kind", ["diffusion", "ar", "caption_only", "text_embedding"])
def test_generate_reads_only_what_it_declares(kind: str) -> None:
    pipe = pipeline(tiny_config(kind))
    b, length = 2, pipe.clip.context_length
    z_t = torch.nn.functional.normalize(torch.randn(b, 16), dim=-1)
    text_enc, mask = torch.randn(b, length, 16), torch.ones(b, length, dtype=torch.bool)
    tokens = pipe.clip.tokenize(["a red circle", "a blue square"])
    g = torch.Generator().manual_seed(0)
    seen = reads_of(pipe, lambda p: p.generate(z_t, text_enc, mask, tokens, g))
    assert "prior.kind" in seen and "decoder.guidance_scale" in seen
    assert "upsamplers.second.steps" in seen  # the arm's knobs, not the shared module's
    undeclared = sorted(p for p in seen if not covered(p, Pipeline.READS["generate"].config))
    assert not undeclared, undeclared


def test_vary_reads_only_what_it_declares() -> None:
    pipe = pipeline(tiny_config("diffusion"))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    seen = reads_of(pipe, lambda p: p.vary(images, 2, None, g))
    assert {"decoder.steps", "sample.variation_eta", "upsamplers.first.eta"} <= seen
    declared = Pipeline.READS["vary"].config
    assert not [p for p in seen if not covered(p, declared)]
    assert not covered("decoder.guidance_scale", declared)  # guidance arms share variations


def knobs(obj: object = None, prefix: str = "") -> list[str]:
    obj = Config() if obj is None else obj
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += knobs(value, f"{prefix}{f.name}.")
        elif f.metadata.get("sampling"):
            out.append(f"{prefix}{f.name}")
    return out


def test_every_sampling_knob_is_in_some_key_or_declared_unused() -> None:
    declared = tuple(c for reads in Pipeline.READS.values() for c in reads.config)
    found = knobs()
    assert "sample.variation_eta" in found and "prior.ar.temperature" in found
    missing = [k for k in found if not covered(k, declared) and k not in UNUSED_KNOBS]
    assert not missing, missing


def test_keys_follow_the_declarations() -> None:
    cfg = tiny_config("diffusion")
    keys = {"clip": "c", "prior": "p", "decoder": "d", "upsampler1": "u1", "upsampler2": "u2"}
    guided = replace(cfg, decoder=replace(cfg.decoder, guidance_scale=5.0))  # default 3
    longer = replace(cfg, decoder=replace(cfg.decoder, steps=7))
    assert reads_key("vary", guided, keys) == reads_key("vary", cfg, keys)
    assert reads_key("vary", longer, keys) != reads_key("vary", cfg, keys)
    assert reads_key("generate", guided, keys) != reads_key("generate", cfg, keys)
    assert reads_key("vary", cfg, {**keys, "prior": "other"}) == reads_key("vary", cfg, keys)


def test_upsamplers_sample_with_the_arms_knobs_not_the_modules() -> None:
    """Arms that differ only in an upsampler's steps share its module (same stage key):
    each must still sample with its own steps."""
    cfg = tiny_config("text_embedding")
    pipe = pipeline(cfg)
    arm = replace(cfg, upsamplers=replace(cfg.upsamplers, first=replace(
        cfg.upsamplers.first, steps=5, eta=0.5)))  # fmt: skip
    pipe.cfg = arm
    calls = []
    for up in pipe.upsamplers:
        up.sample = lambda x, steps, eta, generator=None, up=up: calls.append((steps, eta)) or x
    pipe.upsample(torch.zeros(1, 3, 8, 8), torch.Generator())
    assert calls == [(5, 0.5), (cfg.upsamplers.second.steps, cfg.upsamplers.second.eta)]
