"""Experiment files: inheritance, overrides, axes, validation errors, stage hashes."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.config import Config, load_experiment
from harness.errors import ConfigError
from harness.stages.graph import stage_keys
from tests.conftest import ROOT


def test_defaults_build_and_experiment_metadata(write_yaml):
    exp = load_experiment(write_yaml("e.yaml", "description: hello\nseeds: [3, 4]\n"))
    assert exp.name == "e" and exp.description == "hello" and exp.seeds == [3, 4]
    assert [a.label for a in exp.arms] == ["base"]
    cfg = exp.config(exp.arms[0], 4)
    assert isinstance(cfg, Config) and cfg.seed == 4 and cfg.decoder.text_drop == 0.5


def test_base_inheritance_deep_merges_relative_to_file(write_yaml):
    write_yaml("bases/root.yaml", "decoder: {clip_drop: 0.2, text_drop: 0.3}\nseeds: [7]\n")
    write_yaml("bases/mid.yaml", "base: root.yaml\ndecoder: {text_drop: 0.4}\nprior: {width: 64}\n")
    path = write_yaml("exp.yaml", "base: bases/mid.yaml\nprior: {layers: 2}\n")
    exp = load_experiment(path)
    cfg = exp.config(exp.arms[0], 0)
    assert cfg.decoder.clip_drop == 0.2  # from root, through mid
    assert cfg.decoder.text_drop == 0.4  # mid wins over root
    assert (cfg.prior.width, cfg.prior.layers) == (64, 2)  # sections merge key by key
    assert exp.seeds == [7]


def test_overrides_win_over_file_and_axis(write_yaml):
    path = write_yaml(
        "exp.yaml",
        "decoder: {text_drop: 0.3}\nablate:\n  prior.kind: [diffusion, ar]\n"
        "  g:\n    - {decoder.clip_drop: 0.0, decoder.eta: 0.5}\n    - {decoder.clip_drop: 0.2}\n",
    )
    exp = load_experiment(path, ["decoder.text_drop=0.2", "decoder.lr=1e-4"])
    cfg = exp.config(exp.arms[0], 0)
    assert cfg.decoder.text_drop == 0.2 and cfg.decoder.lr == pytest.approx(1e-4)
    exp = load_experiment(path, ["prior.kind=ar", "decoder.clip_drop=0.3"])
    assert exp.axes == ["g"]  # the overridden axis collapses
    assert {exp.config(a, 0).decoder.clip_drop for a in exp.arms} == {0.3}
    assert {exp.config(a, 0).prior.kind for a in exp.arms} == {"ar"}


def test_axes_expand_to_product_with_coupled_values(write_yaml):
    path = write_yaml(
        "exp.yaml",
        "ablate:\n  prior.kind: [diffusion, ar]\n  guidance:\n"
        "    - {label: paper, decoder.clip_drop: 0.1, decoder.text_drop: 0.5}\n"
        "    - {decoder.clip_drop: 0.0, decoder.text_drop: 0.0}\n",
    )
    exp = load_experiment(path)
    assert exp.axes == ["prior.kind", "guidance"]
    labels = [a.label for a in exp.arms]
    assert labels == [
        "prior.kind=diffusion,guidance=paper",
        "prior.kind=diffusion,clip_drop=0.0,text_drop=0.0",
        "prior.kind=ar,guidance=paper",
        "prior.kind=ar,clip_drop=0.0,text_drop=0.0",
    ]
    cfgs = [exp.config(a, 0) for a in exp.arms]
    assert [(c.prior.kind, c.decoder.clip_drop, c.decoder.text_drop) for c in cfgs] == [
        ("diffusion", 0.1, 0.5),
        ("diffusion", 0.0, 0.0),
        ("ar", 0.1, 0.5),
        ("ar", 0.0, 0.0),
    ]
    assert "/" not in exp.arms[0].slug and " " not in exp.arms[0].slug


def test_prior_ablation_shares_clip_and_decoder_hashes():
    exp = load_experiment(ROOT / "experiments" / "prior_ablation.yaml")
    keys = [stage_keys(exp.config(a, 0)) for a in exp.arms]
    assert len(keys) == 4
    for stage in ("clip", "eval_clip", "decoder", "upsampler1", "upsampler2"):
        assert len({k[stage] for k in keys}) == 1, stage
    priors = [k["prior"] for k in keys]
    assert priors[0] and priors[1] and priors[0] != priors[1] and priors[2:] == [None, None]


@pytest.mark.parametrize("name", ["guidance_scale", "eta"])
def test_sampling_only_experiments_train_nothing_after_prior_ablation(name):
    """Every stage of these experiments is one prior_ablation already trained."""

    def trained(exp_name: str) -> set[tuple[str, str]]:
        exp = load_experiment(ROOT / "experiments" / f"{exp_name}.yaml")
        keys = [stage_keys(exp.config(a, s)) for a in exp.arms for s in exp.seeds]
        return {(stage, key) for k in keys for stage, key in k.items() if key}

    assert trained(name) <= trained("prior_ablation")


def test_sampling_knobs_never_change_training_hashes(write_yaml):
    path = write_yaml("exp.yaml", "{}\n")
    base = stage_keys(load_experiment(path).config(load_experiment(path).arms[0], 0))
    knobs = [
        "decoder.guidance_scale=3",
        "decoder.eta=1.0",
        "decoder.steps=7",
        "decoder.sampler=ddpm",
        "prior.guidance_scale=2",
        "prior.candidates=4",
        "prior.ar.dot_percentile=85",
        "upsamplers.first.steps=3",
        "sample.grid=4",
    ]
    for knob in knobs:
        exp = load_experiment(path, [knob])
        assert stage_keys(exp.config(exp.arms[0], 0)) == base, knob


def test_training_keys_change_exactly_their_stage_and_downstream(write_yaml):
    path = write_yaml("exp.yaml", "{}\n")

    def keys(*overrides: str) -> dict:
        exp = load_experiment(path, list(overrides))
        return stage_keys(exp.config(exp.arms[0], 0))

    base = keys()
    changed = {s for s, k in keys("decoder.text_drop=0.2").items() if k != base[s]}
    assert changed == {"decoder"}
    changed = {s for s, k in keys("clip.vision_layers=2").items() if k != base[s]}
    assert changed == {"clip", "prior", "decoder"}  # the CLIP's consumers retrain
    changed = {s for s, k in keys("upsamplers.first.lr=0.01").items() if k != base[s]}
    assert changed == {"upsampler1"}
    changed = {s for s, k in keys("data.n_train=100").items() if k != base[s]}
    assert changed == {"clip", "eval_clip", "prior", "decoder", "upsampler1", "upsampler2"}
    assert keys("prior.ar.buckets=64") == base  # the diffusion prior ignores the AR fields
    no_text = keys("decoder.text_cond=false")
    assert no_text["decoder"] != base["decoder"]
    assert keys("decoder.text_cond=false", "decoder.text_drop=0.9") == no_text
    assert keys("decoder.text_drop=0.5") == base  # same value as default: same key


def test_seed_retrains_stages_but_not_the_evaluator(write_yaml):
    exp = load_experiment(write_yaml("exp.yaml", "seeds: [0, 1]"))
    k0, k1 = (stage_keys(exp.config(exp.arms[0], s)) for s in (0, 1))
    assert k0["eval_clip"] == k1["eval_clip"]
    assert all(k0[s] != k1[s] for s in ("clip", "prior", "decoder", "upsampler1"))


INVALID = {
    "unknown key": (
        "decoder: {txt_drop: 0.5}\n",
        "decoder.txt_drop: unknown key (did you mean decoder.text_drop?)",
    ),
    "unknown section": ("decodr: {text_drop: 0.5}\n", "did you mean decoder?"),
    "wrong type": ("decoder: {channels: wide}\n", "decoder.channels: expected int, got 'wide'"),
    "bool as int": ("prior: {layers: true}\n", "prior.layers: expected int"),
    "probability": ("decoder: {clip_drop: 1.5}\n", "decoder.clip_drop: 1.5 is outside [0.0, 1.0]"),
    "enum": (
        "prior: {kind: diffusionn}\n",
        "prior.kind: unknown value 'diffusionn' (allowed: diffusion, ar, caption_only, "
        "text_embedding) (did you mean diffusion?)",
    ),
    "nested enum": (
        "upsamplers: {second: {degradation: jpeg}}\n",
        "upsamplers.second.degradation: unknown value 'jpeg'",
    ),
    "missing base": ("base: nowhere.yaml\n", "base: file not found"),
    "empty axis": ("ablate:\n  prior.kind: []\n", "ablate.prior.kind: empty axis"),
    "axis bad value": (
        "ablate:\n  prior.kind: [ar, arr]\n",
        "ablate.prior.kind[1]: prior.kind: unknown value 'arr'",
    ),
    "axis unknown key": (
        "ablate:\n  decoder.etaa: [0, 1]\n",
        "decoder.etaa: unknown key (did you mean decoder.eta?)",
    ),
    "coupled bad key": (
        "ablate:\n  g:\n    - {decoder.txt_drop: 0.1}\n",
        "ablate.g[0]: decoder.txt_drop: unknown key",
    ),
    "malformed yaml": ("decoder: {text_drop: 0.5\n", "malformed YAML"),
    "not a mapping": ("- a\n- b\n", "expected a mapping at the top level"),
    "section not mapping": ("decoder: 3\n", "decoder: expected a mapping"),
    "seeds": ("seeds: [0, zero]\n", "seeds: expected integers"),
    "metric suite": ("metrics: quik\n", "unknown metric suite 'quik'"),
    "resolution chain": (
        "upsamplers: {first: {resolution: 8}}\n",
        "upsamplers.first.resolution (8) must exceed decoder.resolution (16)",
    ),
    "objects": ("data: {min_objects: 3, max_objects: 2}\n", "min_objects is larger"),
    # the nets' own constructors refuse these (built on the meta device), named by key
    "decoder heads": (
        "decoder: {channels: 10, heads: 8}\n",
        "decoder.heads (8): 20 channels are not divisible by 8 heads",
    ),
    "decoder text heads": ("decoder: {text_width: 100}\n", "decoder.text_width (100): "),
    "clip heads": ("clip: {vision_width: 100}\n", "clip.vision_width (100): 100 is not"),
    "evaluator heads": ("eval: {clip: {text_width: 100}}\n", "eval.clip.text_width (100)"),
    "prior heads": ("prior: {width: 30, heads: 4}\n", "prior.heads (4): width 30"),
    "pca too large": (
        "prior: {kind: ar, ar: {components: 100}}\n",
        "prior.ar.components (100): 100 PCA components exceed the CLIP's 64 dimensions",
    ),
    "resolution halvings": (
        "decoder: {resolution: 10}\n",
        "decoder.resolution (10): 10 px is not divisible by 4",
    ),
    "upsampler halvings": (
        "upsamplers: {second: {resolution: 60, channel_mult: [1, 2, 2, 2]}}\n",
        "upsamplers.second.resolution (60)",
    ),
    "axis makes a bad net": (
        "ablate:\n  decoder.heads: [4, 5]\n",
        "ablate.decoder.heads[1]: decoder.heads (5): ",
    ),
    "source needs a file": (
        "data: {source: coco, path: images}\n",
        "data.annotations: required when data.source is coco",
    ),
    "seed in file": ("seed: 3\n", "seed: unknown key (did you mean seeds?)"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_config_one_line_error_exit_2(case, write_yaml, capsys):
    text, expected = INVALID[case]
    path = write_yaml("bad.yaml", text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(path) in err, err
    assert expected in err, err


def test_base_cycle_names_the_cycle(write_yaml, capsys):
    write_yaml("a.yaml", "base: b.yaml\n")
    write_yaml("b.yaml", "base: a.yaml\n")
    assert main(["validate", str(write_yaml("c.yaml", "base: a.yaml\n"))]) == 2
    err = capsys.readouterr().err
    assert "base: cycle c.yaml -> a.yaml -> b.yaml -> a.yaml" in err and err.count("\n") == 1


def test_error_in_base_file_names_the_base_file(write_yaml):
    base = write_yaml("base.yaml", "prior: {text_drop: -0.1}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(write_yaml("exp.yaml", "base: base.yaml\n"))
    assert str(base.resolve()) in str(info.value) and "prior.text_drop" in str(info.value)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("decoder.text_drop", "expected KEY=VALUE"),
        ("decoder.text_drop=2", "outside [0.0, 1.0]"),
        ("decoder.clip_null=random", "allowed: zero, learned"),
        ("ablate.x=[1]", "in the file"),
    ],
)
def test_bad_overrides(override, expected, write_yaml, capsys):
    assert main(["validate", str(write_yaml("e.yaml", "{}\n")), override]) == 2
    err = capsys.readouterr().err
    assert "command line" in err and expected in err, err


def test_partial_override_keeps_a_sections_own_defaults(write_yaml):
    path = write_yaml("e.yaml", "upsamplers: {second: {lr: 0.01}}\neval: {clip: {lr: 0.01}}\n")
    exp = load_experiment(path)
    cfg = exp.config(exp.arms[0], 0)
    default = Config()
    assert cfg.upsamplers.second.lr == 0.01 and cfg.eval.clip.lr == 0.01
    assert cfg.upsamplers.second.degradation == "none" == default.upsamplers.second.degradation
    assert cfg.upsamplers.second.steps == default.upsamplers.second.steps
    assert cfg.eval.clip.vision_width == default.eval.clip.vision_width != default.clip.vision_width
