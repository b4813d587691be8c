"""Captioned-image sources. Each yields (uint8 image tensor (3, H, W), caption str).

    sources.py   the registry of sources by `data.source`, build_source, check_source
    shapes.py    the synthetic default;  folder.py, webdataset.py, coco.py: bring your own
    records.py   what the bring-your-own sources share (records -> one split's pairs)
    decode.py    encoded image bytes -> pixels, defensively: what is converted, what is
                 skipped (bombs, files outside the data folder), both counted

This package only re-exports: its modules import each other, never the package.
"""

from .decode import UNREADABLE, Skip, decode_image, read_image
from .records import CaptionedImages, Record, collect
from .sources import SPLITS, DataSource, build_source, check_source, source_of, split_size

__all__ = [
    "SPLITS",
    "UNREADABLE",
    "CaptionedImages",
    "DataSource",
    "Record",
    "Skip",
    "build_source",
    "check_source",
    "collect",
    "decode_image",
    "read_image",
    "source_of",
    "split_size",
]
