"""Where the harness looks for experiments, metric suites and sweeps.

A user runs from their own directory (their YAMLs) or from a checkout (ours); both work: the
current directory is searched first, then the directory the package was installed from.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def search_roots() -> list[Path]:
    roots = [Path.cwd().resolve()]
    if PROJECT_ROOT not in roots:
        roots.append(PROJECT_ROOT)
    return roots


def find_in(folder: str, name: str, suffix: str = ".yaml") -> Path | None:
    """`metrics/quick.yaml` for ("metrics", "quick"), from the first root that has it."""
    for root in search_roots():
        candidate = root / folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def list_yaml(folder: str) -> list[Path]:
    """Every YAML under `folder/` of the first root that has the folder (not `base/`)."""
    for root in search_roots():
        base = root / folder
        if base.is_dir():
            return sorted(
                p for p in base.rglob("*.yaml") if "base" not in p.relative_to(base).parts
            )
    return []


def yaml_name(path: Path, folder: str) -> str:
    """`experiments/sub/x.yaml` -> `sub/x`: the name `ls` shows and a suite is named by."""
    parts = path.with_suffix("").parts
    if folder not in parts:  # a file outside the folder (e.g. a suite next to an experiment)
        return parts[-1]
    return "/".join(parts[len(parts) - 1 - parts[::-1].index(folder) + 1 :])


def default_cache_dir() -> Path:
    """Trained stages, embeddings, samples and reference statistics: shared by every run and
    experiment of this user (`--cache DIR` or $HARNESS_CACHE to move it)."""
    return Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "unclip-harness")
