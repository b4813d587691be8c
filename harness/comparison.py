"""Which arms differ: every pair of arms on every metric, paired bootstrap differences
(metrics/inference.py), Holm's correction over the table's whole family, and the marks.

The family is every pair of (non-`real`) arms on every metric the table shows -- not only
"each arm vs the best": the best arm is picked from the same data, so a comparison against
it is one of all pairwise comparisons, and Holm over all of them keeps the chance of any
false mark in the table <= ALPHA whichever pairs the marks end up showing. A pair with
identical values and replicates (e.g. arms that share their variations) is not a test: it is
left out of the family and marked `=`. The `real` row is printed, never ranked.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .metrics.inference import ALPHA, Difference, difference, holm, identical, z_of
from .metrics.registry import higher_is_better, output_of
from .metrics.uncertainty import Estimate

REAL = "real"  # the row of held-out real images: a floor / ceiling, not an arm


@dataclass
class Comparison:
    metric: str
    a: str
    b: str
    diff: Difference
    p_holm: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "a": self.a, "b": self.b, **self.diff.as_dict(),
                "p_holm": self.p_holm}  # fmt: skip


def comparable(name: str, a: Estimate, b: Estimate) -> bool:
    """A set-level distance depends on N: two arms scored at different N are not compared."""
    kind = output_of(name).kind if output_of(name) else "set"
    return kind == "sample" or a.n == b.n


def compare_all(arms: dict[str, dict[str, Estimate]]) -> list[Comparison]:
    """Every testable pair of arms on every metric, Holm-adjusted over all of them."""
    out = []
    for name in metric_names(arms):
        have = [a for a in arms if name in arms[a] and a != REAL]
        for a, b in itertools.combinations(have, 2):
            ea, eb = arms[a][name], arms[b][name]
            if ea.replicates is None or eb.replicates is None or identical(ea, eb):
                continue
            if comparable(name, ea, eb):
                out.append(Comparison(name, a, b, difference(ea, eb)))
    for c, p in zip(out, holm([c.diff.p for c in out]), strict=True):
        c.p_holm = p
    return out


def metric_names(arms: dict[str, dict[str, Estimate]]) -> list[str]:
    names: list[str] = []
    for m in arms.values():
        names += [n for n in m if n not in names]
    return names


def marks(arms: dict[str, dict[str, Estimate]], comps: Sequence[Comparison]) -> dict:
    """(arm, metric) -> `*` best, `=` not distinguishable from the best (Holm, family-wise
    ALPHA), ` ` worse. Tied best values get `=` and no `*`; unknown directions no mark."""
    found = {(c.metric, c.a, c.b): c for c in comps} | {(c.metric, c.b, c.a): c for c in comps}
    out: dict[tuple[str, str], str] = {}
    for name in metric_names(arms):
        have = {a: m[name] for a, m in arms.items() if name in m and a != REAL}
        better = higher_is_better(name)
        if not have or better is None:
            continue
        top = (max if better else min)(e.value for e in have.values())
        tied = [a for a, e in have.items() if e.value == top]
        best = tied[0]
        for a, e in have.items():
            if a in tied:
                out[(a, name)] = "*" if len(tied) == 1 else "="
                continue
            c = found.get((name, best, a))
            if c is not None:
                out[(a, name)] = " " if c.p_holm < ALPHA else "="
            elif identical(e, have[best]) or not comparable(name, e, have[best]):
                out[(a, name)] = "=" if identical(e, have[best]) else "?"
            else:  # no replicates (an old run): non-overlap of the intervals, unadjusted
                b = have[best]
                out[(a, name)] = " " if (e.lo > b.hi or b.lo > e.hi) else "="
    return out


def detectable(comps: Sequence[Comparison]) -> dict[str, float]:
    """Per per-sample metric: the median half-width of its paired 95% intervals (the
    smallest difference the table can detect before Holm's correction)."""
    widths: dict[str, list[float]] = {}
    for c in comps:
        o = output_of(c.metric)
        if c.diff.paired and o is not None and o.kind == "sample":
            widths.setdefault(c.metric, []).append(c.diff.half_width)
    return {m: sorted(w)[len(w) // 2] for m, w in widths.items()}


def holm_factor(family: int) -> float:
    """How much wider than the 95% half-width the first Holm step needs (z ratio)."""
    return z_of(1.0 - ALPHA / max(family, 1)) / z_of(1.0 - ALPHA)


def statistics(arms: dict[str, dict[str, Estimate]]) -> dict[str, Any]:
    """The inference behind a table, for results.json."""
    comps = compare_all(arms)
    return {
        "interval": "95% percentile bootstrap (set-level: re-centred on the point value)",
        "pairing": "replicate b of every arm resamples the same caption rows (Estimate.draws)",
        "p_value": "bootstrap z-test: 2 Phi(-|d| / sd of the paired difference replicates)",
        "correction": "holm",
        "family": "every pair of arms on every metric (the real row excluded)",
        "alpha": ALPHA,
        "family_size": len(comps),
        "comparisons": [c.as_dict() for c in comps],
    }
