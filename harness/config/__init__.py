"""Typed configs, experiment files, content hashes (stage keys: harness/stages/graph.py)."""

from .experiment import Arm, Experiment, load_experiment, read_yaml
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
    "SampleConfig",
    "TrackingConfig",
    "TrainConfig",
    "UpsamplerConfig",
    "UpsamplersConfig",
    "load_experiment",
    "read_yaml",
]
