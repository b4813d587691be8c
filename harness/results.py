"""What a run leaves behind: results.csv, results.json, per-arm metrics.json, and the table.

results.csv has one row per arm x seed: the arm label, the seed, one column per ablation axis,
then every metric as `name`, `name_lo`, `name_hi` (its 95% interval), and `name_n` (the
sample count N it was computed at). results.json holds the resolved config of every row, the
stage keys, package versions and the git commit, so the YAML plus the commit replicates the
run, and (`statistics`) the paired comparisons with their Holm-adjusted p-values; every
figure there records N and its bootstrap draws (n, n_boot, index seeds), and each row's
replicates.npz holds the replicates themselves.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import platform
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write, write_json_atomic, write_text_atomic
from .comparison import REAL, compare_all, detectable, holm_factor, marks, metric_names
from .errors import HarnessError
from .metrics.inference import ALPHA
from .metrics.registry import direction_word
from .metrics.uncertainty import Estimate, across_seeds
from .paths import PROJECT_ROOT

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
    return metric_names(dict(enumerate(rows)))  # type: ignore[arg-type]


def write_csv(path: Path, records: Sequence[dict[str, Any]], axes: list[str]) -> None:
    """records: {"arm", "seed", "axes": {...}, "metrics": {name: Estimate}}."""
    names = metric_columns([r["metrics"] for r in records])
    header = ["arm", "seed", *axes] + [f"{n}{s}" for n in names for s in ("", "_lo", "_hi", "_n")]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for r in records:
        cells = [r["arm"], r["seed"], *(r["axes"].get(a, "") for a in axes)]
        for n in names:
            e = r["metrics"].get(n)
            cells += ["", "", "", ""] if e is None else [repr(e.value), repr(e.lo), repr(e.hi), e.n]
        writer.writerow(cells)
    write_text_atomic(path, buf.getvalue())


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_json_atomic(path, {**payload, "git_commit": git_commit(), "versions": versions()})


def estimate_dict(metrics: dict[str, Estimate]) -> dict[str, dict[str, float]]:
    return {k: e.as_dict() for k, e in metrics.items()}


def save_replicates(path: Path, metrics: dict[str, Estimate]) -> None:
    """Bootstrap replicates, so `report` can test differences later without rescoring."""
    reps = {k: e.replicates for k, e in metrics.items() if e.replicates is not None}

    def save(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object: np.savez would append .npz to a tmp name
            np.savez(f, **reps)

    atomic_write(path, save)  # renamed when whole: a kill leaves no half


def per_arm(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Estimate]]:
    """Arm label -> metric -> Estimate across that arm's seeds (paired two-level bootstrap)."""
    grouped: dict[str, dict[str, list[tuple[int, Estimate]]]] = {}
    for r in records:
        for name, e in r["metrics"].items():
            grouped.setdefault(r["arm"], {}).setdefault(name, []).append((r["seed"], e))
    return {
        a: {n: across_seeds([e for _, e in es], [s for s, _ in es]) for n, es in m.items()}
        for a, m in grouped.items()
    }


