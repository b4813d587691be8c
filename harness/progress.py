"""Progress bars (tqdm, with rate and ETA) for the long loops outside training: sampling,
variations, feature extraction, scoring. One switch for the process (`--no-progress`, or
off when stderr is not a terminal), set by the CLI; library callers default to off."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

_ENABLED = [False]


def enable(on: bool) -> None:
    _ENABLED[0] = bool(on)


def enabled() -> bool:
    return _ENABLED[0]


def bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
        unit: str = "it") -> tqdm:  # fmt: skip
    """A tqdm bar on stderr, disabled (a plain pass-through) when progress is off."""
    return tqdm(iterable, total=total, desc=f"  {desc}", unit=unit, leave=False,
                disable=not enabled(), dynamic_ncols=True)  # fmt: skip
