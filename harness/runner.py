"""`run`: arms x seeds -> stages (through the cache) -> samples -> metrics -> results.

Every stage an arm needs is resolved through the content-addressed stage cache, so arms that
share a stage (same hash) share one training; sampling-time knobs retrain nothing. Samples
are cached too (keyed by the stage keys, every sampling knob, the suite and the seed), so a
warm rerun only re-scores.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed, paths, tracking
from .cache import StageCache
from .config import Arm, Config, Experiment, stage_keys
from .config.hashing import digest
from .data.images import to_uint8
from .errors import HarnessError
from .pipeline import Pipeline
from .stages.common import METRICS_FILE, write_json_atomic
from .stages.registry import SPECS

log = logging.getLogger(__name__)
ORDER = ("clip", "eval_clip", "prior", "decoder", "upsampler1", "upsampler2")


@dataclass
class ArmResult:
    arm: Arm
    seed: int
    keys: dict[str, str | None]
    metrics: dict[str, Any]  # name -> Estimate
    out_dir: Path
    wandb_dir: str | None
    config: Config


def sampling_fields(obj: Any) -> dict[str, Any]:
    """Every field of a dataclass tree (sampling knobs included): what a sample depends on."""
    return dataclasses.asdict(obj)


class Runner:
    def __init__(
        self,
        exp: Experiment,
        out: str | Path = "runs",
        cache_dir: str | Path | None = None,
        retrain: tuple[str, ...] = (),
        progress: bool = True,
        echo: Callable[[str], None] = print,
    ) -> None:
        unknown = sorted(set(retrain) - set(ORDER) - {"all"})
        if unknown:
            raise HarnessError(
                f"--retrain: unknown stage {unknown[0]!r} (stages: {', '.join(ORDER)}, all)"
            )
        self.exp = exp
        self.root = Path(out) / exp.name
        self.cache = StageCache(Path(cache_dir) if cache_dir else paths.default_cache_dir())
        self.retrain = set(ORDER) if "all" in retrain else set(retrain)
        self.retrained: set[tuple[str, str]] = set()
        self.progress = progress
        self.echo = echo
        self.modules: dict[tuple[str, str], Any] = {}

    # ------------------------------------------------------------------ stages
    def resolve(self, cfg: Config, keys: dict[str, str | None]) -> tuple[dict, dict]:
        """Load every stage this arm needs, training (once, across processes) what is absent."""
        loaded: dict[str, Any] = {}
        paths: dict[str, Path] = {}
        for name in ORDER:
            key = keys[name]
            if key is None:
                continue
            spec = SPECS[name]
            redo = name in self.retrain and (name, key) not in self.retrained
            if not self.cache.has(name, key) or redo:
                self.echo(f"  {name:<10} {key}  training ...")
            res = self.cache.resolve(
                name,
                key,
                self._trainer(cfg, name, key, loaded, paths),
                retrain=redo,
                meta={"experiment": self.exp.name},
            )
            if redo:
                self.retrained.add((name, key))
                self.modules.pop((name, key), None)
            how = "reused" if res.reused else f"trained in {res.seconds:.0f} s"
            self.echo(f"  {name:<10} {key}  {how}")
            paths[name] = res.path
            if (name, key) not in self.modules:
                self.modules[(name, key)] = spec.load(cfg, res.path, loaded).to(device_of(cfg))
            loaded[name] = self.modules[(name, key)]
        return loaded, paths

    def _trainer(self, cfg: Config, name: str, key: str, loaded: dict, paths: dict):
        def train(tmp: Path) -> dict[str, Any]:
            run = tracking.init_run(
                cfg.tracking,
                name=f"{name}-{key}",
                group=self.exp.name,
                job_type=f"train-{name}",
                config={"stage": name, "key": key, **dataclasses.asdict(cfg)},
                directory=self.root / "wandb-stages",
            )
            try:
                SPECS[name].train(cfg, tmp, loaded, paths, self.progress)
            except BaseException:  # e.g. a sweep pruned the trial: close the stage's run
                tracking.finish(run, exit_code=1)
                raise
            metrics = json.loads((tmp / METRICS_FILE).read_text())
            numbers = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
            tracking.log_results(run, numbers)
            tracking.finish(run)
            return {"stage_metrics": metrics}

        return train

    def pipeline(self, cfg: Config, keys: dict) -> tuple[Pipeline, dict, dict]:
        """The arm's trained setup as a Pipeline (training what the cache lacks)."""
        loaded, paths = self.resolve(cfg, keys)
        ups = [loaded[u] for u in ("upsampler1", "upsampler2") if u in loaded]
        pipe = Pipeline(cfg, loaded["clip"], loaded.get("prior"), loaded["decoder"], ups)
        return pipe, loaded, paths

    # ------------------------------------------------------------------ samples
    def samples(self, cfg: Config, keys: dict, pipe: Pipeline, paths: dict, suite: Any) -> Path:
        """Generate (or reuse) the arm's samples for the suite's captions; returns their dir."""
        from .embeddings import compute_embeddings

        sample_key = digest(
            "samples",
            keys,
            sampling_fields(cfg.prior),
            sampling_fields(cfg.decoder),
            sampling_fields(cfg.upsamplers),
            suite.split,
            suite.n_samples,
            cfg.sample.batch_size,
            cfg.seed,
        )

        def generate(tmp: Path) -> dict[str, Any]:
            emb = compute_embeddings(pipe.clip, paths["clip"], cfg.data, suite.split)
            n = min(suite.n_samples, len(emb))
            g = torch.Generator().manual_seed(cfg.seed)
            chunks, z_chunks = [], []
            bs = cfg.sample.batch_size
            start = time.perf_counter()
            for lo in range(0, n, bs):
                hi = min(lo + bs, n)
                out = pipe.generate(
                    torch.from_numpy(np.array(emb.z_t[lo:hi], np.float32)),
                    torch.from_numpy(np.array(emb.text_enc[lo:hi], np.float32)),
                    torch.from_numpy(np.array(emb.text_mask[lo:hi])),
                    torch.from_numpy(np.array(emb.tokens[lo:hi])),
                    g,
                )
                chunks.append(to_uint8_np(out["images"]))
                if out["z_i"] is not None:
                    z_chunks.append(out["z_i"].cpu().numpy())
                self.echo(f"  sampling   {hi}/{n}")
            np.save(tmp / "images.npy", np.concatenate(chunks))
            if z_chunks:
                np.save(tmp / "z_i.npy", np.concatenate(z_chunks))
            (tmp / "captions.json").write_text(json.dumps(list(emb.captions[:n])))
            write_json_atomic(tmp / METRICS_FILE, {"seconds": time.perf_counter() - start, "n": n})
            return {}

        return self.cache.resolve("samples", sample_key, generate).path

    def variations(self, cfg: Config, keys: dict, pipe: Pipeline, suite: Any) -> Path | None:
        """Image variations of the split's first images (diversity metric), cached: uint8
        sources (S, 3, H, W) and variations (S, M, 3, R, R). They come from the image
        encoder, decoder and upsamplers only, so arms differing in the prior share them.
        None when the suite has no diversity metric."""
        if "variations" not in suite.needs:  # the metric registry says who reads them
            return None
        from .data import build_source

        used = ("clip", "decoder", "upsampler1", "upsampler2")
        key = digest(
            "variations",
            {k: keys.get(k) for k in used},
            # Pipeline.vary decodes unguided over ddim{decoder.steps} at variation_eta: the
            # decoder's guidance scale, eta and sampler do not reach it, so arms over those
            # share the variations.
            cfg.decoder.steps,
            sampling_fields(cfg.upsamplers),
            suite.split,
            suite.diversity_sources,
            suite.diversity_variations,
            cfg.sample.variation_eta,
            cfg.seed,
        )

        def generate(tmp: Path) -> dict[str, Any]:
            self.echo("  variations ...")
            source = build_source(cfg.data, suite.split)
            n = min(suite.diversity_sources, len(source))
            src = torch.stack([source[i][0] for i in range(n)])  # uint8 (S, 3, H, W)
            g = torch.Generator().manual_seed(cfg.seed + 1)
            start = time.perf_counter()
            var = pipe.vary(src, suite.diversity_variations, cfg.sample.variation_eta, g)
            np.save(tmp / "sources.npy", src.numpy())
            np.save(tmp / "variations.npy", to_uint8_np(var))
            write_json_atomic(tmp / METRICS_FILE, {"seconds": time.perf_counter() - start})
            return {}

        return self.cache.resolve("variations", key, generate).path


