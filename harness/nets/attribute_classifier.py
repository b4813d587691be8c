"""A small CNN that reads a shapes scene cell by cell: what is in each cell of the 3x3 grid.

Per cell it predicts the occupant (empty or one of the SHAPES), its colour and its size.
The image is resized to RESOLUTION (a multiple of 3 * 4) so that, after two 2x poolings,
each cell is exactly a 4x4 block of the feature map; one shared head reads every block, so
the net learns "what is here" once rather than nine times.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..data.images import resize, to_model
from ..data.shapes import COLOURS, SHAPES, SIZES

RESOLUTION = 48  # a cell is 16 px: a small shape (radius 0.09) is ~9 px across
CELLS = 9
N_OCCUPANT = 1 + len(SHAPES)  # 0 = empty, 1 + shape index otherwise


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class AttributeClassifier(nn.Module):
    """uint8 or [-1, 1] images (B, 3, H, W) -> per-cell logits (occupant, colour, size)."""

    def __init__(self, width: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.width, self.hidden = width, hidden
        self.features = nn.Sequential(
            _block(3, width),
            nn.MaxPool2d(2),
            _block(width, 2 * width),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        side = RESOLUTION // 4 // 3  # feature pixels per cell side
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * width * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, N_OCCUPANT + len(COLOURS) + len(SIZES)),
        )

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """uint8 or float [-1, 1] (B, 3, H, W) -> float (B, 3, RESOLUTION, RESOLUTION)."""
        x = to_model(images) if images.dtype == torch.uint8 else images.float()
        return resize(x, RESOLUTION).clamp(-1, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> occupant (B, 9, 5), colour (B, 9, 6), size (B, 9, 2) logits; cell = row * 3 + col."""
        h = self.features(self.prepare(images))  # (B, C, 12, 12)
        b, c, s, _ = h.shape
        k = s // 3
        cells = h.reshape(b, c, 3, k, 3, k).permute(0, 2, 4, 1, 3, 5)  # (B, 3, 3, C, k, k)
        out = self.head(cells.reshape(b * CELLS, c, k, k)).reshape(b, CELLS, -1)  # (B, 9, 13)
        return out.split([N_OCCUPANT, len(COLOURS), len(SIZES)], dim=-1)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """-> (B, 9, 3) long: (shape or -1 for empty, colour, size) per cell."""
        rows = []
        for i in range(0, len(images), batch_size):
            occ, col, size = self(images[i : i + batch_size])
            shape = occ.argmax(-1) - 1  # (b, 9)
            rows.append(torch.stack([shape, col.argmax(-1), size.argmax(-1)], dim=-1))
        return torch.cat(rows)
