"""Typed configs, experiment files and stage hashes."""

from .experiment import Arm, Experiment, load_experiment, read_yaml
from .hashing import STAGES, stage_keys
from .schema import (
    ARPriorConfig,
    ClipConfig,
    Config,
    DataConfig,
    DecoderConfig,
    EvalConfig,
    PriorConfig,
    SampleConfig,
    TrackingConfig,
    TrainConfig,
    UpsamplerConfig,
    UpsamplersConfig,
)

__all__ = [
    "ARPriorConfig",
    "Arm",
    "ClipConfig",
    "Config",
    "DataConfig",
    "DecoderConfig",
    "EvalConfig",
    "Experiment",
    "PriorConfig",
    "STAGES",
    "SampleConfig",
    "TrackingConfig",
    "TrainConfig",
    "UpsamplerConfig",
    "UpsamplersConfig",
    "load_experiment",
    "read_yaml",
    "stage_keys",
]
