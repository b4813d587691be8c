"""Labelled image grids (PNG) for the manipulation verbs: small images are enlarged with
nearest-neighbour so pixels stay visible, each cell captioned underneath."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

CELL = 128  # px per cell side on the page
LABEL = 14  # px of label under each cell


def labelled_grid(rows: list[list[torch.Tensor]], labels: list[list[str]], path: Path) -> Path:
    """rows[i][j]: uint8 (3, H, W); labels[i][j] its caption. Writes and returns `path`."""
    n_cols = max(len(r) for r in rows)
    page = Image.new("RGB", (n_cols * CELL, len(rows) * (CELL + LABEL)), "white")
    draw = ImageDraw.Draw(page)
    for i, (row, names) in enumerate(zip(rows, labels, strict=True)):
        for j, (image, name) in enumerate(zip(row, names, strict=True)):
            arr = image.permute(1, 2, 0).cpu().numpy().astype(np.uint8)  # (H, W, 3)
            cell = Image.fromarray(arr).resize((CELL, CELL), Image.Resampling.NEAREST)
            top = i * (CELL + LABEL)
            page.paste(cell, (j * CELL, top))
            draw.text((j * CELL + 2, top + CELL + 1), name[:22], fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.save(path)
    return path
