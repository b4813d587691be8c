"""`run`: arms x seeds -> stages (through the cache) -> samples -> metrics -> results.

Per arm and seed (arm.Runner): its stages, its Pipeline, its cached samples and variations;
then the metric suite scores them, one W&B run records them, and the experiment writes
results.csv, results.json and a printed table.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.utils import save_image

from . import distributed, per_sample, tracking
from .arm import Runner
from .atomic import write_json_atomic
from .comparison import statistics
from .config import Arm, Config, load_experiment
from .config.hashing import digest
from .data import build_source, source_of
from .errors import HarnessError
from .metrics.compositional import cached_classifier, held_out_judge
from .metrics.score import Evaluators, data_reference, feature_net, score_images
from .metrics.suite import load_suite, resolve_features
from .paths import inside
from .pipeline import Pipeline
from .preflight import check_run
from .real_row import RealRow, score_real_row
from .results import estimate_dict, per_arm, save_replicates, table, write_csv, write_json
from .stages.common import METRICS_FILE
from .stages.graph import CLIP, EVAL_CLIP, stage_keys
from .stages.resolve import StageEvent


@dataclass
class ArmResult:
    arm: Arm
    seed: int
    keys: dict[str, str | None]
    metrics: dict[str, Any]  # name -> Estimate
    out_dir: Path
    wandb_dir: str | None
    config: Config
    events: list[StageEvent]  # what each stage did: trained now, or reused
    samples: Path | None = None  # the cached samples' folder
    evaluators: Evaluators | None = None  # what scored them (the real row reuses them)


class ExperimentRun(Runner):
    """The whole experiment: every arm x seed, then results.csv / results.json / the table."""

    classifier_metrics: dict[str, Any] | None = None  # the attribute classifier's, if used

    @property
    def classifier_dir(self) -> Path:
        """Where the attribute classifier the arms are scored with is cached (the decoder's
        stage figures use the same one)."""
        return self.cache.root / "classifier"

    def evaluators(self, cfg: Config, loaded: dict, keys: dict, suite: Any) -> Evaluators:
        classifier = None
        if "claims" in suite.needs and source_of(cfg.data).attributes:
            steps = suite.classifier_steps
            classifier, where = cached_classifier(cfg.data, self.classifier_dir, steps)
            # its held-out accuracy on real images goes to results.json (issue 15 item 6)
            self.classifier_metrics = json.loads((where / METRICS_FILE).read_text())
        return Evaluators(
            clip=loaded[EVAL_CLIP.name],
            conditioning_clip=loaded[CLIP.name],
            classifier=classifier,
            clip_key=keys[EVAL_CLIP.name] or "",
        )

    def reference(self, cfg: Config, ev: Evaluators, suite: Any) -> Any:
        """The reference split's cached statistics in the suite's feature space (or None)."""
        if not suite.needs_features:
            return None
        net = feature_net(suite, ev)
        return data_reference(cfg.data, suite, net, self.cache.root / "references", ev.clip_key)

    @staticmethod
    def claims(cfg: Config, ev: Evaluators, suite: Any, n: int) -> list | None:
        """What each of the first n captions states (issue 20), when a classifier checks it."""
        source = build_source(cfg.data, suite.split)
        if ev.classifier is None or not hasattr(source, "claims"):
            return None
        return list(source.claims[:n])

    def score(
        self, cfg: Config, ev: Any, samples: Path, varied: Path | None, suite: Any,
        groups: torch.Tensor | None = None,
    ) -> dict:  # fmt: skip
        images = torch.from_numpy(np.load(samples / "images.npy"))
        captions = json.loads((samples / "captions.json").read_text())
        reference = self.reference(cfg, ev, suite)
        claims = self.claims(cfg, ev, suite, len(images))
        variations = None
        if varied is not None:
            variations = (
                torch.from_numpy(np.load(varied / "sources.npy")),
                torch.from_numpy(np.load(varied / "variations.npy")),
            )
        # the suite's bootstrap seed, not cfg.seed: every arm and seed resamples alike (paired)
        return score_images(suite, ev, images, reference, captions, claims, variations,
                            groups=groups)  # fmt: skip

    def run_one(self, arm: Arm, seed: int, suite: Any) -> ArmResult:
        cfg = self.exp.config(arm, seed)
        keys = stage_keys(cfg)
        pipe, res = self.pipeline(cfg, keys)
        samples = self.samples(cfg, keys, pipe, res, suite)
        varied = self.variations(cfg, keys, pipe, suite)
        groups = self.sample_groups(cfg, keys, pipe, res, suite, samples)
        self.echo("  scoring ...")
        ev = self.evaluators(cfg, res.loaded, keys, suite)
        metrics = self.score(cfg, ev, samples, varied, suite, groups)
        out = inside(self.root, self.root / arm.slug / f"seed{seed}")
        out.mkdir(parents=True, exist_ok=True)
        record = {"arm": arm.label, "seed": seed, "axes": arm.axes, "stage_keys": keys,
                  "metrics": estimate_dict(metrics), "suite": suite.name}  # fmt: skip
        write_json_atomic(out / "metrics.json", record)
        save_replicates(out / "replicates.npz", metrics)
        per_sample.write_arm(out, samples, metrics)  # joins across arms on caption index
        wandb_dir = self.track_arm(cfg, arm, keys, suite, metrics, samples, out)
        return ArmResult(arm, seed, keys, metrics, out, wandb_dir, cfg, res.events, samples, ev)

    def track_arm(
        self, cfg: Config, arm: Arm, keys: dict, suite: Any, metrics: dict, samples: Path, out: Path
    ) -> str | None:
        """The arm's W&B run: config, every metric with its interval, the sample grid."""
        grid = write_grid(out / "samples.png", samples, cfg.sample.grid)
        config = {**dataclasses.asdict(cfg), "arm": arm.label, "axes": arm.axes,
                  "stage_keys": keys, "suite": suite.name}  # fmt: skip
        run = tracking.init_run(
            cfg.tracking,
            name=f"{arm.label}/seed{cfg.seed}",
            group=self.exp.name,
            job_type="arm",
            config=config,
            directory=self.root,
            run_id=tracking.run_id(self.exp.name, arm.label, cfg.seed, digest(config)),
            tags=tracking.axis_tags(arm.axes),
        )
        tracking.log_results(run, tracking.with_intervals(metrics), images={"samples": grid})
        per_sample.log_per_sample(run, out / per_sample.PER_SAMPLE_FILE)  # keyed by caption
        return tracking.finish(run)

    def run(self) -> list[ArmResult]:
        suite = load_suite(self.exp.metrics)
        resolve_features(suite)  # a suite that cannot run here fails before any training
        if "claims" in suite.needs:  # the decoder's held-out recall, on the arms' judge
            self.stages.judge = held_out_judge(self.classifier_dir, suite.classifier_steps)
        check_run(self.exp, self.root, self.cache.root)  # data, GPU, writable: before training
        if not distributed.is_rank_zero():
            return self.train_with_rank_zero()
        self.root.mkdir(parents=True, exist_ok=True)
        results = []
        total = len(self.exp.arms) * len(self.exp.seeds)
        for arm in self.exp.arms:
            for seed in self.exp.seeds:
                self.echo(f"[{len(results) + 1}/{total}] {arm.label}  seed {seed}")
                results.append(self.run_one(arm, seed, suite))
        self.write_results(suite, results, score_real_row(self, suite, results))
        return results

    def write_results(self, suite: Any, results: list[ArmResult], real: RealRow | None) -> None:
        """results.csv, results.json (every figure with its N, replicates' folder, pairing
        and correction; the statistics section) and the printed table; the real row last."""
        records = [
            {"arm": r.arm.label, "seed": r.seed, "axes": r.arm.axes, "metrics": r.metrics}
            for r in results
        ] + ([real.record()] if real else [])
        rows = [row_of(r) for r in results] + ([real.row()] if real else [])
        write_csv(self.root / "results.csv", records, self.exp.axes)
        write_json(self.root / "results.json", {
            "experiment": self.exp.name,
            "file": str(self.exp.path),
            "overrides": self.exp.overrides,
            "suite": suite.name,
            "axes": self.exp.axes,
            "classifier": self.classifier_metrics,
            "statistics": statistics(per_arm(records)),
            "rows": rows,
        })  # fmt: skip
        self.log_results_files(results)
        self.echo("\n" + table(records))
        self.echo(f"\nresults: {self.root / 'results.csv'}")
        hint = tracking.sync_hint(self.root)
        if hint:
            self.echo(f"W&B (offline): upload with  {hint}")

    def log_results_files(self, results: list[ArmResult]) -> None:
        """results.csv / results.json as a W&B artifact, in a `results` run of the group (the
        arms' runs closed before the files existed); one run per content of results.csv."""
        if not results:
            return
        files = [self.root / "results.csv", self.root / "results.json"]
        wb = tracking.init_run(
            results[0].config.tracking,
            name="results",
            group=self.exp.name,
            job_type="results",
            config={"experiment": self.exp.name},
            directory=self.root,
            run_id=tracking.run_id(self.exp.name, "results", files[0].read_text()),  # the figures
        )
        per_sample.log_results_artifact(wb, self.exp.name, files)
        tracking.finish(wb)

    def train_with_rank_zero(self) -> list[ArmResult]:
        """A non-zero DDP rank: each fit is a collective, so it walks the arms and trains
        every stage rank 0 trains, but it neither samples, scores nor writes results: those
        are not sharded across ranks, and repeating them would only compete with rank 0 for
        the host's CPUs. Stages rank 0 already cached are loaded, not retrained."""
        for arm in self.exp.arms:
            for seed in self.exp.seeds:
                cfg = self.exp.config(arm, seed)
                self.resolve(cfg, stage_keys(cfg))
        return []


