"""`sweep` on bad input: one line naming the file and key, exit code 2, no traceback, and
nothing written (no output folder, no study)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from tests.conftest import MICRO, run_cli

GOOD = {
    "space": "space:\n  decoder.guidance_scale: {low: 1.0, high: 3.0}\n",
    "objectives": "objectives: [{metric: fd_clip, direction: minimize}]\n",
    "sampler": "sampler: tpe\n",
    "pruner": "pruner: none\n",
}


def sweep_file(tmp_path: Path, **parts: str) -> Path:
    text = f"study: bad\nexperiment: {MICRO}\nn_trials: 2\n"
    text += "".join({**GOOD, **parts}.values())
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def run_main(capsys, tmp_path: Path, *args: str) -> tuple[int, str]:
    out = tmp_path / "out"
    code = main(["sweep", *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert not out.exists(), "an invalid sweep wrote something"
    return code, err


def assert_one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_valid_file_passes_validation(tmp_path):
    from harness.sweep.spec import load_sweep

    spec = load_sweep(sweep_file(tmp_path))
    assert spec.study == "bad" and spec.suite.endswith("micro_suite.yaml")
    assert [p.path for p in spec.space] == ["decoder.guidance_scale"] and spec.space[0].sampling


def test_unreachable_storage_url(capsys, tmp_path):
    url = "postgresql://someone:secret@127.0.0.1:1/nowhere"  # nothing listens on port 1
    code, err = run_main(capsys, tmp_path, str(sweep_file(tmp_path)), "--storage", url)
    assert code == 2
    assert_one_line(err, "--storage", "cannot open Optuna storage", "127.0.0.1:1/nowhere")
    assert "secret" not in err  # the password is never printed


def test_storage_in_a_missing_folder(capsys, tmp_path):
    url = f"sqlite:///{tmp_path}/missing/study.db"
    code, err = run_main(capsys, tmp_path, str(sweep_file(tmp_path)), "--storage", url)
    assert code == 2
    assert_one_line(err, "--storage", "folder", "not found")
    assert not (tmp_path / "missing").exists()


def test_low_above_high(capsys, tmp_path):
    path = sweep_file(tmp_path, space="space:\n  decoder.eta: {low: 0.8, high: 0.2}\n")
    code, err = run_main(capsys, tmp_path, str(path))
    assert code == 2
    assert_one_line(err, str(path), "space.decoder.eta", "low (0.8) is above high (0.2)")


def test_range_outside_the_keys_bounds(capsys, tmp_path):
    path = sweep_file(tmp_path, space="space:\n  decoder.clip_drop: {low: 0.0, high: 1.5}\n")
    code, err = run_main(capsys, tmp_path, str(path))
    assert code == 2
    assert_one_line(err, str(path), "space.decoder.clip_drop.high", "outside [0.0, 1.0]")


@pytest.mark.parametrize(
    ("part", "needles"),
    [
        ("sampler: tpee\n", ("sampler: unknown sampler 'tpee'", "did you mean tpe?")),
        ("sampler: {name: tpe, n_startup: 3}\n", ("sampler.n_startup: unknown option",)),
        ("pruner: medain\n", ("pruner: unknown pruner 'medain'", "did you mean median?")),
        ("pruner: {name: median, stage: clip}\n", ("pruner.stage: 'clip'",)),
    ],
)
def test_unknown_sampler_or_pruner(capsys, tmp_path, part, needles):
    key = part.split(":")[0]
    path = sweep_file(tmp_path, **{key: part})
    code, err = run_main(capsys, tmp_path, str(path))
    assert code == 2
    assert_one_line(err, str(path), *needles)


def test_search_path_that_is_not_a_config_key(capsys, tmp_path):
    path = sweep_file(tmp_path, space="space:\n  decoder.guidence_scale: {low: 1.0, high: 2.0}\n")
    code, err = run_main(capsys, tmp_path, str(path))
    assert code == 2
    assert_one_line(err, str(path), "decoder.guidence_scale: unknown key",
                    "did you mean decoder.guidance_scale?")  # fmt: skip


def test_objective_metric_the_suite_does_not_produce(capsys, tmp_path):
    path = sweep_file(tmp_path, objectives="objectives: [fid, clip_score]\n")
    code, err = run_main(capsys, tmp_path, str(path))
    assert code == 2  # no Inception weights here: the suite reports fd_clip, never fid
    assert_one_line(err, str(path), "objectives[0].metric: 'fid' is not produced", "fd_clip")


def test_multi_objective_cannot_prune(capsys, tmp_path):
    path = sweep_file(tmp_path, objectives="objectives: [fd_clip, clip_score]\n",
                      pruner="pruner: median\n")  # fmt: skip
    code, err = run_main(capsys, tmp_path, str(path))
    assert code == 2
    assert_one_line(err, str(path), "pruner: Optuna cannot prune a multi-objective study")


def test_ddp_base_that_must_train_is_refused_with_the_way_to_scale_out(capsys, tmp_path):
    path = sweep_file(tmp_path)
    code, err = run_main(capsys, tmp_path, str(path), "train.strategy=ddp", "train.devices=2",
                         "--cache", str(tmp_path / "cache"))  # fmt: skip
    assert code == 2  # its ranks would each join the study and draw their own parameters
    assert "stage clip" in err  # nothing trained yet: with every stage cached it may run
    assert_one_line(err, str(path), "train.devices x train.num_nodes = 2", "--workers K")


def test_searching_the_device_count_is_refused(capsys, tmp_path):
    path = sweep_file(tmp_path, space="space:\n  train.devices: {low: 1, high: 2}\n")
    code, err = run_main(capsys, tmp_path, str(path), "--cache", str(tmp_path / "cache"))
    assert code == 2
    assert_one_line(err, str(path), "space.train.devices", "--workers K")


def test_local_workers_get_a_gpu_each():
    from harness.sweep.study import worker_gpus

    assert worker_gpus(3, "0,1") == ["0", "1", "0"]
    assert worker_gpus(2, "GPU-a, GPU-b") == ["GPU-a", "GPU-b"]
    assert worker_gpus(2, "") == [None, None]  # no GPU: nothing to assign


def test_real_entry_point_unreachable_storage(tmp_path):
    """The same contract through `python -m harness` in a subprocess."""
    out, url = tmp_path / "out", "postgresql://postgres@127.0.0.1:1/nowhere"
    res = run_cli("sweep", str(sweep_file(tmp_path)), "--out", str(out), "--storage", url)
    assert res.returncode == 2, res.stderr
    assert_one_line(res.stderr, "cannot open Optuna storage", "127.0.0.1:1/nowhere")
    assert res.stdout == "" and not out.exists()
