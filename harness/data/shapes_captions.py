"""What a ``shapes`` caption states: its Claim, its text, its canonical content, its parser.

The generator (shapes.py) draws a scene, then decides which facts its caption states: per
object its shape, colour and size, and its place -- the cell of a lone or extra object, the
relation of the first two ("to the left of"), never the cells of that pair. At full caption
detail every fact is stated (the captions are the dataset's original ones); at detail d < 1
each object, each of its attributes and each place is stated with probability d (at least one
object, and the shape or colour of each stated object), so a caption such as "a red object" or
"a large circle, and a blue object" has many true images. The Claim is the generator's record
of what was stated; the compositional metrics score it and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "large")
POSITIONS = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)  # index = row * 3 + col, row 0 at the top
UNSTATED = -1
NOUN = "object"  # the noun of an object whose shape is not stated: "a red object"
ONE_OBJECT_TEMPLATES = ("{obj}", "{obj} of the image")
_FLIPPED = {"to the right of": "to the left of", "below": "above"}

Obj = tuple[int, int, int, int]  # (shape, colour, size, cell); UNSTATED where not stated


@dataclass(frozen=True)
class Claim:
    """What one caption states.

    objects: (shape, colour, size, cell), each UNSTATED (-1) where the caption is silent;
    relation: objects[0] <relation> objects[1], or None; exhaustive: the caption lists every
    object in the image (true of full-detail captions only), so the count is claimed too.
    """

    objects: tuple[Obj, ...]
    relation: str | None = None
    exhaustive: bool = True


def relation(pos_a: int, pos_b: int) -> str:
    """Where cell ``pos_a`` lies relative to ``pos_b``, along the dominant axis."""
    d_row, d_col = pos_a // 3 - pos_b // 3, pos_a % 3 - pos_b % 3
    if abs(d_row) == abs(d_col):
        raise ValueError(f"cells {pos_a} and {pos_b} have no unambiguous relation")
    if abs(d_col) > abs(d_row):
        return "to the left of" if d_col < 0 else "to the right of"
    return "above" if d_row < 0 else "below"


def draw_stated(rng: np.random.Generator, counts: np.ndarray, k: int, detail: float) -> np.ndarray:
    """Which facts each caption states: bool (m, k, 4) = (shape, colour, size, place).

    counts: (m,) objects per scene. place is the cell of a lone object or of objects 2+, and
    for the first two objects of a scene with several, their relation (set on both, and only
    when both are stated). A fixed number of draws per scene, so the stream stays aligned.
    """
    m = len(counts)
    present = np.arange(k)[None, :] < counts[:, None]  # (m, k)
    obj = (rng.random((m, k)) < detail) & present
    pick = (rng.random(m) * counts).astype(np.int64)  # the object stated when none was drawn
    silent = np.nonzero(~obj.any(1))[0]
    obj[silent, pick[silent]] = True
    attr = rng.random((m, k, 3)) < detail  # (m, k, 3)
    # An object stated by its size alone ("a small object") is the vaguest caption there
    # is, and with two sizes it is so frequent that the caption-hashed splits skew (one
    # caption was 26% of val at detail 0.6): a stated object names its shape or colour.
    pick = (rng.random((m, k)) * 2).astype(np.int64)  # shape or colour, when neither was
    rows, cols = np.nonzero(~attr[..., :2].any(2))
    attr[rows, cols, pick[rows, cols]] = True
    attr &= obj[..., None]
    place = (rng.random((m, k)) < detail) & obj
    if k >= 2:  # the pair's relation needs both objects stated; it belongs to both
        pair = counts >= 2
        place[:, 0] &= ~pair | obj[:, 1]
        place[:, 1] = np.where(pair, place[:, 0], place[:, 1])
    return np.concatenate([attr, place[..., None]], axis=-1)


def claim_of(
    rows: np.ndarray | list, stated: np.ndarray | list | None = None, exhaustive: bool = True
) -> Claim:
    """Attribute rows (K, 4) of a scene and its stated facts (K, 4) (None: all) -> Claim."""
    present = [[int(v) for v in r] for r in np.asarray(rows).tolist() if r[0] >= 0]
    n = len(present)
    mask = np.ones((n, 4), bool) if stated is None else np.asarray(stated, bool)[:n]
    objects, rel = [], None
    for j, (row, says) in enumerate(zip(present, mask.tolist(), strict=True)):
        if not any(says[:3]):
            continue
        cell = row[3] if says[3] and (n == 1 or j >= 2) else UNSTATED  # pairs: relation only
        objects.append((*(v if s else UNSTATED for v, s in zip(row[:3], says, strict=False)), cell))
    if n >= 2 and mask[0, 3] and mask[:2, :3].any(1).all():
        rel = relation(present[0][3], present[1][3])
    return Claim(tuple(objects), rel, exhaustive)


def _words(obj: Obj) -> str:
    shape, colour, size, _ = obj
    words = [SIZES[size] if size >= 0 else "", COLOURS[colour] if colour >= 0 else ""]
    words.append(SHAPES[shape] if shape >= 0 else NOUN)
    text = " ".join(w for w in words if w)
    return ("an " if text[0] in "aeiou" else "a ") + text


def _located(obj: Obj) -> str:
    return _words(obj) + (f" in the {POSITIONS[obj[3]]}" if obj[3] >= 0 else "")


def caption_text(claim: Claim, variant: int = 0) -> str:
    """The caption that states exactly `claim`; `variant` picks a one-object template."""
    objs = claim.objects
    if claim.relation is not None:
        parts = [f"{_words(objs[0])} {claim.relation} {_words(objs[1])}"]
        parts += [_located(o) for o in objs[2:]]
    elif len(objs) == 1 and objs[0][3] >= 0:
        template = ONE_OBJECT_TEMPLATES[variant % len(ONE_OBJECT_TEMPLATES)]
        parts = [template.format(obj=_located(objs[0]))]
    else:
        parts = [_located(o) for o in objs]
    return ", and ".join(parts)


def _canon(obj: Obj, cell: bool = True) -> str:
    shape, colour, size, pos = obj
    text = " ".join((SIZES[size] if size >= 0 else "*", COLOURS[colour] if colour >= 0 else "*",
                     SHAPES[shape] if shape >= 0 else "*"))  # fmt: skip
    return text + (f" @ {POSITIONS[pos]}" if cell and pos >= 0 else "")


def canonical(claim: Claim) -> str:
    """Template- and order-independent content of a caption: equal statements, equal text.

    The pair's relation is written one way ("B right of A" says "A left of B"); the other
    objects are sorted. For full-detail captions this is the dataset's original description.
    """
    objs, head = claim.objects, []
    if claim.relation is not None:
        a, b, rel = objs[0], objs[1], claim.relation
        if rel in _FLIPPED:
            a, b, rel = b, a, _FLIPPED[rel]
        head, objs = [f"{_canon(a, False)} | {rel} | {_canon(b, False)}"], objs[2:]
    if not head and not objs:
        raise ValueError("a caption states at least one object")
    return " ; ".join(head + sorted(_canon(o) for o in objs))


def is_full(claim: Claim) -> bool:
    """Is this what a full-detail caption states (every attribute, every place)?"""
    objs = claim.objects
    if not objs or any(v < 0 for o in objs for v in o[:3]):
        return False
    if len(objs) == 1:
        return claim.relation is None and objs[0][3] >= 0
    return claim.relation is not None and all(o[3] >= 0 for o in objs[2:])


def _alt(words: tuple[str, ...]) -> str:
    return "|".join(sorted(words, key=len, reverse=True))  # "top left" before "top"


_OBJ = rf"an? (?:({_alt(SIZES)}) )?(?:({_alt(COLOURS)}) )?({_alt(SHAPES)}|{NOUN})"
_REL = "to the left of|to the right of|above|below"
_PAIR = re.compile(rf"^{_OBJ} ({_REL}) {_OBJ}$")
_LOCATED = re.compile(rf"^{_OBJ}(?: in the ({_alt(POSITIONS)}))?( of the image)?$")


def _parsed(size: str | None, colour: str | None, shape: str, pos: str | None = None) -> Obj:
    if size is None and colour is None and shape == NOUN:
        raise ValueError("an object with nothing stated")
    return (SHAPES.index(shape) if shape != NOUN else UNSTATED,
            COLOURS.index(colour) if colour else UNSTATED,
            SIZES.index(size) if size else UNSTATED,
            POSITIONS.index(pos) if pos else UNSTATED)  # fmt: skip


def parse_caption(text: str, exhaustive: bool | None = None) -> Claim | None:
    """A shapes caption (any detail) -> its Claim; None when the text is not one.

    exhaustive None: a caption in the full-detail form claims the object count (what the
    generator means at full detail); pass False for captions drawn at a detail below 1.
    """
    parts = text.strip().lower().split(", and ")
    objects: list[Obj] = []
    rel = None
    try:
        if m := _PAIR.match(parts[0]):
            objects, rel, parts = [_parsed(*m.group(1, 2, 3)), _parsed(*m.group(5, 6, 7))], \
                m.group(4), parts[1:]  # fmt: skip
        for part in parts:
            m = _LOCATED.match(part)
            # " of the image" only ends a caption that states one object and its cell
            if not m or (m.group(5) and (len(parts) > 1 or rel or not m.group(4))):
                return None
            objects.append(_parsed(*m.group(1, 2, 3, 4)))
    except ValueError:
        return None
    claim = Claim(tuple(objects), rel)
    return Claim(claim.objects, rel, is_full(claim) if exhaustive is None else exhaustive)
