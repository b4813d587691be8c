"""The harness's metrics, each registered once (registry.py): suite key, figures with their
directions and kinds, inputs. A suite lists the keys; score_images runs the entries whose
inputs it has."""

from __future__ import annotations

import logging

from .clip_score import clip_score
from .compositional import compositional_scores
from .diversity import pick_distance, variation_diversity
from .fd_inf import fd_inf_estimate
from .fid import fd_estimate
from .inputs import Inputs, at_resolution
from .kd import kd_estimate
from .registry import Context, Output, register_metric
from .sample_diversity import sample_diversity
from .uncertainty import Estimate

log = logging.getLogger(__name__)
MIN_FD_INF = 8  # samples: below, the subset sizes of fd_inf collapse onto one another


def _fd_names(ctx: Context) -> list[str]:
    return ["fid"] if ctx.net == "inception" else [f"fd_{ctx.net}"]


def _net(inp: Inputs) -> str:
    return inp.net.name if inp.net is not None else ""


@register_metric(
    "fd", [Output("fid", False, "set"), Output("fd_<net>", False, "set")],
    needs=("features", "reference"), names=_fd_names,
    description="Frechet distance at N (the arm's sample count): estimates E[FD_N]",
)  # fmt: skip
def fd(inp: Inputs) -> dict[str, Estimate]:
    (name,) = _fd_names(Context(net=_net(inp)))
    return {name: fd_estimate(inp.features, inp.reference, inp.suite.n_bootstrap, inp.seed)}


def _fd_inf_names(ctx: Context) -> list[str]:
    return [f"{_fd_names(ctx)[0]}_inf"]


@register_metric(
    "fd_inf", [Output("fid_inf", False, "set"), Output("fd_<net>_inf", False, "set")],
    needs=("features", "reference"), names=_fd_inf_names,
    description="Frechet distance extrapolated to infinite N (Chong & Forsyth 2020)",
)  # fmt: skip
def fd_inf(inp: Inputs) -> dict[str, Estimate]:
    (name,) = _fd_inf_names(Context(net=_net(inp)))
    s = inp.suite
    if len(inp.gen) < MIN_FD_INF:
        log.warning("%s skipped: %d samples, it needs >= %d", name, len(inp.gen), MIN_FD_INF)
        return {}
    est = fd_inf_estimate(inp.features, inp.reference, s.n_bootstrap, inp.seed,
                          s.fd_inf_fractions, s.fd_inf_subsets)  # fmt: skip
    return {name: est}


def _kd_names(ctx: Context) -> list[str]:
    return ["kid"] if ctx.net == "inception" else [f"kd_{ctx.net}"]


@register_metric(
    "kd", [Output("kid", False, "set"), Output("kd_<net>", False, "set")],
    needs=("features", "reference"), names=_kd_names,
    description="kernel distance (MMD^2): clean-fid's KID, Gaussian kernel in other spaces",
)  # fmt: skip
def kd(inp: Inputs) -> dict[str, Estimate]:
    (name,) = _kd_names(Context(net=_net(inp)))
    s = inp.suite
    est = kd_estimate(inp.features, inp.reference, _net(inp), s.n_bootstrap, inp.seed,
                      s.kid_subsets, s.kid_subset_size)  # fmt: skip
    return {name: est}


@register_metric(
    "clip_score", [Output("clip_score", True)], needs=("gen", "captions"),
    description="100 x max(cos(image, caption), 0) with the evaluator CLIP",
)  # fmt: skip
def clip_score_metric(inp: Inputs) -> dict[str, Estimate]:
    s = inp.suite
    conditioning = s.clip_model == "conditioning"
    model = inp.ev.conditioning_clip if conditioning else inp.ev.clip
    if model is None:
        return {}
    return {"clip_score": clip_score(model, inp.gen, inp.captions, s.batch_size, conditioning,
                                     s.n_bootstrap, inp.seed)}  # fmt: skip


def _compositional_names(ctx: Context) -> list[str]:
    return ["compositional_acc", "object_recall"] if ctx.shapes else []


@register_metric(
    "compositional", [Output("compositional_acc", True), Output("object_recall", True)],
    needs=("gen", "claims"), names=_compositional_names,
    description="shapes only: whole-caption accuracy and object recall (attribute classifier)",
)  # fmt: skip
def compositional(inp: Inputs) -> dict[str, Estimate]:
    if inp.ev.classifier is None:
        return {}
    return compositional_scores(inp.ev.classifier, inp.gen, inp.claims, inp.suite.n_bootstrap,
                                inp.seed)  # fmt: skip


@register_metric(
    "diversity",
    [Output("diversity_<space>", True), Output("preservation_<space>", True)],
    needs=("variations",),
    description="variations of one image: mean pairwise distance, similarity to the source",
)
def diversity(inp: Inputs) -> dict[str, Estimate]:
    name, dist = pick_distance(inp.ev.clip)
    res = inp.suite.resolution
    src, var = inp.variations
    src = at_resolution(src, res)
    var = at_resolution(var.flatten(0, 1), res).reshape(*var.shape[:2], *src.shape[1:])
    return variation_diversity(src, var, dist, name, inp.suite.n_bootstrap, inp.seed)


@register_metric(
    "sample_diversity", [Output("sample_diversity_<space>", True)], needs=("groups",),
    description="K samples of each of M captions: mean pairwise distance per caption",
)  # fmt: skip
def sample_diversity_metric(inp: Inputs) -> dict[str, Estimate]:
    name, dist = pick_distance(inp.ev.clip)
    g = inp.groups
    flat = at_resolution(g.flatten(0, 1), inp.suite.resolution)
    groups = flat.reshape(*g.shape[:2], *flat.shape[1:])
    return sample_diversity(groups, dist, name, inp.suite.n_bootstrap, inp.seed)
