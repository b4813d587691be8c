"""Reading one YAML file (experiment, base, sweep, metric suite): every way it can be wrong
is one ConfigError naming it, never a traceback; an empty file is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError


def read_yaml(path: Path, resolve: bool = True) -> dict[str, Any]:
    """One YAML file as a plain dict (OmegaConf: `${...}` interpolation works; resolve=False
    leaves it for the caller, e.g. until a `base:` chain is merged)."""
    data = load_yaml(path, resolve)
    if data == {} and no_document(path):
        # An empty or comment-only file is a mistake (the wrong file, a save that failed),
        # not a request for the defaults: that would silently run the default experiment.
        raise ConfigError("empty file: no settings, only blank lines or comments (write `{}` "
                          "to mean the defaults on purpose)", str(path))  # fmt: skip
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", str(path))
    return data


def no_document(path: Path) -> bool:
    """Blank, comments only, `---` or `~`: nothing written (`{}` is something)."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) in (None, "")
    except yaml.YAMLError:  # OmegaConf's loader read it, PyYAML's stricter one did not
        return False


def load_yaml(path: Path, resolve: bool = True) -> Any:
    """The parsed (interpolated) file; every way it can fail is a ConfigError naming it."""
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=resolve)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{line}malformed YAML: {problem}", str(path)) from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot read: {str(err).splitlines()[0]}", str(path)) from None
    except OSError as err:
        raise ConfigError(f"cannot read: {err.strerror}", str(path)) from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                          f"{err.start})", str(path)) from None  # fmt: skip
    except RecursionError:
        raise ConfigError("malformed YAML: nested too deeply", str(path)) from None
    except Exception as err:  # noqa: BLE001 PyYAML's tag constructors raise plain errors
        # (`!!int abc`: ValueError, `!!int ''`: IndexError): all of them are about the file
        raise ConfigError(f"malformed YAML: {type(err).__name__}: {err}", str(path)) from None


def is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def resolve_merged(merged: dict[str, Any], where: str) -> dict[str, Any]:
    """`${...}` in a dict merged from several files, resolved once over the whole of it
    (a child's `${prior.lr}` finds its base's prior.lr)."""
    try:
        resolved = OmegaConf.to_container(OmegaConf.create(merged), resolve=True)
        return resolved  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        where = f"{where}: {key}" if key else where
        raise ConfigError(f"cannot resolve: {str(err).splitlines()[0]}", where) from None
