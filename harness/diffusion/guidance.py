"""Classifier-free guidance as a model wrapper handed to the samplers (DiT's
`forward_with_cfg`, Ho & Salimans 2022)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from .sampling import Model

# Per-kwarg null conditioning for guidance: a tensor, or a function of the conditional value.
NullValues = Mapping[str, Tensor | Callable[[Tensor], Tensor]]


class ClassifierFreeGuidance:
    """A model wrapper: out = u + scale (c - u) (Ho & Salimans 2022), c/u the conditional and
    unconditional outputs from ONE forward on the batch concatenated as [cond; uncond].

    The combination is applied to the raw network output. For eps nets that is standard CFG.
    For x0 and v nets it is identical to guiding eps: at fixed (x_t, t) the map output -> eps
    is affine with coefficients shared by both halves, and (1 - s) u + s c has weights summing
    to one, so it commutes with that map. (Learned-variance outputs are not supported.)

    ``uncond`` maps a conditioning kwarg name to its null value: a tensor broadcastable to the
    conditional value (zero z_i, a learned null embedding (D,), an all-pad mask), or a callable
    ``cond_value -> null_value`` (e.g. ``torch.zeros_like``). Tensor kwargs not in ``uncond``
    must be batch-first and are repeated for both halves; other kwargs pass through unchanged.
    ``scale`` is a float or a (B,) tensor; 1 returns the conditional output, 0 the unconditional.
    """

    def __init__(self, model: Model, scale: float | Tensor, uncond: NullValues) -> None:
        self.model, self.scale, self.uncond = model, scale, dict(uncond)

    def _pair(self, key: str, value: Any) -> Any:
        if key not in self.uncond:
            return torch.cat([value, value]) if isinstance(value, Tensor) else value
        if not isinstance(value, Tensor):
            raise TypeError(f"kwarg {key!r} has a null value but is not a tensor")
        null = self.uncond[key]
        null = null if isinstance(null, Tensor) else null(value)
        return torch.cat([value, null.to(device=value.device, dtype=value.dtype).expand_as(value)])

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        missing = set(self.uncond) - set(cond)
        if missing:
            raise KeyError(f"null values given for kwargs not passed: {sorted(missing)}")
        both = {k: self._pair(k, v) for k, v in cond.items()}
        c, u = self.model(torch.cat([x, x]), torch.cat([t, t]), **both).chunk(2)
        w = self.scale
        if isinstance(w, Tensor):
            w = w.to(device=c.device, dtype=c.dtype).reshape(-1, *([1] * (c.ndim - 1)))
        # lerp is exact at both ends: weight 1 gives c and weight 0 gives u bit-for-bit.
        return torch.lerp(u, c, w)


def guided(
    model: Model, scale: float | Tensor, uncond_kwargs: NullValues
) -> ClassifierFreeGuidance:
    """Shorthand for ``ClassifierFreeGuidance(model, scale, uncond_kwargs)``."""
    return ClassifierFreeGuidance(model, scale, uncond_kwargs)
