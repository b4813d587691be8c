"""Acceptance numbers for the priors on a real tiny CLIP (experiments/base/tiny.yaml).

Trains (or reuses) the conditioning CLIP, caches its embeddings of the train and val splits,
trains the diffusion and the AR prior, and prints, per prior, the mean cosine between sampled
z_i and the true z_i of held-out captions next to the text_embedding baseline cos(z_t, z_i)
and the caption-blind train-mean z_i, plus training time.

    python benchmarks/priors.py [--out runs/bench_priors] [--kinds diffusion,ar] [key=value ...]

Overrides are dotted config keys (e.g. prior.train_steps=800 data.n_train=4000).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from harness.config import load_experiment
from harness.embeddings import compute_embeddings
from harness.stages.graph import CLIP, PRIOR
from harness.stages.stage import StageContext

ROOT = Path(__file__).resolve().parents[1]
SHOWN = (
    "cos_prior",
    "cos_text_embedding",
    "cos_train_mean",
    "dot_samples",
    "dot_real",
    "train_seconds",
    "final_loss",
    "pca_explained_variance",
    "val_quant_rel_mse",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_priors")
    ap.add_argument("--kinds", default="diffusion,ar", help="comma-separated prior kinds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="dotted config keys, e.g. prior.lr=5e-3")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    exp = load_experiment(ROOT / "experiments" / "prior_ablation.yaml", args.overrides)
    arms = {arm.axes["prior.kind"]: arm for arm in exp.arms}
    base = exp.config(arms["diffusion"], exp.seeds[0])

    clip_dir = args.out / "clip"
    start = time.perf_counter()
    if (clip_dir / "model.pt").is_file():
        clip = CLIP.load(StageContext(base), clip_dir)
    else:
        clip = CLIP.train(StageContext(base, clip_dir))
    train = compute_embeddings(clip, clip_dir, base.data, "train")
    val = compute_embeddings(clip, clip_dir, base.data, "val")
    print(
        f"CLIP + embeddings: {time.perf_counter() - start:.0f} s "
        f"({len(train)} train / {len(val)} val pairs)"
    )

    rows = {}
    for kind in args.kinds.split(","):
        cfg = exp.config(arms[kind], exp.seeds[0])
        stage_dir = args.out / f"prior_{kind}"
        start = time.perf_counter()
        PRIOR.train(StageContext(cfg, stage_dir, {"clip": clip}, {"clip": clip_dir}))
        metrics = json.loads((stage_dir / "stage_metrics.json").read_text())
        metrics["total_seconds"] = time.perf_counter() - start  # training + val sampling
        rows[kind] = metrics
    for kind, m in rows.items():
        shown = {k: round(m[k], 4) for k in (*SHOWN, "total_seconds") if m.get(k) is not None}
        print(kind, json.dumps(shown))


if __name__ == "__main__":
    main()
