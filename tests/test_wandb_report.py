"""The W&B Report `report` publishes for online runs: its panels, and the offline skip."""

from __future__ import annotations

import wandb_workspaces.reports.v2 as wr

from harness import wandb_report


def meta(mode: str = "online") -> dict:
    rows = [
        {"arm": f"decoder.guidance_scale={g}", "axes": {"decoder.guidance_scale": g},
         "config": {"tracking": {"mode": mode, "project": "proj", "entity": "team"}}}
        for g in (1.0, 3.0)
    ]  # fmt: skip
    return {"experiment": "guidance_scale", "suite": "quick", "git_commit": "abc",
            "axes": ["decoder.guidance_scale"], "rows": rows}  # fmt: skip


def test_report_has_table_metric_panels_axis_panels_and_grids():
    names = ["fd_clip", "clip_score"]
    report = wandb_report.build(meta(), names, "arm  fd_clip\nx  1.0 *")
    assert (report.project, report.entity) == ("proj", "team")
    grids = [b for b in report.blocks if isinstance(b, wr.PanelGrid)]
    runset = grids[0].runsets[0]
    assert "Group = 'guidance_scale'" in runset.filters and "JobType = 'arm'" in runset.filters
    bars = [p for p in grids[0].panels if isinstance(p, wr.BarPlot)]
    assert [b.metrics[0].name for b in bars] == names
    assert "lower is better" in bars[0].title and "higher is better" in bars[1].title
    scatter = [p for p in grids[0].panels if isinstance(p, wr.ScatterPlot)]
    assert len(scatter) == 2  # one numeric axis x two metrics
    assert any(isinstance(p, wr.MediaBrowser) for p in grids[1].panels)
    code = next(b for b in report.blocks if isinstance(b, wr.CodeBlock))
    assert "x  1.0 *" in "\n".join(code.code)


def test_offline_run_skips_the_report_and_says_why(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    said: list[str] = []
    assert wandb_report.publish(meta("offline"), ["fd_clip"], "", said.append) is None
    assert said and "offline" in said[0]
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the environment wins, as in W&B
    assert wandb_report.publish(meta("online"), ["fd_clip"], "", said.append) is None
    assert "disabled" in said[-1]
