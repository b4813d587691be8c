"""Issue 16: each stage's quality against its sampler's cost, on the default setup.

    STUDY_THREADS=1 python -m benchmarks.sampler_curves decoder [--n 128]
        [--etas 0,0.5,1] [--guidances 1.25,2,3] [--steps 10,20] [--ddpm] [--set k=v ...]
    python -m benchmarks.sampler_curves tloss       # decoder held-out loss per noise level
    python -m benchmarks.sampler_curves upsamplers [--steps 1,2,4,8] [--etas 0,1]
    python -m benchmarks.sampler_curves cascade [--set upsamplers.second.degradation=blur]
    python -m benchmarks.sampler_curves prior [--set prior.kind=ar]

decoder: decodes the same held-out TRUE z_i (val split) with the same noise for every
setting; evaluator-CLIP matched cosine, margin over a shuffled partner, object recall and
compositional accuracy under a fixed judge (study.judge), each mean ± SE, and the CPU
seconds of the sampling call (one process, one thread: comparable between rows).
tloss: per t, the loss in the net's own parameterisation, the MSE of its x0 prediction
(raw and clipped to [-1, 1]) and the largest |x0|, against the data-mean floor.
upsamplers: PSNR on held-out images (clean area-downsampled input) vs bicubic, per setting.
cascade: upsampler2 fed upsampler1's output (as in a run) vs bicubic of that same input.
prior: cosine of sampled z_i to the true z_i (vs z_t) per sampler setting.
Stages come from the cache (HARNESS_CACHE, default /tmp/quality-cache); missing ones train.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch

from benchmarks.study import (
    Clock,
    cache_root,
    default_config,
    fmt,
    held_out,
    image_scores,
    judge,
    load_stages,
    mean_se,
    threads_from_env,
)  # fmt: skip
from harness.data.images import resize, to_model, to_uint8
from harness.embeddings import compute_embeddings
from harness.stages.prior import tensors
from harness.stages.upsampler import psnr


def floats(s: str) -> list[float]:
    return [float(v) for v in s.split(",")]


def decoder_curve(args: argparse.Namespace, cfg, loaded, dirs) -> None:
    dec, ev = loaded["decoder"], loaded["eval_clip"]
    ho = held_out(cfg, loaded["clip"], dirs["clip"], args.n)
    cls = judge(cfg, cache_root(args.cache))
    settings = [("ddim", e, int(k), g) for e in floats(args.etas) for k in args.steps.split(",")
                for g in floats(args.guidances)]  # fmt: skip
    if args.ddpm:
        settings += [("ddpm", 1.0, int(k), g) for k in args.steps.split(",")
                     for g in floats(args.guidances)]  # fmt: skip
    for sampler, eta, steps, g in settings:
        gen = torch.Generator().manual_seed(0)
        with Clock() as c:
            x = dec.sample(ho.z_i, ho.tokens, g, eta, steps, generator=gen, sampler=sampler)
        s = image_scores(x, ho, ev, cls)
        label = f"{sampler} eta={eta} steps={steps} g={g}"
        print(f"{label:<30} {fmt(s)}  cpu_s {c.seconds:.1f}", flush=True)


@torch.inference_mode()
def tloss(args: argparse.Namespace, cfg, loaded, dirs) -> None:
    dec = loaded["decoder"]
    diff, net, n = dec.diffusion, dec.net, args.n
    ho = held_out(cfg, loaded["clip"], dirs["clip"], n)
    x0 = resize(to_model(ho.images64), dec.cfg.resolution)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    floor = float(((x0.mean(0, keepdim=True) - x0) ** 2).mean())
    print(f"x0 MSE of the data mean (the floor at SNR 0): {floor:.4f}")
    for tv in (0, 100, 300, 500, 700, 800, 900, 950, 980, 999):
        t = torch.full((n,), tv, dtype=torch.long)
        x_t = diff.q_sample(x0, t, noise)
        out = net(x_t, t, z_i=ho.z_i, tokens=ho.tokens)
        px0, _ = diff.predict_x0_eps(out, x_t, t)
        row = {"t": tv, "snr": float(diff.alphas_cumprod[tv] / (1 - diff.alphas_cumprod[tv])),
               "loss": float(((out - diff.training_target(x0, noise, t)) ** 2).mean()),
               "x0_mse": float(((px0 - x0) ** 2).mean()),
               "x0_mse_clipped": float(((px0.clamp(-1, 1) - x0) ** 2).mean()),
               "x0_abs_max": float(px0.abs().max())}  # fmt: skip
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}))


def upsampler_curve(args: argparse.Namespace, cfg, loaded, dirs) -> None:
    for name in ("upsampler1", "upsampler2"):
        up = loaded[name]
        images = to_uint8(resize(to_model(held_out_images(cfg, args.n)), up.cfg.resolution))
        low = resize(to_model(images), up.low_resolution)
        bicubic = psnr(to_uint8(resize(low, up.cfg.resolution)), images)
        print(f"{name}: bicubic {mean_se(bicubic.numpy())[0]:.2f} dB")
        for eta in floats(args.etas):
            for steps in args.steps.split(","):
                with Clock() as c:
                    x = up.sample(low, int(steps), eta, generator=torch.Generator().manual_seed(0))
                d = (psnr(to_uint8(x), images) - bicubic).numpy()
                (m, se), beats = mean_se(d), float((d > 0).mean())
                print(f"  eta={eta} steps={steps:<3} margin {m:+.2f}±{se:.2f} dB  "
                      f"beats {beats:.2f}  cpu_s {c.seconds:.1f}", flush=True)  # fmt: skip


def cascade_curve(args: argparse.Namespace, cfg, loaded, dirs) -> None:
    """upsampler2 on what the cascade hands it: upsampler1's output (2 steps) from the
    16 px area-downsample, against bicubic of that same input, PSNR to the real 64 px."""
    up1, up2 = loaded["upsampler1"], loaded["upsampler2"]
    images = held_out_images(cfg, args.n)  # uint8 at data.resolution (64)
    low = resize(to_model(images), up1.low_resolution)
    mid = up1.sample(low, 2, 0.0, generator=torch.Generator().manual_seed(0))
    bicubic = psnr(to_uint8(resize(mid, up2.cfg.resolution)), images)
    print(f"cascade: bicubic of upsampler1's output {mean_se(bicubic.numpy())[0]:.2f} dB")
    for steps in args.steps.split(","):
        x = up2.sample(mid, int(steps), 0.0, generator=torch.Generator().manual_seed(0))
        d = (psnr(to_uint8(x), images) - bicubic).numpy()
        (m, se), beats = mean_se(d), float((d > 0).mean())
        print(f"  steps={steps:<3} margin {m:+.2f}±{se:.2f} dB  beats {beats:.2f}", flush=True)


def held_out_images(cfg, n: int) -> torch.Tensor:
    from harness.stages.decoder import stage_images

    return stage_images(cfg.data, "val", cfg.data.resolution, per_pair=False)[:n]


def prior_curve(args: argparse.Namespace, cfg, loaded, dirs) -> None:
    from harness.stages.prior import sample_z_i

    val = compute_embeddings(loaded["clip"], dirs["clip"], cfg.data, "val")
    data = tensors(val)
    z_i, z_t = data["z_i"][: args.n], data["z_t"][: args.n]
    print(f"z_t baseline cos {mean_se((z_i * z_t).sum(-1).numpy())}")
    for spec in args.grid.split(";"):
        p = cfg.prior
        for kv in filter(None, spec.split(",")):
            k, v = kv.split("=")
            p = _replace_dotted(p, k, v)
        c2 = dataclasses.replace(cfg, prior=p)
        gen = torch.Generator().manual_seed(0)
        with Clock() as c:
            z = sample_z_i(c2, loaded["prior"], z_t, data["text_enc"][: args.n],
                           data["text_mask"][: args.n], generator=gen)  # fmt: skip
        m, se = mean_se((z * z_i).sum(-1).numpy())
        beats = float(np.mean(((z - z_t) * z_i).sum(-1).numpy() > 0))
        print(f"  {spec:<40} cos {m:.4f}±{se:.4f}  beats z_t {beats:.2f}  cpu_s {c.seconds:.1f}")


def _replace_dotted(obj, key: str, value: str):
    head, _, rest = key.partition(".")
    cur = getattr(obj, head)
    if rest:
        return dataclasses.replace(obj, **{head: _replace_dotted(cur, rest, value)})
    return dataclasses.replace(obj, **{head: type(cur)(value)})


STUDIES = {"decoder": (decoder_curve, ("decoder",)), "tloss": (tloss, ("decoder",)),
           "upsamplers": (upsampler_curve, ("upsampler1", "upsampler2")),
           "prior": (prior_curve, ("prior",)),
           "cascade": (cascade_curve, ("upsampler1", "upsampler2"))}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", choices=sorted(STUDIES))
    ap.add_argument("--cache", default=None)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--etas", default="0,1")
    ap.add_argument("--guidances", default="1.25,2,3")
    ap.add_argument("--steps", default="20")
    ap.add_argument("--ddpm", action="store_true")
    ap.add_argument("--grid", default="steps=64", help="prior: ';'-separated k=v,k=v settings")
    ap.add_argument("--set", nargs="*", default=[])
    args = ap.parse_args()
    threads_from_env()
    cfg = default_config(args.set)
    fn, names = STUDIES[args.study]
    loaded, dirs = load_stages(cfg, cache_root(args.cache), names)
    fn(args, cfg, loaded, dirs)


if __name__ == "__main__":
    main()
