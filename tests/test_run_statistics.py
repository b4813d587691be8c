"""What a real `run` records for its statistics (the session's micro run, nothing retrained):
every figure's N and bootstrap draws, the paired comparisons with Holm-adjusted p-values,
fd_clip_inf, and a `compare` of two of its arms through the real entry point."""

from __future__ import annotations

import json

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
    assert "N = 16 per arm (diversity_clip: 2, preservation_clip: 2)" in cold
    assert "Holm over" in cold


def test_compare_two_arms_of_a_finished_run(micro_cache):
    root = micro_cache.parent / "runs" / "micro"
    out = run_cli("compare", str(root), "prior.kind=diffusion", "prior.kind=text_embedding")
    assert out.returncode == 0, out.stderr
    assert "clip_score" in out.stdout and "fd_clip_inf" in out.stdout
