"""Errors a user can fix; the CLI prints them as one line and exits 2, no traceback."""

from __future__ import annotations


def one_line(text: str) -> str:
    """`text` with line breaks and other unprintable characters escaped (`\\n`, `\\x1e`,
    `\\u2028`): a key or value a user typed can hold them, and the error must stay one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class HarnessError(Exception):
    """An error in the user's input (config, data path, storage URL, ...).

    `where` names the file (and, for configs, the dotted key) so the message alone tells the
    user what to edit.
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        self.message = one_line(str(message))
        self.where = None if where is None else one_line(str(where))
        super().__init__(f"{self.where}: {self.message}" if where else self.message)


class ConfigError(HarnessError):
    """A config file or command-line override is invalid."""


class ArgumentError(ValueError):
    """A module refuses one of its constructor arguments. `arg` names it (as the config
    field that feeds it, where the builder knows one), so a check that builds the nets from
    a config can name the config key instead of re-deriving the module's rule."""

    def __init__(self, arg: str, message: str) -> None:
        self.arg = arg
        super().__init__(message)
