"""Nothing is written outside --out or the cache, whatever the names in a config or a results
file say; empty config files are refused instead of running the defaults.

A name the user chose for a folder (experiment `name:`, sweep `study:`) is refused in one
line when it is not a safe folder name; arm labels (made from axis values) and file names
read from results files are rewritten into one. Each verb is checked through the real entry
point.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import paths
from harness.cli import main
from harness.config import load_experiment
from harness.errors import ConfigError, HarnessError
from tests.conftest import MICRO, run_cli
from tests.test_bad_inputs import assert_nothing_written, files_under, refused

ESCAPE = "../../escaped"
SWEEP = (
    "study: {study}\nexperiment: {micro}\nn_trials: 1\n"
    "space:\n  decoder.guidance_scale: {{low: 1.0, high: 3.0}}\n"
    "objectives: [{{metric: fd_clip, direction: minimize}}]\n"
)


def validate(capsys, path: Path, *args: str) -> tuple[int, str]:
    code = main(["validate", str(path), "--no-data", *args])
    return code, capsys.readouterr().err


def one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# --------------------------------------------------------------------------- chosen names
@pytest.mark.parametrize(
    "name", [ESCAPE, "/tmp/abs", "..", ".hidden", "a\\b", "two\nlines", "x" * 121, "a b"]
)
def test_validate_refuses_an_experiment_name_that_is_not_a_folder_name(capsys, tmp_path, name):
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"name: {json.dumps(name)}\n")
    code, err = validate(capsys, exp)
    assert code == 2
    one_line(err, str(exp), "name:", "cannot be a folder name")


def test_override_of_the_name_is_checked_too(capsys, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("{}\n")
    code = main(["validate", str(exp), f"name={ESCAPE}"])
    err = capsys.readouterr().err
    assert code == 2
    one_line(err, "command line", "name:", repr(ESCAPE))


def test_safe_names_and_the_file_stem_are_kept(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: prior_ablation-v2.1\n")
    assert load_experiment(exp).name == "prior_ablation-v2.1"
    odd = tmp_path / "my experiment (copy).yaml"  # no `name:`: the stem, rewritten
    odd.write_text("{}\n")
    assert load_experiment(odd).name == "my_experiment__copy_"


def test_run_refuses_a_traversal_name_before_writing(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"base: {MICRO}\nname: {ESCAPE}\n")
    out = tmp_path / "a" / "b" / "runs"
    res = run_cli("run", str(exp), "--out", str(out), env={"HARNESS_CACHE": str(tmp_path / "c")})
    refused(res, "name:", "cannot be a folder name")
    assert files_under(tmp_path) == [exp]


def test_sweep_refuses_a_traversal_study_name_before_writing(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP.format(study=json.dumps(ESCAPE), micro=MICRO))
    out = tmp_path / "a" / "b" / "runs"
    res = run_cli("sweep", str(sweep), "--out", str(out),
                  env={"HARNESS_CACHE": str(tmp_path / "c")})  # fmt: skip
    refused(res, str(sweep), "study:", "cannot be a folder name")
    assert files_under(tmp_path) == [sweep]


def test_vary_refuses_a_traversal_name_before_training(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"base: {MICRO}\nname: {ESCAPE}\n")
    image = tmp_path / "in.png"
    from tests.test_bad_inputs import png

    image.write_bytes(png(0))
    res = run_cli("vary", str(exp), str(image), "--out", str(tmp_path / "v.png"),
                  env={"HARNESS_CACHE": str(tmp_path / "c")}, cwd=tmp_path)  # fmt: skip
    refused(res, "name:", "cannot be a folder name")
    assert sorted(files_under(tmp_path)) == sorted([exp, image])


# --------------------------------------------------------------------------- rewritten names
def test_arm_labels_become_safe_folder_names(tmp_path):
    """A label with `=` is the arm's whole label (`../../x=1`); a long one would fail to
    become a folder (255-byte limit) only after every stage trained."""
    long = "a" * 300 + "=1"
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "ablate:\n  g:\n"
        f"    - {{label: '{ESCAPE}=1', decoder.eta: 0.0}}\n"
        "    - {label: '..=', decoder.eta: 0.5}\n"
        f"    - {{label: '{long}', decoder.eta: 1.0}}\n"
    )
    arms = load_experiment(exp).arms
    assert [a.label for a in arms] == [f"{ESCAPE}=1", "..=", long]
    assert [a.slug for a in arms[:2]] == ["_.._.._escaped=1", "_..="]
    assert len(arms[2].slug) == paths.MAX_NAME_BYTES and arms[2].slug.startswith("aaa")
    root = tmp_path / "runs" / "exp"
    for arm in arms:  # the runner derives each arm's folder through paths.inside
        assert paths.is_slug(arm.slug)
        paths.inside(root, root / arm.slug / "seed0")


def test_two_arms_that_would_share_a_folder_are_refused(capsys, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("ablate:\n  data.path: [/data/a/b, /data/a_b]\n")
    code, err = validate(capsys, exp)
    assert code == 2
    one_line(err, "ablate:", "share the folder", "data.path=_data_a_b")


def test_inside_refuses_names_that_climb_out(tmp_path):
    for bad in (tmp_path / ".." / "x", tmp_path / "a" / ".." / ".." / "x", Path("/etc/x")):
        with pytest.raises(HarnessError, match="refusing to write outside"):
            paths.inside(tmp_path, bad)
    assert paths.inside(tmp_path, tmp_path / "a" / ".." / "b") == tmp_path / "a" / ".." / "b"


def test_run_writes_an_escaping_arm_label_inside_out(micro_cache, tmp_path):
    """A coupled axis value labelled `../../escaped=1` (micro's first arm, so every stage and
    sample set is cached): its results land under OUT/micro/, nothing outside OUT."""
    exp = tmp_path / "exp" / "exp.yaml"
    exp.parent.mkdir()
    exp.write_text(f"base: {MICRO}\nablate:\n  p:\n"
                   f"    - {{label: '{ESCAPE}=1', prior.kind: diffusion}}\n")  # fmt: skip
    out = tmp_path / "o" / "runs"
    res = run_cli("run", str(exp), "--out", str(out), "--no-progress",
                  env={"HARNESS_CACHE": str(micro_cache), "WANDB_MODE": "disabled"})  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    written = [p for p in files_under(tmp_path) if p != exp]
    assert written and all(out / "micro" in p.parents for p in written), written
    assert (out / "micro" / "_.._.._escaped=1" / "seed0" / "metrics.json").is_file()


def test_report_rewrites_metric_names_from_results_json(tmp_path):
    """A results.json is a file anyone can hand over: its metric names become plot files
    only as safe names inside RUN_DIR/report/."""
    run = tmp_path / "x" / "run"
    run.mkdir(parents=True)
    estimate = {"value": 1.0, "lo": 0.5, "hi": 1.5, "n": 4}
    row = {"arm": "base", "seed": 0, "axes": {}, "dir": str(run / "base"),
           "metrics": {f"{ESCAPE}/fd": estimate}}  # fmt: skip
    meta = {"experiment": "x", "git_commit": "0", "axes": [], "rows": [row],
            "tracking": {"mode": "disabled"}}  # fmt: skip
    (run / "results.json").write_text(json.dumps(meta))
    res = run_cli("report", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    written = set(files_under(tmp_path)) - {run / "results.json"}
    assert written == {run / "report.html", run / "report" / "table.txt",
                       run / "report" / "_.._.._escaped_fd.png"}  # fmt: skip


# --------------------------------------------------------------------------- empty files
@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n  # another\n", "---\n", "~\n"])
def test_validate_refuses_an_empty_experiment(capsys, tmp_path, text):
    exp = tmp_path / "exp.yaml"
    exp.write_text(text)
    code, err = validate(capsys, exp)
    assert code == 2
    one_line(err, str(exp), "empty file", "{}")


def test_an_explicit_empty_mapping_means_the_defaults(capsys, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("# the defaults, on purpose\n{}\n")
    code, _ = validate(capsys, exp)
    assert code == 0


def test_an_empty_base_is_refused_naming_the_base(tmp_path):
    (tmp_path / "base.yaml").write_text("# TODO\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text("base: base.yaml\nseeds: [1]\n")
    with pytest.raises(ConfigError, match="empty file") as err:
        load_experiment(exp)
    assert err.value.where == str(tmp_path / "base.yaml")


def test_run_refuses_an_empty_experiment_before_writing(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("# nothing yet\n")
    res = run_cli("run", str(exp), "--out", str(tmp_path / "runs"),
                  env={"HARNESS_CACHE": str(tmp_path / "cache")})  # fmt: skip
    refused(res, str(exp), "empty file")
    assert_nothing_written(tmp_path / "cache", tmp_path / "runs")


def test_sweep_refuses_an_empty_sweep_file(capsys, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("\n# fill me in\n")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "runs")]) == 2
    one_line(capsys.readouterr().err, str(sweep), "empty file")
    assert not (tmp_path / "runs").exists()
