"""`run` never silently replaces results of another config.

OUT/<experiment>/results.csv is what researchers cite and `report`/`compare` read. A rerun
of the same resolved configs (a warm rerun, a crash resumed) rewrites identical numbers and
goes ahead; a run whose arms, seeds, configs or metric suite differ stops before any work
with one line naming the first difference and the two ways on: `--overwrite`, or another
`--out`. Refusing (rather than writing results-<hash>.csv beside it) keeps one results.csv
per folder, the file every tool and habit (`report DIR`, a diff of DIR/results.csv) reads.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .config import Experiment
from .errors import HarnessError


def planned(exp: Experiment) -> dict[tuple[str, int], Any]:
    """(arm, seed) -> resolved config, as results.json stores it (JSON types)."""
    configs = {(a.label, s): dataclasses.asdict(exp.config(a, s)) for a in exp.arms
               for s in exp.seeds}  # fmt: skip
    return {k: json.loads(json.dumps(v, sort_keys=True, default=str)) for k, v in configs.items()}


def first_difference(old: Any, new: Any, where: str = "") -> str | None:
    """The dotted key where two JSON values first differ, with both values (None: equal)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = first_difference(old.get(key), new.get(key), f"{where}.{key}".lstrip("."))
            if found:
                return found
        return None
    return None if old == new else f"{where}: {old!r} -> {new!r}"


def why_different(meta: dict[str, Any], exp: Experiment, suite: str) -> str | None:
    """What differs between the run recorded in `meta` (results.json) and `exp` (None: the
    same configs, seeds, arms and suite)."""
    old = {(r["arm"], r["seed"]): r["config"] for r in meta.get("rows", []) if "config" in r}
    new = planned(exp)
    if set(old) != set(new):
        gone, added = sorted(set(old) - set(new)), sorted(set(new) - set(old))
        return f"arms x seeds differ (was {gone or 'the same'}, now also {added or 'nothing'})"
    for key in sorted(new):
        found = first_difference(old[key], new[key])
        if found:
            return f"arm {key[0]} seed {key[1]} differs at {found}"
    if meta.get("suite") not in (None, suite):
        return f"metric suite {meta.get('suite')} -> {suite}"
    return None


def check_overwrite(exp: Experiment, root: Path, suite: str, overwrite: bool) -> None:
    """Refuse (HarnessError) when root/results.json records a different run."""
    meta_path = root / "results.json"
    if overwrite or not meta_path.is_file():
        return
    try:
        meta = json.loads(meta_path.read_text())
        why = why_different(meta, exp, suite)
    except (OSError, ValueError, KeyError, TypeError):
        why = "its results.json is unreadable"
    if why:
        raise HarnessError(
            f"holds results of another config ({why}); pass --overwrite to replace them, "
            "or --out DIR to write elsewhere",
            str(root / "results.csv"),
        )
