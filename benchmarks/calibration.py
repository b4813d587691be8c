"""A/A calibration of the harness's verdicts, through the real entry point.

    python benchmarks/calibration.py [--experiment experiments/prior_ablation.yaml]
        [--fix prior.kind=diffusion] [--arms 4] [--cache DIR] [--keep DIR]

Runs one arm of the experiment (its settings plus --fix) as --arms copies that differ only in
`sample.seed`: the same trained stages (a warm cache trains nothing), new sampling noise. No
difference between them is real, so every comparison the table flags is a false positive.
Prints, per metric and over all metrics and pairs, the share of comparisons with p < 5%
(unadjusted: calibrated tests give ~5%) and with Holm p < 5% (what the table's marks use:
~0 expected), then `A/A false-positive rate: X`, the unadjusted share over every metric and
pair. One run's pairs share samples, so its rate is noisy: repeat with another --fix or more
--arms to tighten it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ALPHA = 0.05


def nested(dotted: str) -> dict:
    """`a.b=v` -> {"a": {"b": v}} (v parsed as YAML)."""
    key, _, value = dotted.partition("=")
    out: dict = {}
    node = out
    *heads, last = key.split(".")
    for h in heads:
        node = node.setdefault(h, {})
    node[last] = yaml.safe_load(value)
    return out


def experiment_file(base: Path, fix: list[str], arms: int, where: Path) -> Path:
    spec: dict = {
        "name": "calibration_aa",
        "base": str(base.resolve()),
        "description": f"A/A: {', '.join(fix) or 'the base'} x sample.seed",
        "ablate": {"sample.seed": list(range(arms))},
        "seeds": [0],
    }  # one training of each stage: sampling noise is all that differs
    for f in fix:
        for k, v in nested(f).items():
            spec.setdefault(k, {}).update(v) if isinstance(v, dict) else spec.update({k: v})
    path = where / "calibration_aa.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def rates(comparisons: list[dict]) -> dict[str, tuple[int, int, int]]:
    """metric -> (comparisons, p < ALPHA, Holm p < ALPHA)."""
    out: dict[str, list[int]] = {}
    for c in comparisons:
        row = out.setdefault(c["metric"], [0, 0, 0])
        row[0] += 1
        row[1] += c["p"] < ALPHA
        row[2] += c["p_holm"] < ALPHA
    return {m: (n, raw, holm) for m, (n, raw, holm) in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", type=Path, default=ROOT / "experiments/prior_ablation.yaml")
    ap.add_argument(
        "--fix",
        action="append",
        default=None,
        help="KEY=VALUE the A/A arm sets (default prior.kind=diffusion)",
    )
    ap.add_argument("--arms", type=int, default=4, help="copies differing in sample.seed")
    ap.add_argument("--cache", type=Path, help="stage cache (default: the harness's)")
    ap.add_argument("--keep", type=Path, help="keep the run here (default: a temp folder)")
    args = ap.parse_args()
    fix = ["prior.kind=diffusion"] if args.fix is None else args.fix
    where = args.keep or Path(tempfile.mkdtemp(prefix="calibration-"))
    where.mkdir(parents=True, exist_ok=True)
    exp = experiment_file(args.experiment, fix, args.arms, where)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    if args.cache:
        env["HARNESS_CACHE"] = str(args.cache)
    cmd = [sys.executable, "-m", "harness", "run", str(exp), "--out", str(where / "runs"),
           "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"A/A run failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    meta = json.loads((where / "runs" / "calibration_aa" / "results.json").read_text())
    table = rates(meta["statistics"]["comparisons"])
    print(proc.stdout[proc.stdout.rfind("\narm ") :].strip() + "\n")
    print(f"{'metric':<24} {'pairs':>5} {'p<5%':>6} {'Holm p<5%':>10}")
    for m, (n, raw, holm) in table.items():
        print(f"{m:<24} {n:>5} {raw:>6} {holm:>10}")
    total = sum(n for n, _, _ in table.values())
    raw = sum(r for _, r, _ in table.values())
    holm = sum(h for _, _, h in table.values())
    print(f"\nA/A false-positive rate: {raw / max(total, 1):.3f} ({raw}/{total} comparisons at "
          f"p < 5%, unadjusted); table marks (Holm): {holm}/{total}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
