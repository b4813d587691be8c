"""The stage graph, the one training path and the one checkpoint format."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from pytorch_lightning.callbacks import Callback

from harness.config import Config, UpsamplerConfig
from harness.errors import HarnessError
from harness.stages.checkpoint import MODEL_FILE, read_checkpoint
from harness.stages.common import fit_hooks
from harness.stages.graph import (
    CLIP,
    DECODER,
    EVAL_CLIP,
    PRIOR,
    STAGES,
    UPSAMPLER1,
    VALIDATING,
    stage_keys,
)
from harness.stages.stage import StageContext, training_stage
from tests.conftest import ROOT


def test_the_graph_orders_and_links_the_stages() -> None:
    names = STAGES.names()
    assert names == list(stage_keys(Config()))
    for name, s in STAGES.items():  # upstream before downstream
        for dep in [*s.keyed.values(), *s.uses.values()]:
            assert names.index(dep.name) < names.index(name), (dep, name)
    assert PRIOR.keyed == {"clip": CLIP} and DECODER.uses == {"evaluator": EVAL_CLIP}
    assert [s.name for s in VALIDATING] == ["decoder", "upsampler1", "upsampler2"]


def test_keys_follow_keyed_links_not_used_ones() -> None:
    cfg = Config()
    base = stage_keys(cfg)
    other_clip = stage_keys(replace(cfg, clip=replace(cfg.clip, lr=1e-3)))
    assert other_clip["prior"] != base["prior"] and other_clip["decoder"] != base["decoder"]
    assert other_clip["upsampler1"] == base["upsampler1"]  # upsamplers <- data only
    other_eval = stage_keys(replace(cfg, eval=replace(cfg.eval, clip_seed=7)))
    assert other_eval["eval_clip"] != base["eval_clip"]
    assert other_eval["decoder"] == base["decoder"]  # it only scores itself with eval_clip
    off = replace(cfg, upsamplers=replace(cfg.upsamplers, first=UpsamplerConfig(enabled=False)))
    keys = stage_keys(off)
    assert keys["upsampler1"] is None and keys["upsampler2"] != base["upsampler2"]  # input px


def test_a_fit_knows_its_stage_and_the_checkpoint_its_fields(tmp_path) -> None:
    """Pruning asks the training path which stage a running fit trains; model.pt records
    the format and the training fields, and a load of another format is one line."""
    cfg = Config()
    cfg.data = replace(cfg.data, resolution=16, n_train=16, n_val=8, n_test=8)
    cfg.decoder = replace(cfg.decoder, resolution=8)
    cfg.upsamplers = replace(cfg.upsamplers, first=UpsamplerConfig(
        resolution=16, channels=8, channel_mult=[1, 2], train_steps=2, batch_size=4, steps=2,
        timesteps=20), second=UpsamplerConfig(enabled=False))  # fmt: skip
    seen: list[str | None] = []

    class Watch(Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            seen.append(training_stage())

    assert training_stage() is None
    with fit_hooks((Watch(),)):
        UPSAMPLER1.train(StageContext(cfg, tmp_path))
    assert seen == ["upsampler1"] and training_stage() is None
    payload = read_checkpoint(tmp_path, "upsampler1")
    assert payload["fields"] == UPSAMPLER1.recipe.fields(cfg) and payload["stage"] == "upsampler1"
    assert payload["shape"] == {"low_resolution": 8}
    torch.save({**payload, "format": 1}, tmp_path / MODEL_FILE)
    with pytest.raises(HarnessError, match=r"format 1, this harness reads 2.*--retrain upsampler1"):
        UPSAMPLER1.load(StageContext(cfg), tmp_path)


def test_every_module_imports_first_without_a_cycle() -> None:
    """Each harness module imported first into a fresh interpreter state: an import cycle
    (lazy or through a package __init__) fails here, whatever the import order elsewhere."""
    import harness

    names = [m.name for m in pkgutil.walk_packages(harness.__path__, "harness.")
             if not m.name.endswith("__main__")]  # fmt: skip
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for k in [k for k in sys.modules if k.split('.')[0] == 'harness']:\n"
        "        del sys.modules[k]\n"
        "    importlib.import_module(name)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert importlib.import_module("harness.stages.graph").STAGES is STAGES
