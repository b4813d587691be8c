"""Feature networks, reference statistics and the Fréchet distance (FID) through clean-fid.

With clean-fid's Inception weights on disk this is the standard FID in clean mode (PIL
bicubic resize to 299 on float pixels, clean-fid's torchscript Inception). A Fréchet
distance in another feature space (an evaluator CLIP's image tower, ...) is named after it:
`fd_clip`, `kd_clip` -- never `fid`, which means Inception features and nothing else.

Point values are clean-fid's own (`frechet_distance` on the sets' mean/covariance);
intervals bootstrap the generated set (uncertainty.py). The kernel distance is in kd.py,
the bias-corrected FD_inf in fd_inf.py.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from cleanfid.fid import frechet_distance

from .. import progress
from ..errors import HarnessError
from . import uncertainty as U

log = logging.getLogger(__name__)
INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = (
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/" + INCEPTION_FILE
)
_told: set[str] = set()


class FeatureNet(Protocol):
    name: str  # "inception" -> fid/kid; anything else -> fd_<name>/kd_<name>

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """uint8 (B, 3, H, W) -> features (B, D) float64."""
        ...


def inception_path() -> Path:
    """Where clean-fid's `feature_extractor` looks for (and would download) its weights."""
    return Path("./" if platform.system() == "Windows" else "/tmp") / INCEPTION_FILE


def inception_available() -> bool:
    return inception_path().is_file()


def inception_missing() -> str:
    return (
        f"clean-fid's Inception weights are missing: {inception_path()} (clean-fid looks for "
        f"{INCEPTION_FILE} in {inception_path().parent}). Without a network they cannot be "
        f"downloaded; copy the file from {INCEPTION_URL} there to get the standard FID."
    )


def say_inception_missing_once() -> None:
    if "inception" not in _told:
        _told.add("inception")
        log.warning("%s Using the suite's fallback feature network instead.", inception_missing())


class InceptionFeatures:
    """clean-fid's clean mode: per-channel PIL bicubic resize to 299, then Inception pool3."""

    name = "inception"

    def __init__(self, device: str | torch.device = "cpu") -> None:
        if not inception_available():
            raise HarnessError(inception_missing())
        from cleanfid.inception_torchscript import InceptionV3W
        from cleanfid.resize import build_resizer

        self.device = torch.device(device)
        self.model = InceptionV3W(str(inception_path().parent), download=False).to(self.device)
        self.resize = build_resizer("clean")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        hwc = images.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3) uint8
        x = np.stack([self.resize(im) for im in hwc]).transpose(0, 3, 1, 2)  # (B, 3, 299, 299)
        feats = self.model(torch.from_numpy(x).to(self.device))  # (B, 2048)
        return feats.double().cpu().numpy()


class ClipFeatures:
    """The image tower of a (usually evaluator) CLIP: L2-normalised z_i as features."""

    def __init__(self, clip: torch.nn.Module, name: str = "clip") -> None:
        self.clip, self.name = clip, name

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        return self.clip.encode_images(images).double().cpu().numpy()  # (B, D)


def extract(net: FeatureNet, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """uint8 (N, 3, H, W) -> (N, D) float64, in batches (a progress bar: Inception over a
    50k reference takes minutes on a CPU)."""
    starts = range(0, len(images), batch_size)
    with progress.bar(total=len(images), desc=f"features ({net.name})", unit="img") as bar:
        parts = []
        for i in starts:
            parts.append(net(images[i : i + batch_size]))
            bar.update(len(parts[-1]))
    return np.concatenate(parts).astype(np.float64)


@dataclass
class Reference:
    """A reference set in one feature space: features (for KD) and their mean/covariance."""

    feats: np.ndarray  # (M, D)
    mu: np.ndarray  # (D,)
    sigma: np.ndarray  # (D, D)
    # Per-reference results every arm reuses (S_r^(1/2), KD's reference-pair sum).
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, feats: np.ndarray) -> Reference:
        feats = np.asarray(feats, np.float64)
        return cls(feats, feats.mean(axis=0), np.cov(feats, rowvar=False))

    def save(self, path: Path) -> None:
        np.savez(path, feats=self.feats, mu=self.mu, sigma=self.sigma)

    @classmethod
    def load(cls, path: Path) -> Reference:
        with np.load(path) as z:
            return cls(z["feats"], z["mu"], z["sigma"])


