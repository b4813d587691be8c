"""Resume inside a stage: a fit checkpoints every `train.checkpoint_every` steps (and when
SIGTERM arrives) to `<cache>/<stage>/.partial-<key>/last.ckpt`, and a rerun after a crash
continues from it. On CPU the resumed fit's weights equal an uninterrupted fit's to the bit.

Lightning's checkpoint restores the weights, the optimizer, the LR schedulers, the EMA
callback's average and the loop counters. It does not restore what decides the remaining
random draws, so a `ResumeCallback` adds them and `resumable(loader)` replays them:

- the global RNGs (torch CPU and CUDA, numpy, Python) as they were after the last step: the
  diffusion noise, timesteps, condition dropout, crops and degradations draw from them;
- the data position. A shuffled DataLoader draws its order from the global torch RNG when
  an epoch's iterator is made; the loader records the RNG state of that moment, and on
  resume makes the epoch's iterator again from it (the same order) and skips the batches
  already trained on. Lightning saves and restores this through the loader's own
  `state_dict` (its "stateful loader" protocol), also on a loader it re-creates for DDP.

With `train.num_workers > 0` and persistent workers, or on a GPU, the resumed fit is correct
but not bit-identical. Only rank 0 writes; every rank of a DDP job reads the checkpoint.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader

from ..atomic import atomic_write
from ..errors import HarnessError

CHECKPOINT = "last.ckpt"
log = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    """Every global RNG a training step may draw from (plain types and tensors only, so the
    checkpoint loads with torch.load(weights_only=True))."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, inner, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(inner), gauss_next],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, inner, gauss_next = state["python"]
    random.setstate((version, tuple(inner), gauss_next))


class _Resumable:
    """Lightning's stateful-loader protocol for a DataLoader (mixed in by `resumable`): the
    RNG state the epoch's iterator was made from, and the batches already trained on."""

    _epoch_rng: dict[str, Any] | None = None
    _mark: dict[str, Any] | None = None  # set by ResumeCallback just before a checkpoint
    _pending: dict[str, Any] | None = None  # a restored state, used by the next __iter__

    def resumed_iter(self, make: Any) -> Any:
        """`make()` (the DataLoader's own __iter__) replayed from a restored state."""
        pending, self._pending = self._pending, None
        if pending is not None:
            set_rng_state(pending["epoch_rng"])
        self._epoch_rng = rng_state()
        it = make()
        if pending is not None and pending["skip"] > 0:
            for _ in range(pending["skip"]):  # same order: batches already trained on
                next(it)
            set_rng_state(pending["step_rng"])  # the draws after the last trained step
        return it

    def mark(self, trained_in_epoch: int, epoch_done: bool) -> None:
        step_rng = rng_state()
        if epoch_done:  # the next epoch's iterator is made from the state after this step
            self._mark = {"epoch_rng": step_rng, "skip": 0, "step_rng": step_rng}
        else:
            self._mark = {"epoch_rng": self._epoch_rng, "skip": trained_in_epoch,
                          "step_rng": step_rng}  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return dict(self._mark or {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = dict(state) if state else None


_CLASSES: dict[type, type] = {}


def _resumable_class(cls: type) -> type:
    # DataLoader first in the bases (CPython refuses a __class__ change to a class whose
    # first base is another), so __iter__ is spelled here and hands over to the mixin.
    def __iter__(self: Any) -> Any:  # noqa: N807
        return self.resumed_iter(lambda: cls.__iter__(self))

    return type(f"Resumable{cls.__name__}", (cls, _Resumable), {"__iter__": __iter__})


def resumable(loader: DataLoader) -> DataLoader:
    """`loader` itself, its class now a subclass with the resume protocol (no new __init__
    arguments: Lightning can still re-create it with a DistributedSampler)."""
    cls = type(loader)
    if not isinstance(loader, _Resumable):
        if cls not in _CLASSES:
            _CLASSES[cls] = _resumable_class(cls)
        loader.__class__ = _CLASSES[cls]
    return loader


def partial_checkpoint(folder: Path | None) -> Path | None:
    """The checkpoint a killed fit left in `folder`, or None. One that cannot be read (a
    disk error, a hand edit: writes are atomic, so never a half-written one) is set aside as
    last.ckpt.unreadable with a warning, and the fit starts from step 0 rather than failing."""
    if folder is None or not (Path(folder) / CHECKPOINT).is_file():
        return None
    path = Path(folder) / CHECKPOINT
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load raises many kinds on a bad file
        path.replace(path.with_suffix(".ckpt.unreadable"))
        log.warning("%s: unreadable (%s: %s); set aside, training from step 0",
                    path, type(err).__name__, str(err)[:200])  # fmt: skip
        return None
    return path


class ResumeCallback(Callback):
    """Saves `folder/last.ckpt` (atomically, rank 0 only) every `every` optimizer steps and
    when SIGTERM arrives; goes last in the Trainer's callbacks so the EMA has updated."""

    def __init__(self, folder: Path, every: int) -> None:
        self.folder, self.every = Path(folder), every
        self.saved_at: int | None = None  # the last step saved (tests and messages)
        self.resumed_from = 0  # the step the fit started at (restored from a checkpoint)

    def on_train_start(self, trainer: pl.Trainer, *_: Any) -> None:
        self.resumed_from = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        step = trainer.global_step
        due = self.every > 0 and step % self.every == 0
        if step < trainer.max_steps and (due or trainer.received_sigterm):
            self.save(trainer)

    def save(self, trainer: pl.Trainer) -> None:
        batches = trainer.num_training_batches  # per epoch (inf: an endless iterable)
        in_epoch = trainer.global_step - (0 if math.isinf(batches) else
                                          int(batches) * trainer.current_epoch)  # fmt: skip
        for loader in _loaders(trainer):
            loader.mark(in_epoch, epoch_done=in_epoch >= batches)
        path = self.folder / CHECKPOINT
        if trainer.is_global_zero:
            atomic_write(path, lambda tmp: trainer.save_checkpoint(tmp))
        else:  # the dump and its barrier are collective; only rank 0 writes a file
            trainer.save_checkpoint(path)
        self.saved_at = trainer.global_step


def _loaders(trainer: pl.Trainer) -> list[_Resumable]:
    found = trainer.train_dataloader
    items = found if isinstance(found, list | tuple) else [found]
    return [x for x in items if isinstance(x, _Resumable)]


def fit_resumable(
    trainer: pl.Trainer, module: pl.LightningModule, train: Any, val: Any, folder: Path | None
) -> int:
    """trainer.fit, continued from `folder`'s checkpoint when a killed fit left one. Returns
    the step it continued from (0: a fresh fit). SIGTERM stops it after a checkpoint, as a
    one-line error (Lightning would exit with status 0, as if the run had finished)."""
    ckpt = partial_checkpoint(folder)
    try:
        trainer.fit(module, resumable(train), val, ckpt_path=ckpt, weights_only=True)
    except SIGTERMException:
        raise HarnessError(
            f"stopped by SIGTERM at step {trainer.global_step} of "
            f"{trainer.max_steps}; the same command continues from there"
        ) from None
    saver = next((c for c in trainer.callbacks if isinstance(c, ResumeCallback)), None)
    return saver.resumed_from if saver is not None and ckpt is not None else 0
