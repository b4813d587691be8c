"""Score a set of images with a suite: the library behind `python -m harness score`.

`score_images` is the core every caller shares (the experiment runner hands it tensors);
`score_folders` reads two folders of images (and optional captions) and needs no
experiment. Its feature network when offline (no Inception weights) is an evaluator CLIP:
`--evaluator DIR` (a trained ClipStage dir), else the default evaluator CLIP (cfg.eval.clip
of the default config, trained on the default shapes data) trained once into the cache under
the same stage key the experiment runner uses, so both share it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config import Config, DataConfig
from ..config.hashing import training_fields
from ..data import build_source
from ..errors import HarnessError
from ..paths import default_cache_dir
from . import fid, registry
from .compositional import Claim, cached_classifier, parse_caption
from .inputs import Evaluators, Inputs, at_resolution
from .suite import Suite, resolve_features
from .uncertainty import Estimate

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
__all__ = ["Evaluators", "at_resolution", "default_cache_dir", "feature_net", "score_folders",
           "score_images"]  # fmt: skip


def feature_net(suite: Suite, ev: Evaluators) -> fid.FeatureNet:
    if resolve_features(suite) == "inception":
        return fid.InceptionFeatures("cuda" if torch.cuda.is_available() else "cpu")
    if ev.clip is None:
        raise HarnessError("suite needs an evaluator CLIP for its feature space", suite.name)
    return fid.ClipFeatures(ev.clip, "clip")


def score_images(
    suite: Suite,
    ev: Evaluators,
    gen: torch.Tensor,
    reference: fid.Reference | torch.Tensor | None = None,
    captions: list[str] | None = None,
    claims: list[Claim] | None = None,
    variations: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int | None = None,
    groups: torch.Tensor | None = None,
) -> dict[str, Estimate]:
    """Every metric of `suite` that the inputs allow, each with its 95% interval.

    gen: uint8 (N, 3, H, W), N the same for every arm compared (set-level distances depend on
    it; each Estimate records it); reference: cached statistics (in this suite's feature
    space) or uint8 images; captions / claims: one per gen image; variations: (sources
    (S, 3, H, W), variations (S, V, 3, H, W)); groups: (M, K, 3, H, W), K samples of each of
    M captions. Metrics whose inputs are missing are skipped. `seed`: the bootstrap index
    seed, by default the suite's, shared by every arm so that replicates pair up.
    """
    if variations is not None:  # a cascade may end below the sources' (the data's) size
        variations = (variations[0], same_size(variations[1], variations[0].shape[-1]))
    inp = Inputs(suite, ev, at_resolution(gen, suite.resolution),
                 suite.bootstrap_seed if seed is None else seed, captions=captions,
                 claims=claims, variations=variations, groups=groups)  # fmt: skip
    if suite.needs_features and reference is not None:
        inp.net = feature_net(suite, ev)
        if isinstance(reference, torch.Tensor):
            ref_images = at_resolution(reference, suite.resolution)
            reference = fid.Reference.of(fid.extract(inp.net, ref_images, suite.batch_size))
        inp.reference = reference
    out: dict[str, Estimate] = {}
    for key in suite.metrics:
        spec = registry.get(key, suite.name)
        if all(inp.has(need) for need in spec.needs):
            out |= spec.compute(inp)
    return out


def same_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> (..., 3, size, size): variations from a cascade whose last
    enabled stage is smaller than data.resolution meet their real sources at the sources'
    size (bicubic up), so preservation compares like with like."""
    flat = at_resolution(images.flatten(0, -4), size)  # (B, 3, size, size)
    return flat.reshape(*images.shape[:-3], *flat.shape[1:])


def data_reference(
    data_cfg: DataConfig, suite: Suite, net: fid.FeatureNet, cache_dir: Path, clip_key: str = ""
) -> fid.Reference:
    """Reference statistics of `suite.reference_split` of the data, cached per (dataset,
    split, resolution, network): rendered once at data.resolution, resized by area like every
    stage."""
    res = suite.resolution or data_cfg.resolution
    key = {"data": training_fields(data_cfg), "split": suite.reference_split, "resolution": res,
           "n": suite.n_reference, "network": net.name, "clip": clip_key}  # fmt: skip

    def images() -> torch.Tensor:
        source = build_source(data_cfg, suite.reference_split)
        n = min(suite.n_reference or len(source), len(source))
        return at_resolution(torch.stack([source[i][0] for i in range(n)]), res)

    return fid.cached_reference(cache_dir, key, images, net, suite.batch_size)


