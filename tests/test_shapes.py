"""Tests for the embedded ``shapes`` dataset (harness/data/shapes.py)."""

from __future__ import annotations

import hashlib
import itertools
import re

import numpy as np
import pytest
import torch

from harness.data.shapes import (
    BACKGROUND,
    COLOURS,
    PALETTE,
    POSITIONS,
    SHAPES,
    SIZES,
    SPLITS,
    ShapesDataset,
    ShapesSpec,
    canonical_description,
    caption,
    render,
    split_of,
)

_OBJ = rf"a ({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})"
_POS = "|".join(sorted(POSITIONS, key=len, reverse=True))  # longest first: "top left" > "top"
_REL = "to the left of|to the right of|above|below"
ONE_RE = re.compile(rf"^{_OBJ} in the ({_POS})( of the image)?$")
MANY_RE = re.compile(rf"^{_OBJ} ({_REL}) {_OBJ}(?:, and {_OBJ} in the ({_POS}))?$")
RADIUS_FRACTION = {"small": 0.09, "large": 0.15}  # the brief's radii, independent of the module


@pytest.fixture(scope="module")
def splits() -> dict[str, ShapesDataset]:
    spec = ShapesSpec(resolution=8, max_objects=3, seed=3)
    return {s: ShapesDataset(s, 300, spec) for s in SPLITS}


def _row_of(match: tuple[str, str, str]) -> list[int]:
    size, colour, shape = match
    return [SHAPES.index(shape), COLOURS.index(colour), SIZES.index(size)]


def _cell(pos: int) -> tuple[int, int]:
    return pos // 3, pos % 3


def test_vocabularies() -> None:
    assert SHAPES == ("circle", "square", "triangle", "diamond")
    assert SIZES == ("small", "large")
    assert len(COLOURS) == 6 and len(set(COLOURS)) == 6
    assert POSITIONS[0] == "top left" and POSITIONS[4] == "center"
    assert POSITIONS[5] == "right" and POSITIONS[7] == "bottom"
    # Colours must stay distinguishable from each other and from the background.
    pal = np.vstack([PALETTE, BACKGROUND])
    dists = np.linalg.norm(pal[:, None] - pal[None], axis=-1)
    assert dists[~np.eye(len(pal), dtype=bool)].min() > 60


def test_deterministic_and_seed_sensitive() -> None:
    spec = ShapesSpec(resolution=16, seed=7)
    a, b = ShapesDataset("train", 50, spec), ShapesDataset("train", 50, spec)
    assert a.images.tobytes() == b.images.tobytes()
    assert a.captions == b.captions
    assert np.array_equal(a.attributes, b.attributes)
    c = ShapesDataset("train", 50, ShapesSpec(resolution=16, seed=8))
    assert a.images.tobytes() != c.images.tobytes()
    assert a.captions != c.captions


def test_smaller_dataset_is_a_prefix() -> None:
    spec = ShapesSpec(resolution=12)
    small, big = ShapesDataset("val", 20, spec), ShapesDataset("val", 45, spec)
    assert small.captions == big.captions[:20]
    assert np.array_equal(small.images, big.images[:20])


def test_splits_are_disjoint(splits: dict[str, ShapesDataset]) -> None:
    canon = {s: {canonical_description(a) for a in ds.attributes} for s, ds in splits.items()}
    for s, ds in splits.items():
        assert len(ds) == 300
        assert all(split_of(d) == s for d in canon[s])
    for s1, s2 in itertools.combinations(SPLITS, 2):
        assert not set(splits[s1].captions) & set(splits[s2].captions)
        assert not canon[s1] & canon[s2]


# sha256 of the captions, images, attributes and counts of `splits` as generated before the
# caption-detail knob existed (issue 20): full detail must keep the data bit for bit.
ORIGINAL = {"train": "d4ea57ed528aaf93", "val": "21ed5c88c5d1501c", "test": "bd8d28a6bcf26b34"}


