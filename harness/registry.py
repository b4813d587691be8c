"""Open-ended sets by name, as DiT's `DiT_models` dict or lm-evaluation-harness's registries.

A `Registry` is a dict with a `register` decorator and a did-you-mean answer for unknown
names. The two the config schema names live here (this module imports nothing else of the
harness, so the schema can point at them without importing what fills them):

    PRIOR_KINDS    prior.kind   built-ins: harness/stages/prior_kinds.py
    DATA_SOURCES   data.source  built-ins: harness/data/sources.py

(metrics.registry.METRICS, a suite's `metrics:`, is one too; it lives with the metrics.)

A plugin file (an experiment's `plugins:` key, or $HARNESS_PLUGINS) registers more the same
way, e.g. `PRIOR_KINDS.register("mine", MyKind())`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """name -> entry, in registration order."""

    def __init__(self, what: str) -> None:
        self.what = what  # e.g. "prior kind": how messages name an entry
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None) -> Any:
        """`register(name, entry)`, or `@register(name)` above a class or function."""
        if entry is not None:
            self._add(name, entry)
            return entry

        def decorate(obj: T) -> T:
            self._add(name, obj)
            return obj

        return decorate

    def _add(self, name: str, entry: T) -> None:
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry

    def remove(self, name: str) -> T:
        """Withdraw an entry (a test's temporary plugin); KeyError if absent."""
        return self._entries.pop(name)

    def names(self) -> list[str]:
        return list(self._entries)

    def unknown(self, name: object) -> str:
        """The one-line complaint about a name that is not registered."""
        known = self.names()
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close and isinstance(name, str) else ""
        return f"unknown value {name!r} (allowed: {', '.join(known)}){hint}"

    def get(self, name: str, key: str) -> T:
        """The entry; ConfigError naming the config `key` (e.g. prior.kind) if unknown."""
        if name not in self._entries:
            raise ConfigError(f"{key}: {self.unknown(name)}")
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        return self.get(name, self.what)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())


PRIOR_KINDS: Registry[Any] = Registry("prior kind")  # entries: stages.prior.PriorKind
DATA_SOURCES: Registry[Any] = Registry("data source")  # entries: data.sources.DataSource
