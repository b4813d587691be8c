"""Repository conventions: README's two command lines, CI, lint."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[0].startswith("```"), "README must open with the two command lines"
    return lines[1:3]


def test_readme_opens_with_run_and_test_lines():
    run, test = readme_commands()
    assert "python -m harness run experiments/prior_ablation.yaml" in run
    assert "pytest" in test and "pip install" in test


def test_ci_runs_the_readme_test_line_verbatim():
    _, test = readme_commands()
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is a dev extra")
def test_ruff_clean():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
