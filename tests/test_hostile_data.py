"""Hostile bring-your-own data: decompression bombs, truncated JPEGs, links out of the data
folder, megabyte captions, CMYK / 16-bit / palette / alpha images. Each is converted by a
stated rule or skipped, and counted in the one summary line per split; every split still
builds and `validate` passes."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import struct
import tarfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.config import DataConfig
from harness.data import SPLITS, build_source, decode_image
from harness.data.decode import MAX_CAPTION_CHARS, TOO_LARGE, Skip
from harness.data.shapes import split_of
from tests.conftest import MICRO, run_cli
from tests.test_bad_inputs import png, refused

N = 40
RES = 8


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_raw(w: int, h: int, depth: int, colour: int, rows: bytes) -> bytes:
    """A PNG written by hand: any declared size and bit depth, `rows` (filtered scanlines)
    compressed as they are."""
    header = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9))
            + chunk(b"IEND", b""))  # fmt: skip


def bomb() -> bytes:
    """10000 x 10000 1-bit black: 12 KB on disk, 100 Mpx (300 MB as RGB) decoded; under
    PIL's own error threshold, so only the harness's limit stops it."""
    w = h = 10_000
    return png_raw(w, h, 1, 0, (b"\0" + bytes(w // 8)) * h)


def header_bomb() -> bytes:
    """Declares 50000 x 50000 with almost no data: PIL itself refuses to open it."""
    return png_raw(50_000, 50_000, 8, 2, b"\0" * 16)


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def grey16(value: int = 40000) -> bytes:
    return encode(Image.fromarray(np.full((8, 8), value, np.uint16)))


def cmyk() -> bytes:
    return encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95)  # red


def palette(transparent: bool) -> bytes:
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 255, 0, 255, 0])  # index 0 blue, 1 green
    return encode(im, transparency=0) if transparent else encode(im)


def alpha(mode: str) -> bytes:
    colour = (10, 200, 10, 0) if mode == "RGBA" else (10, 0)  # fully transparent
    return encode(Image.new(mode, (8, 8), colour))


def truncated_jpeg(i: int) -> bytes:
    pixels = np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(pixels), "JPEG")
    return data[: len(data) // 2]


def train_names() -> list[str]:
    return [f"{i:03d}.png" for i in range(N) if split_of(f"{i:03d}.png") == "train"]


def counts(caplog) -> Counter:
    """Every count in the summary lines of the splits built, summed over the lines."""
    total: Counter = Counter()
    for record in caplog.records:
        if record.name == "harness.data":
            for n, what in re.findall(r"(\d+) ([a-zA-Z0-9 ()-]+?)(?=,|;|$)", record.getMessage()):
                total[what] += int(n)
    return total


def build_all(cfg: DataConfig, caplog) -> Counter:
    with caplog.at_level(logging.INFO, logger="harness.data"):
        for split in SPLITS:
            assert len(build_source(cfg, split)) > 0
    return counts(caplog)


# --------------------------------------------------------------------------- conversions
def test_modes_are_converted_by_the_stated_rules() -> None:
    changed: Counter = Counter()
    assert (decode_image(grey16(40000), 4, changed) == 156).all()  # 40000/65535*255, not 255
    red = decode_image(cmyk(), 4, changed)[..., :].mean(axis=(0, 1))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    assert (decode_image(palette(False), 4, changed) == [0, 0, 255]).all()
    for data in (palette(True), alpha("RGBA"), alpha("LA")):  # transparent: white
        assert (decode_image(data, 4, changed) == 255).all()
    assert changed == {"16-bit images (scaled to 8 bits)": 1, "CMYK images": 1,
                       "images with alpha (put on white)": 3}  # fmt: skip


def test_bombs_are_refused_from_their_header() -> None:
    for data in (bomb(), header_bomb()):
        with pytest.raises(Skip) as why:
            decode_image(data, 4)
        assert why.value.reason == TOO_LARGE == "images over 64 Mpx"
    assert len(bomb()) < 50_000


def test_a_truncated_jpeg_is_unreadable() -> None:
    with pytest.raises(OSError, match="truncated"):
        decode_image(truncated_jpeg(0), 4)


# --------------------------------------------------------------------------- a folder source
def hostile_folder(tmp_path: Path) -> Path:
    """40 good images, then 12 train images replaced by hostile ones, and two captions rows
    that name files outside the folder."""
    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.png").write_bytes(png(99))  # readable: only the check stops it
    for i in range(N):
        (root / f"{i:03d}.png").write_bytes(png(i))
    names = train_names()
    hostile = {names[0]: bomb(), names[1]: header_bomb(), names[2]: truncated_jpeg(2),
               names[4]: cmyk(), names[5]: grey16(), names[6]: palette(False),
               names[7]: palette(True), names[8]: alpha("LA"), names[9]: alpha("RGBA")}  # fmt: skip
    for name, data in hostile.items():
        (root / name).write_bytes(data)
    (root / names[3]).unlink()
    (root / names[3]).symlink_to(outside / "secret.png")
    (root / names[10]).unlink()
    os.mkfifo(root / names[10])  # reading it would block forever
    rows = [{"file": f"{i:03d}.png", "caption": f"thing {i}"} for i in range(N)]
    rows[int(names[11][:3])]["caption"] = "a cat " * 200_000  # 1.2 MB
    rows += [{"file": "../outside/secret.png", "caption": "x"},
             {"file": str(outside / "secret.png"), "caption": "y"}]  # fmt: skip
    (root / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


@pytest.mark.timeout(120)
def test_hostile_folder_builds_every_split_and_counts(tmp_path: Path, caplog) -> None:
    root = hostile_folder(tmp_path)
    found = build_all(DataConfig(source="folder", path=str(root), resolution=RES), caplog)
    assert found["images over 64 Mpx"] == 2
    assert found["unreadable or missing images"] == 2  # the truncated JPEG, the pipe
    assert found["files outside the data folder"] == 3  # the symlink, `../`, an absolute path
    assert found["images with alpha (put on white)"] == 3
    assert found["CMYK images"] == 1 and found["16-bit images (scaled to 8 bits)"] == 1
    assert found[f"captions cut to {MAX_CAPTION_CHARS} characters"] == 1
    train = build_source(DataConfig(source="folder", path=str(root), resolution=RES), "train")
    assert max(len(c) for c in train.captions) == MAX_CAPTION_CHARS
    assert len(train) == len(train_names()) - 2 - 2 - 1  # bombs, unreadable, the symlink


def test_validate_passes_on_hostile_data(tmp_path: Path) -> None:
    root = hostile_folder(tmp_path)
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"base: {MICRO}\ndata: {{source: folder, path: {root}}}\n")
    out = run_cli("validate", str(exp), timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr


def test_vary_refuses_a_bomb_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(bomb())
    out = run_cli("vary", str(MICRO), str(tmp_path / "bomb.png"),
                  env={"HARNESS_CACHE": str(tmp_path / "cache")})  # fmt: skip
    refused(out, str(tmp_path / "bomb.png"), "images over 64 Mpx")
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------- a webdataset shard
def hostile_shard(path: Path) -> Path:
    members: list[tuple[str, bytes | None, bytes]] = []  # (name, data or None for a link)
    for i in range(N):
        members += [(f"{i:03d}.png", png(i), b""), (f"{i:03d}.txt", b"thing %d" % i, b"")]
    names = [n[:3] for n in train_names()]
    swap = {f"{names[0]}.png": bomb(), f"{names[1]}.png": cmyk(), f"{names[2]}.png": grey16(),
            f"{names[3]}.png": alpha("RGBA"), f"{names[4]}.txt": b"\xff" * 2_000_000}  # fmt: skip
    members = [(n, swap.get(n, d), t) for n, d, t in members]
    members += [("evil.png", None, b"/etc/passwd"), ("evil.txt", None, b"000.txt")]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, target in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.SYMTYPE if name.endswith(".png") else tarfile.LNKTYPE
                info.linkname = target.decode()
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return path


def test_hostile_shard_builds_every_split_and_counts(tmp_path: Path, caplog) -> None:
    shard = hostile_shard(tmp_path / "00000.tar")
    cfg = DataConfig(source="webdataset", path=str(shard), resolution=RES)
    found = build_all(cfg, caplog)
    assert found["links in shards (not followed)"] == 2 * len(SPLITS)  # counted per scan
    assert found["images over 64 Mpx"] == 1
    assert found["CMYK images"] == 1 and found["16-bit images (scaled to 8 bits)"] == 1
    assert found["images with alpha (put on white)"] == 1
    assert found[f"captions cut to {MAX_CAPTION_CHARS} characters"] == 1


@pytest.mark.timeout(120)
def test_a_glob_matching_a_pipe_or_a_folder_skips_them(tmp_path: Path, caplog) -> None:
    """tarfile would block forever on a pipe; a folder is no shard either."""
    hostile_shard(tmp_path / "00000.tar")
    os.mkfifo(tmp_path / "00001.tar")
    (tmp_path / "00002.tar").mkdir()
    cfg = DataConfig(source="webdataset", path=str(tmp_path / "*.tar"), resolution=RES)
    with caplog.at_level(logging.INFO, logger="harness.data"):
        assert len(build_source(cfg, "train")) > 0
    assert counts(caplog)["matches that are not files"] == 2
