"""What a real `run` records for its statistics (the session's micro run, nothing retrained):
every figure's N and bootstrap draws, the paired comparisons with Holm-adjusted p-values,
fd_clip_inf, and a `compare` of two of its arms through the real entry point."""

from __future__ import annotations

import json

from harness.per_sample import read_per_sample
from tests.conftest import run_cli


def test_results_json_records_n_draws_pairing_and_correction(micro_cache):
    root = micro_cache.parent / "runs" / "micro"
    meta = json.loads((root / "results.json").read_text())
    stats = meta["statistics"]
    assert stats["correction"] == "holm" and stats["family_size"] == len(stats["comparisons"])
    for row in meta["rows"]:
        assert "fd_clip_inf" in row["metrics"]
        for name, e in row["metrics"].items():
            d = e["draws"]
            assert d["n"] == e["n"] and d["n_boot"] == 20 and d["index_seeds"] == [0], name
    assert all(c["paired"] for c in stats["comparisons"])  # same captions, same draws
    shared = {c["metric"] for c in stats["comparisons"]}
    assert not any(m.startswith(("diversity_", "preservation_")) for m in shared)  # identical
    cold = (micro_cache.parent / "cold_stdout.txt").read_text()
    assert "N = 16 per arm (" in cold and "sample_diversity_clip: 4" in cold
    assert "diversity_clip: 2, preservation_clip: 2" in cold
    assert "Holm over" in cold
    assert 0.0 <= meta["classifier"]["scene_acc"] <= 1.0  # the classifier's held-out figure


def test_the_real_row_is_scored_like_an_arm_and_never_ranked(micro_cache):
    root = micro_cache.parent / "runs" / "micro"
    meta = json.loads((root / "results.json").read_text())
    rows = {r["arm"]: r for r in meta["rows"]}
    real = rows["real"]
    arms = [r for a, r in rows.items() if a != "real"]
    assert (root / "real" / "replicates.npz").is_file()
    # same N and bootstrap draws as the arms, so it pairs with every one of them
    assert real["metrics"]["clip_score"]["draws"] == arms[0]["metrics"]["clip_score"]["draws"]
    assert "sample_diversity_clip" not in real["metrics"]  # of generated samples only
    assert all("sample_diversity_clip" in r["metrics"] for r in arms)
    assert not any("real" in (c["a"], c["b"]) for c in meta["statistics"]["comparisons"])
    # the floor of the distances: real images are far closer to the reference than these
    # barely trained arms' samples
    worst = min(r["metrics"]["fd_clip"]["value"] for r in arms)
    assert real["metrics"]["fd_clip"]["value"] < worst / 10
    cold = (micro_cache.parent / "cold_stdout.txt").read_text()
    table = cold[cold.index("arm  ") :]
    assert "\nreal  " in table and "sample_diversity_clip" in table
    assert "real: held-out real images" in table
    csv_rows = (root / "results.csv").read_text().splitlines()
    assert csv_rows[-1].startswith("real,")


def test_compare_two_arms_of_a_finished_run(micro_cache):
    root = micro_cache.parent / "runs" / "micro"
    out = run_cli("compare", str(root), "prior.kind=diffusion", "prior.kind=text_embedding")
    assert out.returncode == 0, out.stderr
    assert "clip_score" in out.stdout and "fd_clip_inf" in out.stdout


def test_each_arm_writes_per_sample_scores_that_join_on_caption_index(micro_cache):
    root = micro_cache.parent / "runs" / "micro"
    tables = [read_per_sample(d / "seed0" / "per_sample.csv") for d in root.iterdir()
              if (d / "seed0").is_dir()]  # fmt: skip
    assert len(tables) == 2
    (cols_a, rows_a), (cols_b, rows_b) = tables
    assert cols_a == cols_b and "clip_score" in cols_a and "object_recall" in cols_a
    assert [r[:2] for r in rows_a] == [r[:2] for r in rows_b]  # same index, same caption
    assert len(rows_a) == 16
    div = cols_a.index("sample_diversity_clip")
    assert all(r[div] is not None for r in rows_a[:4]) and all(r[div] is None for r in rows_a[4:])
