"""Every sampling and inversion path runs with its modules on another device than the CPU
generator that seeds it (issue 21: on a GPU the run crashed at sampling with "Expected a
'cuda' device type for generator but found 'cpu'").

CI has no GPU, so the modules go to the `meta` device (shapes only, no memory) and torch's
random functions are made as strict as CUDA's kernels: a generator must live on the device
its output is drawn on. Any stray CPU tensor mixed into a meta computation fails too, as it
would on CUDA."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch

from harness.diffusion.noise import NoiseStreams
from harness.pipeline import Pipeline
from tests.tiny import pipeline, tiny_config

META = torch.device("meta")
RANDOM = ("randn", "rand", "randint", "randperm", "normal", "randn_like", "rand_like")


def _check(generator: torch.Generator | None, device: torch.device | str | None) -> None:
    where = torch.device(device) if device is not None else torch.device("cpu")
    if generator is not None and generator.device.type != where.type:
        raise RuntimeError(f"Expected a '{where.type}' device type for generator but found "
                           f"'{generator.device.type}'")  # fmt: skip


@contextlib.contextmanager
def strict_generators() -> Iterator[None]:
    """torch's random functions refuse a generator on another device than their output."""
    saved = {name: getattr(torch, name) for name in (*RANDOM, "multinomial")}

    def factory(fn):
        def draw(*args, generator=None, device=None, **kw):
            like = args[0] if fn.__name__.endswith("_like") else None
            _check(generator, device or (like.device if like is not None else None))
            extra = {} if device is None else {"device": device}
            return fn(*args, generator=generator, **extra, **kw)

        return draw

    def multinomial(probs, n, replacement=False, *, generator=None, **kw):
        _check(generator, probs.device)
        return saved["multinomial"](probs, n, replacement, generator=generator, **kw)

    try:
        for name in RANDOM:
            setattr(torch, name, factory(saved[name]))
        torch.multinomial = multinomial
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch, name, fn)


def test_the_strict_check_catches_the_crash_it_stands_for() -> None:
    with strict_generators(), pytest.raises(RuntimeError, match="device type for generator"):
        torch.randn(3, device=META, generator=torch.Generator())


def on_meta(kind: str, **decoder) -> Pipeline:
    cfg = tiny_config(kind)
    pipe = pipeline(replace(cfg, decoder=replace(cfg.decoder, **decoder)))
    for module in (pipe.clip, pipe.prior, pipe.decoder, *pipe.upsamplers):
        if module is not None:
            module.to(META)
    return pipe


def captions(pipe: Pipeline, b: int) -> tuple[torch.Tensor, ...]:
    """What the runner hands a pipeline: CPU tensors from the embedding cache."""
    length = pipe.clip.context_length
    z_t = torch.nn.functional.normalize(torch.randn(b, 16), dim=-1)
    mask = torch.ones(b, length, dtype=torch.bool)
    return z_t, torch.randn(b, length, 16), mask, torch.zeros(b, length, dtype=torch.long)


@pytest.mark.parametrize("kind", ["diffusion", "ar", "caption_only", "text_embedding"])
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_generate_with_a_cpu_generator_and_modules_elsewhere(kind: str, sampler: str) -> None:
    pipe = on_meta(kind, eta=1.0, sampler=sampler, guidance_scale=2.0)
    for rng in (torch.Generator().manual_seed(0), NoiseStreams.of(0, 0, range(3))):
        with strict_generators(), torch.inference_mode():
            out = pipe.generate(*captions(pipe, 3), rng)
        assert out["images"].device == META and tuple(out["images"].shape) == (3, 3, 32, 32)
        if kind in ("diffusion", "ar"):
            assert out["z_i"].device == META


def test_variations_invert_and_decode_elsewhere() -> None:
    pipe = on_meta("diffusion")
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)  # a user's images: CPU
    rows = NoiseStreams(0, 0, [(i, k) for i in range(2) for k in range(2)], "variation")
    for rng in (torch.Generator().manual_seed(0), rows):
        with strict_generators():
            out = pipe.vary(images, 2, 1.0, rng)
        assert out.device == META and tuple(out.shape) == (2, 2, 3, 32, 32)