def test_full_detail_is_the_original_data(splits: dict[str, ShapesDataset]) -> None:
    for split, ds in splits.items():
        h = hashlib.sha256("\n".join(ds.captions).encode())
        for array in (ds.images, ds.attributes, ds.n_objects):
            h.update(array.tobytes())
        assert h.hexdigest()[:16] == ORIGINAL[split], split


def test_split_streams_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    # Same seed, different splits: no random stream (scenes, templates, jitter) may be shared.
    seeds: dict[str, list[tuple[int, ...]]] = {}
    real = np.random.default_rng
    for split in SPLITS:
        seeds[split] = []
        monkeypatch.setattr(
            np.random, "default_rng", lambda s, _l=seeds[split]: _l.append(tuple(s)) or real(s)
        )
        ShapesDataset(split, 5, ShapesSpec(resolution=8))
    monkeypatch.setattr(np.random, "default_rng", real)
    assert all(seeds.values())
    for s1, s2 in itertools.combinations(SPLITS, 2):
        assert not set(seeds[s1]) & set(seeds[s2])


def test_split_buckets_roughly_80_10_10() -> None:
    counts = {s: 0 for s in SPLITS}
    for i in range(4000):
        counts[split_of(f"scene {i}")] += 1
    assert 0.76 < counts["train"] / 4000 < 0.84
    assert 0.07 < counts["val"] / 4000 < 0.13
    assert split_of("a fixed description") == split_of("a fixed description")


def test_caption_determines_canonical_description(splits: dict[str, ShapesDataset]) -> None:
    seen: dict[str, str] = {}
    for ds in splits.values():
        for text, attrs in zip(ds.captions, ds.attributes, strict=True):
            assert seen.setdefault(text, canonical_description(attrs)) == seen[text]
    # ...and it keeps every object the caption names (else distinct captions would merge).
    for attrs, n in zip(splits["train"].attributes, splits["train"].n_objects, strict=True):
        desc = canonical_description(attrs)
        phrases = [f"{SIZES[z]} {COLOURS[c]} {SHAPES[s]}" for s, c, z, _ in attrs[:n].tolist()]
        assert all(p in desc for p in phrases), desc
        assert len(re.findall("|".join(SHAPES), desc)) == n, desc
    # Swapping the pair flips the caption's relation but not the canonical description.
    attrs = np.array([[0, 0, 0, 3], [1, 2, 1, 5], [-1, -1, -1, -1]], dtype=np.int16)
    swapped = attrs[[1, 0, 2]]
    assert caption(attrs) != caption(swapped)
    assert canonical_description(attrs) == canonical_description(swapped)


def test_captions_agree_with_attributes(splits: dict[str, ShapesDataset]) -> None:
    for ds in splits.values():
        for text, attrs, n in zip(ds.captions, ds.attributes, ds.n_objects, strict=True):
            rows = attrs[:n].tolist()
            if n == 1:
                m = ONE_RE.match(text)
                assert m, text
                assert _row_of(m.groups()[:3]) + [POSITIONS.index(m.group(4))] == rows[0]
                continue
            m = MANY_RE.match(text)
            assert m, text
            g = m.groups()
            assert [_row_of(g[:3]), _row_of(g[4:7])] == [r[:3] for r in rows[:2]], text
            (ra, ca), (rb, cb) = _cell(rows[0][3]), _cell(rows[1][3])
            horizontal = abs(ca - cb) > abs(ra - rb)
            expected = {
                "to the left of": horizontal and ca < cb,
                "to the right of": horizontal and ca > cb,
                "above": not horizontal and ra < rb,
                "below": not horizontal and ra > rb,
            }
            assert expected[g[3]], text
            assert (g[7] is not None) == (n == 3), text
            if n == 3:
                assert _row_of(g[7:10]) + [POSITIONS.index(g[10])] == rows[2], text