def load_records(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """results.json + each row's bootstrap replicates -> records as the runner made them."""
    path = run_dir / "results.json"
    if not path.is_file():
        raise HarnessError("no results.json here: not a finished `run` directory", str(run_dir))
    try:
        meta = json.loads(path.read_text())
        rows = list(meta["rows"])
    except (ValueError, KeyError, TypeError) as err:
        raise HarnessError(f"not a results.json of a `run` ({type(err).__name__}: {err})",
                           str(path)) from None  # fmt: skip
    records = []
    for row in rows:
        reps_path = Path(row["dir"]) / "replicates.npz"
        reps = dict(np.load(reps_path)) if reps_path.is_file() else {}
        metrics = {n: Estimate.from_dict(e, reps.get(n)) for n, e in row["metrics"].items()}
        records.append({"arm": row["arm"], "seed": row["seed"], "axes": row["axes"],
                        "metrics": metrics, "dir": row["dir"]})  # fmt: skip
    return meta, records


def sample_counts(records: Sequence[dict[str, Any]]) -> str:
    """The N figures were computed at, per arm and seed: `N = 128 per arm (diversity_clip:
    8)`, `... per arm and seed, 3 seeds`; a metric whose N differs between arms is named (its
    set-level distances are then not compared). The real row (one set of images) is left out."""
    per_metric: dict[str, set[int]] = {}
    for r in records:
        if r["arm"] != REAL:
            for name, e in r["metrics"].items():
                per_metric.setdefault(name, set()).add(e.n)
    seeds = {r["seed"] for r in records if r["arm"] != REAL}
    differ = [n for n, ns in per_metric.items() if len(ns) > 1]
    counts = Counter(next(iter(ns)) for n, ns in per_metric.items() if n not in differ)
    if not counts:
        return f"N differs between arms: {', '.join(differ)}"
    common = counts.most_common(1)[0][0]
    other = [f"{n}: {next(iter(ns))}" for n, ns in per_metric.items()
             if n not in differ and next(iter(ns)) != common]  # fmt: skip
    unit = "per arm" if len(seeds) <= 1 else "per arm and seed"
    text = f"N = {common} {unit}" + (f" ({', '.join(other)})" if other else "")
    text += f", {len(seeds)} seeds" if len(seeds) > 1 else ""
    return text + (f"; N differs between arms: {', '.join(differ)}" if differ else "")


def table(records: Sequence[dict[str, Any]]) -> str:
    """Arms x metrics with intervals and marks (comparison.py): `*` best arm per metric, `=`
    not distinguishable from the best (paired, Holm over the table), blank: worse; the `real`
    row last and unranked; then N and the minimal detectable differences."""
    arms = per_arm(records)
    arms = {a: m for a, m in arms.items() if a != REAL} | (
        {REAL: arms[REAL]} if REAL in arms else {}
    )
    names = metric_names(arms)
    comps = compare_all(arms)
    mark = marks(arms, comps)
    width = max(len("arm"), *(len(a) for a in arms))
    cells = {(a, n): f"{arms[a][n]}{mark.get((a, n), ' ')}" if n in arms[a] else "-"
             for a in arms for n in names}  # fmt: skip
    col = {n: max(len(n), *(len(cells[(a, n)]) for a in arms)) for n in names}
    lines = ["  ".join([f"{'arm':<{width}}", *(f"{n:<{col[n]}}" for n in names)])]
    for a in arms:
        lines.append("  ".join([f"{a:<{width}}", *(f"{cells[(a, n)]:<{col[n]}}" for n in names)]))
    return "\n".join(lines + footer(arms, comps, "?" in mark.values(), sample_counts(records)))


def footer(
    arms: dict[str, dict[str, Estimate]], comps: list, incomparable: bool, counts: str
) -> list[str]:
    """What the marks mean, N, pairing, and the minimal detectable differences."""
    arrows = ", ".join(f"{n} {direction_word(n)}" for n in metric_names(arms))
    lines = [f"\nvalue [95% interval]; * best arm, = not distinguishable from the best, blank = "
             f"worse: paired bootstrap, Holm over {len(comps)} comparisons (family-wise "
             f"{ALPHA:.0%}). Better: {arrows}. {counts}."]  # fmt: skip
    if incomparable:
        lines.append("? = not compared: a set-level distance at another N than the best arm's.")
    unpaired = sum(not c.diff.paired for c in comps)
    if unpaired:
        lines.append(f"{unpaired} comparison(s) unpaired (bootstrap draws differ, e.g. another "
                     f"N or seeds): tested as independent arms, conservatively.")  # fmt: skip
    mdd = detectable(comps)
    if mdd:
        shown = ", ".join(f"{m} {w:.3g}" for m, w in mdd.items())
        lines.append(f"Minimal detectable difference (half-width of the paired 95% interval, "
                     f"median over pairs): {shown}; after Holm over {len(comps)} comparisons "
                     f"up to x{holm_factor(len(comps)):.2f} that.")  # fmt: skip
    if REAL in arms:
        lines.append("real: held-out real images of the same captions, scored like an arm "
                     "(floor of the distances, ceiling of the rest); not ranked.")  # fmt: skip
    return lines


def config_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def numeric_values(values: list[Any]) -> list[float] | None:
    """An axis's values as numbers, or None when any is not one (a categorical axis)."""
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None
