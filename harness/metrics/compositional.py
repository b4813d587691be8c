"""Compositional accuracy on shapes: does a sample show what its caption asked for?

A caption states a list of objects (shape, colour, size) and, per object, either its cell
("in the top left") or -- for the first two objects of a multi-object caption -- only their
relation ("to the left of"), never their cells. A sample is correct when the attribute
classifier finds exactly as many objects as the caption lists (captions list every object)
and the objects can be matched one-to-one to the caption's: equal shape, colour and size,
the stated cell where one is stated, and for the pair the stated relation (shapes.relation:
the dominant axis between the two cells). Nothing the caption does not state is scored.

That whole-caption test is strict: a small decoder can sit at 0 for every arm. Object recall
is its graded companion: the share of the caption's objects (shape, colour and size, in any
cell) found in the sample, matched one-to-one, averaged per sample.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DataConfig
from ..config.hashing import digest, training_fields
from ..data import build_source
from ..data.shapes import COLOURS, POSITIONS, SHAPES, SIZES, relation
from ..nets.attribute_classifier import CELLS, AttributeClassifier
from ..stages.common import write_stage_metrics
from . import uncertainty as U

CLASSIFIER_VERSION = 1  # bump when the net or its training changes
MODEL_FILE = "model.pt"


@dataclass(frozen=True)
class Claim:
    """What one caption states. objects: (shape, colour, size, cell or -1 = not stated)."""

    objects: tuple[tuple[int, int, int, int], ...]
    relation: str | None = None  # objects[0] <relation> objects[1]


def claim_of(rows: np.ndarray | list) -> Claim:
    """Attribute rows (K, 4) of a shapes scene -> what its caption states (see shapes.caption)."""
    present = [tuple(int(v) for v in r) for r in np.asarray(rows).tolist() if r[0] >= 0]
    if len(present) == 1:
        return Claim((present[0],))
    a, b = present[0], present[1]
    pair = ((*a[:3], -1), (*b[:3], -1))
    return Claim(pair + tuple(present[2:]), relation(a[3], b[3]))


_OBJ = rf"a ({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})"
_POS = "|".join(sorted(POSITIONS, key=len, reverse=True))  # "top left" before "top"
_REL = "to the left of|to the right of|above|below"
_ONE = re.compile(rf"^{_OBJ} in the ({_POS})( of the image)?$")
_PAIR = re.compile(rf"^{_OBJ} ({_REL}) {_OBJ}((?:, and {_OBJ} in the (?:{_POS}))*)$")
_EXTRA = re.compile(rf", and {_OBJ} in the ({_POS})")


def _obj(size: str, colour: str, shape: str, cell: int = -1) -> tuple[int, int, int, int]:
    return (SHAPES.index(shape), COLOURS.index(colour), SIZES.index(size), cell)


def parse_caption(text: str) -> Claim | None:
    """A shapes caption -> its Claim; None when the text is not a shapes caption."""
    text = text.strip().lower()
    if m := _ONE.match(text):
        return Claim((_obj(*m.group(1, 2, 3), POSITIONS.index(m.group(4))),))
    if m := _PAIR.match(text):
        extra = [_obj(*e.group(1, 2, 3), POSITIONS.index(e.group(4))) for e in
                 _EXTRA.finditer(m.group(8))]  # fmt: skip
        return Claim((_obj(*m.group(1, 2, 3)), _obj(*m.group(5, 6, 7)), *extra), m.group(4))
    return None


def detected(cells: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Classifier output (9, 3) -> objects (shape, colour, size, cell)."""
    return [(int(s), int(c), int(z), i) for i, (s, c, z) in enumerate(cells.tolist()) if s >= 0]


def satisfies(cells: np.ndarray, claim: Claim) -> bool:
    """Does a sample whose classifier output is `cells` (9, 3) show what `claim` states?"""
    found = detected(cells)
    if len(found) != len(claim.objects):
        return False
    for perm in itertools.permutations(found):
        if not all(
            f[:3] == o[:3] and o[3] in (-1, f[3]) for f, o in zip(perm, claim.objects, strict=True)
        ):
            continue
        if claim.relation is None:
            return True
        try:
            if relation(perm[0][3], perm[1][3]) == claim.relation:
                return True
        except ValueError:  # diagonal: no relation holds
            continue
    return False


def recall(cells: np.ndarray, claim: Claim) -> float:
    """Share of `claim`'s objects whose shape, colour and size the sample shows (any cell);
    an object found once counts for one stated object only."""
    found = Counter(f[:3] for f in detected(cells))
    stated = Counter(o[:3] for o in claim.objects)
    return sum((found & stated).values()) / len(claim.objects)


