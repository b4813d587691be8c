"""Cold and warm wall time of the default experiment, through the real entry point.

    python benchmarks/run_time.py [--experiment experiments/prior_ablation.yaml]
                                  [--then experiments/guidance_scale.yaml] [--keep DIR]

1. cold: an empty stage cache, every stage trained;
2. warm: the same command again (every stage and sample set cached: only scoring);
3. then: a sampling-knob-only experiment on the warm cache (must train nothing; it samples
   its own arms, so it has no time target).
Prints each phase's wall time against the targets (cold < 15 min, warm < 2 min), the warm /
cold ratio, which stages each phase trained, and the cold run's per-stage training times.
Exit status 1 when a target is missed, so it can gate a release.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINED = re.compile(r"^\s+(\w+)\s+(\w+)\s+trained in (\d+) s", re.M)


def run(exp: str, out: Path, cache: Path) -> tuple[float, str]:
    env = {**os.environ, "HARNESS_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", exp, "--out", str(out), "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{exp} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="experiments/prior_ablation.yaml")
    ap.add_argument("--then", default="experiments/guidance_scale.yaml")
    ap.add_argument("--cold-target", type=float, default=15 * 60)
    ap.add_argument("--warm-target", type=float, default=2 * 60)
    ap.add_argument("--keep", type=Path, help="keep the cache and runs here (default: temp)")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="run_time_"))
    cache, out = work / "cache", work / "runs"
    if cache.exists() and any(cache.iterdir()):
        sys.exit(f"{cache} is not empty: a cold run needs an empty cache")
    phases = [("cold", args.experiment), ("warm", args.experiment), ("then", args.then)]
    rows = []
    for phase, exp in phases:
        print(f"{phase}: {exp} ...", flush=True)
        wall, stdout = run(exp, out, cache)
        trained = TRAINED.findall(stdout)
        rows.append((phase, exp, wall, trained))
        (work / f"{phase}.log").write_text(stdout)

    cold, warm, then = (r[2] for r in rows)
    print(f"\n{'phase':<6} {'wall s':>8} {'target s':>9}  stages trained")
    # `then` samples new arms (no time target) but must train nothing.
    targets = {"cold": args.cold_target, "warm": args.warm_target, "then": float("inf")}
    ok = True
    for phase, _, wall, trained in rows:
        met = wall < targets[phase] and (phase == "cold" or not trained)
        ok &= met
        names = ", ".join(t[0] for t in trained) or "none"
        print(f"{phase:<6} {wall:8.1f} {targets[phase]:9.0f}  {names}  {'ok' if met else 'MISSED'}")
    print(f"\nwarm / cold = {warm / cold:.3f}   then / cold = {then / cold:.3f}")
    print("\ncold run, per-stage training (s):")
    for name, key, seconds in rows[0][3]:
        print(f"  {name:<11} {key}  {seconds}")
    print(f"\nlogs: {work}")
    if not args.keep:
        shutil.rmtree(cache, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