def row_of(r: ArmResult) -> dict[str, Any]:
    return {
        "arm": r.arm.label,
        "seed": r.seed,
        "axes": r.arm.axes,
        "stage_keys": r.keys,
        "dir": str(r.out_dir),
        "wandb_dir": r.wandb_dir,
        "metrics": estimate_dict(r.metrics),
        "config": dataclasses.asdict(r.config),
    }


def write_grid(path: Path, samples: Path, n: int) -> Path:
    """The first n samples as one PNG grid (captions listed in the matching .txt)."""
    images = torch.from_numpy(np.load(samples / "images.npy")[:n]).float() / 255.0
    save_image(images, path, nrow=int(np.ceil(np.sqrt(len(images)))), padding=1)
    captions = json.loads((samples / "captions.json").read_text())[:n]
    path.with_suffix(".txt").write_text("\n".join(captions) + "\n")
    return path


def load_setup(
    target: str | Path,
    overrides: list[str],
    arm_label: str | None = None,
    seed: int | None = None,
    cache_dir: str | Path | None = None,
) -> Pipeline:
    """A trained setup from an experiment YAML, or from a run directory (its results.json
    names the YAML and overrides): one arm (default the first) at one seed (default the
    experiment's first). Stages missing from the cache are trained."""
    target = Path(target)
    if target.is_dir():
        meta_path = target / "results.json"
        if not meta_path.is_file():
            raise HarnessError("no results.json here: pass an experiment YAML or a run dir",
                               str(target))  # fmt: skip
        meta = json.loads(meta_path.read_text())
        exp = load_experiment(meta["file"], [*meta.get("overrides", []), *overrides])
    else:
        exp = load_experiment(target, overrides)
    arms = {a.label: a for a in exp.arms}
    if arm_label is not None and arm_label not in arms:
        raise HarnessError(f"--arm: no arm {arm_label!r} (arms: {', '.join(arms)})", str(target))
    arm = arms[arm_label] if arm_label else exp.arms[0]
    cfg = exp.config(arm, exp.seeds[0] if seed is None else seed)
    runner = Runner(exp, cache_dir=cache_dir, progress=False)
    return runner.pipeline(cfg, stage_keys(cfg))[0]
