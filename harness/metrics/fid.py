"""Fréchet and kernel distances (FID/KID) through clean-fid, in any feature space.

With clean-fid's Inception weights on disk this is the standard FID in clean mode (PIL
bicubic resize to 299 on float pixels, clean-fid's torchscript Inception). A Fréchet
distance in another feature space (an evaluator CLIP's image tower, ...) is named after it:
`fd_clip`, `kd_clip` -- never `fid`, which means Inception features and nothing else.

Point values are clean-fid's own (`frechet_distance` on the sets' mean/covariance,
`kernel_distance` with its subsets); intervals bootstrap the generated set (uncertainty.py).
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from cleanfid.fid import frechet_distance

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


def metric_names(net_name: str) -> tuple[str, str]:
    """(Fréchet name, kernel name): only Inception features earn `fid` / `kid`."""
    return ("fid", "kid") if net_name == "inception" else (f"fd_{net_name}", f"kd_{net_name}")


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
    """uint8 (N, 3, H, W) -> (N, D) float64, in batches."""
    parts = [net(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate(parts).astype(np.float64)


@dataclass
class Reference:
    """A reference set in one feature space: features (for KD) and their mean/covariance."""

    feats: np.ndarray  # (M, D)
    mu: np.ndarray  # (D,)
    sigma: np.ndarray  # (D, D)

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


def frechet_replicates(gen_feats: np.ndarray, ref: Reference, index: np.ndarray) -> np.ndarray:
    """FD of each resampled generated set (B,), for rows `index` (B, N).

    Tr sqrt(S_g S_r) = sum sqrt(eig(A S_g A)) with A = S_r^(1/2) symmetric, and the nonzero
    eigenvalues of A S_g A = (X A)^T (X A)/(N-1) equal those of the smaller Gram matrix.
    """
    dev = _device()
    g = torch.as_tensor(gen_feats, dtype=torch.float64, device=dev)
    sr = torch.as_tensor(ref.sigma, dtype=torch.float64, device=dev)
    mr = torch.as_tensor(ref.mu, dtype=torch.float64, device=dev)
    w, v = torch.linalg.eigh(sr)
    a = (v * w.clamp_min(0).sqrt()) @ v.T  # (D, D) = S_r^(1/2)
    tr_r = torch.trace(sr)
    out = []
    for idx in torch.as_tensor(index, device=dev):
        x = g[idx]  # (N, D)
        mu = x.mean(0)
        xa = (x - mu) @ a / (len(idx) - 1) ** 0.5  # (N, D)
        gram = xa @ xa.T if xa.shape[0] < xa.shape[1] else xa.T @ xa
        eig = torch.linalg.eigvalsh(gram).clamp_min(0)
        tr_g = ((x - mu) ** 2).sum() / (len(idx) - 1)
        out.append(((mu - mr) ** 2).sum() + tr_g + tr_r - 2 * eig.sqrt().sum())
    return torch.stack(out).cpu().numpy()


def fd_estimate(
    gen_feats: np.ndarray, ref: Reference, n_boot: int = U.N_BOOT, seed: int = 0
) -> U.Estimate:
    n = len(gen_feats)
    reps = frechet_replicates(gen_feats, ref, U.bootstrap_indices(n, n_boot, seed))
    return U.from_replicates(frechet(gen_feats, ref), reps, n, recentre=True)


def kd(
    gen_feats: np.ndarray,
    ref_feats: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """clean-fid's `kernel_distance` (cubic-kernel MMD^2 averaged over random subsets).

    The same arithmetic and the same subset draws as clean-fid after `np.random.seed(seed)`
    (tested equal), but in torch on a private generator: clean-fid's numpy loop draws from
    the global generator and crawls on a busy CPU.
    """
    rs = np.random.RandomState(seed)
    g = torch.as_tensor(gen_feats, dtype=torch.float64, device=_device())
    r = torch.as_tensor(ref_feats, dtype=torch.float64, device=_device())
    m = min(len(g), len(r), subset_size)
    t = torch.zeros((), dtype=torch.float64, device=g.device)
    for _ in range(subsets):
        x = r[torch.as_tensor(rs.choice(len(r), m, replace=False))]  # clean-fid: feats2 first
        y = g[torch.as_tensor(rs.choice(len(g), m, replace=False))]
        a = _kernel(x, x) + _kernel(y, y)
        t += (a.sum() - a.diagonal().sum()) / (m - 1) - _kernel(x, y).sum() * 2 / m
    return float(t / subsets / m)


def _kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3  # clean-fid's polynomial kernel


def kd_replicates(
    gen_feats: np.ndarray, ref_feats: np.ndarray, index: np.ndarray, block: int = 2048
) -> np.ndarray:
    """Unbiased MMD^2 of each resampled generated set (B,), from resample counts.

    A resample with counts c has sum_{a != b} k(x_a, x_b) = c^T K c - sum_i c_i^2 K_ii over
    pairs of distinct draws -- minus pairs that repeat one row, which are excluded (as the
    diagonal is) so the estimate stays unbiased. K is formed block by block, never whole.
    """
    dev = _device()
    g = torch.as_tensor(gen_feats, dtype=torch.float64, device=dev)
    r = torch.as_tensor(ref_feats, dtype=torch.float64, device=dev)
    n, m = len(g), len(r)
    counts = torch.stack([torch.bincount(torch.as_tensor(i), minlength=n) for i in index])
    c = counts.to(dev, torch.float64)  # (B, N)
    quad = torch.zeros(len(c), dtype=torch.float64, device=dev)
    diag = torch.zeros(n, dtype=torch.float64, device=dev)
    cross = torch.zeros(n, dtype=torch.float64, device=dev)
    rr = torch.zeros((), dtype=torch.float64, device=dev)
    for s in range(0, n, block):
        k = _kernel(g[s : s + block], g)  # (b, N)
        quad += ((k @ c.T) * c[:, s : s + block].T).sum(0)
        diag[s : s + block] = k.diagonal(offset=s)
        cross[s : s + block] = _kernel(g[s : s + block], r).mean(1)
    for s in range(0, m, block):
        k = _kernel(r[s : s + block], r)
        rr += k.sum() - k.diagonal(offset=s).sum()
    sq = (c**2).sum(1)
    gg = (quad - (c**2) @ diag) / (n * n - sq)
    return (gg + rr / (m * (m - 1)) - 2 * (c @ cross) / n).cpu().numpy()


def kd_estimate(
    gen_feats: np.ndarray,
    ref: Reference,
    n_boot: int = U.N_BOOT,
    seed: int = 0,
    subsets: int = 100,
    subset_size: int = 1000,
) -> U.Estimate:
    n = len(gen_feats)
    value = kd(gen_feats, ref.feats, subsets, subset_size, seed)
    reps = kd_replicates(gen_feats, ref.feats, U.bootstrap_indices(n, n_boot, seed))
    return U.from_replicates(value, reps, n, recentre=True)


def distances(
    gen_feats: np.ndarray,
    ref: Reference,
    net_name: str,
    which: tuple[str, ...] = ("fd", "kd"),
    n_boot: int = U.N_BOOT,
    seed: int = 0,
    subsets: int = 100,
    subset_size: int = 1000,
) -> dict[str, U.Estimate]:
    """{fid/fd_<net>: ..., kid/kd_<net>: ...} for the requested kinds."""
    fd_name, kd_name = metric_names(net_name)
    out = {}
    if "fd" in which:
        out[fd_name] = fd_estimate(gen_feats, ref, n_boot, seed)
    if "kd" in which:
        out[kd_name] = kd_estimate(gen_feats, ref, n_boot, seed, subsets, subset_size)
    return out


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
