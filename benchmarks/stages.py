"""Stage throughput against DALLE2-pytorch, measured side by side in one process (issue 10).

    pip install --no-deps dalle2-pytorch==1.15.6 ...   # see benchmarks/README.md
    python benchmarks/stages.py [--stages decoder,upsampler,prior] [--repeats 5]
                                [--iters 2] [--sample-steps 5] [--device cpu|cuda] [--bf16]

For the decoder UNet, the first upsampler and the diffusion prior of the tiny preset
(experiments/base/tiny.yaml = the schema defaults) this builds our stage and DALLE2-pytorch's
counterpart at a matched parameter count (within 10%, both counts printed), resolution and
batch size, and times

  train   one optimisation step: the stage's own training step (conditioning dropout,
          noising, loss), backward, AdamW step; items/s = batch x steps / s
  sample  denoising steps through each side's own sampler (DDIM, the stage's guidance);
          item-steps/s = batch x denoising steps / s (a guided step counts once, whether
          it runs as one batched call (ours) or two calls (theirs))

Both sides run in the same process, with the same threads, dtype, batch and optimizer,
interleaved (A B, B A, ...) for --repeats rounds after --warmup untimed calls each, so
machine noise hits both; the ratio ours/theirs is reported per round as min/median/max.

How the sizes were matched (their knobs; everything not named is their default):
  decoder    ours: channels 32, mult (1,2,2), 1 res block, attention at 8 and 4 px, 4 heads,
             4 z_i tokens + its own 2-layer caption encoder (width 64). Theirs: Unet(dim=24,
             dim_mults=(1,2,2), num_resnet_blocks=1, self_attn at 8 and 4 px, attn_heads=4,
             attn_dim_head=16, cond_dim=48, 4 image tokens, text encodings of width 64).
             Ours is counted without its 3.2M-entry token-embedding table (a lookup, no
             compute); theirs reads precomputed CLIP text encodings, so ours also pays for
             its caption encoder inside every step.
  upsampler  16 -> 32 px, trained on 8 px crops with blur corruption, sampled at 32 px.
             Ours: channels 32, mult (1,2), 1 res block, no attention. Theirs (the second
             unet of a 2-unet Decoder, unconditional): Unet(dim=24, dim_mults=(1,2),
             num_resnet_blocks=1, lowres_cond=True, attn_heads=4, attn_dim_head=16).
  prior      64-d CLIP embeddings, 16 text tokens of width 64, best of 2 candidates.
             Ours: width 64, 2 layers, 4 heads. Theirs: DiffusionPriorNetwork(dim=64,
             depth=2, heads=4, dim_head=32, ff_mult=2, max_text_len=16).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

# Captions: 6..16 real tokens padded to the CLIP's context length (the shapes data's captions
# are 9-14 tokens); the prior reads them trimmed to the longest, as the harness feeds it.
CLIP_DIM, TEXT_WIDTH, CONTEXT, LONGEST = 64, 64, 32, 16
MATCH = 0.10  # parameter counts must agree within 10%
# wall: time.perf_counter. cpu: the process's CPU time, which with --threads 1 on a CPU leaves
# out the time other processes hold the core (a shared machine's main noise).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


@dataclass
class Side:
    """One implementation of a stage: its step functions and what one call processes."""

    name: str
    params: int
    train: Callable[[], object]
    sample: Callable[[], object]
    train_items: int  # items per train call (the batch)
    sample_items: int = 0  # item-steps per sample call; counted during warmup


@dataclass
class Pair:
    stage: str
    ours: Side
    theirs: Side
    net_ours: nn.Module  # counted for the number of denoising steps
    net_theirs: nn.Module
    theirs_calls_per_step: int  # 2 when their guidance runs two forwards


# ------------------------------------------------------------------------------ inputs
def captions(b: int, length: int, g: torch.Generator) -> Tensor:
    """(B, length) bool: a caption of 6..LONGEST real tokens per row, padding after."""
    n = torch.randint(6, LONGEST + 1, (b, 1), generator=g)
    return torch.arange(length)[None] < n


def tokens_of(mask: Tensor, g: torch.Generator) -> Tensor:
    """Token ids (B, L) int64 with 0 (open_clip's pad id) where mask is False."""
    return torch.randint(1, 49407, mask.shape, generator=g).masked_fill(~mask, 0)


def encodings_of(mask: Tensor, width: int, g: torch.Generator) -> Tensor:
    """CLIP-like text encodings (B, L, W), exactly 0 at padding (DALLE2's padding mask)."""
    return torch.randn(*mask.shape, width, generator=g) * mask[..., None]


def unit(b: int, g: torch.Generator) -> Tensor:
    return nn.functional.normalize(torch.randn(b, CLIP_DIM, generator=g), dim=-1)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def optimizer_step(loss_fn: Callable[[], Tensor], params, amp: Callable) -> Callable[[], None]:
    """One training step: loss (under autocast when asked), backward, AdamW."""
    opt = torch.optim.AdamW(list(params), lr=1e-3, weight_decay=0.0)

    def step() -> None:
        with amp():
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def dalle2() -> Any:
    """The dalle2_pytorch package, its per-loop progress bars switched off."""
    import dalle2_pytorch
    import dalle2_pytorch.dalle2_pytorch as impl

    impl.tqdm = lambda iterable, *args, **kwargs: iterable
    return dalle2_pytorch


def under(amp: Callable, fn: Callable[[], object]) -> Callable[[], object]:
    def call() -> object:
        with amp():
            return fn()

    return call


# ----------------------------------------------------------------------------- decoder
def decoder_pair(dev: torch.device, amp: Callable, steps: int, b_train: int, b_sample: int):
    from harness.config import DecoderConfig
    from harness.stages.decoder import DecoderStage

    d2, cfg, g = dalle2(), DecoderConfig(), torch.Generator().manual_seed(0)
    r = cfg.resolution
    ours = DecoderStage(cfg, CLIP_DIM, CONTEXT).to(dev)
    unet = d2.Unet(
        dim=24,
        dim_mults=(1, 2, 2),
        num_resnet_blocks=1,
        self_attn=(False, True, True),
        attn_heads=4,
        attn_dim_head=16,
        cond_dim=48,
        image_embed_dim=CLIP_DIM,
        num_image_tokens=cfg.clip_tokens,
        cond_on_image_embeds=True,
        cond_on_text_encodings=True,
        text_embed_dim=TEXT_WIDTH,
        max_text_len=CONTEXT,
    )
    theirs = d2.Decoder(
        unet,
        image_size=r,
        timesteps=cfg.timesteps,
        sample_timesteps=steps,
        image_cond_drop_prob=cfg.clip_drop,
        text_cond_drop_prob=cfg.text_drop,
        learned_variance=False,
        beta_schedule=cfg.schedule,
    ).to(dev)

    def batch(b: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        mask = captions(b, CONTEXT, g)
        images = torch.randint(0, 256, (b, 3, r, r), generator=g, dtype=torch.uint8)
        enc = encodings_of(mask, TEXT_WIDTH, g)
        return images.to(dev), unit(b, g).to(dev), tokens_of(mask, g).to(dev), enc.to(dev)

    images, z_i, tokens, enc = batch(b_train)
    ours.train(), theirs.train()
    ours_train = optimizer_step(
        lambda: ours.training_step((images, z_i, tokens), 0), ours.parameters(), amp
    )
    theirs_train = optimizer_step(
        lambda: theirs(images.float() / 255, image_embed=z_i, text_encodings=enc),
        theirs.unets[0].parameters(),
        amp,
    )
    _, zs, toks, encs = batch(b_sample)
    w = cfg.guidance_scale

    def ours_sample() -> Tensor:
        return ours.sample(zs, toks, guidance_scale=w, eta=0.0, steps=steps)

    def theirs_sample() -> Tensor:
        return theirs.sample(
            image_embed=zs, text_encodings=encs, cond_scale=w, one_unet_in_gpu_at_time=False
        )

    table = ours.net.text_encoder.token_embedding.weight.numel() if cfg.text_cond else 0
    return Pair(
        f"decoder {r}px",
        Side("ours", n_params(ours.net) - table, ours_train, under(amp, ours_sample), b_train),
        Side("DALLE2", n_params(theirs.unets[0]), theirs_train, under(amp, theirs_sample), b_train),
        ours.net,
        theirs.unets[0],
        2 if w != 1 else 1,
    )


# --------------------------------------------------------------------------- upsampler
def upsampler_pair(dev: torch.device, amp: Callable, steps: int, b_train: int, b_sample: int):
    from harness.config import DecoderConfig, UpsamplerConfig
    from harness.stages.upsampler import UpsamplerStage

    d2, cfg, g = dalle2(), UpsamplerConfig(), torch.Generator().manual_seed(1)
    low_r, r = DecoderConfig().resolution, cfg.resolution
    ours = UpsamplerStage(cfg, low_r).to(dev)
    base = d2.Unet(dim=8, dim_mults=(1,))  # their Decoder needs a first unet; never run here
    up = d2.Unet(
        dim=24,
        dim_mults=(1, 2),
        num_resnet_blocks=1,
        lowres_cond=True,
        attn_heads=4,
        attn_dim_head=16,
    )
    theirs = d2.Decoder(
        (base, up),
        image_sizes=(low_r, r),
        random_crop_sizes=(None, ours.crop),
        unconditional=True,
        learned_variance=False,
        timesteps=cfg.timesteps,
        sample_timesteps=steps,
        blur_sigma=cfg.blur_sigma,
        blur_prob=cfg.degrade_prob,
        predict_x_start=(False, True),
        beta_schedule=("cosine", cfg.schedule),
    ).to(dev)
    images = torch.randint(0, 256, (b_train, 3, r, r), generator=g, dtype=torch.uint8).to(dev)
    ours.train(), theirs.train()
    ours_train = optimizer_step(lambda: ours.training_step((images,), 0), ours.parameters(), amp)
    theirs_train = optimizer_step(
        lambda: theirs(images.float() / 255, unet_number=2), theirs.unets[1].parameters(), amp
    )
    low = torch.rand(b_sample, 3, low_r, low_r, generator=g).to(dev)  # [0, 1]

    def ours_sample() -> Tensor:
        return ours.sample(low * 2 - 1, steps=steps, eta=0.0)

    def theirs_sample() -> Tensor:
        return theirs.sample(
            image=low, batch_size=b_sample, start_at_unet_number=2, one_unet_in_gpu_at_time=False
        )

    return Pair(
        f"upsampler {low_r}->{r}px (train on {ours.crop}px crops)",
        Side("ours", n_params(ours.net), ours_train, under(amp, ours_sample), b_train),
        Side("DALLE2", n_params(theirs.unets[1]), theirs_train, under(amp, theirs_sample), b_train),
        ours.net,
        theirs.unets[1],
        1,
    )


# ------------------------------------------------------------------------------- prior
class EmbeddingsAsClip(nn.Module):
    """A stand-in CLIP for DALLE2's DiffusionPrior.sample: `text` is a row index into
    precomputed (z_t, text encodings), so their real sampling code runs unchanged."""

    def __init__(self, z_t: Tensor, enc: Tensor) -> None:
        super().__init__()
        self.register_buffer("z_t", z_t)
        self.register_buffer("enc", enc)

    def embed_text(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        return self.z_t[rows], self.enc[rows]


def prior_pair(dev: torch.device, amp: Callable, steps: int, b_train: int, b_sample: int):
    from dalle2_pytorch.dalle2_pytorch import BaseClipAdapter

    from harness.config import PriorConfig
    from harness.stages.prior_diffusion import DiffusionPrior as OurPrior

    d2, cfg, g = dalle2(), PriorConfig(), torch.Generator().manual_seed(2)
    ours = OurPrior(cfg, CLIP_DIM, TEXT_WIDTH, CONTEXT).to(dev)

    def rows(b: int) -> dict[str, Tensor]:
        mask = captions(b, LONGEST, g)
        out = {
            "z_i": unit(b, g),
            "z_t": unit(b, g),
            "text_mask": mask,
            "text_enc": encodings_of(mask, TEXT_WIDTH, g),
        }
        return {k: v.to(dev) for k, v in out.items()}

    class Adapter(BaseClipAdapter):  # their sample() reads z_t and encodings through CLIP
        dim_latent, image_channels = CLIP_DIM, 3

        def embed_text(self, text: Tensor) -> tuple[Tensor, Tensor]:
            return self.clip.embed_text(text)

    s = rows(b_sample)
    net = d2.DiffusionPriorNetwork(
        dim=CLIP_DIM,
        depth=cfg.layers,
        heads=cfg.heads,
        dim_head=32,
        ff_mult=2,
        max_text_len=LONGEST,
    )
    theirs = d2.DiffusionPrior(
        net,
        clip=Adapter(EmbeddingsAsClip(s["z_t"], s["text_enc"])),
        image_embed_dim=CLIP_DIM,
        timesteps=cfg.timesteps,
        cond_drop_prob=cfg.text_drop,
        sample_timesteps=steps,
        beta_schedule=cfg.schedule,
    ).to(dev)
    t = rows(b_train)
    ours.train(), theirs.train()
    ours_train = optimizer_step(lambda: ours.training_step(t, 0), ours.parameters(), amp)
    theirs_train = optimizer_step(
        lambda: theirs(
            text_embed=t["z_t"], image_embed=t["z_i"].clone(), text_encodings=t["text_enc"]
        ),
        theirs.net.parameters(),
        amp,
    )
    sample_cfg = PriorConfig(steps=steps)
    idx = torch.arange(b_sample, device=dev)

    def ours_sample() -> Tensor:
        return ours.sample(s["z_t"], s["text_enc"], s["text_mask"], sample_cfg)

    def theirs_sample() -> Tensor:
        return theirs.sample(idx, num_samples_per_batch=cfg.candidates, timesteps=steps)

    return Pair(
        f"diffusion prior (best of {cfg.candidates})",
        Side("ours", n_params(ours.net), ours_train, under(amp, ours_sample), b_train),
        Side("DALLE2", n_params(theirs.net), theirs_train, under(amp, theirs_sample), b_train),
        ours.net,
        theirs.net,
        1,
    )


# ---------------------------------------------------------------------------- measuring
@contextlib.contextmanager
def counting(module: nn.Module) -> Iterator[list[int]]:
    """Counts module.forward calls inside the block (hooks would miss DALLE2's direct
    `self.forward(...)` calls in forward_with_cond_scale)."""
    calls, forward = [0], module.forward

    def counted(*args, **kwargs):
        calls[0] += 1
        return forward(*args, **kwargs)

    module.forward = counted
    try:
        yield calls
    finally:
        del module.forward  # back to the class's method


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn: Callable[[], object], iters: int, dev: torch.device) -> float:
    sync(dev)
    start = clock()
    for _ in range(iters):
        fn()
    sync(dev)
    return clock() - start


def warm_up(pair: Pair, warmup: int, b_sample: int) -> None:
    """Untimed calls of everything; counts each sampler's denoising steps on the way."""
    for _ in range(warmup):
        pair.ours.train(), pair.theirs.train()
    for side, net, per_step in (
        (pair.ours, pair.net_ours, 1),
        (pair.theirs, pair.net_theirs, pair.theirs_calls_per_step),
    ):
        for _ in range(warmup):
            with counting(net) as calls:
                side.sample()
        side.sample_items = b_sample * calls[0] // per_step


@dataclass
class Row:
    stage: str
    kind: str
    ours: float  # median items/s
    theirs: float
    ratios: list[float]


def compare(pair: Pair, kind: str, repeats: int, iters: int, dev: torch.device) -> Row:
    """Interleaved rounds (ours first on even rounds, theirs first on odd ones)."""
    sides = (pair.ours, pair.theirs)
    rates: dict[str, list[float]] = {s.name: [] for s in sides}
    ratios = []
    for r in range(repeats):
        for side in sides if r % 2 == 0 else sides[::-1]:
            items = side.train_items if kind == "train" else side.sample_items
            rates[side.name].append(items * iters / timed(getattr(side, kind), iters, dev))
        ratios.append(rates["ours"][-1] / rates["DALLE2"][-1])
    med = {k: statistics.median(v) for k, v in rates.items()}
    return Row(pair.stage, kind, med["ours"], med["DALLE2"], ratios)


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    unit = {"train": "img/s", "sample": "img-steps/s"}
    print(
        f"\ndevice {args.device}, {'bf16 autocast' if args.bf16 else 'float32'}, "
        f"{torch.get_num_threads()} threads, {args.repeats} rounds x {args.iters} calls, "
        f"{args.clock} clock"
    )
    head = f"{'stage':<40} {'step':<7} {'ours':>9} {'DALLE2':>9} {'unit':<12} ratio min/med/max"
    print(head + "\n" + "-" * len(head))
    for row in rows:
        lo, med, hi = min(row.ratios), statistics.median(row.ratios), max(row.ratios)
        print(
            f"{row.stage:<40} {row.kind:<7} {row.ours:>9.1f} {row.theirs:>9.1f} "
            f"{unit[row.kind]:<12} {lo:.2f} / {med:.2f} / {hi:.2f}"
        )


PAIRS = {"decoder": decoder_pair, "upsampler": upsampler_pair, "prior": prior_pair}
BATCH = {"decoder": (64, 64), "upsampler": (64, 64), "prior": (128, 64)}  # (train, sample)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default=",".join(PAIRS), help="comma-separated: " + ",".join(PAIRS))
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--iters", type=int, default=2, help="timed calls per side and round")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per side first")
    ap.add_argument("--sample-steps", type=int, default=5, help="denoising steps per sample call")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for both sides")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--clock", choices=CLOCKS, default="wall", help="cpu: CPU, --threads 1 only")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if args.clock == "cpu" and (dev.type != "cpu" or torch.get_num_threads() != 1):
        raise SystemExit("--clock cpu measures one CPU thread: use it with --threads 1 on a CPU")
    global clock
    clock = CLOCKS[args.clock]
    warnings.filterwarnings("ignore", message=".*self.log.*")  # stages outside a Trainer
    warnings.filterwarnings("ignore", category=FutureWarning)  # DALLE2's torch.cuda.amp import

    def amp() -> contextlib.AbstractContextManager:
        if not args.bf16:
            return contextlib.nullcontext()
        return torch.autocast(dev.type, dtype=torch.bfloat16)

    torch.manual_seed(0)
    rows = []
    for name in args.stages.split(","):
        b_train, b_sample = BATCH[name]
        pair = PAIRS[name](dev, amp, args.sample_steps, b_train, b_sample)
        a, b = pair.ours.params, pair.theirs.params
        print(
            f"{pair.stage}: parameters ours {a:,}, DALLE2 {b:,} ({b / a - 1:+.1%}); "
            f"batch train {b_train}, sample {b_sample}",
            flush=True,
        )
        if abs(b / a - 1) > MATCH:
            raise SystemExit(f"{name}: parameter counts differ by more than {MATCH:.0%}")
        warm_up(pair, args.warmup, b_sample)
        for kind in ("train", "sample"):
            rows.append(compare(pair, kind, args.repeats, args.iters, dev))
            r = rows[-1]
            print(
                f"  {kind}: ours {r.ours:.1f}, DALLE2 {r.theirs:.1f}, ratios "
                + " ".join(f"{x:.2f}" for x in r.ratios),
                flush=True,
            )
        del pair
    print_table(rows, args)


if __name__ == "__main__":
    main()
