"""Compositional accuracy on shapes: does a sample show what its caption asked for?

A caption's Claim (data/shapes_captions.py, the generator's record of what it stated) lists
objects with the attributes it states -- shape, colour, size, a cell for a lone or extra
object -- and possibly the relation of the first two ("to the left of"). A sample is correct
when its claimed objects can be matched one-to-one to objects the attribute classifier finds,
each with every claimed attribute, the claimed cell where one is claimed, and the pair in the
claimed relation (shapes.relation: the dominant axis between the two cells). Nothing the
caption does not state is scored: an unstated attribute matches anything, and an object the
caption does not mention may be there or not -- except for full-detail captions, which list
every object (Claim.exhaustive), so there the count must match as well.

That whole-caption test is strict: a small decoder can sit at 0 for every arm. Object recall
is its graded companion: the share of the caption's objects (their claimed shape, colour and
size, in any cell) found in the sample, matched one-to-one, averaged per sample.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import atomic_write
from ..config import DataConfig
from ..config.hashing import digest, training_fields
from ..data import build_source
from ..data.shapes_captions import UNSTATED, Claim, Obj, claim_of, parse_caption, relation
from ..nets.attribute_classifier import CELLS, AttributeClassifier
from ..stages.common import write_stage_metrics
from . import uncertainty as U

__all__ = ["Claim", "claim_of", "parse_caption", "compositional_scores", "satisfies", "recall"]
CLASSIFIER_VERSION = 1  # bump when the net or its training changes
MODEL_FILE = "model.pt"


def detected(cells: np.ndarray) -> list[Obj]:
    """Classifier output (9, 3) -> objects (shape, colour, size, cell)."""
    return [(int(s), int(c), int(z), i) for i, (s, c, z) in enumerate(cells.tolist()) if s >= 0]


def shows(found: Obj, claimed: Obj, cell: bool = True) -> bool:
    """Does a found object have every attribute (and, with `cell`, the cell) claimed?"""
    n = 4 if cell else 3
    return all(c in (UNSTATED, f) for f, c in zip(found[:n], claimed[:n], strict=True))


def satisfies(cells: np.ndarray, claim: Claim) -> bool:
    """Does a sample whose classifier output is `cells` (9, 3) show what `claim` states?"""
    found, k = detected(cells), len(claim.objects)
    if len(found) < k or (claim.exhaustive and len(found) != k):
        return False
    for perm in itertools.permutations(found, k):  # at most 9 * 8 * 7 candidate matchings
        if not all(shows(f, o) for f, o in zip(perm, claim.objects, strict=True)):
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
    """Share of `claim`'s objects the sample shows with their claimed shape, colour and size
    (any cell), matched one-to-one: a found object stands for one claimed object only."""
    found = detected(cells)
    owner: dict[int, int] = {}  # found index -> claimed index (a maximum bipartite matching)

    def assign(i: int, seen: set[int]) -> bool:  # Kuhn's augmenting path from claimed i
        for j, f in enumerate(found):
            if j not in seen and shows(f, claim.objects[i], cell=False):
                seen.add(j)
                if j not in owner or assign(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    matched = sum(assign(i, set()) for i in range(len(claim.objects)))
    return matched / len(claim.objects)


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
    state = {"state_dict": net.state_dict(), "width": net.width, "hidden": net.hidden}
    atomic_write(out_dir / MODEL_FILE, lambda tmp: torch.save(state, tmp))
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


def held_out_judge(
    cache_dir: Path | str, steps: int
) -> Callable[[DataConfig, str, torch.Tensor], dict[str, Any]]:
    """A stage's judge of held-out images (the decoder's, from true z_i): object recall and
    compositional accuracy of images showing the first len(images) items of a split,
    against what their captions state, under this data's attribute classifier -- the one
    the metrics suite scores arms with, so a stage figure reads on the arms' scale. Returns
    {} for a source whose captions carry no claims (folder, COCO)."""

    def judge(data_cfg: DataConfig, split: str, images: torch.Tensor) -> dict[str, Any]:
        claims = getattr(build_source(data_cfg, split), "claims", None)
        if claims is None:
            return {}
        net, where = cached_classifier(data_cfg, cache_dir, steps)
        cells = net.predict(images).numpy()
        pairs = list(zip(cells, claims[: len(images)], strict=True))
        out: dict[str, Any] = {"judge": f"attribute_classifier {where.name} ({steps} steps)"}
        recalls = [recall(c, k) for c, k in pairs]
        hits = [float(satisfies(c, k)) for c, k in pairs]
        for name, values in (("object_recall", recalls), ("compositional_acc", hits)):
            v = np.asarray(values, np.float64)
            out |= {name: float(v.mean()), f"{name}_se": float(v.std(ddof=1) / len(v) ** 0.5)}
        return out

    return judge


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
