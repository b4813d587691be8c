"""Gaussian diffusion shared by the unCLIP prior, the decoder and the upsamplers.

One plain class (not an ``nn.Module``): it holds float64 numpy schedules and receives the
network as an argument, ``model(x_t, t, **cond) -> output``. ``t`` is a LongTensor (B,) in
the ORIGINAL (un-respaced) timestep space, so a net trained with T steps can be sampled with
any respacing. Notation: abar_t = prod_{s<=t} (1 - beta_s), alpha_t = sqrt(abar_t),
sigma_t = sqrt(1 - abar_t), x_t = alpha_t x0 + sigma_t eps (Ho et al. 2020, eq. 4).

References: DDPM (Ho et al. 2020), improved DDPM cosine schedule (Nichol & Dhariwal 2021),
DDIM (Song et al. 2021, eq. 12), v-prediction (Salimans & Ho 2022), classifier-free guidance
(Ho & Salimans 2022). Structure follows openai/guided-diffusion in spirit.

Modules: schedules.py (beta schedules, respacing indices), gaussian.py (the process, its
losses and single steps), sampling.py (the DDPM/DDIM loops and DDIM inversion), guidance.py
(classifier-free guidance as a model wrapper).
"""

from .gaussian import Clip, GaussianDiffusion, Model, Prediction, Variance
from .guidance import ClassifierFreeGuidance, NullValues, guided
from .schedules import Schedule, betas_for, space_timesteps

__all__ = [
    "ClassifierFreeGuidance",
    "Clip",
    "GaussianDiffusion",
    "Model",
    "NullValues",
    "Prediction",
    "Schedule",
    "Variance",
    "betas_for",
    "guided",
    "space_timesteps",
]
