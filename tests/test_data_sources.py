"""Bring-your-own data sources on tiny fixtures: folder, webdataset shards, COCO captions."""

from __future__ import annotations

import csv
import io
import json
import logging
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.config import DataConfig
from harness.data import SPLITS, build_source, decode_image
from harness.data.shapes import split_of
from harness.errors import HarnessError

RES = 8
N = 40  # keys 000..039: 32 train, 1 val, 7 test under the stable hash


def colour_of(i: int) -> tuple[int, int, int]:
    return (6 * i, 255 - 6 * i, (40 * i) % 256)


def png_bytes(i: int) -> bytes:
    """A 24x16 image: its centre 16x16 square is colour_of(i), the side bands black."""
    pixels = np.zeros((16, 24, 3), np.uint8)
    pixels[:, 4:20] = colour_of(i)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def keys() -> list[str]:
    return [f"{i:03d}" for i in range(N)]


def train_keys() -> list[str]:
    return [k for k in keys() if split_of(k) == "train"]


@pytest.fixture
def bad():
    """Two train keys made unusable: one corrupt image, one empty caption."""
    corrupt, empty = train_keys()[:2]
    return {"corrupt": corrupt, "empty": empty}


def sample(key: str, bad: dict) -> tuple[bytes, str]:
    data = b"\xff\xd8 not a jpeg" if key == bad["corrupt"] else png_bytes(int(key))
    caption = "  " if key == bad["empty"] else f"caption {key}"
    return data, caption


def check_split(ds, split: str, bad: dict, name=str) -> None:
    """ds holds exactly the usable keys whose name(key) hashes to split, in key order."""
    expected = [k for k in keys() if split_of(name(k)) == split and k not in bad.values()]
    assert ds.keys == [name(k) for k in expected]
    assert len(ds) == len(expected)
    for i in range(len(ds)):
        image, caption = ds[i]
        key = expected[i]
        assert image.dtype == torch.uint8 and image.shape == (3, RES, RES)
        assert caption == f"caption {key}"
        # The black side bands are cropped away: the whole image has the key's colour.
        colour = torch.tensor(colour_of(int(key)))[:, None, None]
        assert (image.int() - colour).abs().max() <= 2


