"""`report RUN_DIR`: the comparison table, metric-vs-axis plots with intervals, sample grids
side by side, as PNG files and one self-contained HTML page (images inlined)."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import paths, wandb_report
from .metrics.registry import direction_word
from .metrics.uncertainty import Estimate
from .results import load_records, metric_columns, numeric_values, per_arm, table

__all__ = ["load_records", "plot_metric", "report"]


def plot_metric(name: str, records: list[dict[str, Any]], axes: list[str], out: Path) -> Path:
    """One panel per axis: the metric (mean over seeds, 95% interval) against the axis value,
    one line per combination of the other axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = per_arm(records)
    arm_axes = {r["arm"]: r["axes"] for r in records}
    panels = axes or ["arm"]
    fig, grid = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, axis in zip(grid[0], panels, strict=True):
        groups: dict[str, list[tuple[str, Estimate]]] = {}
        for arm, metrics in arms.items():
            if name not in metrics:
                continue
            rest = ",".join(f"{k}={v}" for k, v in arm_axes[arm].items() if k != axis)
            x = arm_axes[arm].get(axis, arm)
            groups.setdefault(rest or "all", []).append((str(x), metrics[name]))
        for label, points in groups.items():
            xs = [p[0] for p in points]
            numeric = numeric_values(xs)
            pos = numeric if numeric is not None else list(range(len(xs)))
            vals = np.array([p[1].value for p in points])
            err = np.array([[p[1].value - p[1].lo for p in points],
                            [p[1].hi - p[1].value for p in points]])  # fmt: skip
            # Lines only join numeric axis values; categories are separate points.
            style = "-" if numeric is not None else "none"
            ax.errorbar(pos, vals, yerr=err, marker="o", capsize=3, linestyle=style, label=label)
            if numeric is None:
                ax.set_xticks(pos, xs, rotation=20, ha="right", fontsize=8)
        ax.set_xlabel(axis)
        ax.set_ylabel(f"{name} ({direction_word(name)} is better)")
        if len(groups) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = paths.inside(out, out / f"{paths.safe_slug(name)}.png")  # names from results.json
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}">'


def report(run_dir: str | Path, echo: Callable[[str], None] = print) -> Path:
    """Write RUN_DIR/report/ (PNGs) and RUN_DIR/report.html, and a W&B Report when the run
    logged online; returns the HTML path."""
    run_dir = Path(run_dir)
    meta, records = load_records(run_dir)
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    names = metric_columns([r["metrics"] for r in records])
    plots = [plot_metric(n, records, meta.get("axes", []), out) for n in names]
    text = table(records)
    (out / "table.txt").write_text(text + "\n")
    grids = []
    for r in records:
        png = Path(r["dir"]) / "samples.png"
        captions = png.with_suffix(".txt")
        if png.is_file():
            cap = captions.read_text().splitlines()[:4] if captions.is_file() else []
            grids.append(f"<figure>{_img(png)}<figcaption><b>{html.escape(r['arm'])}</b> seed "
                         f"{r['seed']}<br><small>{html.escape(' | '.join(cap))}</small>"
                         "</figcaption></figure>")  # fmt: skip
    page = f"""<!doctype html><meta charset="utf-8"><title>{html.escape(meta["experiment"])}</title>
<style>body{{font-family:sans-serif;margin:2em}}pre{{background:#f4f4f4;padding:1em}}
figure{{display:inline-block;margin:.5em;vertical-align:top;max-width:320px}}
figure img{{width:300px;image-rendering:pixelated}}</style>
<h1>{html.escape(meta["experiment"])}</h1>
<p>suite <b>{html.escape(str(meta.get("suite")))}</b>, commit {html.escape(meta["git_commit"])},
overrides {html.escape(" ".join(meta.get("overrides", [])) or "none")}</p>
<h2>Comparison</h2><pre>{html.escape(text)}</pre>
<h2>Metrics against each axis (95% intervals)</h2>{"".join(_img(p) for p in plots)}
<h2>Samples</h2>{"".join(grids)}
"""
    path = run_dir / "report.html"
    path.write_text(page)
    wandb_report.publish(meta, names, text, echo)
    return path
