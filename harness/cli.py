"""`python -m harness VERB ...`: parse arguments, call the library, print. Nothing else."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from . import paths
from .config import STAGES, load_experiment, read_yaml, stage_keys
from .errors import ConfigError, HarnessError


def cmd_validate(args: argparse.Namespace) -> int:
    exp = load_experiment(args.file, args.overrides)
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
    from .runner import ExperimentRun

    exp = load_experiment(args.file, args.overrides)
    run = ExperimentRun(exp, args.out, args.cache, tuple(args.retrain), progress=args.progress)
    run.run()
    return 0


def not_yet(verb: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        print(
            f"harness {verb}: not available in this version yet "
            f"(use `python -m harness validate FILE` to check a config).",
            file=sys.stderr,
        )
        return 2

    return handler


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness", description="unCLIP research harness: ablations, sweeps, metrics."
    )
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    v = sub.add_parser(
        "validate",
        help="parse and expand an experiment; print arms and stage hashes; train nothing",
    )
    v.add_argument("file", help="experiment YAML")
    v.add_argument("overrides", nargs="*", help="dotted overrides, e.g. decoder.text_drop=0.2")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.set_defaults(func=cmd_validate)
    ls = sub.add_parser("ls", help="list experiments, sweeps and metric suites")
    ls.set_defaults(func=cmd_ls)
    sc = sub.add_parser("score", help="score a folder of images against a reference folder")
    sc.add_argument("gen_dir", type=Path, help="generated images")
    sc.add_argument("ref_dir", type=Path, help="reference images")
    sc.add_argument("--suite", default="quick", help="metric suite (metrics/NAME.yaml)")
    sc.add_argument("--captions", type=Path, help="JSON {file: caption} or `file<TAB>caption`")
    sc.add_argument("--evaluator", type=Path, help="trained ClipStage dir (default: train one)")
    sc.add_argument("--cache", type=Path, help="cache dir (default $HARNESS_CACHE)")
    sc.add_argument("--json", action="store_true", help="machine-readable output")
    sc.set_defaults(func=cmd_score)
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
    for verb, text in (
        ("sweep", "run an Optuna study over a config"),
        ("report", "comparison table and plots of a finished run"),
    ):
        s = sub.add_parser(verb, help=text)
        s.add_argument("rest", nargs=argparse.REMAINDER)
        s.set_defaults(func=not_yet(verb))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `validate ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