def check_log(caplog, source: str, lines: int) -> None:
    """One summary line per source built; the one bad image and caption counted once."""
    found = [r.getMessage() for r in caplog.records if r.getMessage().startswith(source)]
    assert len(found) == lines, found
    text = " ".join(found)
    assert text.count("1 unreadable or missing images") == 1
    assert text.count("1 empty captions") == 1


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_folder_source(tmp_path: Path, bad: dict, caplog, fmt: str) -> None:
    rows = []
    for key in keys():
        data, caption = sample(key, bad)
        (tmp_path / f"{key}.png").write_bytes(data)
        rows.append({"file": f"{key}.png", "caption": caption})
    if fmt == "jsonl":
        (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    else:
        with (tmp_path / "captions.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["file", "caption"])
            writer.writeheader()
            writer.writerows(rows)
    cfg = DataConfig(source="folder", path=str(tmp_path), resolution=RES)
    with caplog.at_level(logging.INFO, logger="harness.data"):
        splits = {split: build_source(cfg, split) for split in SPLITS}
    for split, ds in splits.items():  # split by the file's path: disjoint, 80/10/10
        check_split(ds, split, bad, name=lambda k: f"{k}.png")
    check_log(caplog, "folder", lines=3)
    capped = build_source(replace(cfg, n_train=5), "train")
    assert len(capped) == 5 and capped.keys == splits["train"].keys[:5]


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_webdataset_source(tmp_path: Path, bad: dict, caplog) -> None:
    shards: list[list[tuple[str, bytes]]] = [[], []]
    for i, key in enumerate(keys()):
        data, caption = sample(key, bad)
        shards[i % 2] += [(f"{key}.jpg", data), (f"{key}.txt", caption.encode()),
                          (f"{key}.json", b"{}")]  # fmt: skip
    shards[0].append(("999.jpg", png_bytes(1)))  # an image without a caption
    for n, members in enumerate(shards):
        write_shard(tmp_path / f"{n:05d}.tar", members)
    (tmp_path / "00009.tar").write_bytes(b"truncated")  # an unreadable shard
    cfg = DataConfig(source="webdataset", path=str(tmp_path / "*.tar"), resolution=RES)
    with caplog.at_level(logging.INFO, logger="harness.data"):
        ds = build_source(cfg, "train")
    usable = [k for k in keys() if split_of(k) == "train" and k not in bad.values()]
    in_shard_order = [k for k in usable if int(k) % 2 == 0] + [k for k in usable if int(k) % 2]
    assert ds.keys == in_shard_order
    check_log(caplog, "webdataset", lines=1)
    assert "1 unreadable shards" in caplog.text and "1 samples without a caption" in caplog.text
    for i in range(len(ds)):
        image, caption = ds[i]
        key = caption.split()[-1]
        assert ds.keys[ds.image_index[i]] == key
        assert (image.int() - torch.tensor(colour_of(int(key)))[:, None, None]).abs().max() <= 2
    with pytest.raises(HarnessError, match="no webdataset shard"):
        build_source(DataConfig(source="webdataset", path=str(tmp_path / "none*.tar")), "train")


def test_coco_source(tmp_path: Path, bad: dict, caplog) -> None:
    images, annotations = [], []
    (tmp_path / "images").mkdir()
    for key in keys():
        data, caption = sample(key, bad)
        image_id = int(key)
        (tmp_path / "images" / f"{key}.jpg").write_bytes(data)
        images.append({"id": image_id, "file_name": f"{key}.jpg"})
        for j, text in enumerate((caption, f"caption {key} again")):  # 2 captions per image
            annotations.append({"id": 100 * image_id + j, "image_id": image_id, "caption": text})
    ann = tmp_path / "captions.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations}))
    # COCO splits by image id ("7", not "007"), so the expected splits are recomputed.
    cfg = DataConfig(source="coco", path=str(tmp_path / "images"), annotations=str(ann),
                     resolution=RES)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="harness.data"):
        splits = {s: build_source(cfg, s) for s in SPLITS}
    corrupt, empty = int(bad["corrupt"]), int(bad["empty"])
    for split, ds in splits.items():
        expected = [i for i in range(N) if split_of(str(i)) == split and i != corrupt]
        assert ds.keys == [str(i) for i in expected]  # split by image id, all its captions
        assert len(ds) == 2 * len(expected) - (empty in expected)
        for i in range(len(ds)):
            image, caption = ds[i]
            key = caption.split()[1]
            assert ds.keys[ds.image_index[i]] == str(int(key))
            assert image.shape == (3, RES, RES)
    check_log(caplog, "coco", lines=3)
    with pytest.raises(HarnessError, match="annotations"):
        build_source(DataConfig(source="coco", path=str(tmp_path), annotations=""), "train")


def test_no_usable_pair_names_the_path(tmp_path: Path) -> None:
    rows = [{"file": f"{k}.png", "caption": "x"} for k in keys()]  # no image exists
    (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(HarnessError) as err:
        build_source(DataConfig(source="folder", path=str(tmp_path), resolution=RES), "train")
    assert str(tmp_path) in str(err.value) and "no usable" in str(err.value)
    (tmp_path / "captions.jsonl").unlink()
    with pytest.raises(HarnessError, match="captions.jsonl or captions.csv") as err:
        build_source(DataConfig(source="folder", path=str(tmp_path)), "train")
    assert str(tmp_path) in str(err.value)


def test_decode_image_crops_centre() -> None:
    out = decode_image(png_bytes(3), 4)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - np.array(colour_of(3))).max() <= 2
