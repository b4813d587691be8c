"""The user-facing commands, through `python -m harness` in a subprocess."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_validate_prior_ablation_lists_four_arms_x_three_prior_seeds_with_hashes():
    out = run_cli("validate", "experiments/prior_ablation.yaml")
    assert out.returncode == 0, out.stderr
    for kind in ("diffusion", "ar", "caption_only", "text_embedding"):
        assert f"prior.kind={kind}" in out.stdout
    assert "nothing trained" in out.stdout
    data = json.loads(run_cli("validate", "experiments/prior_ablation.yaml", "--json").stdout)
    assert len(data["arms"]) == 12  # 4 kinds x 3 seeds; seed_stages: only priors retrain
    assert len({a["stages"]["decoder"] for a in data["arms"]}) == 1
    assert len({a["stages"]["clip"] for a in data["arms"]}) == 1
    assert len({a["stages"]["prior"] for a in data["arms"]} - {None}) == 6  # 2 trained kinds x 3


def test_validate_typo_exits_2_with_suggestion(write_yaml):
    path = write_yaml("typo.yaml", "decoder: {txt_drop: 0.5}\n")
    out = run_cli("validate", str(path))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1
    assert "decoder.txt_drop" in out.stderr and "did you mean decoder.text_drop" in out.stderr


def test_ls_lists_experiments_and_suites_with_descriptions():
    out = run_cli("ls")
    assert out.returncode == 0, out.stderr
    assert "prior_ablation" in out.stdout and "AR vs diffusion prior" in out.stdout
    assert "quick" in out.stdout and "Metric suites" in out.stdout
