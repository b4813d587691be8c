"""How an arm is scored: FID/KID (clean-fid), CLIP score, variation diversity,
compositional accuracy, each with a 95% interval; metric suites pick which and how."""

from .clip_score import clip_score, clip_scores
from .compositional import Claim, cached_classifier, claim_of, compositional_scores, parse_caption
from .diversity import pick_distance, variation_diversity
from .fid import ClipFeatures, InceptionFeatures, Reference, cached_reference, distances
from .score import Evaluators, score_folders, score_images
from .suite import Suite, load_suite, resolve_features
from .uncertainty import Estimate, across_seeds, bootstrap_mean, differ, difference

__all__ = [
    "Claim",
    "ClipFeatures",
    "Estimate",
    "Evaluators",
    "InceptionFeatures",
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
    "distances",
    "load_suite",
    "parse_caption",
    "pick_distance",
    "resolve_features",
    "score_folders",
    "score_images",
    "variation_diversity",
]
