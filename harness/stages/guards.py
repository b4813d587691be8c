"""Guards every stage's Trainer carries: a NaN or inf training loss stops the stage.

Lightning would otherwise keep stepping on NaN weights and the stage cache would publish
them as a finished stage. The guard raises a HarnessError before the backward pass of the
first non-finite loss; the cache deletes the stage's temporary folder and adds the stage's
name and key to the message, so the user sees one line:

    error: decoder 1ac81c3fadff1f28: training loss is nan at step 3 of 20 (...)
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from ..errors import HarnessError


class NonFiniteLoss(HarnessError):
    """A stage's training loss became NaN or inf."""


class FiniteLoss(Callback):
    """Stop training at the first NaN/inf loss, naming the step."""

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        value = float(loss.detach().float().sum())  # one host sync per step: a scalar
        if math.isfinite(value):
            return
        raise NonFiniteLoss(
            f"training loss is {value} at step {trainer.global_step + 1} of "
            f"{trainer.max_steps} ({type(pl_module).__name__}); nothing was cached. Lower the "
            "stage's lr, use precision 32-true, or check the data"
        )
