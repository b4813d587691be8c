"""Beta schedules (float64) and the timestep subsets a respacing keeps."""

from __future__ import annotations

import math
from enum import Enum

import numpy as np


class Schedule(str, Enum):
    COSINE = "cosine"
    LINEAR = "linear"


def betas_for(schedule: Schedule | str, timesteps: int) -> np.ndarray:
    """Beta schedule of length ``timesteps`` as float64.

    linear: guided-diffusion's, scaled by 1000/T so any T spans the same noise range.
    cosine: abar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2), s = 0.008, betas clipped
    at 0.999 to avoid the singularity at t = T (Nichol & Dhariwal 2021, eq. 17).
    """
    schedule = Schedule(schedule)
    if schedule is Schedule.LINEAR:
        scale = 1000.0 / timesteps
        return np.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=np.float64)
    s = 0.008
    u = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return np.minimum(1.0 - f[1:] / f[:-1], 0.999)


def space_timesteps(num_timesteps: int, spec: int | str) -> np.ndarray:
    """Sorted indices kept by a respacing.

    ``K`` (int or digit string): K indices evenly spread over [0, T-1], both ends kept (the
    noisiest level must stay so sampling starts from pure noise). ``"ddimK"``: the integer
    stride giving exactly K indices from 0, as guided-diffusion does.
    """
    if isinstance(spec, str) and spec.startswith("ddim"):
        k = int(spec[len("ddim") :])
        for stride in range(1, num_timesteps + 1):
            if len(range(0, num_timesteps, stride)) == k:
                return np.arange(0, num_timesteps, stride, dtype=np.int64)
        raise ValueError(f"no integer stride gives {k} steps out of {num_timesteps}")
    k = int(spec)
    if not 1 <= k <= num_timesteps:
        raise ValueError(f"cannot respace {num_timesteps} steps to {k}")
    # Spread from the top so that K=1 keeps T-1 rather than 0.
    keep = np.round(np.linspace(num_timesteps - 1, 0, k))[::-1].astype(np.int64)
    assert len(np.unique(keep)) == k
    return keep
