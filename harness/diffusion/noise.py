"""Where sampling noise comes from: one `Noise` source per sampler call, drawn on the CPU.

Common random numbers (CRN) make arm comparisons paired: every random draw of sampling (the
prior's noise and candidates, the AR prior's token draws, the decoder's x_T and per-step
noise, each upsampler's noise) comes from a stream keyed by (seed, sampling seed, caption
index, stage, replica) -- `NoiseStreams` -- so two arms that differ only upstream of a stage
share that stage's noise bit for bit, whatever their batch size.

Every draw is made on the CPU and then moved to the tensors' device: a CUDA sampler gets the
same noise as a CPU one for the same seed (so a GPU run reproduces the CPU run's draws), and
a CPU `torch.Generator` is never handed to a CUDA kernel (the crash of issue 21:
"Expected a 'cuda' device type for generator but found 'cpu'"). The copy is one host-to-device
transfer per step of B x (sample size) floats, no synchronisation.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

Device = torch.device | str | None


@runtime_checkable
class Noise(Protocol):
    """A source of sampling noise for a batch. `shape[0]` is the batch; it may be k x B for a
    source of B rows (item i belongs to row i % B: k candidates per row, laid out c B + r)."""

    def randn(self, shape: Sequence[int], device: Device = None, dtype: torch.dtype | None = None
              ) -> Tensor: ...  # fmt: skip

    def rand(self, shape: Sequence[int], device: Device = None, dtype: torch.dtype | None = None
             ) -> Tensor: ...  # fmt: skip

    def rows(self, lo: int, hi: int) -> Noise:
        """The source of rows lo..hi (a chunk of the batch)."""
        ...


class GeneratorNoise:
    """Sequential draws from one torch.Generator (or torch's global one): the whole shape at
    once, in order, on the generator's device, then moved. A chunk draws in turn."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def _where(self) -> torch.device:
        return self.generator.device if self.generator is not None else torch.device("cpu")

    def randn(self, shape: Sequence[int], device: Device = None, dtype: torch.dtype | None = None
              ) -> Tensor:  # fmt: skip
        x = torch.randn(tuple(shape), generator=self.generator, device=self._where())
        return x.to(device=device or x.device, dtype=dtype or torch.float32, non_blocking=True)

    def rand(self, shape: Sequence[int], device: Device = None, dtype: torch.dtype | None = None
             ) -> Tensor:  # fmt: skip
        x = torch.rand(tuple(shape), generator=self.generator, device=self._where())
        return x.to(device=device or x.device, dtype=dtype or torch.float32, non_blocking=True)

    def rows(self, lo: int, hi: int) -> GeneratorNoise:
        return self


def stream_seed(*key: int | str) -> int:
    """A 63-bit seed from a key (stable across processes, machines and Python versions)."""
    blob = "\x1f".join(str(k) for k in key).encode()
    return struct.unpack("<Q", hashlib.sha256(blob).digest()[:8])[0] >> 1


class RowNoise:
    """One CPU generator per batch row: row r's draws depend only on its own key, never on
    which other rows share the batch or on the batch size."""

    def __init__(self, seeds: Sequence[int]) -> None:
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    @classmethod
    def _of(cls, generators: list[torch.Generator]) -> RowNoise:
        out = cls([])
        out.generators = generators
        return out

    def _draw(self, fn, shape: Sequence[int], device: Device, dtype: torch.dtype | None) -> Tensor:
        b = len(self.generators)
        if b == 0 or shape[0] % b:
            raise ValueError(f"noise for {shape[0]} items from {b} rows: not a multiple")
        k, item = shape[0] // b, tuple(shape[1:])
        per_row = [fn((k, *item), generator=g) for g in self.generators]  # B x (k, ...)
        x = torch.stack(per_row, dim=1).reshape(tuple(shape))  # item c B + r = row r, draw c
        return x.to(device=device or x.device, dtype=dtype or torch.float32, non_blocking=True)

    def randn(self, shape: Sequence[int], device: Device = None, dtype: torch.dtype | None = None
              ) -> Tensor:  # fmt: skip
        return self._draw(torch.randn, shape, device, dtype)

    def rand(self, shape: Sequence[int], device: Device = None, dtype: torch.dtype | None = None
             ) -> Tensor:  # fmt: skip
        return self._draw(torch.rand, shape, device, dtype)

    def rows(self, lo: int, hi: int) -> RowNoise:
        return RowNoise._of(self.generators[lo:hi])


def as_noise(source: Noise | torch.Generator | None) -> Noise:
    """A Noise from what a caller passed: a Noise as is, a torch.Generator (or None: the
    global generator) as sequential draws."""
    if isinstance(source, torch.Generator) or source is None:
        return GeneratorNoise(source)
    return source


class NoiseStreams:
    """The CRN streams of a batch of captions: rows keyed by (caption index, replica) under
    the experiment seed and the sampling seed; `stage(name)` gives that stage's source.

    replica k > 0 gives further independent samples of the same caption (per-caption sample
    diversity); replica 0 is the caption's main sample."""

    def __init__(
        self, seed: int, sample_seed: int, rows: Sequence[tuple[int, int]], purpose: str = "sample"
    ) -> None:
        self.seed, self.sample_seed, self.keys = int(seed), int(sample_seed), list(rows)
        self.purpose = purpose  # separates uses of one caption index (samples, variations)

    @classmethod
    def of(
        cls, seed: int, sample_seed: int, indices: Sequence[int], replica: int = 0,
        purpose: str = "sample",
    ) -> NoiseStreams:  # fmt: skip
        return cls(seed, sample_seed, [(int(i), replica) for i in indices], purpose)

    def stage(self, name: str) -> RowNoise:
        return RowNoise([stream_seed(self.seed, self.sample_seed, self.purpose, i, name, k)
                         for i, k in self.keys])  # fmt: skip

    def __len__(self) -> int:
        return len(self.keys)
