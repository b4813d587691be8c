"""model.pt: every stage's checkpoint, written once (atomically) and checked once on load.

    {"format": FORMAT, "stage": name, "fields": the training fields that keyed the stage,
     "config": its whole config section, "shape": what else rebuilt the module (e.g. the
     CLIP dimension it reads), "extra": non-parameter state (e.g. the AR quantizer),
     "state_dict": weights}

A load refuses, in one line naming the file, a checkpoint of another format, or one trained
with other training fields or for other shapes than the config asks for.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_write
from ..errors import HarnessError

MODEL_FILE = "model.pt"
FORMAT = 2  # 1: per-stage layouts (the prior's had no version and no training fields)


def save_checkpoint(
    out_dir: Path,
    module: nn.Module,
    stage: str,
    fields: dict[str, Any],
    config: Any,
    shape: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    payload = {
        "format": FORMAT,
        "stage": stage,
        "fields": fields,
        "config": dataclasses.asdict(config),
        "shape": shape,
        "extra": extra or {},
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }
    return atomic_write(Path(out_dir) / MODEL_FILE, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(out_dir: Path, stage: str) -> dict[str, Any]:
    """model.pt's dict (format checked); HarnessError if it is missing or of another format."""
    path = Path(out_dir) / MODEL_FILE
    if not path.is_file():
        raise HarnessError(f"no trained {stage} here: {path} is missing (train the stage first)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != FORMAT:
        raise HarnessError(f"{stage} checkpoint has format {found}, this harness reads {FORMAT}:"
                           f" retrain it (--retrain {stage})", str(path))  # fmt: skip
    return payload


def load_checkpoint(
    out_dir: Path, stage: str, fields: dict[str, Any], shape: dict[str, Any]
) -> dict[str, Any]:
    """model.pt's dict, refused (HarnessError) unless trained with exactly `fields` and
    built for `shape`. Sampling knobs are not training fields: they never block a load."""
    payload = read_checkpoint(out_dir, stage)
    path = str(Path(out_dir) / MODEL_FILE)
    saved = payload["fields"]
    differ = sorted(k for k in {*fields, *saved} if saved.get(k) != fields.get(k))
    if differ:
        raise HarnessError(f"{stage} checkpoint was trained with other values of {differ}", path)
    built = payload["shape"]
    other = {k: built.get(k) for k in {*shape, *built} if built.get(k) != shape.get(k)}
    if other:
        wanted = {k: shape.get(k) for k in other}
        raise HarnessError(f"{stage} checkpoint was built for {other}, not {wanted}", path)
    return payload
