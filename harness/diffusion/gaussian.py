"""The Gaussian diffusion process: schedules as float64 tables, q_sample, the training loss,
and single reverse steps (DDPM, DDIM, DDIM inversion); the loops are in sampling.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .noise import Noise, as_noise
from .sampling import Clip, Model, Sampling
from .schedules import space_timesteps


class Prediction(str, Enum):
    """What the network outputs: the noise, the clean sample, or v = alpha eps - sigma x0."""

    EPS = "eps"
    X0 = "x0"
    V = "v"


class Variance(str, Enum):
    """Fixed reverse-process variance: posterior beta-tilde ("small") or beta ("large")."""

    SMALL = "small"
    LARGE = "large"


def _extract(
    arr: np.ndarray | Tensor, t: Tensor, shape: Sequence[int], dtype: torch.dtype
) -> Tensor:
    """``arr[t]`` reshaped to (B, 1, ..., 1) to broadcast against ``shape``, on t's device.

    The lookup is done in float64 and cast afterwards, so a float32 caller gets the nearest
    float32 of the exact coefficient rather than a value rounded twice.
    """
    out = torch.as_tensor(arr, device=t.device)[t]
    return out.to(dtype).reshape(t.shape[0], *([1] * (len(shape) - 1)))


def _invert_holds_x0(ac: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Per step, whether fixed-point DDIM inversion should hold x0 (else eps) fixed.

    Holding eps fixed contracts by ~ |sigma_t - alpha_t sigma_{t-1}/alpha_{t-1}| sigma_t and
    holding x0 fixed by ~ |alpha_t - sigma_t alpha_{t-1}/sigma_{t-1}| alpha_t, using the
    Jacobians d eps/dx = sigma, d x0/dx = alpha of unit-variance data; pick the smaller.
    """
    a, s, a_p, s_p = np.sqrt(ac), np.sqrt(1 - ac), np.sqrt(prev), np.sqrt(1 - prev)
    with np.errstate(divide="ignore"):
        d = np.abs(a - s * a_p / s_p) * a  # inf at t = 0 (s_p = 0): hold eps there
    return d < np.abs(s - a * s_p / a_p) * s


def _clip_range(clip: Clip) -> tuple[float, float] | None:
    if clip is None or clip is False:
        return None
    return (-1.0, 1.0) if clip is True else (float(clip[0]), float(clip[1]))


