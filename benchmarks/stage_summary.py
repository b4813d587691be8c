"""Print what each cached stage cost and scored: `python benchmarks/stage_summary.py CACHE`.

Reads every entry's cache_meta.json (which embeds the stage's stage_metrics.json), so after
`python -m harness run ...` it gives the training time, throughput and quality figures of
each stage in one table; with `train.accelerator=gpu train.precision=bf16-mixed` it is the
GPU throughput check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SHOW = (
    "train_seconds", "train_steps", "images_per_second", "val_t2i_top1", "val_i2t_top1",
    "cos_prior", "cos_text_embedding", "dot_samples", "dot_real", "pca_explained_variance",
    "val_quant_rel_mse", "clip_cos_matched", "clip_cos_shuffled", "psnr", "psnr_bicubic",
)  # fmt: skip


def main(root: Path) -> None:
    for meta in sorted(root.glob("*/*/cache_meta.json")):
        record = json.loads(meta.read_text())
        metrics = record.get("stage_metrics", {})
        shown = {k: metrics[k] for k in SHOW if k in metrics}
        seconds = record.get("seconds", 0.0)
        print(f"{record['stage']:<11} {record['key']}  {seconds:7.1f} s  "
              + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in shown.items()))  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/cache"))
