"""Every default of the harness, once, as typed dataclasses. YAML files only override.

Field metadata drives validation and hashing:
  sampling=True   a sampling-time knob: never part of a training stage's hash, so an
                  ablation over it retrains nothing;
  range=(lo, hi)  inclusive bounds (probabilities use PROB);
  min=lo          lower bound;
  registry=R      a name from the open registry R (harness/registry.py): built-ins and
                  plugins' entries, checked once they are registered (stages/checks.py).
Paper values (Ramesh et al. 2022, Table 3 and §2) are noted where our tiny defaults differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..registry import DATA_SOURCES, PRIOR_KINDS, Registry

PROB = (0.0, 1.0)
SEED_RANGE = (0, 2**32 - 1)  # what numpy and Lightning accept


def knob(default: Any, **meta: Any) -> Any:
    """A sampling-time field."""
    return field(default=default, metadata={"sampling": True, **meta})


def bounded(default: Any, **meta: Any) -> Any:
    return field(default=default, metadata=meta)


def registered(default: str, registry: Registry) -> Any:
    """A name from an open registry (not a Literal: a plugin file can add names)."""
    return field(default=default, metadata={"registry": registry})


def listed(*values: int) -> Any:
    return field(default_factory=lambda: list(values))


@dataclass
class DataConfig:
    source: str = registered("shapes", DATA_SOURCES)  # data/sources.py, or a plugin
    path: str = ""  # folder / shard glob / COCO image dir (unused for shapes)
    annotations: str = ""  # COCO captions json
    resolution: int = bounded(64, min=8)  # finest resolution the cascade produces
    min_objects: int = bounded(1, range=(1, 3))
    max_objects: int = bounded(2, range=(1, 3))
    n_train: int = bounded(12000, min=1)
    n_val: int = bounded(512, min=1)
    n_test: int = bounded(512, min=1)
    seed: int = bounded(0, range=SEED_RANGE)  # the data itself; `seeds:` never change it
    # shapes only (issue 20): each fact of a scene (an object, its shape, colour and size, its
    # place) is stated with this probability, so a caption fits many images, as real ones do;
    # 1.0 states everything (the original captions). A training field: every stage key moves.
    # Below 0.1 too few distinct captions remain to fill three caption-disjoint splits.
    caption_detail: float = bounded(1.0, range=(0.1, 1.0))


@dataclass
class ClipConfig:
    arch: str = "custom"  # an open_clip model name, or "custom": the small config below
    pretrained: str = ""  # open_clip tag or local checkpoint path; "" trains from scratch
    image_size: int = bounded(32, min=8)
    embed_dim: int = bounded(64, min=1)
    vision_width: int = bounded(96, min=8)
    vision_layers: int = bounded(3, min=1)
    patch_size: int = bounded(4, min=1)
    text_width: int = bounded(64, min=8)
    text_layers: int = bounded(2, min=1)
    context_length: int = bounded(32, min=4)
    # tiny: 250 steps reach ~0.66 held-out top-1 in batches of 64 in ~85 s on 2 cores
    train_steps: int = bounded(180, min=0)
    batch_size: int = bounded(128, min=2)
    lr: float = bounded(2e-3, min=0.0)  # peak; 10% linear warmup, then cosine to 0
    weight_decay: float = bounded(0.1, min=0.0)


@dataclass
class ARPriorConfig:
    components: int = bounded(16, min=1)  # paper: 319 of 1024 PCA dims (<1% MSE; tiny: 99%)
    buckets: int = bounded(64, min=2)  # paper: 1024 per component
    dot_percentile: float = knob(50.0, range=(0.0, 100.0))  # paper: top half (50) was best
    # Measured (benchmarks/README.md, issue 16): cosine of sampled z_i to the true z_i over
    # 512 held-out captions, z_t as z_i 0.949: temperature 1.0 0.933 (below z_t), 0.7 0.957,
    # 0.5 0.963, 0.3 0.968, 0.1 0.971. 0.5 clears z_t on 76% of captions while still drawing
    # from the distribution rather than its mode (lower only sharpens towards the argmax).
    temperature: float = knob(0.5, min=0.0)


@dataclass
class PriorConfig:
    # diffusion | ar | caption_only | text_embedding (stages/prior_kinds.py), or a plugin's
    kind: str = registered("diffusion", PRIOR_KINDS)
    text_drop: float = bounded(0.1, range=PROB)  # paper 0.1, both priors
    width: int = bounded(64, min=8)
    layers: int = bounded(2, min=1)
    heads: int = bounded(4, min=1)
    timesteps: int = bounded(1000, min=1)
    schedule: Literal["cosine", "linear"] = "cosine"
    prediction: Literal["x0", "eps", "v"] = "x0"  # paper: predict the un-noised z_i
    train_steps: int = bounded(400, min=0)  # tiny: < 1 min on 2 CPU cores
    batch_size: int = bounded(128, min=1)
    lr: float = bounded(3e-3, min=0.0)  # paper 1.1e-4 (diffusion), 1.6e-4 (AR) at batch 4096
    # paper 0.9999 / 0.999 (AR) at 600K-1M steps; EMA starts from the first step's weights, so
    # a short run needs 1 / (1 - ema) well under train_steps
    ema: float = bounded(0.99, range=PROB)
    ar: ARPriorConfig = field(default_factory=ARPriorConfig)
    guidance_scale: float = knob(1.0, min=0.0)  # paper: guiding the prior hurt FID
    # paper: 64 strided. Measured (x0-predicting prior, 512 held-out captions): cosine to
    # the true z_i 0.9776 at 64, 32 and 16 steps, 0.9777 at 8; 16 costs a quarter of 64.
    steps: int = knob(16, min=1)
    eta: float = knob(0.0, min=0.0)
    candidates: int = knob(2, min=1)  # best-of-N by z_i . z_t (paper 2)


@dataclass
class DecoderConfig:
    resolution: int = bounded(16, min=4)  # paper 64
    channels: int = bounded(32, min=4)
    channel_mult: list[int] = listed(1, 2, 2)
    num_res_blocks: int = bounded(1, min=1)
    attn_resolutions: list[int] = listed(8, 4)  # attend over the context at low resolutions
    heads: int = bounded(4, min=1)
    text_cond: bool = True  # the GLIDE text pathway (paper: kept, "offers little help")
    text_width: int = bounded(64, min=8)
    text_layers: int = bounded(2, min=1)
    clip_tokens: int = bounded(4, min=1)  # paper: 4 extra context tokens from z_i
    clip_drop: float = bounded(0.1, range=PROB)  # paper 0.1
    clip_null: Literal["zero", "learned"] = "zero"
    text_drop: float = bounded(0.5, range=PROB)  # paper 0.5
    timesteps: int = bounded(1000, min=1)
    schedule: Literal["cosine", "linear"] = "cosine"
    prediction: Literal["eps", "x0", "v"] = "eps"
    snr_gamma: float = bounded(0.0, min=0.0)  # min-SNR-gamma loss weights (Hang et al.); 0 off
    coords: bool = False  # (y, x) input channels: where a caption's "top left" is
    # ~4.5 min on 2 quiet CPU cores (~70 s per 400 steps), the cold budget's largest item.
    # Measured (issue 16, eta 1, g 3, held-out true z_i, object recall of every object in
    # the scene): 400 steps cosine 0.72, margin 0.71, recall 0.15 (128 items, full-detail
    # captions); at caption detail 0.6 (256 items) 800 steps 0.945, 0.557, 0.312 and 1600
    # steps 0.969, 0.581, 0.447. Tried at 400 and 800 steps and not better here:
    # v-prediction, coordinate channels, LR warmup + cosine (benchmarks/README.md).
    train_steps: int = bounded(1600, min=0)
    batch_size: int = bounded(64, min=1)
    lr: float = bounded(1e-3, min=0.0)  # paper 1.2e-4 at batch 2048
    lr_warmup: float = bounded(0.0, range=PROB)  # share of train_steps warming up linearly
    lr_floor: float = bounded(1.0, range=PROB)  # cosine from lr down to lr_floor * lr (1: flat)
    # paper 0.9999 over 800K steps; Lightning's EMA starts from the initial weights, which
    # keep weight ema**steps, so a few hundred steps need a short average
    ema: float = bounded(0.99, range=PROB)
    # Sampler: measured on the default decoder (issue 16; 128 held-out TRUE z_i, evaluator-
    # CLIP cosine of decoding to image, same noise, 20 steps, same CPU cost per row):
    #   eta 0: g 1.25 0.26, g 2 0.33, g 3 0.38      eta 1: g 1.25 0.60, g 2 0.69, g 3 0.72
    # (50 steps: no better than 20; DDPM equals DDIM eta 1 draw for draw.) Why eta 0 fails:
    # an eps-predicting net's x0 = (x_t - sigma eps) / alpha magnifies its eps error by
    # 1/sqrt(SNR), ~2e4 at t = T-1 of the cosine schedule: its x0 at t >= 900 is worse than
    # the data mean (MSE 0.34 at t 900, 1.3 at 950, vs 0.05), clipped to saturated colour.
    # Deterministic DDIM keeps that start; eta 1 re-draws the noise, which outweighs the x0
    # term at high t, so those steps are forgotten. A v-predicting decoder has no such
    # blow-up (x0 MSE 0.07 at t = T-1) and samples as well at eta 0 as at 1, but at this
    # budget it learns low noise levels worse (x0 MSE at t 100: 0.0031 vs 0.0014).
    guidance_scale: float = knob(3.0, min=0.0)  # paper's COCO FID setting 1.25
    steps: int = knob(20, min=1)  # paper 250; at 16 px 20 do as well as 50
    eta: float = knob(1.0, min=0.0)
    sampler: Literal["ddim", "ddpm"] = knob("ddim")


@dataclass
class UpsamplerConfig:
    enabled: bool = True
    resolution: int = bounded(32, min=8)  # output; input is the previous stage's
    degradation: Literal["blur", "bsr", "none"] = "blur"  # paper: blur, then BSR
    blur_sigma: float = bounded(0.6, min=0.0)  # paper: kernel 3, sigma 0.6
    # Share of training inputs corrupted; the rest stay clean, as a real cascade can hand over.
    degrade_prob: float = bounded(0.5, range=PROB)
    crop_fraction: float = bounded(0.25, range=(0.0, 1.0))  # paper: quarter of the target
    channels: int = bounded(32, min=4)
    channel_mult: list[int] = listed(1, 2)
    num_res_blocks: int = bounded(1, min=1)
    timesteps: int = bounded(1000, min=1)
    schedule: Literal["cosine", "linear"] = "cosine"
    # x0 over the residual from bicubic: the untrained net outputs bicubic exactly, and the
    # loss is the PSNR's MSE (eps needs far longer training before few-step DDIM is usable)
    prediction: Literal["eps", "x0", "v"] = "x0"
    train_steps: int = bounded(350, min=0)
    batch_size: int = bounded(64, min=1)
    lr: float = bounded(1e-3, min=0.0)
    ema: float = bounded(0.99, range=PROB)  # paper 0.9999; see DecoderConfig.ema
    # paper: 27 DDIM steps (64->256), 15 (256->1024). The x0-predicting residual upsampler
    # needs few: it starts from bicubic, and more steps mostly add the net's own errors.
    # Measured (64 held-out images, dB over bicubic, issue 16): first 1/2/4/8 steps +2.37,
    # +2.82, +2.74, +2.63; second (clean-trained) +1.08, +1.69, +1.69. eta 0 or 1: the same.
    steps: int = knob(2, min=1)
    eta: float = knob(0.0, min=0.0)


def _second_upsampler() -> UpsamplerConfig:
    # Crops an eighth of the side (8 px of 64): a quarter (16 px) cost 4x the first stage's
    # step and most of the default experiment's time, for +0.1 dB over bicubic.
    # Trained on clean inputs, not the paper's BSR: measured (issue 16, 2 steps, 64 held-out
    # images) over bicubic on clean 32 px inputs BSR -0.20 dB, blur +1.16, none +1.69; fed
    # upsampler1's outputs, as in a run, BSR +0.01, blur +0.31, none +0.65 dB.
    return UpsamplerConfig(
        resolution=64, degradation="none", schedule="linear", train_steps=320,
        crop_fraction=0.125,
    )  # fmt: skip


@dataclass
class UpsamplersConfig:
    first: UpsamplerConfig = field(default_factory=UpsamplerConfig)
    second: UpsamplerConfig = field(default_factory=_second_upsampler)


@dataclass
class TrainConfig:
    accelerator: Literal["auto", "cpu", "gpu", "mps"] = "cpu"
    devices: int = bounded(1, min=1)  # per node; part of the hash (changes the global batch)
    num_nodes: int = bounded(1, min=1)
    strategy: Literal["auto", "ddp", "ddp_spawn", "fsdp"] = "auto"
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "64-true"] = "32-true"
    num_workers: int = bounded(0, min=0)
    threads: int = bounded(0, min=0)  # torch CPU threads; 0 = torch's default
    # Optimizer steps between in-stage checkpoints (0: none), so a killed fit resumes instead
    # of starting over (stages/resume.py). Not hashed: resuming gives the same weights. 100
    # is about a minute of the tiny decoder on 2 CPU cores; a checkpoint holds the weights,
    # their EMA and the optimizer state (4x the weights): raise it for large nets.
    checkpoint_every: int = bounded(100, min=0)
    log_points: int = bounded(50, min=1)  # points per stage training curve (metrics.csv, W&B)


@dataclass
class SampleConfig:
    grid: int = bounded(16, min=1)  # images per sample grid
    batch_size: int = bounded(64, min=1)
    # DDIM eta of image variations (diversity metric); 0 reconstructs the source exactly.
    variation_eta: float = knob(1.0, min=0.0)
    # Keys every sampling noise stream together with the experiment seed and the caption
    # (common random numbers: diffusion/noise.py). Changing only this gives an A/A check: the
    # same trained stages, other noise.
    seed: int = knob(0, range=SEED_RANGE)


def _evaluator_clip() -> ClipConfig:
    # A different width (and seed, below) than the conditioning CLIP: scoring with the model
    # you condition on rewards matching its quirks, not the caption.
    # Narrower than the conditioning CLIP (96/64): as good a judge here (~0.67 top-1 at 400
    # steps) and cheaper, so both CLIPs train within the tiny preset's 3-minute budget.
    return ClipConfig(vision_width=64, text_width=48)


@dataclass
class EvalConfig:
    clip: ClipConfig = field(default_factory=_evaluator_clip)
    clip_seed: int = bounded(1000, range=SEED_RANGE)  # one evaluator for every arm and seed


@dataclass
class TrackingConfig:
    mode: Literal["offline", "online", "disabled"] = "offline"  # WANDB_MODE overrides
    project: str = "unclip-harness"
    entity: str = ""


@dataclass
class Config:
    """One arm at one seed, fully resolved."""

    data: DataConfig = field(default_factory=DataConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    upsamplers: UpsamplersConfig = field(default_factory=UpsamplersConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 0  # set per run from the experiment's `seeds:`; every trained stage uses it
    # ... except where the experiment names `seed_stages:`: only those stages retrain per
    # seed; the others keep `first_seed` (the experiment's first), trained once and shared.
    seed_stages: list[str] | None = None
    first_seed: int = 0
