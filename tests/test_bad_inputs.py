"""Bad input costs seconds: one line naming the file, key or path, a non-zero exit, no
traceback, and nothing written to the stage cache or the results.

Every case goes through the real entry point (`python -m harness`) in a subprocess. Config
mistakes are caught by `validate` (a few through `run` too); data and output mistakes by
`run` on the micro experiment, which must refuse before any stage trains. Data that is only
partly bad (some rows, images or shards) is skipped and counted, checked at the end.
"""

from __future__ import annotations

import io
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.config import DataConfig
from harness.data import build_source
from harness.errors import HarnessError
from tests.conftest import MICRO, ROOT, child_env, run_cli

N_IMAGES = 40  # keys 000..039 hash to all three splits (32 train, 1 val, 7 test)


def refused(out: subprocess.CompletedProcess, *needles: str) -> str:
    """The command failed with exactly one `error:` line on stderr containing `needles`."""
    assert out.returncode != 0, out.stdout[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def files_under(*folders: Path) -> list[Path]:
    return [p for f in folders if f.exists() for p in f.rglob("*") if p.is_file()]


def assert_nothing_written(*folders: Path) -> None:
    for folder in folders:
        assert not folder.exists() or not any(folder.iterdir()), list(folder.rglob("*"))


# --------------------------------------------------------------------------- configs
# (case, {file: text}, extra command-line words, what the error line must name).
# The experiment is always exp.yaml; other files sit beside it.
CONFIG_CASES = [
    ("malformed_yaml", {"exp.yaml": "decoder: {text_drop: 0.5\n"}, [],
     ["exp.yaml", "malformed YAML"]),
    ("tab_indentation", {"exp.yaml": "decoder:\n\ttext_drop: 0.5\n"}, [],
     ["exp.yaml", "line 2", "malformed YAML"]),
    ("duplicate_key", {"exp.yaml": "decoder: {eta: 0.1}\ndecoder: {eta: 0.2}\n"}, [],
     ["exp.yaml", "duplicate key decoder"]),
    ("not_utf8", {"exp.yaml": b"description: caf\xe9\n"}, [], ["exp.yaml", "not UTF-8"]),
    ("top_level_list", {"exp.yaml": "- decoder\n"}, [], ["exp.yaml", "mapping"]),
    ("unknown_section", {"exp.yaml": "decodr: {eta: 0.1}\n"}, [],
     ["exp.yaml", "decodr: unknown key", "did you mean decoder"]),
    ("misspelled_nested_key", {"exp.yaml": "upsamplers: {first: {resolutoin: 16}}\n"}, [],
     ["upsamplers.first.resolutoin", "did you mean upsamplers.first.resolution"]),
    ("text_for_int", {"exp.yaml": "decoder: {channels: wide}\n"}, [],
     ["decoder.channels", "expected int"]),
    ("float_for_int", {"exp.yaml": "decoder: {train_steps: 10.5}\n"}, [],
     ["decoder.train_steps", "expected int"]),
    ("text_for_bool", {"exp.yaml": "decoder: {text_cond: 'yes'}\n"}, [],
     ["decoder.text_cond", "expected bool"]),
    ("scalar_for_list", {"exp.yaml": "decoder: {channel_mult: 2}\n"}, [],
     ["decoder.channel_mult", "list"]),
    ("bad_list_item", {"exp.yaml": "decoder: {channel_mult: [1, two]}\n"}, [],
     ["decoder.channel_mult[1]", "'two'"]),
    ("scalar_for_section", {"exp.yaml": "prior: diffusion\n"}, [], ["exp.yaml", "prior"]),
    ("probability_above_one", {"exp.yaml": "decoder: {clip_drop: 1.5}\n"}, [],
     ["decoder.clip_drop", "outside [0.0, 1.0]"]),
    ("below_minimum", {"exp.yaml": "decoder: {steps: 0}\n"}, [],
     ["decoder.steps", "minimum 1"]),
    ("nan", {"exp.yaml": "decoder: {lr: .nan}\n"}, [], ["decoder.lr", "finite"]),
    ("infinity", {"exp.yaml": "prior: {guidance_scale: .inf}\n"}, [],
     ["prior.guidance_scale", "finite"]),
    ("unknown_enum_value", {"exp.yaml": "prior: {kind: diffussion}\n"}, [],
     ["prior.kind", "'diffussion'", "did you mean diffusion"]),
    ("unknown_sampler", {"exp.yaml": "decoder: {sampler: euler}\n"}, [],
     ["decoder.sampler", "ddim, ddpm"]),
    ("unknown_data_source", {"exp.yaml": "data: {source: s3}\n"}, [], ["data.source", "'s3'"]),
    ("base_cycle", {"exp.yaml": "base: a.yaml\n", "a.yaml": "base: b.yaml\n",
                    "b.yaml": "base: exp.yaml\n"}, [],
     ["base: cycle exp.yaml -> a.yaml -> b.yaml -> exp.yaml"]),
    ("base_missing", {"exp.yaml": "base: nope.yaml\n"}, [], ["exp.yaml", "nope.yaml"]),
    ("metric_suite_unknown", {"exp.yaml": "metrics: quik\n"}, [],
     ["metrics", "'quik'", "did you mean quick"]),
    ("metric_suite_file_missing", {"exp.yaml": "metrics: suites/mine.yaml\n"}, [],
     ["exp.yaml", "mine.yaml", "not found"]),
    ("axis_knob_not_a_number", {"exp.yaml": "ablate:\n  decoder.guidance_scale: [1.0, high]\n"},
     [], ["ablate.decoder.guidance_scale[1]", "expected float", "'high'"]),
    ("axis_unknown_key", {"exp.yaml": "ablate:\n  decoder.guidnce_scale: [1.0, 3.0]\n"}, [],
     ["decoder.guidnce_scale", "did you mean decoder.guidance_scale"]),
    ("axis_empty", {"exp.yaml": "ablate:\n  decoder.eta: []\n"}, [],
     ["ablate.decoder.eta", "empty"]),
    ("axis_repeated_value", {"exp.yaml": "ablate:\n  decoder.eta: [0.0, 0.0]\n"}, [],
     ["ablate.decoder.eta", "repeated"]),
    ("seed_negative", {"exp.yaml": "seeds: [0, -1]\n"}, [], ["exp.yaml", "seeds", "-1"]),
    ("seed_not_an_integer", {"exp.yaml": "seeds: [0, one]\n"}, [], ["seeds", "'one'"]),
    ("min_objects_above_max", {"exp.yaml": "data: {min_objects: 3, max_objects: 1}\n"}, [],
     ["exp.yaml", "data.min_objects"]),
    ("upsampler_below_decoder", {"exp.yaml": "decoder: {resolution: 64}\n"}, [],
     ["upsamplers.first.resolution", "decoder.resolution"]),
    ("heads_do_not_divide_channels", {"exp.yaml": "decoder: {channels: 10, heads: 8}\n"}, [],
     ["exp.yaml", "decoder.heads (8)", "20"]),
    ("folder_source_without_path", {"exp.yaml": "data: {source: folder}\n"}, [],
     ["exp.yaml", "data.path: required"]),
    ("unresolved_interpolation", {"exp.yaml": "name: ${oops}\n"}, [], ["exp.yaml", "oops"]),
    ("override_unknown_key", {"exp.yaml": "{}\n"}, ["decoder.txt_drop=0.2"],
     ["command line", "did you mean decoder.text_drop"]),
    ("override_bad_value", {"exp.yaml": "{}\n"}, ["decoder.text_drop=lots"],
     ["command line", "decoder.text_drop", "'lots'"]),
    ("override_seed_not_seeds", {"exp.yaml": "{}\n"}, ["seed=3"],
     ["command line", "did you mean seeds"]),
    ("override_base", {"exp.yaml": "{}\n"}, ["base=other.yaml"], ["command line", "base"]),
    ("experiment_file_missing", {}, [], ["exp.yaml", "not found"]),
]  # fmt: skip


def write_files(folder: Path, files: dict[str, str | bytes]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return folder / "exp.yaml"


@pytest.mark.parametrize(
    "files, extra, needles", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_validate_refuses_bad_config(tmp_path: Path, files, extra, needles) -> None:
    exp = write_files(tmp_path / "exp", files)
    out = run_cli("validate", str(exp), *extra, env={"HARNESS_CACHE": str(tmp_path / "cache")})
    refused(out, *needles)
    assert_nothing_written(tmp_path / "cache")


RUN_CASES = ["malformed_yaml", "unknown_enum_value", "axis_knob_not_a_number", "nan"]


@pytest.mark.parametrize("case", RUN_CASES)
def test_run_refuses_bad_config_before_writing(tmp_path: Path, case: str) -> None:
    _, files, extra, needles = next(c for c in CONFIG_CASES if c[0] == case)
    exp = write_files(tmp_path / "exp", {**files})
    out = run_cli("run", str(exp), *extra, "--out", str(tmp_path / "runs"), "--no-progress",
                  env={"HARNESS_CACHE": str(tmp_path / "cache")}, timeout=120)  # fmt: skip
    refused(out, *needles)
    assert_nothing_written(tmp_path / "cache", tmp_path / "runs")


# --------------------------------------------------------------------------- data
def png(i: int, size: int = 8) -> bytes:
    """A noisy image (noise does not compress: cutting the file loses pixel data)."""
    pixels = np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def truncated_png(i: int) -> bytes:
    data = png(i, 32)
    return data[: len(data) // 2]


def train_keys() -> list[int]:
    from harness.data.shapes import split_of  # folder keys are the file names

    return [i for i in range(N_IMAGES) if split_of(f"{i:03d}.png") == "train"]


def folder_data(root: Path, image=png, rows: list[str] | None = None) -> Path:
    """A folder source: N_IMAGES images written by `image(i)` (None: not written) and a
    captions.jsonl with `rows` (default one good row per image)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(N_IMAGES):
        data = image(i)
        if data is not None:
            (root / f"{i:03d}.png").write_bytes(data)
    if rows is None:
        rows = [
            json.dumps({"file": f"{i:03d}.png", "caption": f"thing {i}"}) for i in range(N_IMAGES)
        ]
    (root / "captions.jsonl").write_text("\n".join(rows) + "\n")
    return root


def shard(path: Path, n: int = N_IMAGES, cut: int | None = None) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(n):
            for name, data in ((f"{i:03d}.png", png(i)), (f"{i:03d}.txt", b"thing %d" % i)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[:cut])
    return path


def data_yaml(tmp: Path, data: str) -> Path:
    path = tmp / "exp.yaml"
    path.write_text(f"base: {MICRO}\ndata: {{{data}}}\n")
    return path


def run_refused(tmp: Path, exp: Path, *needles: str, args=(), env=None) -> str:
    env = {"HARNESS_CACHE": str(tmp / "cache"), **(env or {})}
    out = run_cli("run", str(exp), "--out", str(tmp / "runs"), "--no-progress", *args, env=env)
    line = refused(out, *needles)
    assert_nothing_written(tmp / "cache", tmp / "runs")
    return line


def test_run_refuses_missing_data_folder(tmp_path: Path) -> None:
    exp = data_yaml(tmp_path, f"source: folder, path: {tmp_path / 'nope'}")
    run_refused(tmp_path, exp, str(tmp_path / "nope"), "not a folder")


def test_validate_checks_data_paths_too(tmp_path: Path) -> None:
    exp = data_yaml(tmp_path, f"source: folder, path: {tmp_path / 'nope'}")
    refused(run_cli("validate", str(exp)), str(tmp_path / "nope"), "not a folder")
    elsewhere = run_cli("validate", str(exp), "--no-data")  # a config for another machine
    assert elsewhere.returncode == 0, elsewhere.stderr


def test_run_refuses_folder_without_captions_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    exp = data_yaml(tmp_path, f"source: folder, path: {tmp_path / 'd'}")
    run_refused(tmp_path, exp, str(tmp_path / "d"), "captions.jsonl or captions.csv")


@pytest.mark.parametrize(
    "name, text, needles",
    [
        ("captions.jsonl", 'not json\n[1, 2]\n"a string"\n', ["no usable row", "line 1"]),
        ("captions.csv", "filename,words\n000.png,thing 0\n", ["no usable row", "line 2"]),
        ("captions.jsonl", b'{"file": "000.png", "caption": "caf\xe9"}\n', ["not UTF-8"]),
    ],
    ids=["jsonl_no_usable_row", "csv_wrong_columns", "not_utf8"],
)
def test_run_refuses_caption_file_without_usable_rows(tmp_path, name, text, needles) -> None:
    root = folder_data(tmp_path / "d")
    (root / "captions.jsonl").unlink()
    (root / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    exp = data_yaml(tmp_path, f"source: folder, path: {root}")
    run_refused(tmp_path, exp, str(root / name), *needles)


@pytest.mark.parametrize(
    "image",
    [lambda i: None, lambda i: b"\x89PNG\r\n\x1a\n garbage", truncated_png],
    ids=["images_missing", "images_corrupt", "images_truncated"],
)
def test_run_refuses_folder_without_readable_images(tmp_path: Path, image) -> None:
    root = folder_data(tmp_path / "d", image)
    exp = data_yaml(tmp_path, f"source: folder, path: {root}")
    run_refused(tmp_path, exp, str(root), "no usable image-caption pair",
                "unreadable or missing images")  # fmt: skip


def test_run_refuses_webdataset_glob_matching_nothing(tmp_path: Path) -> None:
    exp = data_yaml(tmp_path, f"source: webdataset, path: '{tmp_path}/shards/*.tar'")
    run_refused(tmp_path, exp, f"{tmp_path}/shards/*.tar", "no webdataset shard")


def test_run_refuses_webdataset_of_shards_cut_short(tmp_path: Path) -> None:
    for k in range(2):  # cut inside the first member's data: no sample survives
        shard(tmp_path / "shards" / f"{k:05d}.tar", cut=520)
    exp = data_yaml(tmp_path, f"source: webdataset, path: '{tmp_path}/shards/*.tar'")
    run_refused(tmp_path, exp, "no usable image-caption pair", "2 shards cut short")


@pytest.mark.parametrize("annotations", ["missing", "not_json"])
def test_run_refuses_bad_coco_annotations(tmp_path: Path, annotations: str) -> None:
    root = folder_data(tmp_path / "images")
    ann = tmp_path / "captions_train.json"
    if annotations == "not_json":
        ann.write_text('{"images": [')
    exp = data_yaml(tmp_path, f"source: coco, path: {root}, annotations: {ann}")
    needle = "data.annotations must name" if annotations == "missing" else "not a COCO"
    run_refused(tmp_path, exp, str(ann), needle)


def test_run_refuses_bad_metric_suite(tmp_path: Path) -> None:
    (tmp_path / "suite.yaml").write_text("metrics: [fd, fid_typo]\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"base: {MICRO}\nmetrics: suite.yaml\n")
    run_refused(tmp_path, exp, str(tmp_path / "suite.yaml"), "metrics[1]", "'fid_typo'")


def test_run_refuses_missing_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present here")
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"base: {MICRO}\ntrain: {{accelerator: gpu}}\n")
    run_refused(tmp_path, exp, "train.accelerator: gpu")


# --------------------------------------------------------------------------- output
def test_run_refuses_output_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    out = run_cli("run", str(MICRO), "--out", str(tmp_path / "file" / "runs"), "--no-progress",
                  env={"HARNESS_CACHE": str(tmp_path / "cache")})  # fmt: skip
    refused(out, "cannot write the output folder", str(tmp_path / "file"))
    assert_nothing_written(tmp_path / "cache")


def test_run_refuses_cache_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    out = run_cli("run", str(MICRO), "--out", str(tmp_path / "runs"), "--no-progress",
                  env={"HARNESS_CACHE": str(tmp_path / "file" / "cache")})  # fmt: skip
    refused(out, "cannot write the stage cache", str(tmp_path / "file"))
    assert_nothing_written(tmp_path / "runs")


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A folder this process cannot write to (root ignores mode bits: chattr +i then)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if not chattr or subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root without chattr +i: no way to make a read-only folder")
    yield folder
    subprocess.run([chattr, "-i", str(folder)], check=True)


def test_run_refuses_read_only_output(tmp_path: Path, read_only_dir: Path) -> None:
    out = run_cli("run", str(MICRO), "--out", str(read_only_dir), "--no-progress",
                  env={"HARNESS_CACHE": str(tmp_path / "cache")})  # fmt: skip
    refused(out, "cannot write the output folder", str(read_only_dir))
    assert_nothing_written(tmp_path / "cache", read_only_dir)


def test_disk_full_while_sampling_caches_nothing(micro_cache: Path, tmp_path: Path) -> None:
    """RLIMIT_FSIZE stands in for a full disk (EFBIG instead of ENOSPC; same code path): the
    stages load from the cache, sampling runs, and writing the samples fails."""
    cache = tmp_path / "cache"
    shutil.copytree(micro_cache, cache)
    shutil.rmtree(cache / "samples")
    limit = 16 * 1024  # the micro samples (16 x 3 x 32 x 32 bytes) do not fit

    def small_files() -> None:
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))

    env = {**child_env(), "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(cache),
           "WANDB_MODE": "disabled"}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(MICRO), "--out", str(tmp_path / "runs"),
         "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, preexec_fn=small_files,
    )  # fmt: skip
    refused(out, str(cache / "samples"), "nothing was cached")
    assert not (cache / "samples").exists() or not [
        p for p in (cache / "samples").iterdir() if not p.name.endswith(".lock")
    ]  # no entry, no temporary: only the (empty) lock file of the key
    assert files_under(tmp_path / "runs") == []


def test_checkpoint_that_does_not_fit_caches_nothing(tmp_path: Path) -> None:
    """torch.save reports a full disk as a RuntimeError without errno or path."""
    import torch

    from harness.cache import StageCache

    def train(tmp: Path) -> None:
        torch.save({"w": torch.zeros(100_000)}, tmp / "model.pt")  # 400 kB

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(HarnessError) as err:
            StageCache(tmp_path).resolve("decoder", "k", train)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "disk full" in err.value.message and err.value.where == str(tmp_path / "decoder")
    assert [p.name for p in (tmp_path / "decoder").iterdir()] == [".k.lock"]


# --------------------------------------------------------------------------- other verbs
def test_vary_refuses_missing_image_before_training(tmp_path: Path) -> None:
    out = run_cli("vary", str(MICRO), str(tmp_path / "nope.png"),
                  env={"HARNESS_CACHE": str(tmp_path / "cache")})  # fmt: skip
    refused(out, str(tmp_path / "nope.png"), "cannot read image")
    assert_nothing_written(tmp_path / "cache")


def test_report_refuses_a_damaged_results_json(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text('{"rows": [')
    refused(run_cli("report", str(tmp_path)), str(tmp_path / "results.json"), "not a results")


def test_score_names_an_unreadable_image(tmp_path: Path) -> None:
    from harness.metrics.score import read_folder

    (tmp_path / "a.png").write_bytes(png(1))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(HarnessError, match="cannot read image") as err:
        read_folder(tmp_path)
    assert str(tmp_path / "b.png") in str(err.value)


# --------------------------------------------------------------------------- skip and count
def summary(caplog) -> str:
    """The one warning the build logged: what it kept and what it skipped, counted."""
    found = [r for r in caplog.records if r.name == "harness.data"]
    assert [r.levelno for r in found] == [logging.WARNING], found
    return found[0].getMessage()


def test_some_bad_caption_rows_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    good = [json.dumps({"file": f"{i:03d}.png", "caption": f"thing {i}"}) for i in range(N_IMAGES)]
    bad = ["not json", "[1, 2]", json.dumps({"file": "000.png"}), '"000.png caption"']
    root = folder_data(tmp_path / "d", rows=[*good[:5], *bad, *good[5:]])
    cfg = DataConfig(source="folder", path=str(root), resolution=8)
    with caplog.at_level(logging.INFO, logger="harness.data"):
        ds = build_source(cfg, "train")
    assert len(ds) == len(train_keys())  # every good row of the train split
    assert "skipped 4 bad caption rows" in summary(caplog)


def test_some_bad_images_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    corrupt, truncated, missing = train_keys()[:3]

    def image(i: int) -> bytes | None:
        return {corrupt: b"garbage", truncated: truncated_png(i), missing: None}.get(i, png(i))

    root = folder_data(tmp_path / "d", image)
    with caplog.at_level(logging.INFO, logger="harness.data"):
        ds = build_source(DataConfig(source="folder", path=str(root), resolution=8), "train")
    assert len(ds) == len(train_keys()) - 3
    assert "3 unreadable or missing images" in summary(caplog)


def test_shard_cut_short_keeps_the_samples_before_the_cut(tmp_path: Path, caplog) -> None:
    whole = shard(tmp_path / "a" / "00000.tar")
    cut = shard(tmp_path / "b" / "00000.tar", cut=whole.stat().st_size // 2)
    cfg = DataConfig(source="webdataset", resolution=8)
    full = build_source(DataConfig(**{**cfg.__dict__, "path": str(whole)}), "train")
    with caplog.at_level(logging.INFO, logger="harness.data"):
        part = build_source(DataConfig(**{**cfg.__dict__, "path": str(cut)}), "train")
    assert 0 < len(part) < len(full) and part.keys == full.keys[: len(part)]
    assert "1 shards cut short" in summary(caplog)
