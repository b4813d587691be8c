"""The cascade (decoder, then each enabled upsampler) is checked end to end before training:
every combination of enabled upsamplers either validates and runs through scoring, or is
refused by `validate` and `run` in one line.

The cascade's output is its last enabled stage's resolution, which may be below
data.resolution (upsamplers.second.enabled=false on 64 px data). Variations then come out
smaller than their real sources; scoring brings them to the sources' size (it used to
reshape 32 px variations as 64 px ones and crash after every stage had trained).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.metrics.score import same_size
from tests.conftest import MICRO, run_cli

OFF = {
    "second": ["upsamplers.second.enabled=false"],  # 8 -> 16 px on 32 px data
    "first": ["upsamplers.first.enabled=false"],  # 8 -> 32 px: the second takes the decoder's
    "both": ["upsamplers.first.enabled=false", "upsamplers.second.enabled=false"],  # 8 px
}
OUTPUT_PX = {"second": 16, "first": 32, "both": 8}


def test_every_combination_of_enabled_upsamplers_validates(write_yaml) -> None:
    """One `validate` of an ablation over both switches (its `ablate:` replaces the base's)."""
    exp = write_yaml(
        "cascade.yaml",
        f"""base: {MICRO}
ablate:
  upsamplers.first.enabled: [true, false]
  upsamplers.second.enabled: [true, false]
""",
    )
    out = run_cli("validate", str(exp), "--json")
    assert out.returncode == 0, out.stderr
    arms = json.loads(out.stdout)["arms"]
    assert len(arms) == 4
    for arm in arms:
        keys, label = arm["stages"], arm["arm"]
        assert (keys["upsampler1"] is None) == ("upsamplers.first.enabled=False" in label), arm
        assert (keys["upsampler2"] is None) == ("upsamplers.second.enabled=False" in label), arm
    second_alone = {a["stages"]["upsampler2"] for a in arms if a["stages"]["upsampler1"] is None}
    after_first = {a["stages"]["upsampler2"] for a in arms if a["stages"]["upsampler1"]}
    assert not second_alone & after_first - {None}  # its input size (8 or 16 px) keys it


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["upsamplers.first.enabled=false", "upsamplers.second.resolution=8"],
         "upsamplers.second.resolution (8) must exceed decoder.resolution (8)"),
        (["upsamplers.second.enabled=false", "upsamplers.first.resolution=64"],
         "upsamplers.first.resolution (64) exceeds data.resolution (32)"),
        (["upsamplers.first.enabled=false", "upsamplers.second.enabled=false",
          "decoder.resolution=64", "decoder.attn_resolutions=[8]"],
         "decoder.resolution (64) exceeds data.resolution (32)"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("verb", ["validate", "run"])
def test_a_cascade_that_cannot_run_is_refused_in_one_line(
    verb: str, overrides: list[str], message: str, tmp_path: Path
) -> None:
    extra = ["--out", str(tmp_path / "runs")] if verb == "run" else []
    out = run_cli(verb, str(MICRO), *overrides, *extra,
                  env={"HARNESS_CACHE": str(tmp_path / "cache")})  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: ") and line.endswith(message), line
    assert not (tmp_path / "cache").exists()  # refused before anything trained


@pytest.mark.parametrize("off", ["second", "first"])
def test_the_micro_experiment_runs_through_scoring_with_an_upsampler_off(
    off: str, micro_cache: Path, tmp_path: Path
) -> None:
    """The session's stages are reused; only what the disabled stage changes is made (the
    second upsampler retrains on the decoder's 8 px when the first is off)."""
    cache = tmp_path / "cache"
    shutil.copytree(micro_cache, cache, ignore=shutil.ignore_patterns("samples", "variations"))
    out = run_cli("run", str(MICRO), *OFF[off], "prior.kind=diffusion", "--no-progress",
                  "--out", str(tmp_path / "runs"),
                  env={"HARNESS_CACHE": str(cache), "WANDB_MODE": "disabled"})  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    trained = [line.split()[0] for line in out.stdout.splitlines() if "trained in" in line]
    assert trained == ([] if off == "second" else ["upsampler2"]), out.stdout
    (samples,) = (cache / "samples").glob("[!.]*/images.npy")
    assert np.load(samples).shape[-2:] == (OUTPUT_PX[off], OUTPUT_PX[off])
    row, real = json.loads((tmp_path / "runs" / "micro" / "results.json").read_text())["rows"]
    assert real["arm"] == "real"  # real images at data.resolution, scored like the arm
    for name in ("fd_clip", "clip_score", "diversity_clip", "preservation_clip"):
        assert name in row["metrics"], sorted(row["metrics"])


def test_variations_smaller_than_their_sources_meet_them_at_the_sources_size() -> None:
    var = torch.randint(0, 256, (2, 3, 3, 16, 16), dtype=torch.uint8)  # (S, V, 3, r, r)
    up = same_size(var, 32)
    assert up.shape == (2, 3, 3, 32, 32) and up.dtype == torch.uint8
    for s in range(2):
        for v in range(3):  # each variation resized on its own: the layout survives
            assert torch.equal(up[s, v], same_size(var[s, v][None], 32)[0])
    assert same_size(var, 16) is not None and torch.equal(same_size(var, 16), var)
