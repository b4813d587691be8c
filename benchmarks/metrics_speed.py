"""How long the quick suite takes to score 1,000 images at 64 px, and how good its tools are.

    python benchmarks/metrics_speed.py [--n 1000] [--cache DIR] [--threads 1] [--timing-only]

Trains (once, into the cache) the default evaluator CLIP and the attribute classifier for
the default shapes data, then scores n real test images (standing in for samples: the time
does not depend on what the pixels show) against the val split with metrics/quick.yaml,
including the variation-diversity metric (its sources and variations are drawn from the same
test images). Prints one JSON line: timings (reference statistics separately, since they are
cached), throughput in images/s (feature extraction alone, each metric alone, the whole
suite), every metric with its interval, and the classifier's held-out accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from harness.config import Config, DataConfig
from harness.data import build_source
from harness.metrics import fid
from harness.metrics.compositional import cached_classifier
from harness.metrics.score import Evaluators, default_cache_dir, load_evaluator, score_images
from harness.metrics.suite import load_suite


def as_tensor(ds) -> torch.Tensor:
    return torch.from_numpy(ds.images).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W) uint8


def variations_of(images: torch.Tensor, suite) -> tuple[torch.Tensor, torch.Tensor]:
    """(sources (S, 3, H, W), variations (S, M, 3, H, W)) cut from the images themselves."""
    s, m = suite.diversity_sources, suite.diversity_variations
    return images[:s], images[s : s + s * m].reshape(s, m, *images.shape[1:])


def per_metric(suite, ev: Evaluators, images, ref, captions, claims, variations) -> dict:
    """Seconds of each metric of the suite scored alone (features included where needed)."""
    out = {}
    for metric in suite.metrics:
        alone = dataclasses.replace(suite, metrics=[metric])
        t0 = time.perf_counter()
        score_images(alone, ev, images, ref, captions, claims, variations)
        out[metric] = round(time.perf_counter() - t0, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument(
        "--timing-only",
        action="store_true",
        help="untrained tools of the same architecture: times scoring, skips tool training",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads while scoring")
    args = ap.parse_args()
    cache = args.cache or default_cache_dir()
    data = DataConfig(n_test=args.n)  # 64 px, the default data
    suite = load_suite("quick")
    t0 = time.perf_counter()
    if args.timing_only:  # same compute as the real tools; the scores mean nothing
        from harness.nets.attribute_classifier import AttributeClassifier
        from harness.stages.clip import ClipStage

        clip, key = ClipStage(Config().eval.clip).eval().requires_grad_(False), "untrained"
        classifier, cls_dir = AttributeClassifier().eval(), None
    else:
        clip, key = load_evaluator(None, cache)
        classifier, cls_dir = cached_classifier(DataConfig(), cache)  # the default data's
    t_tools = time.perf_counter() - t0
    torch.set_num_threads(args.threads)  # the tools train with all threads; scoring is timed
    test, val = build_source(data, "test"), build_source(data, "val")
    ev = Evaluators(clip=clip, classifier=classifier, clip_key=key)
    t0 = time.perf_counter()
    ref = fid.Reference.of(fid.extract(fid.ClipFeatures(clip), as_tensor(val)))
    t_ref = time.perf_counter() - t0
    images, claims = as_tensor(test), list(test.claims)  # what each caption states
    variations = variations_of(images, suite)
    t0 = time.perf_counter()
    fid.extract(fid.ClipFeatures(clip), images, suite.batch_size)
    t_features = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = score_images(suite, ev, images, ref, test.captions, claims, variations)
    t_score = time.perf_counter() - t0
    alone = per_metric(suite, ev, images, ref, test.captions, claims, variations)
    heldout = json.loads((cls_dir / "stage_metrics.json").read_text()) if cls_dir else None
    print(
        json.dumps(
            {
                "n_images": len(images),
                "resolution": int(images.shape[-1]),
                "threads": args.threads,
                "timing_only": args.timing_only,
                "seconds_score": round(t_score, 2),
                "images_per_second_suite": round(len(images) / t_score, 1),
                "images_per_second_features": round(len(images) / t_features, 1),
                "seconds_per_metric_alone": alone,
                "seconds_reference": round(t_ref, 2),
                "seconds_tools_load_or_train": round(t_tools, 2),
                "scores": {k: v.as_dict() for k, v in scores.items()},
                "classifier_heldout": heldout,
                "eval_clip": str(Config().eval.clip),
            }
        )
    )


if __name__ == "__main__":
    main()