def read_folder(folder: Path) -> tuple[list[str], torch.Tensor]:
    """Image files (sorted names) -> (names, uint8 (N, 3, S, S)); sizes unify to the first's."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HarnessError("not a folder of images", str(folder))
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise HarnessError(f"no images ({', '.join(IMAGE_SUFFIXES)})", str(folder))
    images = []
    for p in files:
        try:
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise HarnessError(f"cannot read image: {err}", str(p)) from None
        images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1)[None])
    size = images[0].shape[-1]
    return [p.name for p in files], torch.cat([at_resolution(im, size) for im in images])


def read_captions(path: Path, names: list[str]) -> list[str]:
    """Captions for `names`: a JSON {file name: caption} or lines `file name<TAB>caption`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise HarnessError(f"cannot read: {err.strerror}", str(path)) from None
    if path.suffix == ".json":
        try:
            table = json.loads(text)
        except ValueError as err:
            raise HarnessError(f"not JSON: {err}", str(path)) from None
    else:
        rows = [line.split("\t", 1) for line in text.splitlines() if line.strip()]
        if any(len(r) != 2 for r in rows):
            raise HarnessError("expected lines `file name<TAB>caption`", str(path))
        table = dict(rows)
    missing = [n for n in names if n not in table]
    if missing:
        raise HarnessError(f"no caption for {len(missing)} image(s), e.g. {missing[0]}", str(path))
    return [str(table[n]) for n in names]


def load_evaluator(evaluator_dir: Path | None, cache_dir: Path) -> tuple[torch.nn.Module, str]:
    """The evaluator CLIP from a ClipStage dir, or the default one trained into the cache."""
    from ..cache import StageCache
    from ..stages.clip import load_clip_dir
    from ..stages.graph import EVAL_CLIP, stage_keys
    from ..stages.resolve import Resolver

    if evaluator_dir is not None:
        return load_clip_dir(Path(evaluator_dir)), str(Path(evaluator_dir).resolve())
    cfg = Config()
    key = stage_keys(cfg)[EVAL_CLIP.name]
    resolver = Resolver(StageCache(cache_dir), echo=lambda _: None)
    return resolver.resolve(cfg, {EVAL_CLIP.name: key}).loaded[EVAL_CLIP.name], key


def score_folders(
    gen_dir: Path,
    ref_dir: Path,
    suite: Suite,
    captions_file: Path | None = None,
    evaluator_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Estimate]:
    """Score the images in gen_dir against those in ref_dir (no experiment needed)."""
    cache_dir = Path(cache_dir or default_cache_dir())
    if suite.needs_features and not Path(ref_dir).is_dir():  # before any training
        raise HarnessError("not a folder of images", str(ref_dir))
    names, gen = read_folder(gen_dir)
    captions = read_captions(captions_file, names) if captions_file else None
    ev = Evaluators()
    if (suite.needs_features and resolve_features(suite) == "evaluator_clip") or captions:
        ev.clip, ev.clip_key = load_evaluator(evaluator_dir, cache_dir)
    if suite.clip_model == "conditioning":
        ev.conditioning_clip = ev.clip  # a folder has no conditioning CLIP: the one given
    claims = [parse_caption(c) for c in captions] if captions else None
    if claims and all(c is not None for c in claims) and "compositional" in suite.metrics:
        ev.classifier, _ = cached_classifier(DataConfig(), cache_dir)
    else:
        claims = None
    reference = None
    if suite.needs_features:
        net = feature_net(suite, ev)
        ref_names = sorted(p.name for p in Path(ref_dir).iterdir())
        stamp = [Path(ref_dir, n).stat().st_mtime_ns for n in ref_names]
        key = {"folder": str(Path(ref_dir).resolve()), "files": ref_names, "mtimes": stamp,
               "resolution": suite.resolution or gen.shape[-1], "network": net.name,
               "clip": ev.clip_key}  # fmt: skip
        size = suite.resolution or gen.shape[-1]
        reference = fid.cached_reference(
            cache_dir, key, lambda: at_resolution(read_folder(Path(ref_dir))[1], size), net
        )
        suite = Suite(**{**suite.__dict__, "resolution": size})
    return score_images(suite, ev, gen, reference, captions, claims)
