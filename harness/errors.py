"""Errors a user can fix; the CLI prints them as one line and exits 2, no traceback."""

from __future__ import annotations


class HarnessError(Exception):
    """An error in the user's input (config, data path, storage URL, ...).

    `where` names the file (and, for configs, the dotted key) so the message alone tells the
    user what to edit.
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(HarnessError):
    """A config file or command-line override is invalid."""


class ArgumentError(ValueError):
    """A module refuses one of its constructor arguments. `arg` names it (as the config
    field that feeds it, where the builder knows one), so a check that builds the nets from
    a config can name the config key instead of re-deriving the module's rule."""

    def __init__(self, arg: str, message: str) -> None:
        self.arg = arg
        super().__init__(message)
