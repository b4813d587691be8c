"""`report` on W&B: the run's comparison as a W&B Report (wandb-workspaces), online only.

The same content as report.html, but live on the group's runs: the comparison table (text,
with its `*` best / `=` indistinguishable marks and 95% intervals, which W&B panels cannot
draw), one bar panel per metric over the arms, one panel per metric against each numeric
axis, and the arms' sample grids. Offline and disabled runs have no server to hold a
report; `report` then writes only the local files and says why.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .metrics.registry import direction_word
from .results import numeric_values


def tracking_of(meta: dict[str, Any]) -> dict[str, Any]:
    """The run's `tracking:` section (every arm of one experiment shares it)."""
    rows = meta.get("rows") or [{}]
    return rows[0].get("config", {}).get("tracking", {}) or {}


def mode_of(meta: dict[str, Any]) -> str:
    return os.environ.get("WANDB_MODE") or tracking_of(meta).get("mode", "offline")


def build(meta: dict[str, Any], names: list[str], table_text: str) -> Any:
    """The Report object (not saved): header, table, per-metric panels, sample grids."""
    import wandb_workspaces.reports.v2 as wr

    tracking = tracking_of(meta)
    project, entity = tracking.get("project", "unclip-harness"), tracking.get("entity") or ""
    arms = wr.Runset(
        entity=entity,
        project=project,
        name=meta["experiment"],
        filters=f"Group = '{meta['experiment']}' and JobType = 'arm'",
    )
    bars = [
        wr.BarPlot(
            title=f"{n} ({direction_word(n)} is better)",
            metrics=[wr.SummaryMetric(n)],
            groupby=wr.Config("arm"),
            groupby_aggfunc="mean",
            groupby_rangefunc="stderr",  # across seeds; per-arm intervals are in the table
        )
        for n in names
    ]
    rows = meta.get("rows", [])
    numeric_axes = [
        a for a in meta.get("axes", [])
        if all(a in r["axes"] for r in rows) and numeric_values([r["axes"][a] for r in rows])
    ]  # fmt: skip
    lines = [
        wr.ScatterPlot(title=f"{n} vs {a}", x=wr.Config(f"axes.{a}"), y=wr.SummaryMetric(n))
        for a in numeric_axes
        for n in names
    ]
    return wr.Report(
        project=project,
        entity=entity,
        title=f"{meta['experiment']}: arm comparison",
        description=f"suite {meta.get('suite')}, commit {meta.get('git_commit', '?')}",
        blocks=[
            wr.H1(meta["experiment"]),
            wr.P(
                f"Overrides: {' '.join(meta.get('overrides', [])) or 'none'}. "
                "`*` best arm per metric, `=` not significantly different from it (paired "
                "bootstrap, Holm over the table); the `real` row is not ranked."
            ),
            wr.CodeBlock(code=table_text.splitlines(), language="python"),
            wr.PanelGrid(runsets=[arms], panels=[*bars, *lines]),
            wr.H2("Samples"),
            wr.PanelGrid(runsets=[arms], panels=[wr.MediaBrowser(media_keys=["samples"])]),
        ],
    )


def publish(
    meta: dict[str, Any], names: list[str], table_text: str, echo: Callable[[str], None]
) -> str | None:
    """Save the Report when the run logged online; returns its URL (None when skipped)."""
    mode = mode_of(meta)
    if mode != "online":
        echo(f"W&B report: skipped (tracking mode {mode}; runs are only on this disk)")
        return None
    try:
        import wandb_workspaces  # noqa: F401
    except ImportError:
        echo("W&B report: skipped (pip install wandb-workspaces to publish one)")
        return None
    report = build(meta, names, table_text)
    report.save()
    echo(f"W&B report: {report.url}")
    return report.url
