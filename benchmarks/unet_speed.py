"""Before/after timings of our UNet's speed options, interleaved in one process.

    python benchmarks/unet_speed.py [--nets decoder,up32,up64] [--batch 64] [--repeats 7]
                                    [--threads N] [--checks layout,train,grad,attention,compile]

Each check runs the SAME net on the SAME inputs two ways, alternating A/B then B/A for
--repeats rounds, and prints the speed-up (time before / time after) as min/median/max and
the largest difference between the two outputs (float rounding only):

  layout     inference forward: NCHW activations (before) vs channels_last (default on CPU)
  train      forward + backward + AdamW at the stage's training size, NCHW vs channels_last
  grad       inference forward under torch.no_grad vs torch.inference_mode
  attention  the attention written out (matmul, softmax, matmul) vs fused
             scaled_dot_product_attention (decoder only: the upsamplers have no attention)
  trim       caption tokens padded to the context length vs trimmed to the longest caption
             in the batch (decoder only)
  all        inference forward as before this issue (NCHW, untrimmed caption, no_grad) vs
             now (channels_last, trimmed, inference_mode)
  threads    2 threads vs 1 (not a code change: shows what other processes on the same
             cores cost a 2-thread run; on an idle machine 2 threads are faster)
  compile    eager vs torch.compile, steady state (the compile time is printed as well)

Nets (tiny preset): decoder 16 px with z_i + caption and a guided (doubled) batch; up32 the
first upsampler sampled at 32 px; up64 the second at 64 px. Training sizes: decoder batch
--batch at 16 px, upsamplers batch --batch on crops of a quarter of the side.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.config import DecoderConfig, UpsamplerConfig
from harness.nets import unet as unet_module
from harness.stages.decoder import build_unet
from harness.stages.upsampler import UpsamplerStage

Call = Callable[[], Tensor]
# wall: time.perf_counter. cpu: the process's CPU time, which with --threads 1 leaves out
# the time other processes hold the core (a shared machine's main noise).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]
Inputs = tuple[Tensor, Tensor, dict[str, Tensor]]


def build(name: str, batch: int) -> tuple[nn.Module, Inputs, Inputs]:
    """(net, inputs at the sampling size, inputs at the training size)."""
    g = torch.Generator().manual_seed(0)
    if name == "decoder":
        net, r, crop, b = build_unet(DecoderConfig(), 64, 32, 49408), 16, 16, 2 * batch

        def cond(n: int, _: int) -> dict[str, Tensor]:
            tokens = torch.randint(1, 49407, (n, 32), generator=g)
            tokens[:, 12:] = 0  # a 12-token caption, padding after
            return {"z_i": F.normalize(torch.randn(n, 64, generator=g), dim=-1), "tokens": tokens}
    else:
        r, b = {"up32": 32, "up64": 64}[name], batch
        net, crop = UpsamplerStage(UpsamplerConfig(resolution=r), r // 2).net, r // 4

        def cond(n: int, size: int) -> dict[str, Tensor]:
            return {"low": torch.randn(n, 3, size, size, generator=g)}

    for p in net.parameters():  # trained-like weights: no zero-initialised (skipped) branch
        nn.init.normal_(p, std=0.03)

    def inputs(n: int, size: int) -> Inputs:
        x = torch.randn(n, 3, size, size, generator=g)
        return x, torch.randint(0, 1000, (n,), generator=g), cond(n, size)

    return net, inputs(b, r), inputs(batch, crop)


def interleaved(a: Call, b: Call, repeats: int) -> tuple[list[float], float]:
    """Speed-ups time(a) / time(b) per round, and max |a() - b()| of the outputs."""
    diff = (a().float() - b().float()).abs().max().item()  # also the warm-up
    ratios = []
    for r in range(repeats):
        times = {}
        for name, fn in (("a", a), ("b", b)) if r % 2 == 0 else (("b", b), ("a", a)):
            start = clock()
            fn()
            times[name] = clock() - start
        ratios.append(times["a"] / times["b"])
    return ratios, diff


@contextlib.contextmanager
def layout(net: nn.Module, channels_last: bool) -> Iterator[None]:
    net.channels_last = channels_last
    try:
        yield
    finally:
        del net.channels_last  # back to the class default (auto)


def manual_sdpa(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, *_: object
) -> Tensor:
    """softmax(q k^T / sqrt(d) + mask) v written out: what the fused kernel replaces."""
    w = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        w = w.masked_fill(~attn_mask, float("-inf"))
    elif attn_mask is not None:
        w = w + attn_mask
    return w.softmax(dim=-1) @ v


def forward(module: Callable, inputs: Inputs, mode: Callable = torch.inference_mode) -> Call:
    x, t, cond = inputs

    def call() -> Tensor:
        with mode():
            return module(x, t, **cond)

    return call


def in_layout(net: nn.Module, fn: Call, channels_last: bool) -> Call:
    def call() -> Tensor:
        with layout(net, channels_last):
            return fn()

    return call


def train_step(net: nn.Module, inputs: Inputs) -> Call:
    x, t, cond = inputs
    target = torch.randn_like(x)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-9)  # ~no drift between the variants

    def step() -> Tensor:
        loss = F.mse_loss(net(x, t, **cond), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def written_out_attention(fn: Call) -> Call:
    """fn with every scaled_dot_product_attention (ours and the caption encoder's) written out."""

    def call() -> Tensor:
        fused = unet_module.F.scaled_dot_product_attention
        unet_module.F.scaled_dot_product_attention = manual_sdpa
        try:
            return fn()
        finally:
            unet_module.F.scaled_dot_product_attention = fused

    return call


def untrimmed(fn: Call) -> Call:
    def call() -> Tensor:
        trim = unet_module.trim_padding
        unet_module.trim_padding = lambda tokens: tokens
        try:
            return fn()
        finally:
            unet_module.trim_padding = trim

    return call


def threads(n: int, fn: Call) -> Call:
    def call() -> Tensor:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    return call


ONLY_DECODER = ("attention", "trim")


def variants(check: str, net: nn.Module, sample: Inputs, train: Inputs) -> tuple[Call, Call]:
    """(before, after) for one check."""
    fwd = forward(net, sample)
    if check == "layout":
        return in_layout(net, fwd, False), in_layout(net, fwd, True)
    if check == "train":
        step = train_step(net, train)
        return in_layout(net, step, False), in_layout(net, step, True)
    if check == "grad":
        return forward(net, sample, torch.no_grad), fwd
    if check == "attention":
        return written_out_attention(fwd), fwd
    if check == "trim":
        return untrimmed(fwd), fwd
    if check == "all":
        before = untrimmed(in_layout(net, forward(net, sample, torch.no_grad), False))
        return before, fwd
    if check == "threads":
        return threads(2, fwd), threads(1, fwd)
    if check == "compile":
        compiled = forward(torch.compile(net), sample)
        start = time.perf_counter()
        compiled()
        print(f"    (torch.compile: first call {time.perf_counter() - start:.1f} s)", flush=True)
        return fwd, compiled
    raise ValueError(f"unknown check {check!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="decoder,up32,up64")
    ap.add_argument("--checks", default="all,layout,train,grad,attention,trim")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--clock", choices=CLOCKS, default="wall", help="cpu: with --threads 1")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    global clock
    clock = CLOCKS[args.clock]
    print(
        f"{torch.get_num_threads()} threads, batch {args.batch}, {args.repeats} rounds, "
        f"{args.clock} clock"
    )
    print(f"{'net':<8} {'check':<10} {'speed-up min/med/max':<24} max |diff|")
    for name in args.nets.split(","):
        net, sample, train = build(name, args.batch)
        for check in args.checks.split(","):
            if check in ONLY_DECODER and name != "decoder":
                continue
            before, after = variants(check, net, sample, train)
            ratios, diff = interleaved(before, after, args.repeats)
            lo, med, hi = min(ratios), statistics.median(ratios), max(ratios)
            print(
                f"{name:<8} {check:<10} {lo:5.2f} / {med:5.2f} / {hi:5.2f}       {diff:.2e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
