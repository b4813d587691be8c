"""The CLI habits of the field, through `python -m harness`: KEY=VALUE overrides anywhere on
the line (and `--set` as an alias), --help with defaults and an example, one progress flag
for every verb, a logging handler, and results.csv never silently replaced by another
config's."""

from __future__ import annotations

import json
import shutil

import pytest

from harness.cli import parse
from tests.conftest import MICRO, run_cli

EXP = "experiments/prior_ablation.yaml"


def decoder_keys(*args: str) -> set[str]:
    out = run_cli("validate", *args)
    assert out.returncode == 0, out.stderr
    return {a["stages"]["decoder"] for a in json.loads(out.stdout)["arms"]}


def test_overrides_anywhere_and_the_set_alias_mean_the_same():
    plain = decoder_keys(EXP, "--json")
    after = decoder_keys(EXP, "--json", "decoder.text_drop=0.2")
    assert after != plain  # the override reached the config (a training field: new key)
    assert decoder_keys(EXP, "decoder.text_drop=0.2", "--json") == after
    assert decoder_keys(EXP, "--set", "decoder.text_drop=0.2", "--json") == after


def test_every_verb_parses_overrides_and_the_progress_flag(tmp_path):
    img = tmp_path / "a.png"
    img.write_bytes(b"")
    args = parse(["vary", "runs/x", str(img), "decoder.steps=50", str(img), "--no-progress",
                  "--set", "decoder.eta=1", "--n", "2"])  # fmt: skip
    assert args.images == [img, img] and args.n == 2 and not args.progress
    assert args.overrides == ["decoder.steps=50", "decoder.eta=1"]
    td = parse(["textdiff", "runs/x", str(img), "--before", "a=b", "--after", "c", "x.y=1"])
    assert td.before == "a=b" and td.overrides == ["x.y=1"]  # an option's value stays its own
    for verb in (["run", EXP], ["validate", EXP], ["sweep", "s.yaml"],
                 ["interpolate", "runs/x", "a.png", "b.png"]):  # fmt: skip
        args = parse([*verb, "--no-progress", "a.b=1", "-v"])
        assert args.overrides == ["a.b=1"] and args.progress is False and args.verbose == 1
    assert parse(["sweep", "s.yaml", "--progress"]).progress is True  # the old spelling


@pytest.mark.parametrize("verb", ["run", "sweep", "vary", "validate"])
def test_help_shows_defaults_and_an_example(verb):
    out = run_cli(verb, "--help")
    assert out.returncode == 0, out.stderr
    assert "example:\n  python -m harness " + verb in out.stdout
    assert "(default: " in out.stdout and "KEY=VALUE" in out.stdout
    assert "--no-progress" in out.stdout


def test_a_different_config_never_silently_replaces_results(micro_cache, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(micro_cache.parent / "runs" / "micro", out / "micro")
    before = (out / "micro" / "results.csv").read_text()
    env = {"HARNESS_CACHE": str(micro_cache), "WANDB_MODE": "disabled"}
    refused = run_cli("run", str(MICRO), "--out", str(out), "decoder.eta=0.5", env=env)  # was 1
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out / 'micro' / 'results.csv'}")
    assert "decoder.eta: 1.0 -> 0.5" in lines[0] and "--overwrite" in lines[0]
    assert (out / "micro" / "results.csv").read_text() == before
    # options first or last, a forced progress bar, info logging: the new config replaces it
    done = run_cli("run", "-v", str(MICRO), "--overwrite", "--out", str(out), "decoder.eta=0.5",
                   "--progress", env=env, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "micro" / "results.json").read_text())
    assert meta["overrides"] == ["decoder.eta=0.5"]
    assert (out / "micro" / "results.csv").read_text() != before
    assert "sampling" in done.stderr and "batch/s" in done.stderr  # tqdm's bar, with its rate
    assert "features (clip)" in done.stderr and "img/s" in done.stderr  # scoring's bar
    assert "warning: LPIPS weights missing" in done.stderr  # through the configured handler
    # the same config again is a rerun, not a replacement: no flag needed
    again = run_cli("run", str(MICRO), "decoder.eta=0.5", "--out", str(out), "-q", env=env)
    assert again.returncode == 0 and "warning:" not in again.stderr, again.stderr[-3000:]


def test_optuna_dashboard_command_of_each_storage():
    """The sweep's own line is checked in test_sweep.py (its micro sweep's stdout)."""
    from harness.sweep.storage import dashboard_command

    assert (
        dashboard_command("sqlite:////r/s/study.db") == "optuna-dashboard sqlite:////r/s/study.db"
    )
    assert dashboard_command("journal:/r/a b.log") == "optuna-dashboard '/r/a b.log'"


def test_a_child_interpolates_its_bases_keys(write_yaml):
    """The whole `base:` chain is merged, then `${...}` resolved once (issue 18, item 6)."""
    write_yaml("base.yaml", "prior: {lr: 0.004}\ndecoder: {lr: 0.002}\n")
    child = write_yaml("child.yaml", 'name: child\nbase: base.yaml\ndecoder: {lr: "${prior.lr}"}\n')
    same = write_yaml("same.yaml", "name: same\nbase: base.yaml\ndecoder: {lr: 0.004}\n")
    base = write_yaml("plain.yaml", "name: plain\nbase: base.yaml\n")
    assert decoder_keys(str(child), "--json") == decoder_keys(str(same), "--json")
    assert decoder_keys(str(child), "--json") != decoder_keys(str(base), "--json")
    bad = write_yaml("bad.yaml", 'name: bad\nbase: base.yaml\ndecoder: {lr: "${prior.nope}"}\n')
    out = run_cli("validate", str(bad))
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert (
        out.stderr.startswith(f"error: {bad}: decoder.lr: cannot resolve")
        and "prior.nope" in out.stderr
    )
    wrong = write_yaml("wrong.yaml", 'name: wrong\nbase: base.yaml\ndecoder: {lr: "${name}"}\n')
    out = run_cli("validate", str(wrong))  # a resolved value is validated like a written one
    assert out.returncode == 2 and "decoder.lr" in out.stderr and "Traceback" not in out.stderr


def test_an_override_reaches_the_values_that_interpolate_it(write_yaml):
    """Overrides are applied before `${...}` resolves: `decoder.lr=...` on the command line
    moves a value written as "${decoder.lr}" with it, as it would if edited in the file."""
    write_yaml("base.yaml", "prior: {lr: 0.004}\ndecoder: {lr: 0.002}\n")
    tied = write_yaml("tied.yaml", 'name: tied\nbase: base.yaml\ndecoder: {lr: "${prior.lr}"}\n')
    same = write_yaml("same.yaml", "name: same\nbase: base.yaml\ndecoder: {lr: 0.001}\n")
    plain = write_yaml("plain.yaml", "name: plain\nbase: base.yaml\ndecoder: {lr: 0.004}\n")
    moved = decoder_keys(str(tied), "prior.lr=0.001", "--json")
    assert moved == decoder_keys(str(same), "--json")
    assert moved != decoder_keys(str(plain), "--json")
