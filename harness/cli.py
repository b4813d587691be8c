"""`python -m harness VERB ...`: parse arguments, call the library, print. Nothing else."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import distributed, paths
from .config import load_experiment, read_yaml
from .errors import ConfigError, HarnessError


def cmd_validate(args: argparse.Namespace) -> int:
    from .preflight import check_data, configs_of

    exp = load_experiment(args.file, args.overrides)  # a typo costs no torch import
    from .stages.checks import check_experiment  # torch: the nets are built on meta
    from .stages.graph import STAGES, stage_keys

    check_experiment(exp)
    if args.data:  # bring-your-own data: paths, captions, a readable image in each split
        check_data(configs_of(exp))
    rows = []
    for arm in exp.arms:
        for seed in exp.seeds:
            keys = stage_keys(exp.config(arm, seed))
            rows.append({"arm": arm.label, "seed": seed, "stages": keys})
    if args.json:
        print(
            json.dumps(
                {
                    "name": exp.name,
                    "metrics": exp.metrics,
                    "seeds": exp.seeds,
                    "axes": exp.axes,
                    "arms": rows,
                },
                indent=2,
            )
        )
        return 0
    print(f"{exp.name}  ({args.file})")
    if exp.description:
        print(f"  {exp.description}")
    axes = ", ".join(exp.axes) or "none"
    print(f"  metrics: {exp.metrics}   seeds: {exp.seeds}   axes: {axes}")
    print(f"  {len(exp.arms)} arm(s) x {len(exp.seeds)} seed(s); stage hashes ('-': none):\n")
    width = max(len("arm"), *(len(r["arm"]) for r in rows))
    print(f"  {'arm':<{width}}  seed  " + "  ".join(f"{s:<16}" for s in STAGES))
    for r in rows:
        cells = "  ".join(f"{r['stages'][s] or '-':<16}" for s in STAGES)
        print(f"  {r['arm']:<{width}}  {r['seed']:<4}  {cells}")
    print("\nvalid; nothing trained.")
    return 0


def describe(path: Path) -> str:
    try:
        return str(read_yaml(path).get("description", ""))
    except ConfigError as err:
        return f"(unreadable: {err.message})"


def cmd_ls(args: argparse.Namespace) -> int:
    for folder, title in (
        ("experiments", "Experiments"),
        ("sweeps", "Sweeps"),
        ("metrics", "Metric suites"),
    ):
        found = paths.list_yaml(folder)
        print(f"{title} ({folder}/):")
        if not found:
            print("  (none)")
        for p in found:
            print(f"  {paths.yaml_name(p, folder):<24} {describe(p)}")
        print()
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .metrics.score import score_folders
    from .metrics.suite import load_suite

    scores = score_folders(
        args.gen_dir, args.ref_dir, load_suite(args.suite), args.captions, args.evaluator,
        args.cache,
    )  # fmt: skip
    if args.json:
        print(json.dumps({k: v.as_dict() for k, v in scores.items()}, indent=2))
        return 0
    print(f"{args.gen_dir} vs {args.ref_dir}  (suite {args.suite}; 95% intervals)")
    for name, est in scores.items():
        print(f"  {name:<20} {est}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .preflight import check_run

    exp = load_experiment(args.file, args.overrides)
    check_run(exp, args.out / exp.name, args.cache or paths.default_cache_dir())  # in seconds
    from .runner import ExperimentRun

    # under DDP every rank runs this; only rank 0 writes (ExperimentRun.train_with_rank_zero)
    run = ExperimentRun(exp, args.out, args.cache, tuple(args.retrain), progress=args.progress)
    run.run()
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_run, format_comparisons

    comps = compare_run(args.run_dir, args.arm_a, args.arm_b)
    if args.json:
        print(json.dumps([c.as_dict() for c in comps], indent=2))
    else:
        print(format_comparisons(comps, args.arm_a, args.arm_b))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .sweep.report import is_sweep_dir

    if is_sweep_dir(args.run_dir):
        return cmd_report_sweep(args)
    from .report import report

    path = report(args.run_dir)
    print((path.parent / "report" / "table.txt").read_text())
    print(f"report: {path}")
    return 0


def cmd_report_sweep(args: argparse.Namespace) -> int:
    from .sweep.report import report_sweep

    rep = report_sweep(args.run_dir, args.storage)
    print(rep.text)
    for why in rep.skipped:
        print(f"  (not drawn: {why})")
    print(f"report: {rep.folder}  ({', '.join(p.name for p in rep.files)})")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep.spec import load_sweep, with_budget

    spec = with_budget(load_sweep(args.file, args.overrides), args.n_trials)
    if args.workers < 1:
        raise HarnessError(f"--workers: expected a positive integer, got {args.workers}")
    from .sweep.study import run_sweep

    worker_argv = ["sweep", str(args.file), *args.overrides, "--out", str(args.out),
                   "--n-trials", str(spec.n_trials), *(["--progress"] if args.progress else []),
                   *(["--cache", str(args.cache)] if args.cache else [])]  # fmt: skip
    res = run_sweep(spec, args.out, args.storage, args.workers, args.cache, args.progress,
                    argv=worker_argv)  # fmt: skip
    ran = f"; this worker ran {len(res.ran_here)}" if args.workers == 1 else ""
    print(f"study {res.study} ({res.storage}): {res.done}/{res.budget} trials done, "
          f"{res.running} running elsewhere, {res.errors} failed{ran}")  # fmt: skip
    print(f"report: python -m harness report {res.root}")
    return 0


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
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override (repeatable)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness", description="unCLIP research harness: ablations, sweeps, metrics."
    )
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for add in (add_validate, add_ls, add_score, add_run, add_report, add_compare,
                add_manipulations, add_sweep):  # fmt: skip
        add(sub)
    return p


def add_validate(sub: Any) -> None:
    v = sub.add_parser(
        "validate",
        help="parse and expand an experiment; print arms and stage hashes; train nothing",
    )
    v.add_argument("file", help="experiment YAML")
    v.add_argument("overrides", nargs="*", help="dotted overrides, e.g. decoder.text_drop=0.2")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.add_argument("--no-data", dest="data", action="store_false",
                   help="skip opening bring-your-own data (a config for elsewhere)")  # fmt: skip
    v.set_defaults(func=cmd_validate)


def add_ls(sub: Any) -> None:
    sub.add_parser("ls", help="list experiments, sweeps and metric suites").set_defaults(
        func=cmd_ls
    )


def add_score(sub: Any) -> None:
    sc = sub.add_parser("score", help="score a folder of images against a reference folder")
    sc.add_argument("gen_dir", type=Path, help="generated images")
    sc.add_argument("ref_dir", type=Path, help="reference images")
    sc.add_argument("--suite", default="quick", help="metric suite (metrics/NAME.yaml)")
    sc.add_argument("--captions", type=Path, help="JSON {file: caption} or `file<TAB>caption`")
    sc.add_argument("--evaluator", type=Path, help="trained ClipStage dir (default: train one)")
    sc.add_argument("--cache", type=Path, help="cache dir (default $HARNESS_CACHE)")
    sc.add_argument("--json", action="store_true", help="machine-readable output")
    sc.set_defaults(func=cmd_score)


def add_run(sub: Any) -> None:
    r = sub.add_parser("run", help="train, sample and score every arm of an experiment")
    r.add_argument("file", help="experiment YAML")
    r.add_argument("overrides", nargs="*", help="dotted overrides, e.g. decoder.eta=0.5")
    r.add_argument("--out", type=Path, default=Path("runs"), help="results go to OUT/<name>/")
    r.add_argument(
        "--cache", type=Path, help="stage cache (default $HARNESS_CACHE or ~/.cache/unclip-harness)"
    )
    r.add_argument(
        "--retrain",
        action="append",
        default=[],
        metavar="STAGE",
        help="retrain this stage even if cached (repeatable; `all`)",
    )
    r.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars (logs stay)"
    )
    r.set_defaults(func=cmd_run)


def add_report(sub: Any) -> None:
    rp = sub.add_parser("report", help="comparison table, plots and sample grids of a run")
    rp.add_argument("run_dir", type=Path, help="OUT/<experiment> (a run) or OUT/<study> (a sweep)")
    rp.add_argument("--storage", help="a sweep's storage URL, when it holds a password")
    rp.set_defaults(func=cmd_report)


def add_compare(sub: Any) -> None:
    cp = sub.add_parser("compare", help="arm A - arm B per metric: paired interval, p, Holm p")
    cp.add_argument("run_dir", type=Path, help="OUT/<experiment> of a finished run")
    cp.add_argument("arm_a", help="arm label, e.g. prior.kind=diffusion")
    cp.add_argument("arm_b", help="arm label")
    cp.add_argument("--json", action="store_true", help="machine-readable output")
    cp.set_defaults(func=cmd_compare)


def add_manipulations(sub: Any) -> None:
    va = sub.add_parser("vary", help="variations of images: DDIM inversion, then eta > 0")
    add_setup_args(va)
    va.add_argument("images", nargs="+", type=Path, help="image files")
    va.add_argument("--n", type=int, default=4, help="variations per image")
    va.add_argument("--eta", type=float, default=1.0, help="DDIM eta (0 reconstructs)")
    va.add_argument("--out", type=Path, default=Path("vary.png"), help="grid PNG")
    va.set_defaults(func=cmd_vary)
    it = sub.add_parser("interpolate", help="slerp between two images' (z_i, x_T)")
    add_setup_args(it)
    it.add_argument("image1", type=Path)
    it.add_argument("image2", type=Path)
    it.add_argument("--steps", type=int, default=5, help="interpolation points")
    it.add_argument(
        "--latent",
        choices=("slerp", "fixed"),
        default="slerp",
        help="x_T slerped between the inversions, or one fixed draw",
    )
    it.add_argument("--out", type=Path, default=Path("interpolate.png"), help="grid PNG")
    it.set_defaults(func=cmd_interpolate)
    td = sub.add_parser("textdiff", help="edit an image along z_t(after) - z_t(before)")
    add_setup_args(td)
    td.add_argument("image", type=Path)
    td.add_argument("--before", required=True, help="caption describing the image now")
    td.add_argument("--after", required=True, help="caption describing the target")
    td.add_argument("--theta-max", type=float, default=0.5, help="paper: 0.25 to 0.5")
    td.add_argument("--steps", type=int, default=5)
    td.add_argument("--out", type=Path, default=Path("textdiff.png"), help="grid PNG")
    td.set_defaults(func=cmd_textdiff)


def add_sweep(sub: Any) -> None:
    sw = sub.add_parser("sweep", help="run (or resume, or join) an Optuna study over a config")
    sw.add_argument("file", help="sweep YAML (sweeps/*.yaml)")
    sw.add_argument("overrides", nargs="*", help="dotted overrides for every trial")
    sw.add_argument("--storage", help="Optuna storage: RDB URL, journal:PATH, .db or .log file "
                    "(default: sqlite in OUT/<study>/)")  # fmt: skip
    sw.add_argument("--n-trials", type=int, help="the study's trial budget (default: the file's)")
    sw.add_argument("--workers", type=int, default=1, help="worker processes on this host")
    sw.add_argument("--out", type=Path, default=Path("runs"), help="results go to OUT/<study>/")
    sw.add_argument("--cache", type=Path, help="stage cache (default $HARNESS_CACHE)")
    sw.add_argument("--progress", action="store_true", help="show training progress bars")
    sw.set_defaults(func=cmd_sweep)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    distributed.quiet_followers()
    try:
        return args.func(args)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `validate ... | head`
        sys.stderr.close()
        return 0
    except OSError as err:  # disk full, read-only or vanished folder: one line, no traceback
        print(f"error: {err.filename or 'I/O'}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
