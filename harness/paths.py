"""Where the harness looks for experiments, metric suites and sweeps, and which names may
become folders where it writes.

A user runs from their own directory (their YAMLs) or from a checkout (ours); both work: the
current directory is searched first, then the directory the package was installed from.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import ConfigError, HarnessError

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


# ---------------------------------------------------------------- names that become folders
# A name a user types becomes a folder under --out (experiment, study) or under the run
# (arm labels, plot files). Letters, digits and these marks are safe on every filesystem and
# in a shell; `/`, `\`, `..`, control characters and a leading `.` are not.
SLUG_MARKS = "=.,-_+"
MAX_NAME_BYTES = 120  # UTF-8 bytes: well below every filesystem's 255-byte name limit


def is_slug(name: str) -> bool:
    return (
        0 < len(name.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES
        and not name.startswith(".")
        and all(c.isalnum() or c in SLUG_MARKS for c in name)
    )


def safe_slug(text: str) -> str:
    """`text` as one folder or file name: unsafe characters become `_`; a leading `.` is
    escaped (no `..`, no hidden file); a text too long keeps its start and a hash of the
    whole, so two long labels stay apart."""
    slug = "".join(c if c.isalnum() or c in SLUG_MARKS else "_" for c in text)
    if not slug or slug.startswith("."):
        slug = "_" + slug
    if len(slug.encode("utf-8")) > MAX_NAME_BYTES:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        while len(slug.encode("utf-8")) > MAX_NAME_BYTES - len(digest) - 1:
            slug = slug[:-1]
        slug = f"{slug}-{digest}"
    return slug


def check_name(name: object, key: str, where: str) -> str:
    """A name the user chose for a folder (experiment `name:`, sweep `study:`), or a
    ConfigError: a name with a path separator is refused, not rewritten, so the folder a
    user finds is the name they wrote."""
    text = str(name)
    if not is_slug(text):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ConfigError(
            f"{key}: {shown!r} cannot be a folder name: use letters, digits and "
            f"{' '.join(SLUG_MARKS)} ({MAX_NAME_BYTES} bytes at most, no leading '.'), e.g. "
            f"{safe_slug(safe_slug(text).strip('._-') or 'my_run')!r}",
            where,
        )
    return text


def inside(root: str | Path, path: str | Path) -> Path:
    """`path`, after checking that it lies inside `root`; a HarnessError otherwise. Every
    folder a run writes to is derived through this.

    The check is on the names (`..` collapsed), not on symlinks: a name from a config or a
    results file cannot climb out, while a symlink the user made inside --out or the cache
    (a stage moved to a bigger disk) keeps working."""
    base, target = Path(os.path.abspath(root)), Path(os.path.abspath(path))
    if target != base and base not in target.parents:
        raise HarnessError(f"refusing to write outside {base}", str(path))
    return Path(path)
