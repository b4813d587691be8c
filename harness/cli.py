"""`python -m harness VERB ...`: parse arguments, call the library, print. Nothing else."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import distributed, paths
from .cli_setup import add_manipulations, add_prompts
from .cliargs import HelpFormatter, add_overrides, common_options, configure, split_overrides
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
    from .metrics.suite import load_suite
    from .overwrite import check_overwrite
    from .preflight import check_run

    exp = load_experiment(args.file, args.overrides)
    check_overwrite(exp, args.out / exp.name, load_suite(exp.metrics).name, args.overwrite)
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
    from .sweep.storage import dashboard_command
    from .sweep.study import run_sweep

    worker_argv = ["sweep", str(args.file), *args.overrides, "--out", str(args.out),
                   "--n-trials", str(spec.n_trials),
                   "--progress" if args.progress else "--no-progress",
                   *(["--cache", str(args.cache)] if args.cache else [])]  # fmt: skip
    res = run_sweep(spec, args.out, args.storage, args.workers, args.cache, args.progress,
                    argv=worker_argv)  # fmt: skip
    ran = f"; this worker ran {len(res.ran_here)}" if args.workers == 1 else ""
    print(f"study {res.study} ({res.storage}): {res.done}/{res.budget} trials done, "
          f"{res.running} running elsewhere, {res.errors} failed{ran}")  # fmt: skip
    print(f"report: python -m harness report {res.root}")
    print(f"dashboard: {dashboard_command(res.storage)}  (pip install optuna-dashboard)")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness",
        description="unCLIP research harness: ablations, sweeps, metrics.",
        epilog="example:\n  python -m harness run experiments/prior_ablation.yaml decoder.eta=0.5\n"
        "`python -m harness VERB --help` shows each verb's options, defaults and an example.",
        formatter_class=HelpFormatter,
    )
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for add in (add_validate, add_ls, add_score, add_run, add_report, add_compare, add_sweep):
        add(sub)
    add_manipulations(sub, verb)
    add_prompts(sub, verb)
    return p


def verb(sub: Any, name: str, help: str, example: str) -> argparse.ArgumentParser:
    """A verb's parser: its help, the shared options (-v, -q, --no-progress), defaults in
    --help and an example."""
    return sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                          parents=[common_options()], formatter_class=HelpFormatter)  # fmt: skip


def add_validate(sub: Any) -> None:
    v = verb(
        sub,
        "validate",
        "parse and expand an experiment; print arms and stage hashes; train nothing",
        "python -m harness validate experiments/eta.yaml decoder.eta=0.5",
    )
    v.add_argument("file", help="experiment YAML")
    add_overrides(v)
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.add_argument("--no-data", dest="data", action="store_false",
                   help="skip opening bring-your-own data (a config for elsewhere)")  # fmt: skip
    v.set_defaults(func=cmd_validate)


def add_ls(sub: Any) -> None:
    verb(sub, "ls", "list experiments, sweeps and metric suites",
         "python -m harness ls").set_defaults(func=cmd_ls)  # fmt: skip


def add_score(sub: Any) -> None:
    sc = verb(
        sub,
        "score",
        "score a folder of images against a reference folder",
        "python -m harness score samples/ real/ --suite quick --captions caps.json",
    )
    sc.add_argument("gen_dir", type=Path, help="generated images")
    sc.add_argument("ref_dir", type=Path, help="reference images")
    sc.add_argument("--suite", default="quick", help="metric suite (metrics/NAME.yaml)")
    sc.add_argument("--captions", type=Path, help="JSON {file: caption} or `file<TAB>caption`")
    sc.add_argument("--evaluator", type=Path, help="trained ClipStage dir (default: train one)")
    sc.add_argument("--cache", type=Path, help="cache dir (default $HARNESS_CACHE)")
    sc.add_argument("--json", action="store_true", help="machine-readable output")
    sc.set_defaults(func=cmd_score)


def add_run(sub: Any) -> None:
    r = verb(
        sub,
        "run",
        "train, sample and score every arm of an experiment",
        "python -m harness run experiments/prior_ablation.yaml --out runs decoder.eta=0.5",
    )
    r.add_argument("file", help="experiment YAML")
    add_overrides(r)
    r.add_argument("--out", type=Path, default=Path("runs"), help="results go to OUT/<name>/")
    r.add_argument(
        "--cache", type=Path, help="stage cache (default $HARNESS_CACHE or ~/.cache/unclip-harness)"
    )
    r.add_argument("--retrain", action="append", default=[], metavar="STAGE",
                   help="retrain this stage even if cached (repeatable; `all`)")  # fmt: skip
    r.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT/<name>/results.csv even if a different config wrote it",
    )
    r.set_defaults(func=cmd_run)


def add_report(sub: Any) -> None:
    rp = verb(sub, "report", "comparison table, plots and sample grids of a run",
              "python -m harness report runs/prior_ablation")  # fmt: skip
    rp.add_argument("run_dir", type=Path, help="OUT/<experiment> (a run) or OUT/<study> (a sweep)")
    rp.add_argument("--storage", help="a sweep's storage URL, when it holds a password")
    rp.set_defaults(func=cmd_report)


def add_compare(sub: Any) -> None:
    cp = verb(
        sub,
        "compare",
        "arm A - arm B per metric: paired interval, p, Holm p",
        "python -m harness compare runs/prior_ablation prior.kind=diffusion prior.kind=ar",
    )
    cp.add_argument("run_dir", type=Path, help="OUT/<experiment> of a finished run")
    cp.add_argument("arm_a", help="arm label, e.g. prior.kind=diffusion")
    cp.add_argument("arm_b", help="arm label")
    cp.add_argument("--json", action="store_true", help="machine-readable output")
    cp.set_defaults(func=cmd_compare)


def add_sweep(sub: Any) -> None:
    sw = verb(
        sub,
        "sweep",
        "run (or resume, or join) an Optuna study over a config",
        "python -m harness sweep sweeps/decoder_guidance.yaml --n-trials 8 decoder.steps=20",
    )
    sw.add_argument("file", help="sweep YAML (sweeps/*.yaml)")
    add_overrides(sw)
    sw.add_argument("--storage", help="Optuna storage: RDB URL, journal:PATH, .db or .log file "
                    "(default: sqlite in OUT/<study>/)")  # fmt: skip
    sw.add_argument("--n-trials", type=int, help="the study's trial budget (default: the file's)")
    sw.add_argument("--workers", type=int, default=1, help="worker processes on this host")
    sw.add_argument("--out", type=Path, default=Path("runs"), help="results go to OUT/<study>/")
    sw.add_argument("--cache", type=Path, help="stage cache (default $HARNESS_CACHE)")
    sw.set_defaults(func=cmd_sweep)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """argparse, after taking the KEY=VALUE overrides out wherever they stand."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    subs = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices
    name = next((t for t in argv if not t.startswith("-")), None)
    found: list[str] = []
    if name in subs and any(a.dest == "overrides" for a in subs[name]._actions):
        head = argv.index(name) + 1
        rest, found = split_overrides(subs[name], argv[head:])
        argv = argv[:head] + rest
    args = p.parse_args(argv)
    if hasattr(args, "overrides"):
        args.overrides = [*args.overrides, *args.set_overrides, *found]
    configure(args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
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
