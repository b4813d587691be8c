"""The experiment's `real` row (issue 15 item 6): the arms' own captions' held-out real
images, scored by the same suite, N, claims and bootstrap draws as the arms, so it pairs
with every arm and shows the floor of the distances and the ceiling of CLIP score, object
recall and compositional accuracy. Printed and recorded like an arm; never ranked.

One real row per experiment: its images depend on the data and its scores on the
evaluator CLIP, so arms that differ in either (a data axis, evaluators trained per seed)
have no single real row, and none is scored (said so in one line, not guessed).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from . import tracking
from .atomic import write_json_atomic
from .comparison import REAL
from .config.hashing import digest
from .metrics.real import score_real
from .metrics.uncertainty import Estimate
from .paths import inside
from .results import estimate_dict, save_replicates
from .stages.graph import EVAL_CLIP


@dataclasses.dataclass
class RealRow:
    seed: int
    metrics: dict[str, Estimate]
    out_dir: Path
    wandb_dir: str | None
    stage_keys: dict[str, str | None]

    def record(self) -> dict[str, Any]:
        return {"arm": REAL, "seed": self.seed, "axes": {}, "metrics": self.metrics}

    def row(self) -> dict[str, Any]:
        """Its results.json row, as an arm's (runner.row_of)."""
        return {**self.record(), "metrics": estimate_dict(self.metrics),
                "stage_keys": self.stage_keys, "dir": str(self.out_dir),
                "wandb_dir": self.wandb_dir}  # fmt: skip


def why_none(results: list[Any], suite: Any) -> str | None:
    """Why this experiment has no real row (None: it has one)."""
    if not results:
        return "no arm was scored"
    if not suite.real_row_possible:
        return (f"the suite's reference split ({suite.reference_split}) is its caption split "
                f"({suite.split}), which holds the real row's own images")  # fmt: skip
    datas = {json.dumps(dataclasses.asdict(r.config.data), sort_keys=True) for r in results}
    evals = {r.keys.get(EVAL_CLIP.name) for r in results}
    if len(datas) > 1:
        return "the arms differ in their data"
    if len(evals) > 1:
        return "the arms differ in their evaluator CLIP (e.g. one per seed)"
    return None


def score_real_row(run: Any, suite: Any, results: list[Any]) -> RealRow | None:
    """Score the real row with the first arm's evaluators; None (and one printed line) when
    the experiment cannot have one."""
    reason = why_none(results, suite)
    if reason is not None:
        run.echo(f"  real row: not scored: {reason}")
        return None
    first = results[0]
    cfg, ev = first.config, first.evaluators
    run.echo("  scoring the real row ...")
    captions = json.loads((first.samples / "captions.json").read_text())
    claims = run.claims(cfg, ev, suite, len(captions))
    metrics = score_real(suite, ev, cfg.data, run.reference(cfg, ev, suite), captions, claims)
    out = inside(run.root, run.root / REAL)
    out.mkdir(parents=True, exist_ok=True)
    keys = {EVAL_CLIP.name: first.keys.get(EVAL_CLIP.name)}
    write_json_atomic(out / "metrics.json", {"arm": REAL, "seed": first.seed, "stage_keys": keys,
                                             "metrics": estimate_dict(metrics)})  # fmt: skip
    save_replicates(out / "replicates.npz", metrics)
    return RealRow(first.seed, metrics, out, track(run, cfg, suite, metrics), keys)


def track(run: Any, cfg: Any, suite: Any, metrics: dict[str, Estimate]) -> str | None:
    """The real row's W&B run, in the experiment's group and folder beside the arms'; its id
    follows what it scored (data, evaluator, suite, N), so a rerun resumes it."""
    config = {"arm": REAL, "data": dataclasses.asdict(cfg.data), "suite": suite.name,
              "n": {k: e.n for k, e in metrics.items()}}  # fmt: skip
    wb = tracking.init_run(cfg.tracking, name=REAL, group=run.exp.name, job_type=REAL,
                           config=config, directory=run.root,
                           run_id=tracking.run_id(run.exp.name, REAL, digest(config)))  # fmt: skip
    tracking.log_results(wb, tracking.with_intervals(metrics))
    return tracking.finish(wb)
