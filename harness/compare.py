"""`compare RUN_DIR ARM_A ARM_B`: arm A - arm B on every metric of a finished run, paired on
the shared bootstrap draws, with raw and Holm-adjusted p-values (family: this pair's
metrics)."""

from __future__ import annotations

from pathlib import Path

from .comparison import Comparison, comparable, metric_names
from .config.validate import suggest
from .errors import HarnessError
from .metrics.inference import difference, holm
from .results import load_records, per_arm


def compare_run(run_dir: Path | str, arm_a: str, arm_b: str) -> list[Comparison]:
    """arm_a - arm_b on every metric both have (with replicates); Holm over them."""
    _, records = load_records(Path(run_dir))
    arms = per_arm(records)
    for arm in (arm_a, arm_b):
        if arm not in arms:
            raise HarnessError(f"no arm {arm!r}{suggest(arm, list(arms))}; arms: "
                               f"{', '.join(arms)}", str(run_dir))  # fmt: skip
    out = []
    for name in metric_names({arm_a: arms[arm_a]}):
        ea, eb = arms[arm_a][name], arms[arm_b].get(name)
        if eb is None or ea.replicates is None or eb.replicates is None:
            continue
        if comparable(name, ea, eb):
            out.append(Comparison(name, arm_a, arm_b, difference(ea, eb)))
    for c, p in zip(out, holm([c.diff.p for c in out]), strict=True):
        c.p_holm = p
    return out


def format_comparisons(comps: list[Comparison], arm_a: str, arm_b: str) -> str:
    """One line per metric: difference [95% interval], p, Holm-adjusted p, pairing."""
    width = max([len("metric"), *(len(c.metric) for c in comps)])
    head = f"{'metric':<{width}}  {'difference [95% interval]':<34}  {'p':>8}  {'p_holm':>8}"
    lines = [f"{arm_a}  minus  {arm_b}", head]
    for c in comps:
        d = c.diff
        cell = f"{d.value:.4g} [{d.lo:.4g}, {d.hi:.4g}]"
        note = "" if d.paired else "  (unpaired: draws differ)"
        lines.append(f"{c.metric:<{width}}  {cell:<34}  {d.p:>8.3g}  {c.p_holm:>8.3g}{note}")
    lines.append(f"\npaired bootstrap on shared caption draws; Holm over {len(comps)} metrics.")
    return "\n".join(lines)
