"""What a run leaves behind: results.csv, results.json, per-arm metrics.json, and the table.

results.csv has one row per arm x seed: the arm label, the seed, one column per ablation axis,
then every metric as `name`, `name_lo`, `name_hi` (its 95% interval). results.json holds the
resolved config of every row, the stage keys, package versions and the git commit, so the
YAML plus the commit replicates the run.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .metrics.uncertainty import Estimate, across_seeds, differ
from .paths import PROJECT_ROOT
from .stages.common import write_json_atomic

LOWER_IS_BETTER = ("fid", "kid", "fd_", "kd_")
PACKAGES = (
    "torch",
    "torchvision",
    "pytorch-lightning",
    "open_clip_torch",
    "torchmetrics",
    "clean-fid",
    "wandb",
    "optuna",
    "omegaconf",
    "kornia",
    "numpy",
)


def lower_is_better(metric: str) -> bool:
    return metric.startswith(LOWER_IS_BETTER)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def metric_columns(rows: Sequence[dict[str, Estimate]]) -> list[str]:
    names: list[str] = []
    for r in rows:
        names += [n for n in r if n not in names]
    return names


def write_csv(path: Path, records: Sequence[dict[str, Any]], axes: list[str]) -> None:
    """records: {"arm", "seed", "axes": {...}, "metrics": {name: Estimate}}."""
    names = metric_columns([r["metrics"] for r in records])
    header = ["arm", "seed", *axes] + [f"{n}{s}" for n in names for s in ("", "_lo", "_hi")]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for r in records:
        cells = [r["arm"], r["seed"], *(r["axes"].get(a, "") for a in axes)]
        for n in names:
            e = r["metrics"].get(n)
            cells += ["", "", ""] if e is None else [repr(e.value), repr(e.lo), repr(e.hi)]
        writer.writerow(cells)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue())
    tmp.replace(path)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_json_atomic(path, {**payload, "git_commit": git_commit(), "versions": versions()})


def estimate_dict(metrics: dict[str, Estimate]) -> dict[str, dict[str, float]]:
    return {k: e.as_dict() for k, e in metrics.items()}


def save_replicates(path: Path, metrics: dict[str, Estimate]) -> None:
    """Bootstrap replicates, so `report` can test differences later without rescoring."""
    reps = {k: e.replicates for k, e in metrics.items() if e.replicates is not None}
    tmp = path.with_name(f".{path.stem}.tmp.npz")  # renamed when whole: a kill leaves no half
    np.savez(tmp, **reps)
    tmp.replace(path)


def per_arm(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Estimate]]:
    """Arm label -> metric -> Estimate across that arm's seeds."""
    grouped: dict[str, dict[str, list[Estimate]]] = {}
    for r in records:
        for name, e in r["metrics"].items():
            grouped.setdefault(r["arm"], {}).setdefault(name, []).append(e)
    return {a: {n: across_seeds(es) for n, es in m.items()} for a, m in grouped.items()}


def table(records: Sequence[dict[str, Any]]) -> str:
    """Arms x metrics with intervals; `*` best arm per metric, `=` not distinguishable from
    the best at 95% (the difference's bootstrap interval contains 0), blank: worse."""
    arms = per_arm(records)
    names = metric_columns(list(arms.values()))
    marks: dict[tuple[str, str], str] = {}
    for n in names:
        have = {a: m[n] for a, m in arms.items() if n in m}
        if not have:
            continue
        pick = min if lower_is_better(n) else max
        best = pick(have, key=lambda a: have[a].value)
        for a, e in have.items():
            marks[(a, n)] = "*" if a == best else ("=" if not differ(e, have[best]) else " ")
    width = max(len("arm"), *(len(a) for a in arms))
    cells = {
        (a, n): f"{arms[a][n]}{marks.get((a, n), ' ')}" if n in arms[a] else "-"
        for a in arms
        for n in names
    }
    col = {n: max(len(n), *(len(cells[(a, n)]) for a in arms)) for n in names}
    lines = ["  ".join([f"{'arm':<{width}}", *(f"{n:<{col[n]}}" for n in names)])]
    for a in arms:
        lines.append("  ".join([f"{a:<{width}}", *(f"{cells[(a, n)]:<{col[n]}}" for n in names)]))
    arrows = ", ".join(f"{n} {'lower' if lower_is_better(n) else 'higher'}" for n in names)
    lines.append(
        f"\nvalue [95% interval]; * best arm, = not distinguishable from the best "
        f"(95%), blank = worse. Better: {arrows}."
    )
    return "\n".join(lines)


def config_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def numeric_values(values: list[Any]) -> list[float] | None:
    """An axis's values as numbers, or None when any is not one (a categorical axis)."""
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None
