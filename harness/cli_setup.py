"""The verbs that run a trained setup (an experiment YAML or a run folder, one arm at one
seed): the paper's manipulations `vary`, `interpolate`, `textdiff`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .cliargs import add_overrides


def manipulation_setup(args: argparse.Namespace) -> tuple[object, int]:
    from .data import read_image

    named = [getattr(args, k, None) for k in ("image", "image1", "image2")]
    for path in [*getattr(args, "images", []), *named]:
        if path is not None:
            read_image(path, 8)  # missing or unreadable: fail before any stage trains
    from .runner import load_setup

    pipe = load_setup(args.setup, args.overrides, args.arm, args.seed, args.cache)
    return pipe, pipe.cfg.data.resolution


def cmd_vary(args: argparse.Namespace) -> int:
    import torch

    from .data import read_image
    from .data.images import to_uint8
    from .grids import labelled_grid

    pipe, res = manipulation_setup(args)
    images = torch.cat([read_image(p, res) for p in args.images])  # (S, 3, R, R)
    g = torch.Generator().manual_seed(pipe.cfg.seed)
    var = to_uint8(pipe.vary(images, args.n, args.eta, g)).cpu()  # (S, n, 3, R', R')
    rows = [[images[i], *var[i]] for i in range(len(images))]
    labels = [[Path(p).name, *(f"eta={args.eta} #{k}" for k in range(args.n))] for p in args.images]
    print(f"wrote {labelled_grid(rows, labels, args.out)}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    import torch

    from .data import read_image
    from .data.images import to_uint8
    from .grids import labelled_grid
    from .manipulations import interpolate

    pipe, res = manipulation_setup(args)
    a, b = read_image(args.image1, res), read_image(args.image2, res)
    out = to_uint8(interpolate(pipe, a, b, args.steps, args.latent)).cpu()
    thetas = torch.linspace(0, 1, args.steps).tolist()
    row = [a[0], *out, b[0]]
    names = ["input 1", *(f"theta={t:.2f}" for t in thetas), "input 2"]
    print(f"wrote {labelled_grid([row], [names], args.out)}")
    return 0


def cmd_textdiff(args: argparse.Namespace) -> int:
    import torch

    from .data import read_image
    from .data.images import to_uint8
    from .grids import labelled_grid
    from .manipulations import textdiff

    pipe, res = manipulation_setup(args)
    image = read_image(args.image, res)
    out = to_uint8(textdiff(pipe, image, args.before, args.after, args.theta_max, args.steps))
    thetas = torch.linspace(0, args.theta_max, args.steps).tolist()
    names = ["input", *(f"theta={t:.2f}" for t in thetas)]
    print(f"wrote {labelled_grid([[image[0], *out.cpu()]], [names], args.out)}")
    return 0


def add_setup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("setup", help="experiment YAML, or a run directory (OUT/<experiment>)")
    p.add_argument("--arm", help="arm label (default: the first arm)")
    p.add_argument("--seed", type=int, help="seed (default: the experiment's first)")
    p.add_argument("--cache", type=Path, help="stage cache (default $HARNESS_CACHE)")


def add_manipulations(sub: Any, verb: Any) -> None:
    """`verb(sub, name, help, example)` makes a subparser with the shared options."""
    va = verb(
        sub,
        "vary",
        "variations of images: DDIM inversion, then eta > 0",
        "python -m harness vary runs/prior_ablation a.png b.png --n 4 decoder.steps=50",
    )
    add_setup_args(va)
    va.add_argument("images", nargs="+", type=Path, help="image files")
    add_overrides(va)  # after the images: argparse hands positionals out in order
    va.add_argument("--n", type=int, default=4, help="variations per image")
    va.add_argument("--eta", type=float, default=1.0, help="DDIM eta (0 reconstructs)")
    va.add_argument("--out", type=Path, default=Path("vary.png"), help="grid PNG")
    va.set_defaults(func=cmd_vary)
    it = verb(
        sub,
        "interpolate",
        "slerp between two images' (z_i, x_T)",
        "python -m harness interpolate runs/prior_ablation a.png b.png --steps 7",
    )
    add_setup_args(it)
    it.add_argument("image1", type=Path)
    it.add_argument("image2", type=Path)
    add_overrides(it)
    it.add_argument("--steps", type=int, default=5, help="interpolation points")
    it.add_argument(
        "--latent",
        choices=("slerp", "fixed"),
        default="slerp",
        help="x_T slerped between the inversions, or one fixed draw",
    )
    it.add_argument("--out", type=Path, default=Path("interpolate.png"), help="grid PNG")
    it.set_defaults(func=cmd_interpolate)
    td = verb(
        sub,
        "textdiff",
        "edit an image along z_t(after) - z_t(before)",
        "python -m harness textdiff runs/prior_ablation a.png --before 'a red circle' "
        "--after 'a blue circle'",
    )
    add_setup_args(td)
    td.add_argument("image", type=Path)
    add_overrides(td)
    td.add_argument("--before", required=True, help="caption describing the image now")
    td.add_argument("--after", required=True, help="caption describing the target")
    td.add_argument("--theta-max", type=float, default=0.5, help="paper: 0.25 to 0.5")
    td.add_argument("--steps", type=int, default=5)
    td.add_argument("--out", type=Path, default=Path("textdiff.png"), help="grid PNG")
    td.set_defaults(func=cmd_textdiff)


def cmd_prompts(args: argparse.Namespace) -> int:
    from .config import load_experiment
    from .prompts import read_prompts, run_prompts
    from .tracking import sync_hint

    read_prompts(args.prompts)  # a missing or empty file fails before any stage trains
    exp = load_experiment(args.file, args.overrides)
    res = run_prompts(exp, args.prompts, args.out, args.cache, args.seed, args.n)
    print(f"wrote {len(res.grids)} grids (arms side by side) to {res.folder}")
    hint = sync_hint(res.folder.parent)
    if hint:
        print(f"W&B (offline): upload with  {hint}")
    return 0


def add_prompts(sub: Any, verb: Any) -> None:
    pr = verb(
        sub,
        "prompts",
        "sample a list of prompts with every arm, same noise per prompt",
        "python -m harness prompts experiments/prior_ablation.yaml prompts.txt --n 2",
    )
    pr.add_argument("file", help="experiment YAML")
    pr.add_argument("prompts", type=Path, help="text file, one prompt per line (# comments)")
    add_overrides(pr)
    pr.add_argument("--n", type=int, default=1, help="samples per prompt and arm")
    pr.add_argument("--seed", type=int, help="seed (default: the experiment's first)")
    pr.add_argument("--out", type=Path, default=Path("runs"),
                    help="grids go to OUT/<name>/prompts/")  # fmt: skip
    pr.add_argument("--cache", type=Path, help="stage cache (default $HARNESS_CACHE)")
    pr.set_defaults(func=cmd_prompts)