def test_object_counts_and_attribute_layout() -> None:
    ds = ShapesDataset("train", 200, ShapesSpec(resolution=8, min_objects=2, max_objects=3))
    assert ds.attributes.dtype == np.int16 and ds.attributes.shape == (200, 3, 4)
    assert ds.n_objects.dtype == np.int8
    assert set(ds.n_objects.tolist()) == {2, 3}
    for attrs, n in zip(ds.attributes, ds.n_objects, strict=True):
        assert (attrs[n:] == -1).all() and (attrs[:n] >= 0).all()
        assert len(set(attrs[:n, 3].tolist())) == n  # one object per grid cell
    default = ShapesDataset("test", 100, ShapesSpec(resolution=8))
    assert default.attributes.shape == (100, 2, 4)
    assert set(default.n_objects.tolist()) == {1, 2}


def test_objects_are_drawn_where_and_as_large_as_described() -> None:
    res = 64
    ds = ShapesDataset("train", 120, ShapesSpec(resolution=res, max_objects=3, seed=1))
    bounds = [round(i * res / 3) for i in range(4)]
    for img, attrs, n in zip(ds.images, ds.attributes, ds.n_objects, strict=True):
        occupied = {}
        for shape, colour, size, pos in attrs[:n].tolist():
            occupied[pos] = colour
            row, col = _cell(pos)
            centre = img[int((row + 0.5) * res / 3), int((col + 0.5) * res / 3)]
            assert np.array_equal(centre, PALETTE[colour]), (SHAPES[shape], centre)
            # Coverage-weighted area inside the object's cell must match its size and shape.
            tile = img[bounds[row] : bounds[row + 1], bounds[col] : bounds[col + 1]]
            tint = PALETTE[colour] - BACKGROUND
            alpha = ((tile.astype(np.float32) - BACKGROUND) @ tint) / (tint @ tint)
            r = RADIUS_FRACTION[SIZES[size]] * res
            expected = {"circle": np.pi, "square": 4.0, "triangle": 2.0, "diamond": 2.0}
            assert alpha.sum() == pytest.approx(expected[SHAPES[shape]] * r * r, rel=0.1)
        for pos in set(range(9)) - set(occupied):
            row, col = _cell(pos)
            empty = img[int((row + 0.5) * res / 3), int((col + 0.5) * res / 3)]
            assert np.array_equal(empty, BACKGROUND)


def test_render_geometry_without_jitter() -> None:
    # One large red square at the centre of a 30 px frame: half-side 4.5 px around x = 15.
    square = np.array([[[1, 0, 1, 4]]], dtype=np.int16)
    img = render(square, np.array([1]), 30)[0]
    assert np.array_equal(img[15, 11], PALETTE[0]) and np.array_equal(img[15, 18], PALETTE[0])
    assert np.array_equal(img[15, 9], BACKGROUND) and np.array_equal(img[15, 20], BACKGROUND)
    assert not np.array_equal(img[15, 10], BACKGROUND)  # anti-aliased edge pixel
    assert not np.array_equal(img[15, 10], PALETTE[0])
    # The triangle points up: its rows widen downwards.
    tri = render(np.array([[[2, 1, 1, 4]]], dtype=np.int16), np.array([1]), 64)[0]
    ink = (tri != BACKGROUND).any(-1).sum(1)
    assert ink[38] > ink[32] > ink[26] > 0


@pytest.mark.parametrize("res", [8, 17, 64])
def test_any_resolution(res: int) -> None:
    ds = ShapesDataset("val", 40, ShapesSpec(resolution=res, max_objects=3))
    assert ds.images.shape == (40, res, res, 3) and ds.images.dtype == np.uint8
    # Every image shows something besides background, even at 8 px.
    assert ((ds.images != BACKGROUND).any(-1).reshape(40, -1).any(1)).all()
    image, text = ds[3]
    assert isinstance(text, str) and text == ds.captions[3]
    assert image.dtype == torch.uint8 and image.shape == (3, res, res)
    assert torch.equal(image.permute(1, 2, 0), torch.from_numpy(ds.images[3]))


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError):
        ShapesDataset("validation", 10, ShapesSpec())
    with pytest.raises(ValueError):
        ShapesDataset("train", 10, ShapesSpec(max_objects=4))
    with pytest.raises(ValueError):
        ShapesDataset("train", 10, ShapesSpec(min_objects=0))
    assert len(ShapesDataset("train", 0, ShapesSpec())) == 0