def cell_targets(attributes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, K, 4) rows -> occupant (N, 9) (0 empty), colour and size (N, 9) (-1 = empty)."""
    n = len(attributes)
    occ = np.zeros((n, CELLS), np.int64)
    colour = np.full((n, CELLS), -1, np.int64)
    size = np.full((n, CELLS), -1, np.int64)
    for k in range(attributes.shape[1]):
        i = np.nonzero(attributes[:, k, 0] >= 0)[0]
        cell = attributes[i, k, 3]
        occ[i, cell] = attributes[i, k, 0] + 1
        colour[i, cell], size[i, cell] = attributes[i, k, 1], attributes[i, k, 2]
    return torch.from_numpy(occ), torch.from_numpy(colour), torch.from_numpy(size)


def targets_as_cells(attributes: np.ndarray) -> np.ndarray:
    """(N, K, 4) -> (N, 9, 3) in `AttributeClassifier.predict`'s format (exact truth)."""
    occ, colour, size = cell_targets(attributes)
    return torch.stack([occ - 1, colour, size], dim=-1).numpy()


def heldout_accuracy(net: AttributeClassifier, images: torch.Tensor, attributes: np.ndarray):
    """Per-cell accuracy of each head and the share of scenes read entirely right."""
    pred = net.eval().predict(images).numpy()  # (N, 9, 3)
    true = targets_as_cells(attributes)
    full = true[..., 0] >= 0
    return {
        "occupant_acc": float((pred[..., 0] == true[..., 0]).mean()),
        "colour_acc": float((pred[..., 1] == true[..., 1])[full].mean()),
        "size_acc": float((pred[..., 2] == true[..., 2])[full].mean()),
        # every cell right: occupant everywhere, colour and size where there is an object
        "scene_acc": float(((pred == true) | ~full[..., None]).all((1, 2)).mean()),
        "n_heldout": len(images),
    }


def train_classifier(
    data_cfg: DataConfig, out_dir: Path, steps: int = 800, batch_size: int = 64, seed: int = 0
) -> AttributeClassifier:
    """Train on the real train split; held-out accuracy on val goes to stage_metrics.json."""
    torch.manual_seed(seed)
    train = build_source(data_cfg, "train")
    images = torch.from_numpy(train.images).permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
    occ, colour, size = cell_targets(train.attributes)
    net = AttributeClassifier()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch_size,), generator=gen)
        o, c, z = net(images[idx])
        loss = (
            F.cross_entropy(o.flatten(0, 1), occ[idx].flatten())
            + F.cross_entropy(c.flatten(0, 1), colour[idx].flatten(), ignore_index=-1)
            + F.cross_entropy(z.flatten(0, 1), size[idx].flatten(), ignore_index=-1)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval().requires_grad_(False)
    val = build_source(data_cfg, "val")
    val_images = torch.from_numpy(val.images).permute(0, 3, 1, 2)
    metrics = heldout_accuracy(net, val_images, val.attributes)
    metrics.update(train_steps=steps, final_loss=loss.item(), world_size=1)  # plain torch
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{MODEL_FILE}.tmp"
    torch.save({"state_dict": net.state_dict(), "width": net.width, "hidden": net.hidden}, tmp)
    tmp.replace(out_dir / MODEL_FILE)
    write_stage_metrics(out_dir, metrics)
    return net


def load_classifier(out_dir: Path) -> AttributeClassifier:
    payload = torch.load(Path(out_dir) / MODEL_FILE, map_location="cpu", weights_only=True)
    net = AttributeClassifier(payload["width"], payload["hidden"])
    net.load_state_dict(payload["state_dict"])
    return net.eval().requires_grad_(False)


def classifier_key(data_cfg: DataConfig, steps: int = 800) -> str:
    """The cache key: the data it learns from (not the experiment's seed) and its budget."""
    return digest("attribute_classifier", CLASSIFIER_VERSION, training_fields(data_cfg), steps)


def cached_classifier(
    data_cfg: DataConfig, cache_dir: Path | str, steps: int = 800
) -> tuple[AttributeClassifier, Path]:
    """The classifier for this data config, trained once into `cache_dir` (StageCache)."""
    from ..cache import StageCache

    key = classifier_key(data_cfg, steps)

    def train(tmp: Path) -> dict:
        train_classifier(data_cfg, tmp, steps)
        return {"steps": steps}

    entry = StageCache(cache_dir).resolve("attribute_classifier", key, train)
    return load_classifier(entry.path), entry.path


def compositional_scores(
    net: AttributeClassifier,
    images: torch.Tensor,
    claims: list[Claim],
    n_boot: int = U.N_BOOT,
    seed: int = 0,
) -> dict[str, U.Estimate]:
    """compositional_acc (share of samples (B, 3, H, W) that show their whole caption) and
    object_recall (mean share of each caption's objects shown), each with a 95% interval."""
    if len(images) != len(claims):
        raise ValueError(f"{len(images)} images but {len(claims)} claims")
    cells = net.predict(images).numpy()
    pairs = list(zip(cells, claims, strict=True))
    hits = np.array([satisfies(c, claim) for c, claim in pairs], np.float64)
    shares = np.array([recall(c, claim) for c, claim in pairs], np.float64)
    return {
        "compositional_acc": U.bootstrap_mean(hits, n_boot, seed),
        "object_recall": U.bootstrap_mean(shares, n_boot, seed),
    }
