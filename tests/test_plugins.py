"""Extension from one file: a plugin registers a prior kind and a data source
(tests/fixtures/plugin_kinds.py), and an experiment uses them through the real entry point."""

from __future__ import annotations

import csv
import json
import os

import pytest
import torch

from harness.errors import ConfigError
from harness.registry import Registry
from tests.conftest import ROOT, run_cli

FIXTURES = ROOT / "tests" / "fixtures"
PLUGIN = FIXTURES / "plugin.yaml"


def test_a_plugin_prior_kind_and_data_source_validate_and_run(tmp_path):
    env = {"HARNESS_CACHE": str(tmp_path / "cache")}
    out = run_cli("validate", str(PLUGIN), "--json", env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    keys = json.loads(out.stdout)["arms"][0]["stages"]
    assert keys["prior"] is not None and keys["upsampler1"] is None  # the linear prior trains
    out = run_cli("run", str(PLUGIN), "--out", str(tmp_path / "runs"), "--no-progress",
                  env=env, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    with open(tmp_path / "runs" / "plugin_micro" / "results.csv") as f:
        row, real = list(csv.DictReader(f))  # the arm, then the real images' row
    assert real["arm"] == "real" and float(real["fd_clip"]) < float(row["fd_clip"])
    assert float(row["fd_clip"]) > 0 and row["clip_score"]
    model = torch.load(tmp_path / "cache" / "prior" / keys["prior"] / "model.pt",
                       weights_only=True)  # fmt: skip
    assert model["fields"]["kind"] == "linear" and "net.weight" in model["state_dict"]
    metrics = json.loads((tmp_path / "cache" / "prior" / keys["prior"] / "stage_metrics.json")
                         .read_text())  # fmt: skip
    assert metrics["kind"] == "linear" and metrics["cos_prior"] > -1


def test_plugins_from_the_environment(write_yaml):
    path = write_yaml("exp.yaml", f"base: {FIXTURES / 'micro.yaml'}\nprior: {{kind: linear}}\n")
    refused = run_cli("validate", str(path), "--no-data")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (
        refused.stderr.count("\n") == 1 and "prior.kind: unknown value 'linear'" in refused.stderr
    )
    plugins = os.pathsep.join([str(FIXTURES / "plugin_kinds.py"), "json"])  # a file and a module
    out = run_cli("validate", str(path), "--no-data", env={"HARNESS_PLUGINS": plugins})
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.parametrize(
    ("plugins", "expected"),
    [
        ("[nowhere.py]", "plugins: file not found"),
        ("[no_such_module_here]", "plugins: no_such_module_here: ModuleNotFoundError"),
        ("nowhere.py", "plugins: expected a list"),
    ],
)
def test_a_bad_plugin_is_one_line(write_yaml, plugins: str, expected: str):
    path = write_yaml("exp.yaml", f"plugins: {plugins}\n")
    out = run_cli("validate", str(path))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.count("\n") == 1 and str(path) in out.stderr and expected in out.stderr


def test_registry_answers_unknown_names_with_did_you_mean():
    reg: Registry[int] = Registry("colour")
    reg.register("red", 1)

    @reg.register("green")
    def green() -> int:
        return 2

    assert reg.names() == ["red", "green"] and reg["green"] is green
    with pytest.raises(ConfigError, match=r"palette: unknown value 'gren' .*did you mean green"):
        reg.get("gren", "palette")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("red", 3)