def device_of(cfg: Config) -> torch.device:
    """Where trained stages sample: the accelerator the config trains on, if present."""
    wants_gpu = cfg.train.accelerator == "gpu" or cfg.train.accelerator == "auto"
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


def to_uint8_np(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> uint8 (B, 3, H, W)."""
    return to_uint8(x).cpu().numpy()


class ExperimentRun(Runner):
    """The whole experiment: every arm x seed, then results.csv / results.json / the table."""

    def evaluators(self, cfg: Config, loaded: dict, keys: dict, suite: Any) -> Any:
        from .metrics.compositional import cached_classifier
        from .metrics.score import Evaluators

        classifier = None
        if "claims" in suite.needs and cfg.data.source == "shapes":
            classifier, _ = cached_classifier(
                cfg.data, self.cache.root / "classifier", suite.classifier_steps
            )
        return Evaluators(
            clip=loaded["eval_clip"],
            conditioning_clip=loaded["clip"],
            classifier=classifier,
            clip_key=keys["eval_clip"] or "",
        )

    def score(self, cfg: Config, ev: Any, samples: Path, varied: Path | None, suite: Any) -> dict:
        from .data import build_source
        from .metrics.compositional import claim_of
        from .metrics.score import data_reference, feature_net, score_images

        images = torch.from_numpy(np.load(samples / "images.npy"))
        captions = json.loads((samples / "captions.json").read_text())
        reference = None
        if suite.needs_features:
            net = feature_net(suite, ev)
            reference = data_reference(
                cfg.data, suite, net, self.cache.root / "references", ev.clip_key
            )
        source = build_source(cfg.data, suite.split)
        claims = None
        if ev.classifier is not None and hasattr(source, "attributes"):
            claims = [claim_of(a) for a in source.attributes[: len(images)]]
        variations = None
        if varied is not None:
            variations = (
                torch.from_numpy(np.load(varied / "sources.npy")),
                torch.from_numpy(np.load(varied / "variations.npy")),
            )
        # the suite's bootstrap seed, not cfg.seed: every arm and seed resamples alike (paired)
        return score_images(suite, ev, images, reference, captions, claims, variations)

    def run_one(self, arm: Arm, seed: int, suite: Any) -> ArmResult:
        cfg = self.exp.config(arm, seed)
        keys = stage_keys(cfg)
        pipe, loaded, paths = self.pipeline(cfg, keys)
        samples = self.samples(cfg, keys, pipe, paths, suite)
        varied = self.variations(cfg, keys, pipe, suite)
        self.echo("  scoring ...")
        ev = self.evaluators(cfg, loaded, keys, suite)
        metrics = self.score(cfg, ev, samples, varied, suite)
        out = self.root / arm.slug / f"seed{seed}"
        out.mkdir(parents=True, exist_ok=True)
        grid = write_grid(out / "samples.png", samples, cfg.sample.grid)
        from .results import estimate_dict, save_replicates

        write_json_atomic(
            out / "metrics.json",
            {
                "arm": arm.label,
                "seed": seed,
                "axes": arm.axes,
                "stage_keys": keys,
                "metrics": estimate_dict(metrics),
                "suite": suite.name,
            },
        )
        save_replicates(out / "replicates.npz", metrics)
        run = tracking.init_run(
            cfg.tracking,
            name=f"{arm.label}/seed{seed}",
            group=self.exp.name,
            job_type="arm",
            config={
                **dataclasses.asdict(cfg),
                "arm": arm.label,
                "axes": arm.axes,
                "stage_keys": keys,
                "suite": suite.name,
            },
            directory=out,
        )
        summary = {}
        for name, e in metrics.items():
            summary |= {name: e.value, f"{name}_lo": e.lo, f"{name}_hi": e.hi}
        captions = json.loads((samples / "captions.json").read_text())[: cfg.sample.grid]
        tracking.log_results(
            run,
            summary,
            images={"samples": grid},
            table=(["index", "caption"], [[i, c] for i, c in enumerate(captions)]),
        )
        wandb_dir = tracking.finish(run)
        return ArmResult(arm, seed, keys, metrics, out, wandb_dir, cfg)

    def run(self) -> list[ArmResult]:
        from .comparison import statistics
        from .metrics.suite import load_suite, resolve_features
        from .preflight import check_run
        from .results import per_arm, table, write_csv, write_json

        suite = load_suite(self.exp.metrics)
        resolve_features(suite)  # a suite that cannot run here fails before any training
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
        records = [
            {"arm": r.arm.label, "seed": r.seed, "axes": r.arm.axes, "metrics": r.metrics}
            for r in results
        ]
        write_csv(self.root / "results.csv", records, self.exp.axes)
        write_json(
            self.root / "results.json",
            {
                "experiment": self.exp.name,
                "file": str(self.exp.path),
                "overrides": self.exp.overrides,
                "suite": suite.name,
                "axes": self.exp.axes,
                "statistics": statistics(per_arm(records)),
                "rows": [
                    {
                        "arm": r.arm.label,
                        "seed": r.seed,
                        "axes": r.arm.axes,
                        "stage_keys": r.keys,
                        "dir": str(r.out_dir),
                        "wandb_dir": r.wandb_dir,
                        "metrics": {k: e.as_dict() for k, e in r.metrics.items()},
                        "config": dataclasses.asdict(r.config),
                    }
                    for r in results
                ],
            },
        )
        self.echo("\n" + table(records))
        self.echo(f"\nresults: {self.root / 'results.csv'}")
        return results

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


def write_grid(path: Path, samples: Path, n: int) -> Path:
    """The first n samples as one PNG grid (captions listed in the matching .txt)."""
    from torchvision.utils import save_image

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
    from .config import load_experiment

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
