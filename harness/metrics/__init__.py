"""How an arm is scored: FD/KD (clean-fid), FD_inf, CLIP score, variation and per-caption
sample diversity, compositional accuracy, each with a 95% interval from bootstrap draws that
every arm shares (paired comparisons: inference.py); suites pick which (registry.py)."""

from .clip_score import clip_score, clip_scores
from .compositional import Claim, cached_classifier, claim_of, compositional_scores, parse_caption
from .diversity import pick_distance, variation_diversity
from .fid import ClipFeatures, InceptionFeatures, Reference, cached_reference
from .inference import Difference, differ, difference, holm
from .registry import Output, register_metric
from .sample_diversity import sample_diversity
from .score import Evaluators, score_folders, score_images
from .suite import Suite, load_suite, resolve_features
from .uncertainty import Draws, Estimate, across_seeds, bootstrap_mean

__all__ = [
    "Claim",
    "ClipFeatures",
    "Difference",
    "Draws",
    "Estimate",
    "Evaluators",
    "InceptionFeatures",
    "Output",
    "Reference",
    "Suite",
    "across_seeds",
    "bootstrap_mean",
    "cached_classifier",
    "cached_reference",
    "claim_of",
    "clip_score",
    "clip_scores",
    "compositional_scores",
    "difference",
    "differ",
    "holm",
    "load_suite",
    "parse_caption",
    "pick_distance",
    "register_metric",
    "resolve_features",
    "sample_diversity",
    "score_folders",
    "score_images",
    "variation_diversity",
]