class GaussianDiffusion(Sampling):
    """Forward process, losses and samplers for a fixed beta schedule.

    Shapes: x0, x_t, noise are (B, ...) (images (B, C, H, W), prior embeddings (B, D));
    t is a LongTensor (B,) of indices into THIS diffusion's schedule (respaced indices
    for a respaced diffusion); the model always receives ``timestep_map[t]``.
    """

    def __init__(
        self,
        betas: np.ndarray | Sequence[float],
        prediction: Prediction | str = Prediction.EPS,
        variance: Variance | str = Variance.SMALL,
        timestep_map: np.ndarray | Sequence[int] | None = None,
        snr_gamma: float = 0.0,
    ) -> None:
        if snr_gamma < 0:
            raise ValueError("snr_gamma must be >= 0 (0: unweighted L_simple)")
        self.snr_gamma = float(snr_gamma)
        b = np.asarray(betas, dtype=np.float64)
        if b.ndim != 1 or not ((b > 0) & (b <= 1)).all():
            raise ValueError("betas must be a 1-D array in (0, 1]")
        n = len(b)
        self.betas, self.num_timesteps = b, n
        self.prediction, self.variance = Prediction(prediction), Variance(variance)
        tmap = np.arange(n) if timestep_map is None else np.asarray(timestep_map)
        self.timestep_map = tmap.astype(np.int64)
        if self.timestep_map.shape != (n,):
            raise ValueError("timestep_map must have one entry per timestep")

        ac = np.cumprod(1.0 - b)
        prev = np.append(1.0, ac[:-1])
        self.alphas_cumprod, self.alphas_cumprod_prev = ac, prev
        self.snr = ac / (1.0 - ac)  # alpha_t^2 / sigma_t^2
        self.sqrt_alphas_cumprod = np.sqrt(ac)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - ac)
        # q(x_{t-1} | x_t, x0) = N(c1 x0 + c2 x_t, beta_tilde)  (Ho et al. 2020, eqs. 6-7)
        self.posterior_variance = b * (1.0 - prev) / (1.0 - ac)
        self.posterior_mean_coef1 = b * np.sqrt(prev) / (1.0 - ac)
        self.posterior_mean_coef2 = (1.0 - prev) * np.sqrt(1.0 - b) / (1.0 - ac)
        # beta_tilde_0 = 0 has no log; t = 0 adds no noise anyway, so borrow t = 1's value.
        floor = self.posterior_variance[1] if n > 1 else b[0]
        if self.variance is Variance.SMALL:
            var = np.append(floor, self.posterior_variance[1:])
        else:
            var = np.append(floor, b[1:])
        self.model_variance, self.model_log_variance = var, np.log(var)
        self._invert_via_x0 = _invert_holds_x0(ac, prev)
        self._tables: dict[tuple[int, torch.device], Tensor] = {}

    # ----------------------------------------------------------------- helpers
    def _table(self, arr: np.ndarray, device: torch.device) -> Tensor:
        # One host->device copy per schedule array and device, not one per sampling step.
        key = (id(arr), device)
        if key not in self._tables:
            with torch.inference_mode(False):  # a normal tensor, usable later with autograd
                self._tables[key] = torch.as_tensor(arr, device=device)
        return self._tables[key]

    def _c(self, arr: np.ndarray, t: Tensor, x: Tensor) -> Tensor:
        # Coefficients in at least float32: abar_{T-1} ~ 2e-9 (cosine) underflows float16, and
        # bfloat16 keeps ~3 digits. Public methods cast their results back to x's dtype.
        return _extract(
            self._table(arr, t.device), t, x.shape, torch.promote_types(x.dtype, torch.float32)
        )

    def _t(self, t: int | Tensor, x: Tensor) -> Tensor:
        if isinstance(t, Tensor):
            return t.to(device=x.device, dtype=torch.long)
        return torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)

    def model_t(self, t: Tensor) -> Tensor:
        """Map this diffusion's indices (B,) to the original timesteps the network knows."""
        return self._table(self.timestep_map, t.device)[t]

    def _randn(self, x: Tensor, noise: Noise | torch.Generator | None) -> Tensor:
        """Sampling noise shaped like x, drawn on the CPU by its source and moved to x's
        device (noise.py: the same draws on every device, CRN streams per row)."""
        return as_noise(noise).randn(x.shape, x.device, x.dtype)

    # ------------------------------------------------------- forward process
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise  (Ho et al. 2020, eq. 4)."""
        noise = torch.randn_like(x0) if noise is None else noise
        return (
            self._c(self.sqrt_alphas_cumprod, t, x0) * x0
            + self._c(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        ).to(x0.dtype)

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """Regression target: eps, x0, or v = alpha_t eps - sigma_t x0 (Salimans & Ho 2022)."""
        if self.prediction is Prediction.EPS:
            return noise
        if self.prediction is Prediction.X0:
            return x0
        return (
            self._c(self.sqrt_alphas_cumprod, t, x0) * noise
            - self._c(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0
        ).to(x0.dtype)

    def predict_x0_eps(self, model_out: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Convert a raw network output to (x0, eps), both shaped like x_t.

        eps: x0 = (x_t - sigma eps) / alpha.   x0: eps = (x_t - alpha x0) / sigma.
        v:   x0 = alpha x_t - sigma v, eps = sigma x_t + alpha v  (since alpha^2 + sigma^2 = 1).
        """
        a = self._c(self.sqrt_alphas_cumprod, t, x_t)
        s = self._c(self.sqrt_one_minus_alphas_cumprod, t, x_t)
        if self.prediction is Prediction.EPS:
            x0, eps = (x_t - s * model_out) / a, model_out
        elif self.prediction is Prediction.X0:
            x0, eps = model_out, (x_t - a * model_out) / s
        else:
            x0, eps = a * x_t - s * model_out, s * x_t + a * model_out
        return x0.to(x_t.dtype), eps.to(x_t.dtype)

    def _predict(
        self, model: Model, x_t: Tensor, t: Tensor, clip: Clip, cond: Mapping[str, Any]
    ) -> tuple[Tensor, Tensor]:
        x0, eps = self.predict_x0_eps(model(x_t, self.model_t(t), **cond), x_t, t)
        rng = _clip_range(clip)
        if rng is not None:
            # Keep (x0, eps) consistent with x_t after clipping, as DDIM needs both.
            x0 = x0.clamp(*rng)
            a = self._c(self.sqrt_alphas_cumprod, t, x_t)
            eps = (x_t - a * x0) / self._c(self.sqrt_one_minus_alphas_cumprod, t, x_t)
            eps = eps.to(x_t.dtype)
        return x0, eps

    # ---------------------------------------------------------------- losses
    def training_losses(
        self,
        model: Model,
        x0: Tensor,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        **cond: Any,
    ) -> Tensor:
        """Per-example MSE (B,) between model(x_t, t) and the parameterisation's target
        (Ho et al. 2020 L_simple). ``t`` is drawn uniformly from [0, T) when None."""
        b = x0.shape[0]
        if t is None:
            t = torch.randint(0, self.num_timesteps, (b,), generator=generator, device=x0.device)
        if noise is None:  # training draws on the device itself (speed, and it never crosses)
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        out = model(self.q_sample(x0, t, noise), self.model_t(t), **cond)
        err = (out - self.training_target(x0, noise, t)) ** 2
        return err.reshape(b, -1).mean(dim=1) * self.loss_weight(t).to(err.dtype)

    def loss_weight(self, t: Tensor) -> Tensor:
        """(B,) weight of each example's MSE: 1 (snr_gamma 0), else min-SNR-gamma (Hang et al.
        2023) for this parameterisation. All three weight the x0-MSE by min(SNR, gamma);
        since eps-MSE = SNR x0-MSE and v-MSE = (SNR + 1) x0-MSE, that is the eps-MSE times
        min(SNR, gamma) / SNR and the v-MSE times min(SNR, gamma) / (SNR + 1)."""
        if self.snr_gamma == 0:
            return torch.ones(t.shape, device=t.device, dtype=torch.float64)
        snr = self._table(self.snr, t.device)[t]
        w = snr.clamp(max=self.snr_gamma)
        if self.prediction is Prediction.EPS:
            w = w / snr
        elif self.prediction is Prediction.V:
            w = w / (snr + 1)
        return w  # float64; the loss casts it to its own dtype

    # ------------------------------------------------------- reverse process
    def p_mean_variance(
        self, model: Model, x_t: Tensor, t: int | Tensor, clip_denoised: Clip = True, **cond: Any
    ) -> dict[str, Tensor]:
        """p(x_{t-1} | x_t) = N(mu, var): mu is the posterior mean at the predicted x0.

        Returns mean, variance, log_variance (broadcastable to x_t), pred_x0, pred_eps.
        """
        t = self._t(t, x_t)
        x0, eps = self._predict(model, x_t, t, clip_denoised, cond)
        mean = (
            self._c(self.posterior_mean_coef1, t, x_t) * x0
            + self._c(self.posterior_mean_coef2, t, x_t) * x_t
        )
        return {
            "mean": mean.to(x_t.dtype),
            "pred_x0": x0,
            "pred_eps": eps,
            "variance": self._c(self.model_variance, t, x_t).to(x_t.dtype),
            "log_variance": self._c(self.model_log_variance, t, x_t).to(x_t.dtype),
        }

    def p_sample_step(
        self,
        model: Model,
        x_t: Tensor,
        t: int | Tensor,
        noise: Tensor | None = None,
        generator: Noise | torch.Generator | None = None,
        clip_denoised: Clip = True,
        **cond: Any,
    ) -> Tensor:
        """One ancestral DDPM step x_t -> x_{t-1} = mu + sigma z (no noise at t = 0)."""
        t = self._t(t, x_t)
        out = self.p_mean_variance(model, x_t, t, clip_denoised, **cond)
        noise = self._randn(x_t, generator) if noise is None else noise
        nonzero = (t != 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
        return out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise

    def ddim_step(
        self,
        model: Model,
        x_t: Tensor,
        t: int | Tensor,
        eta: float = 0.0,
        noise: Tensor | None = None,
        generator: Noise | torch.Generator | None = None,
        clip_denoised: Clip = True,
        **cond: Any,
    ) -> Tensor:
        """One DDIM step x_t -> x_{t-1} (Song et al. 2021, eq. 12):

        x_{t-1} = sqrt(abar_{t-1}) x0 + sqrt(1 - abar_{t-1} - sig^2) eps + sig z,
        sig = eta sqrt((1 - abar_{t-1}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t-1}).
        eta = 1 gives the DDPM posterior variance; eta = 0 is deterministic.
        """
        t = self._t(t, x_t)
        x0, eps = self._predict(model, x_t, t, clip_denoised, cond)
        abar, prev = self._c(self.alphas_cumprod, t, x_t), self._c(self.alphas_cumprod_prev, t, x_t)
        sigma = eta * torch.sqrt((1 - prev) / (1 - abar) * (1 - abar / prev))
        # Clamp: at t = 0 the radicand is 0 and rounding may make it slightly negative.
        out = prev.sqrt() * x0 + (1 - prev - sigma**2).clamp(min=0).sqrt() * eps
        if eta != 0:
            out = out + sigma * (self._randn(x_t, generator) if noise is None else noise)
        return out.to(x_t.dtype)

    def ddim_invert_step(
        self, model: Model, x: Tensor, t: int | Tensor, refine: int = 0, **cond: Any
    ) -> Tensor:
        """Deterministic DDIM run backwards: x at level t-1 (clean data when t = 0) -> level t.

        First guess (as guided-diffusion): eps from the model at the current level t-1, then
        x0 = (x - sigma_{t-1} eps) / alpha_{t-1} and x_t = alpha_t x0 + sigma_t eps. This is
        exact when eps is constant along the ODE path (unit-variance Gaussian data, a point
        mass) and first-order accurate otherwise. ``refine`` > 0 adds fixed-point iterations
        towards the exact inverse of ``ddim_step(eta=0)`` (cf. Pan et al. 2023, AIDI): the
        model is re-evaluated at (x_t, t) and x_t rebuilt holding fixed whichever of (eps, x0)
        the schedule says is better conditioned at this step. Each iteration costs one call.
        """
        t = self._t(t, x)
        tc = (t - 1).clamp(min=0)  # level -1 (clean data) has no timestep; t = 0 is nearest
        _, eps = self.predict_x0_eps(model(x, self.model_t(tc), **cond), x, tc)
        a_p = self._c(self.alphas_cumprod_prev, t, x).sqrt()
        s_p = (1 - self._c(self.alphas_cumprod_prev, t, x)).sqrt()
        a = self._c(self.sqrt_alphas_cumprod, t, x)
        s = self._c(self.sqrt_one_minus_alphas_cumprod, t, x)
        x_t = (a * (x - s_p * eps) / a_p + s * eps).to(x.dtype)
        via_x0 = _extract(self._table(self._invert_via_x0, t.device), t, x.shape, torch.bool)
        for _ in range(refine):
            x0_k, eps_k = self.predict_x0_eps(model(x_t, self.model_t(t), **cond), x_t, t)
            hold_eps = a * (x - s_p * eps_k) / a_p + s * eps_k
            # s_p = 0 at t = 0 makes this branch inf/nan there, but it is never selected.
            hold_x0 = a * x0_k + s * (x - a_p * x0_k) / s_p
            x_t = torch.where(via_x0, hold_x0, hold_eps).to(x.dtype)
        return x_t

    # ------------------------------------------------------------- respacing
    def respaced(self, spec: int | str) -> GaussianDiffusion:
        """Diffusion over a strided subset of steps (see ``space_timesteps``).

        Kept abar values are unchanged; betas are recomputed as
        beta_i = 1 - abar[k_i] / abar[k_{i-1}], so q(x_t | x0) matches at the kept steps.
        """
        keep = space_timesteps(self.num_timesteps, spec)
        ac = self.alphas_cumprod[keep]
        betas = 1.0 - ac / np.append(1.0, ac[:-1])
        return GaussianDiffusion(
            betas, self.prediction, self.variance, self.timestep_map[keep], self.snr_gamma
        )
