"""Plugin files: a user's prior kind or data source, registered from one file.

An experiment lists them under `plugins:` (a .py path relative to the YAML, or a module name
importable from the working directory); $HARNESS_PLUGINS adds more (os.pathsep-separated).
They are imported before the experiment is validated, so their names are valid values of
`prior.kind` / `data.source`. A plugin registers into harness.registry, e.g.

    from harness.registry import PRIOR_KINDS
    PRIOR_KINDS.register("mine", MyKind())

Each file or module is imported once per process.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError

ENV = "HARNESS_PLUGINS"
_loaded: dict[str, Any] = {}  # resolved path or module name -> module


def from_env() -> list[str]:
    return [p for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip()]


def resolve(spec: str, base: Path) -> str:
    """A path (ends in .py or has a separator) made absolute against `base`; a module name
    as it is."""
    if spec.endswith(".py") or "/" in spec or os.sep in spec:
        return str((base / spec).resolve())
    return spec


def load_plugins(specs: Any, base: Path, where: str) -> list[str]:
    """Import each plugin (paths relative to `base`); ConfigError naming `where` on a
    missing file or a plugin that fails to import. Returns the resolved specs."""
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise ConfigError(f"plugins: expected a list of files or modules, got {specs!r}", where)
    resolved = [resolve(s, base) for s in specs]
    for spec in resolved:
        load_plugin(spec, where)
    return resolved


def load_plugin(spec: str, where: str) -> Any:
    if spec in _loaded:
        return _loaded[spec]
    try:
        if spec.endswith(".py"):
            module = _import_file(spec, where)
        else:
            module = importlib.import_module(spec)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 (the plugin's own bug: one line, its name first)
        first = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError(f"plugins: {spec}: {type(err).__name__}: {first}", where) from None
    _loaded[spec] = module
    return module


def _import_file(path: str, where: str) -> Any:
    if not Path(path).is_file():
        raise ConfigError(f"plugins: file not found: {path}", where)
    name = f"harness_plugin_{Path(path).stem}_{hashlib.sha256(path.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
