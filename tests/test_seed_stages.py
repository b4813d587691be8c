"""`seed_stages:` retrains only the named stages per seed; every other stage keeps the first
seed, is trained once and shared by all seeds (e.g. three priors per kind on one decoder)."""

from __future__ import annotations

import json

from harness.config import load_experiment
from harness.stages.graph import DECODER, PRIOR, stage_keys
from harness.stages.stage import StageContext
from tests.conftest import ROOT, run_cli

EXP = f"""
base: {ROOT}/experiments/base/tiny.yaml
seeds: [0, 1, 2]
seed_stages: [prior]
ablate:
  prior.kind: [diffusion, text_embedding]
"""


def test_only_the_named_stages_get_a_key_per_seed(write_yaml) -> None:
    out = run_cli("validate", str(write_yaml("exp.yaml", EXP)), "--json", "--no-data")
    assert out.returncode == 0, out.stderr
    rows = [r for r in json.loads(out.stdout)["arms"] if r["arm"] == "prior.kind=diffusion"]
    assert len(rows) == 3
    for stage in ("clip", "eval_clip", "decoder", "upsampler1", "upsampler2"):
        assert len({r["stages"][stage] for r in rows}) == 1, stage
    assert len({r["stages"]["prior"] for r in rows}) == 3


def test_without_seed_stages_every_stage_follows_the_seed(write_yaml) -> None:
    exp = load_experiment(write_yaml("exp.yaml", EXP.replace("seed_stages: [prior]\n", "")))
    arm = exp.arms[0]
    first, second = (stage_keys(exp.config(arm, s)) for s in (0, 1))
    assert first["decoder"] != second["decoder"] and first["clip"] != second["clip"]


def test_a_shared_stage_trains_and_evaluates_under_the_first_seed(write_yaml) -> None:
    exp = load_experiment(write_yaml("exp.yaml", EXP))
    cfg = exp.config(exp.arms[0], 2)
    assert DECODER.seed(cfg) == 0 and PRIOR.seed(cfg) == 2
    assert DECODER.context(StageContext(cfg)).cfg.seed == 0  # the recipe sees its own seed
    assert PRIOR.context(StageContext(cfg)).cfg.seed == 2


def test_an_unknown_stage_is_refused_in_one_line(write_yaml) -> None:
    path = write_yaml("exp.yaml", EXP.replace("[prior]", "[prior, decodr]"))
    out = run_cli("validate", str(path), "--no-data")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "seed_stages" in out.stderr and "did you mean decoder" in out.stderr
    bad = run_cli("validate", str(write_yaml("bad.yaml", EXP.replace("[prior]", "prior"))))
    assert bad.returncode == 2 and "seed_stages: expected a list" in bad.stderr
