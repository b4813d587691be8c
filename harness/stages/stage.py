"""One `Stage` object per unCLIP stage, and the one path every stage trains and loads by.

A stage is a name, a `Recipe` (its stage module's knowledge: which config section, how to
build the module, its data, how to score it) and its links in the graph (stages/graph.py):
`keyed` upstream stages whose keys enter its key, and stages it only `uses` while training.

`train_stage` is the single training path: seed, build the module, its data, the Trainer
(stages.common.make_trainer: the one place for callbacks, logger and checkpoint hooks), fit,
evaluate, one atomic model.pt with the training fields (stages/checkpoint.py), metrics.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import distributed
from ..config import Config
from ..config.hashing import digest, training_fields, value_at, world
from ..embeddings import Embeddings, compute_embeddings
from .checkpoint import load_checkpoint, save_checkpoint
from .common import active_hooks, make_trainer, seed_all, write_stage_metrics
from .curves import log_grid, stage_loggers
from .resume import ResumeCallback, fit_resumable

_TRAINING: ContextVar[str | None] = ContextVar("training_stage", default=None)


def training_stage() -> str | None:
    """The name of the stage whose `fit` is running in this context (None: none)."""
    return _TRAINING.get()


@dataclass
class StageContext:
    """What a recipe builds, trains or loads with: the arm's config, the folder it writes
    into (training: the stage cache's temporary folder), and its inputs by role (the
    modules and cache folders of the stages it is keyed on or uses)."""

    cfg: Config
    out: Path = Path(".")
    inputs: dict[str, Any] = field(default_factory=dict)
    dirs: dict[str, Path] = field(default_factory=dict)
    progress: bool = False
    stage: str = ""  # the stage's name, for messages and metrics (set by Stage)
    partial: Path | None = None  # in-stage checkpoints of this key (stages/resume.py)


@dataclass
class Fit:
    """What a recipe hands `train_stage` to fit."""

    steps: int  # optimizer steps (0: nothing to train, e.g. a pretrained CLIP)
    train: Any = None  # a DataLoader, or None: the module's own train_dataloader
    val: Any = None  # held-out batches for validation_step, used only while a sweep prunes
    ema: float | None = None  # EMA decay of the weights left in the module (None: no EMA)
    kept: dict[str, Any] = field(default_factory=dict)  # what `evaluate` reuses (held-out data)


@dataclass
class FitRun:
    steps: int  # steps taken
    seconds: float
    logged: dict[str, float]  # the Trainer's last logged values (e.g. train/loss)
    kept: dict[str, Any] = field(default_factory=dict)  # Fit.kept
    resumed_from: int = 0  # the step an in-stage checkpoint continued from (0: a fresh fit)


def clip_embeddings(ctx: StageContext, split: str) -> Embeddings:
    """One split's embeddings under the stage's conditioning CLIP (input role "clip"). The
    CLIP's own cache folder shares them with every other stage; without one they are
    cached beside the stage (correct, only recomputed once per stage)."""
    folder = ctx.dirs.get("clip", Path(ctx.out) / "clip")
    return compute_embeddings(ctx.inputs["clip"], folder, ctx.cfg.data, split)


class Recipe:
    """How one stage module builds, trains, scores and rebuilds its LightningModule."""

    def __init__(self, section: str, seed: str = "seed") -> None:
        self.section = section  # dotted config path of the stage's settings
        self.seed_key = seed  # dotted config path of its seed

    def config(self, cfg: Config) -> Any:
        return value_at(cfg, self.section)

    def enabled(self, cfg: Config) -> bool:
        return True

    def fields(self, cfg: Config) -> dict[str, Any]:
        """The training fields that key the stage (sampling knobs are never among them)."""
        return training_fields(self.config(cfg))

    def key_inputs(self, cfg: Config) -> list[Any]:
        """What else enters the key (e.g. the data fields it trains on)."""
        return []

    def build(self, ctx: StageContext, fresh: bool) -> nn.Module:
        """The module for ctx.cfg. fresh: initial weights for training (a pretrained CLIP
        loads its weights); else an empty shell for a checkpoint (or for meta checks)."""
        raise NotImplementedError

    def prepare(self, ctx: StageContext, module: nn.Module) -> Fit:
        raise NotImplementedError

    def evaluate(self, ctx: StageContext, module: nn.Module, run: FitRun) -> dict[str, Any]:
        return {}

    def shape(self, ctx: StageContext) -> dict[str, Any]:
        """Facts besides the fields the module was built for (checked on load)."""
        return {}

    def extra(self, module: nn.Module) -> dict[str, Any]:
        """Non-parameter state the checkpoint keeps (e.g. the AR prior's quantizer)."""
        return {}

    def restore(self, module: nn.Module, extra: dict[str, Any]) -> None:
        pass


class Stage:
    """A named node of the stage graph."""

    def __init__(
        self,
        name: str,
        recipe: Recipe,
        keyed: dict[str, Stage] | None = None,
        uses: dict[str, Stage] | None = None,
    ) -> None:
        self.name, self.recipe = name, recipe
        self.keyed = dict(keyed or {})  # role -> upstream stage whose key enters this key
        self.uses = dict(uses or {})  # role -> stage loaded for training, not keyed

    def __repr__(self) -> str:
        return f"Stage({self.name!r})"

    @property
    def section(self) -> str:
        return self.recipe.section

    def seed(self, cfg: Config) -> int:
        """The stage's training seed: its config's, except that a stage the experiment does
        not name in `seed_stages:` keeps the first seed (one training shared by all seeds)."""
        if self.recipe.seed_key == "seed" and cfg.seed_stages is not None:
            if self.name not in cfg.seed_stages:
                return int(cfg.first_seed)
        return int(value_at(cfg, self.recipe.seed_key))

    def enabled(self, cfg: Config) -> bool:
        return self.recipe.enabled(cfg)

    def key(self, cfg: Config, keys: dict[str, str | None]) -> str | None:
        """Hash of exactly what determines the weights: upstream keys, what the stage trains
        on, its training fields, its seed and the world (precision, global batch)."""
        if not self.enabled(cfg):
            return None
        upstream = [keys[s.name] for s in self.keyed.values()]
        parts = [*upstream, *self.recipe.key_inputs(cfg), self.recipe.fields(cfg)]
        return digest(self.name, *parts, self.seed(cfg), world(cfg))

    def context(self, ctx: StageContext) -> StageContext:
        """ctx for this stage: its name, and cfg.seed set to the stage's own training seed
        (a stage shared across `seeds:` trains, evaluates and keys under the first one)."""
        ctx.stage = self.name
        if self.recipe.seed_key == "seed" and ctx.cfg.seed != self.seed(ctx.cfg):
            ctx.cfg = dataclasses.replace(ctx.cfg, seed=self.seed(ctx.cfg))
        return ctx

    def train(self, ctx: StageContext) -> nn.Module:
        return train_stage(self, self.context(ctx))

    def load(self, ctx: StageContext, path: Path) -> nn.Module:
        """The module trained into `path` (eval mode, frozen), checked against ctx.cfg."""
        ctx, r = self.context(ctx), self.recipe
        payload = load_checkpoint(path, self.name, r.fields(ctx.cfg), r.shape(ctx))
        module = r.build(ctx, fresh=False)
        r.restore(module, payload["extra"])
        module.load_state_dict(payload["state_dict"])
        return module.eval().requires_grad_(False)

    def build_meta(self, ctx: StageContext) -> nn.Module:
        """The module on the meta device: its constructor's checks, no memory, no weights."""
        with torch.device("meta"):
            return self.recipe.build(self.context(ctx), fresh=False)


@contextmanager
def _training(name: str) -> Iterator[None]:
    token = _TRAINING.set(name)
    try:
        yield
    finally:
        _TRAINING.reset(token)


def train_stage(stage: Stage, ctx: StageContext) -> nn.Module:
    """Train `stage` for ctx.cfg into ctx.out: model.pt + stage_metrics.json. The order
    (seed, module, data, loader) is each stage's order of random draws: keep it."""
    recipe, cfg = stage.recipe, ctx.cfg
    with _training(stage.name):
        seed_all(stage.seed(cfg))
        module = recipe.build(ctx, fresh=True)
        fit = recipe.prepare(ctx, module)
        run = _fit(module, fit, ctx)
        module = module.cpu().eval()
        metrics = recipe.evaluate(ctx, module, run)
        metrics.update(stage=stage.name, seed=stage.seed(cfg), train_steps=run.steps,
                       train_seconds=round(run.seconds, 2),
                       resumed_from_step=run.resumed_from)  # fmt: skip
        save_checkpoint(ctx.out, module, stage.name, recipe.fields(cfg), recipe.config(cfg),
                        recipe.shape(ctx), recipe.extra(module))  # fmt: skip
        write_stage_metrics(ctx.out, metrics)
        log_grid(ctx.out)  # the stage's sample grid (if its evaluate wrote one) to its run
    return module


def _fit(module: nn.Module, fit: Fit, ctx: StageContext) -> FitRun:
    if fit.steps <= 0:
        return FitRun(0, 0.0, {}, fit.kept)
    saver = ResumeCallback(ctx.partial, ctx.cfg.train.checkpoint_every) if ctx.partial else None
    trainer = make_trainer(ctx.cfg.train, fit.steps, ema=fit.ema, progress=ctx.progress,
                           last=[saver] if saver else [],
                           loggers=stage_loggers(ctx.out))  # fmt: skip
    train = fit.train if fit.train is not None else module.train_dataloader()
    start = time.perf_counter()
    resumed = fit_resumable(trainer, module, train, fit.val if active_hooks().val_every else None,
                            ctx.partial)  # fmt: skip
    seconds = time.perf_counter() - start
    distributed.watch_ranks(trainer)  # rank 0 waits for the ranks it launched, at exit
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return FitRun(trainer.global_step, seconds, logged, fit.kept, resumed)
