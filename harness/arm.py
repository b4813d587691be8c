"""One arm's trained setup: its stages through the content-addressed stage cache, the
Pipeline they make, and its cached samples and variations.

Arms that share a stage (same key) share one training; sampling-time knobs retrain nothing.
Samples and variations are cached too, keyed by what the Pipeline entry point that makes
them declares it reads (pipeline.reads_key), so a warm rerun only re-scores.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import paths, progress, tracking
from .atomic import write_json_atomic
from .cache import StageCache
from .config import Config, Experiment
from .data import build_source
from .data.images import to_uint8
from .diffusion.noise import NoiseStreams
from .embeddings import compute_embeddings
from .errors import HarnessError
from .pipeline import Pipeline, reads_key
from .stages.checks import check_experiment
from .stages.common import METRICS_FILE
from .stages.curves import stage_run
from .stages.graph import CLIP, DECODER, PRIOR, STAGES, UPSAMPLERS
from .stages.resolve import Resolution, Resolver
from .stages.stage import Stage


class Runner:
    def __init__(
        self,
        exp: Experiment,
        out: str | Path = "runs",
        cache_dir: str | Path | None = None,
        retrain: tuple[str, ...] = (),
        progress: bool = True,
        echo: Callable[[str], None] = print,
        root: Path | None = None,
    ) -> None:
        """Results go to `root` (default OUT/<experiment name>)."""
        unknown = sorted(set(retrain) - set(STAGES) - {"all"})
        if unknown:
            raise HarnessError(f"--retrain: unknown stage {unknown[0]!r} "
                               f"(stages: {', '.join(STAGES)}, all)")  # fmt: skip
        check_experiment(exp)  # registry names and the nets' own checks, before any training
        self.exp, self.echo, self.progress = exp, echo, progress
        # exp.name is a checked slug; a given root (a sweep's trials) was derived inside --out
        self.root = Path(root) if root is not None else paths.inside(out, Path(out) / exp.name)
        self.cache = StageCache(Path(cache_dir) if cache_dir else paths.default_cache_dir())
        self.stages = Resolver(
            self.cache,
            retrain=set(STAGES) if "all" in retrain else set(retrain),
            progress=progress,
            echo=echo,
            hook=self._tracked,
            meta={"experiment": exp.name},
        )

    # ------------------------------------------------------------------ stages
    def resolve(self, cfg: Config, keys: dict[str, str | None]) -> Resolution:
        """Load every stage this arm needs, training (once, across processes) what is absent."""
        return self.stages.resolve(cfg, keys)

    def _tracked(self, stage: Stage, key: str, cfg: Config, fit: Callable[[], dict]) -> dict:
        """A stage's training inside its own W&B run (job_type train-<stage>)."""
        run = tracking.init_run(
            cfg.tracking,
            name=f"{stage.name}-{key}",
            group=self.exp.name,
            job_type=f"train-{stage.name}",
            config={"stage": stage.name, "key": key, **dataclasses.asdict(cfg)},
            directory=self.root,
            run_id=tracking.run_id(self.exp.name, stage.name, key),  # key: config and seed
            tags=(stage.name,),
        )
        try:
            with stage_run(run):  # the fit's curves and grid go to this run
                metrics = fit()
        except BaseException:  # e.g. a sweep pruned the trial: close the stage's run
            tracking.finish(run, exit_code=1)
            raise
        tracking.log_results(run, {k: v for k, v in metrics.items() if isinstance(v, int | float)})
        tracking.finish(run)
        return metrics

    def pipeline(self, cfg: Config, keys: dict) -> tuple[Pipeline, Resolution]:
        """The arm's trained setup as a Pipeline (training what the cache lacks)."""
        res = self.resolve(cfg, keys)
        ups = [res.loaded[u.name] for u in UPSAMPLERS if u.name in res.loaded]
        loaded = res.loaded
        pipe = Pipeline(cfg, loaded[CLIP.name], loaded.get(PRIOR.name), loaded[DECODER.name], ups)
        return pipe, res

    # ------------------------------------------------------------------ samples
    def samples(self, cfg: Config, keys: dict, pipe: Pipeline, res: Resolution, suite: Any) -> Path:
        """Generate (or reuse) the arm's samples for the suite's captions; returns their dir."""
        key = reads_key("generate", cfg, keys, suite.split, suite.n_samples,
                        cfg.sample.batch_size, cfg.seed)  # fmt: skip

        def generate(tmp: Path) -> dict[str, Any]:
            emb = compute_embeddings(pipe.clip, res.dirs[CLIP.name], cfg.data, suite.split)
            n = min(suite.n_samples, len(emb))
            start = time.perf_counter()
            images, z_i = self.generate_rows(cfg, pipe, emb, [(i, 0) for i in range(n)], "sampling")
            np.save(tmp / "images.npy", images)
            if z_i is not None:
                np.save(tmp / "z_i.npy", z_i)
            (tmp / "captions.json").write_text(json.dumps(list(emb.captions[:n])))
            write_json_atomic(tmp / METRICS_FILE, {"seconds": time.perf_counter() - start, "n": n})
            return {}

        return self.cache.resolve("samples", key, generate).path

    def generate_rows(
        self, cfg: Config, pipe: Pipeline, emb: Any, rows: list[tuple[int, int]], what: str
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Samples for (caption index, replica) rows, in batches of sample.batch_size: uint8
        images (R, 3, H, W) and the prior's z_i (None without a prior). Each row draws from
        its own CRN stream, so a row's sample depends neither on its batch nor on the arm
        upstream of a stage."""
        chunks, z_chunks = [], []
        bs = cfg.sample.batch_size
        for lo in progress.bar(range(0, len(rows), bs), desc=what, unit="batch"):
            batch = rows[lo : lo + bs]
            idx = np.array([i for i, _ in batch])
            out = pipe.generate(
                torch.from_numpy(np.array(emb.z_t[idx], np.float32)),
                torch.from_numpy(np.array(emb.text_enc[idx], np.float32)),
                torch.from_numpy(np.array(emb.text_mask[idx])),
                torch.from_numpy(np.array(emb.tokens[idx])),
                NoiseStreams(cfg.seed, cfg.sample.seed, batch),
            )
            chunks.append(to_uint8_np(out["images"]))
            if out["z_i"] is not None:
                z_chunks.append(out["z_i"].cpu().numpy())
        self.echo(f"  {what}: {len(rows)} images")
        return np.concatenate(chunks), (np.concatenate(z_chunks) if z_chunks else None)

    def sample_groups(
        self, cfg: Config, keys: dict, pipe: Pipeline, res: Resolution, suite: Any, samples: Path
    ) -> torch.Tensor | None:
        """K samples of each of the suite's first M captions, uint8 (M, K, 3, H, W), for the
        per-caption sample diversity; None when the suite does not score it. Replica 0 is the
        caption's main sample (same stream), so only replicas 1..K-1 are drawn, and cached."""
        if "groups" not in suite.needs:
            return None
        m, k = suite.sample_diversity_captions, suite.samples_per_caption
        key = reads_key("generate", cfg, keys, suite.split, "groups", m, k,
                        cfg.sample.batch_size, cfg.seed)  # fmt: skip
        main = np.load(samples / "images.npy")
        m = min(m, len(main))  # the groups' captions are the first of the main samples'

        def generate(tmp: Path) -> dict[str, Any]:
            emb = compute_embeddings(pipe.clip, res.dirs[CLIP.name], cfg.data, suite.split)
            rows = [(i, r) for i in range(m) for r in range(1, k)]
            start = time.perf_counter()
            images, _ = self.generate_rows(cfg, pipe, emb, rows, "per-caption samples")
            np.save(tmp / "replicas.npy", images)
            write_json_atomic(tmp / METRICS_FILE, {"seconds": time.perf_counter() - start})
            return {}

        path = self.cache.resolve("sample_groups", key, generate).path
        more = np.load(path / "replicas.npy").reshape(m, k - 1, *main.shape[1:])
        return torch.from_numpy(np.concatenate([main[:m, None], more], axis=1))

    def variations(self, cfg: Config, keys: dict, pipe: Pipeline, suite: Any) -> Path | None:
        """Image variations of the split's first images (diversity metric), cached: uint8
        sources (S, 3, H, W) and variations (S, M, 3, R, R). None when the suite has no
        diversity metric."""
        if "variations" not in suite.needs:  # the metric registry says who reads them
            return None
        key = reads_key("vary", cfg, keys, suite.split, suite.diversity_sources,
                        suite.diversity_variations, cfg.seed)  # fmt: skip

        def generate(tmp: Path) -> dict[str, Any]:
            self.echo("  variations ...")
            source = build_source(cfg.data, suite.split)
            n = min(suite.diversity_sources, len(source))
            src = torch.stack([source[i][0] for i in range(n)])  # uint8 (S, 3, H, W)
            m = suite.diversity_variations
            rows = [(i, k) for i in range(n) for k in range(m)]  # variation k of source i
            streams = NoiseStreams(cfg.seed, cfg.sample.seed, rows, purpose="variation")
            start = time.perf_counter()
            var = pipe.vary(src, m, None, streams)  # at variation_eta
            np.save(tmp / "sources.npy", src.numpy())
            np.save(tmp / "variations.npy", to_uint8_np(var))
            write_json_atomic(tmp / METRICS_FILE, {"seconds": time.perf_counter() - start})
            return {}

        return self.cache.resolve("variations", key, generate).path


def to_uint8_np(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> uint8 (B, 3, H, W)."""
    return to_uint8(x).cpu().numpy()
