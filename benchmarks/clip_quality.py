"""Train the conditioning CLIP and the evaluator CLIP on the tiny preset; print time + retrieval.

Acceptance (issue 3): held-out text->image top-1 >= 0.5 in batches of 64 for both CLIPs, and
both trained within 3 minutes on the 2-core CPU machine.

    python benchmarks/clip_quality.py [dotted.override=value ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from harness.config import load_experiment
from harness.paths import PROJECT_ROOT
from harness.stages.graph import STAGES
from harness.stages.stage import StageContext

TINY = PROJECT_ROOT / "experiments" / "base" / "tiny.yaml"
TARGET_TOP1, BUDGET_S = 0.5, 180.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. clip.train_steps=500")
    parser.add_argument("--out", type=Path, default=None, help="keep the CLIPs here")
    parser.add_argument("--only", choices=("clip", "eval_clip"), default=None)
    args = parser.parse_intermixed_args()
    experiment = load_experiment(TINY, args.overrides)
    cfg = experiment.config(experiment.arms[0], experiment.seeds[0])
    out = args.out or Path(tempfile.mkdtemp(prefix="clip_quality_"))
    total, rows = 0.0, []
    for which in ("clip", "eval_clip"):
        if args.only and which != args.only:
            continue
        start = time.perf_counter()
        STAGES[which].train(StageContext(cfg, out / which))
        wall = time.perf_counter() - start
        total += wall
        m = json.loads((out / which / "stage_metrics.json").read_text())
        rows.append((which, m, wall))
    print(f"\n{'clip':<10} {'steps':>6} {'train_s':>8} {'wall_s':>7} {'t2i@64':>7} {'i2t@64':>7}")
    for which, m, wall in rows:
        print(
            f"{which:<10} {m['train_steps']:>6} {m['train_seconds']:>8.1f} {wall:>7.1f} "
            f"{m['val_t2i_top1']:>7.3f} {m['val_i2t_top1']:>7.3f}"
        )
    ok = all(m["val_t2i_top1"] >= TARGET_TOP1 for _, m, _ in rows) and total <= BUDGET_S
    verdict = "met" if ok else "NOT met"
    print(f"total wall {total:.1f} s (budget {BUDGET_S:.0f} s); acceptance {verdict}")
    print(f"artifacts in {out}")


if __name__ == "__main__":
    main()