def frechet(gen_feats: np.ndarray, ref: Reference) -> float:
    """clean-fid's Fréchet distance between N(gen) and N(ref) (same as `fid_from_feats`)."""
    g = np.asarray(gen_feats, np.float64)
    try:
        return float(frechet_distance(g.mean(axis=0), np.cov(g, rowvar=False), ref.mu, ref.sigma))
    except TypeError:  # clean-fid <= 0.1.35 passes `disp` to sqrtm, which SciPy 1.18 dropped
        return float(frechet_replicates(g, ref, np.arange(len(g))[None])[0])


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sqrt_sigma(ref: Reference) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(S_r^(1/2), mu_r, tr S_r) on the device, computed once per Reference object."""
    if "sqrt_sigma" not in ref.cache:
        dev = _device()
        sr = torch.as_tensor(ref.sigma, dtype=torch.float64, device=dev)
        w, v = torch.linalg.eigh(sr)
        a = (v * w.clamp_min(0).sqrt()) @ v.T  # (D, D) symmetric square root
        mu = torch.as_tensor(ref.mu, dtype=torch.float64, device=dev)
        ref.cache["sqrt_sigma"] = (a, mu, torch.trace(sr))
    return ref.cache["sqrt_sigma"]


def frechet_replicates(
    gen_feats: np.ndarray, ref: Reference, index: np.ndarray, budget: int = 2**27
) -> np.ndarray:
    """FD of each resampled generated set (B,), for rows `index` (B, N).

    Tr sqrt(S_g S_r) = sum sqrt(eig(A S_g A)) with A = S_r^(1/2) symmetric, and the nonzero
    eigenvalues of A S_g A = (X A)^T (X A)/(N-1) equal those of the smaller Gram matrix.
    Replicates are batched, at most `budget` floats of (chunk, N, D) at a time.
    """
    a, mr, tr_r = _sqrt_sigma(ref)
    g = torch.as_tensor(gen_feats, dtype=torch.float64, device=a.device)
    index = torch.as_tensor(np.asarray(index), device=a.device)
    n, d = index.shape[1], g.shape[1]
    out = []
    for idx in index.split(max(1, budget // (n * d))):
        x = g[idx]  # (b, N, D)
        xc = x - x.mean(1, keepdim=True)
        xa = xc @ a / (n - 1) ** 0.5  # (b, N, D)
        gram = xa @ xa.mT if n < d else xa.mT @ xa  # the smaller of (N, N) and (D, D)
        eig = torch.linalg.eigvalsh(gram).clamp_min(0)  # (b, min(N, D))
        tr_g = (xc**2).sum((1, 2)) / (n - 1)
        mean_term = ((x.mean(1) - mr) ** 2).sum(1)
        out.append(mean_term + tr_g + tr_r - 2 * eig.sqrt().sum(1))
    return torch.cat(out).cpu().numpy()


def fd_estimate(
    gen_feats: np.ndarray, ref: Reference, n_boot: int = U.N_BOOT, seed: int = 0
) -> U.Estimate:
    """FD of the generated set at its size N, with a re-centred bootstrap interval.

    What it estimates: E[FD_N], the Frechet distance expected from N samples against this
    reference -- not the FD of the distributions, which FD_N overestimates by a bias of order
    1/N that differs between arms (it grows with the arm's variance), so FD_N ranks arms
    correctly only at one N: compare arms at the same N (Estimate.n), and read fd_<net>_inf
    (fd_inf.py) for the distance itself. The interval covers E[FD_N] at the nominal rate
    (the replicates' spread is the sampling spread of FD_N; their excess bias from duplicated
    rows is removed by re-centring); it does not cover the true FD.
    """
    n = len(gen_feats)
    reps = frechet_replicates(gen_feats, ref, U.bootstrap_indices(n, n_boot, seed))
    draws = U.Draws(n, n_boot, (seed,))
    return U.from_replicates(frechet(gen_feats, ref), reps, n, recentre=True, draws=draws)


def cached_reference(
    cache_dir: Path | str,
    key: dict,
    images: Callable[[], torch.Tensor],
    net: FeatureNet,
    batch_size: int = 256,
) -> Reference:
    """Reference statistics, computed once per `key` (dataset, split, resolution, network...).

    `images()` is only called on a cache miss. StageCache makes the entry atomic and makes
    a second process wait for the first instead of computing it again.
    """
    from ..cache import StageCache
    from ..config.hashing import digest

    def compute(tmp: Path) -> dict:
        Reference.of(extract(net, images(), batch_size)).save(tmp / "reference.npz")
        return {"reference": key}

    entry = StageCache(cache_dir).resolve("fid_reference", digest("fid_reference", key), compute)
    return Reference.load(entry.path / "reference.npz")
