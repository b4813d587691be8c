"""What every verb of the CLI shares: KEY=VALUE overrides anywhere on the line, -v/-q and
the logging handler, --no-progress, and help that shows defaults and an example.

Overrides are picked out of the command line before argparse sees it, so `run FILE --out
DIR decoder.eta=0.5` and `run FILE decoder.eta=0.5 --out DIR` mean the same; `--set K=V`
(the manipulation verbs' old spelling) is the same override.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from . import progress

OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*=")
SET_ALIAS = "--set"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (unless the help already says it, or there is
    none worth saying: unset, off, empty); the epilog (examples) printed as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, [], 0, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def common_options() -> argparse.ArgumentParser:
    """-v/-q and --no-progress, shared by every verb (argparse `parents`)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="more log lines (-v: info, -vv: debug)")  # fmt: skip
    g.add_argument("-q", "--quiet", action="store_true", help="errors only, no progress bars")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bars (default: bars when stderr is a terminal)")  # fmt: skip
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help=argparse.SUPPRESS)  # the sweep verb's old spelling  # fmt: skip
    return p


def add_overrides(p: argparse.ArgumentParser) -> None:
    """The verb takes KEY=VALUE overrides (anywhere on the line, repeatable)."""
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted config overrides, anywhere on the line, e.g. decoder.eta=0.5",
    )
    p.add_argument(SET_ALIAS, dest="set_overrides", action="append", default=[],
                   metavar="KEY=VALUE", help=argparse.SUPPRESS)  # fmt: skip


def split_overrides(sub: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """(argv without overrides, overrides in command-line order). A token is an override
    when it reads KEY=VALUE, is not the value of an option and is not an existing file;
    `--set K=V` is one too. After `--` nothing is picked out."""
    takes_value = {o for a in sub._actions if a.option_strings and a.nargs != 0
                   for o in a.option_strings}  # fmt: skip
    rest: list[str] = []
    found: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            rest += argv[i:]
            break
        if tok == SET_ALIAS and i + 1 < len(argv):
            found.append(argv[i + 1])
            i += 2
            continue
        after_option = bool(rest) and rest[-1] in takes_value
        if OVERRIDE.match(tok) and not after_option and not is_path(tok):
            found.append(tok)
        else:
            rest.append(tok)
        i += 1
    return rest, found


class _Handler(logging.StreamHandler):
    """Ours (main() may run twice in one process: replace it, keep others' handlers)."""


class _Format(logging.Formatter):
    """Info lines as written; warnings and worse prefixed by their level, like `error:`."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


def configure(args: argparse.Namespace) -> None:
    """One stderr handler for the harness's loggers and Python warnings, at the level -v/-q
    ask for (default: warnings), and the progress-bar switch."""
    verbose, quiet = getattr(args, "verbose", 0), getattr(args, "quiet", False)
    level = (
        logging.ERROR
        if quiet
        else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    )
    handler = _Handler(sys.stderr)
    handler.setFormatter(_Format("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _Handler)] + [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
    wanted = getattr(args, "progress", None)
    progress.enable((sys.stderr.isatty() if wanted is None else wanted) and not quiet)
    args.progress = progress.enabled()


def is_path(token: str) -> bool:
    """An existing file or folder (a name the OS refuses, e.g. too long, is none)."""
    try:
        return Path(token).exists()
    except (OSError, ValueError):
        return False
