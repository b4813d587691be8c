"""Property: any experiment or sweep file (and any overrides) either validates or fails with
exit 2 and ONE `error:` line, never a traceback.

The bulk runs `harness.cli.main` in-process (an uncaught exception is a traceback); a few
inputs the fuzz once broke go through the real entry point. Examples are derandomized so CI
is repeatable; HARNESS_FUZZ_EXAMPLES=5000 (and HARNESS_FUZZ_RANDOM=1) fuzzes harder locally.
"""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness import paths
from harness.cli import main
from tests import fuzz_strategies as fz
from tests.conftest import MICRO, run_cli

EXAMPLES = int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    deadline=None,  # a shared CI machine: time is no property here
    derandomize=not os.environ.get("HARNESS_FUZZ_RANDOM"),
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)  # fmt: skip


def outcome(argv: list[str]) -> tuple[int, str]:
    """main(argv) in-process: exit code and stderr; an exception escapes (the failure)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def assert_valid_or_one_line(code: int, err: str) -> None:
    if code == 0:
        assert "error" not in err, err
        return
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(FUZZ, max_examples=EXAMPLES or 400)
@given(text=fz.yaml_text(fz.experiment_doc), overrides=fz.overrides, data_check=st.booleans())
def test_any_experiment_validates_or_fails_in_one_line(folder, text, overrides, data_check):
    path = folder / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    code, err = outcome(["validate", str(path), *overrides, *([] if data_check else ["--no-data"])])
    event("valid" if code == 0 else "refused")  # --hypothesis-show-statistics: the mix
    assert_valid_or_one_line(code, err)


@settings(FUZZ, max_examples=EXAMPLES or 150)
@given(text=fz.yaml_text(fz.sweep_doc), overrides=fz.overrides)
def test_any_sweep_validates_or_fails_in_one_line(folder, text, overrides):
    """`sweep` with a storage that cannot open: a valid file gets as far as the storage and
    stops there (one line, exit 2), so nothing trains; an invalid one stops earlier."""
    path = folder / "sweep.yaml"
    path.write_text(text, encoding="utf-8")
    out = folder / "out"
    storage = f"sqlite:///{folder}/missing/study.db"
    code, err = outcome(["sweep", str(path), *overrides, "--out", str(out), "--storage", storage,
                         "--cache", str(folder / "cache")])  # fmt: skip
    assert code == 2, err
    event("valid: stopped at the storage" if "--storage" in err else "refused")
    assert_valid_or_one_line(code, err)
    assert not out.exists() and not (folder / "cache").exists()


@settings(FUZZ, max_examples=EXAMPLES or 100)
@given(st.text(max_size=300))
def test_any_name_becomes_a_safe_folder_inside_out(text):
    slug = paths.safe_slug(text)
    assert paths.is_slug(slug)
    paths.inside("/out/exp", f"/out/exp/{slug}/seed0")
    if paths.is_slug(text):
        assert slug == text


# Inputs the fuzz broke (tracebacks, a message split over two lines), through the real
# entry point: (file text, what the one error line says; None: valid).
FOUND = [
    ("!!int name: x\n", "malformed YAML: ValueError"),
    ("{!!int }\n", "malformed YAML: IndexError"),
    ('upsamplers: {second: {"\\x1e": 1}}\n', "upsamplers.second.\\x1e: unknown key"),
    ("{\t}\n", None),  # OmegaConf reads it as {}; the empty-file check must not choke
]


@pytest.mark.parametrize("text,needle", FOUND)
def test_found_by_the_fuzz_through_the_entry_point(tmp_path, text, needle):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    res = run_cli("validate", str(path), "--no-data", timeout=120)
    assert "Traceback" not in res.stderr
    assert_valid_or_one_line(res.returncode, res.stderr)
    assert (res.returncode == 0) == (needle is None), res.stderr
    assert needle is None or needle in res.stderr, res.stderr


def test_a_huge_ablation_or_grid_is_refused_not_listed(tmp_path):
    """Found beside the fuzz (which cannot see a hang): 100 x 100 arms, a grid with a step
    of 1e-9 (ten billion points) were listed in memory before anything was said."""
    values = ", ".join(map(str, range(1, 101)))
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"ablate:\n  decoder.steps: [{values}]\n  decoder.guidance_scale: [{values}]\n")
    code, err = outcome(["validate", str(exp), "--no-data"])
    assert code == 2 and "100 x 100 = 10000 arms" in err, err
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"experiment: {MICRO}\nobjectives: [fd_clip]\nsampler: grid\n"
        "space: {decoder.guidance_scale: {low: 0.0, high: 10.0, step: 1.0e-9}}\n"
    )
    code, err = outcome(["sweep", str(sweep), "--out", str(tmp_path / "out")])
    assert code == 2 and "a grid of 10000000001 points" in err, err
