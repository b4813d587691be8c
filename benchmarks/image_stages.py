"""Train the decoder and both upsamplers on the tiny preset; print times and stage metrics.

    python benchmarks/image_stages.py [--out DIR] [--clip-steps N] [--no-evaluator]
                                      [--stages decoder,first,second] [--set key=value ...]

Acceptance (issue 4): the decoder's matched-pair evaluator-CLIP cosine beats the shuffled-pair
cosine clearly; each upsampler beats bicubic in PSNR on held-out images; decoder plus both
upsamplers train in under 10 minutes on the 2-core CPU. The CLIPs are trained first (their
time is reported separately, it is not the image stages' budget).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from harness.config import load_experiment
from harness.stages.graph import CLIP, DECODER, EVAL_CLIP, UPSAMPLER1, UPSAMPLER2
from harness.stages.stage import StageContext

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="artifact dir (default: a temp dir)")
    ap.add_argument("--clip-steps", type=int, default=None, help="override both CLIPs' steps")
    ap.add_argument("--no-evaluator", action="store_true", help="score with the conditioning CLIP")
    ap.add_argument("--stages", default="decoder,first,second")
    ap.add_argument("--set", nargs="*", default=[], help="dotted overrides, e.g. decoder.lr=3e-4")
    args = ap.parse_args()
    exp = load_experiment(ROOT / "experiments" / "base" / "tiny.yaml", args.set)
    cfg = exp.config(exp.arms[0], exp.seeds[0])
    if args.clip_steps is not None:
        cfg.clip.train_steps = cfg.eval.clip.train_steps = args.clip_steps
    out = args.out or Path(tempfile.mkdtemp(prefix="image_stages_"))
    stages = args.stages.split(",")
    report: dict[str, dict] = {}
    start = time.perf_counter()
    clip = evaluator = None
    if "decoder" in stages:
        clip = CLIP.train(StageContext(cfg, out / "clip"))
        if not args.no_evaluator:
            evaluator = EVAL_CLIP.train(StageContext(cfg, out / "eval_clip"))
    report["clips_seconds"] = {"wall": round(time.perf_counter() - start, 1)}
    image_start = time.perf_counter()
    for name in stages:
        t0 = time.perf_counter()
        if name == "decoder":
            inputs = {"clip": clip} | ({"evaluator": evaluator} if evaluator else {})
            DECODER.train(StageContext(cfg, out / name, inputs, {"clip": out / "clip"}))
        else:
            upsampler = {"first": UPSAMPLER1, "second": UPSAMPLER2}[name]
            upsampler.train(StageContext(cfg, out / name))
        metrics = json.loads((out / name / "stage_metrics.json").read_text())
        report[name] = {"wall_seconds": round(time.perf_counter() - t0, 1), **metrics}
        print(name, json.dumps(report[name], indent=1, sort_keys=True), flush=True)
    total = time.perf_counter() - image_start
    print(f"image stages total: {total:.1f} s (budget 600 s); artifacts in {out}")
    (out / "benchmark.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
