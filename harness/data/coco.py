"""MS-COCO captions: `data.annotations` (captions_*.json) + `data.path` (its image folder).

Every (image, caption) annotation is a pair (COCO has ~5 captions per image); the split is
drawn by image id, so an image and all its captions land in one split. The paper's zero-shot
FID protocol samples captions from COCO and compares against COCO images: a CocoCaptions split
gives both (`captions`, and `images` with `image_index` linking them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ..errors import HarnessError
from .decode import read_inside
from .records import CaptionedImages, Record, collect


def read_annotations(path: Path) -> tuple[dict[int, str], list[tuple[int, str]]]:
    """({image id: file name}, [(image id, caption)] ordered by image id then annotation id)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
        anns = sorted(data["annotations"], key=lambda a: (int(a["image_id"]), int(a.get("id", 0))))
        pairs = [(int(a["image_id"]), str(a.get("caption") or "")) for a in anns]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise HarnessError(f"not a COCO captions file ({type(err).__name__}: {err})",
                           str(path)) from err  # fmt: skip
    return files, pairs


def _records(root: Path, files: dict[int, str], pairs: list[tuple[int, str]]) -> Iterator[Record]:
    real = root.resolve()  # a file_name out of the folder (`../x`, a symlink) is not read
    for image_id, caption in pairs:
        # An annotation whose image is not listed reads a path that does not exist (counted).
        name = files.get(image_id, f"<image {image_id} not listed>")
        yield str(image_id), caption, lambda name=name: read_inside(real, name)


class CocoCaptions(CaptionedImages):
    """COCO (image, caption) pairs of one split."""

    def __init__(
        self, path: str, annotations: str, split: str, limit: int, resolution: int
    ) -> None:
        ann = Path(annotations).expanduser()
        root = Path(path).expanduser()
        if not annotations or not ann.is_file():
            raise HarnessError("data.annotations must name a COCO captions json", str(ann))
        if not root.is_dir():
            raise HarnessError("data.path must be the COCO image folder", str(root))
        files, pairs = read_annotations(ann)
        records = _records(root, files, pairs)
        super().__init__(*collect(records, split, limit, resolution, "coco", str(root)))
