"""The ``lhymirror`` command line: a thin layer over the library.

Each command lives in its own module with a ``register(subparsers)`` function that adds its parser
and sets ``handler``; :mod:`lhymirror.cli.commands` lists them. This module builds the parser
(importing only the module of the command being run), runs the handler and maps errors to exit
codes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import sys
from collections.abc import Sequence

from lhymirror import __version__
from lhymirror.cli.commands import COMMANDS
from lhymirror.cli.common import HelpFormatter, Parser, add_verbosity_options, hint_for_this_run
from lhymirror.cli.exitcodes import ExitStatus, exit_status_for
from lhymirror.cli.jsonout import print_document, wants_json
from lhymirror.cli.signals import Terminated, terminate_as_interrupt
from lhymirror.core.errors import LhymirrorError, ManifestError, UsageError

DESCRIPTION = """\
Keep complete, verified, offline copies of Hung-yi Lee's NTU Machine Learning course:
download a year's files (sync), pack them into an archive (pack) and prove it intact (verify).
Run `lhymirror COMMAND --help` for each command's options and an example.
"""

RESUME = "Run the same command again to resume."

EXAMPLE = """\
example:
  lhymirror list 2022
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with *only*, other commands are placeholders (name and summary).

    ``only=""`` registers no command in full: ``--version`` and ``--help`` need none.
    """
    parser = Parser(
        prog="lhymirror",
        description=DESCRIPTION,
        epilog=EXAMPLE,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lhymirror {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks for errors (for bug reports)"
    )
    add_verbosity_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        if only is None or only == name:
            importlib.import_module(f"lhymirror.cli.{command.module}").register(subparsers)
        else:
            subparsers.add_parser(name, help=command.summary, add_help=False)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The sub-command named on the command line, if any (the first word not an option)."""
    first = next((word for word in argv if not word.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit status."""
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_command_in(words) or "")
    args = _parse(parser, words)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return ExitStatus.USAGE
    try:
        with terminate_as_interrupt():
            return int(args.handler(args))
    except LhymirrorError as error:
        hint_for_this_run(args, error)
        if args.debug:
            import traceback  # noqa: PLC0415 - only for --debug

            traceback.print_exc()
        if wants_json(args):
            print_document(args, error=error)
        report_error(error)
        return exit_status_for(error)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (see cli.signals)
        status = (
            ExitStatus.TERMINATED if isinstance(interrupt, Terminated) else ExitStatus.INTERRUPTED
        )
        if wants_json(args):
            interrupted = LhymirrorError("interrupted", hint=RESUME)
            print_document(args, error=interrupted, status=status)
        print("lhymirror: interrupted; run the same command again to resume.", file=sys.stderr)
        return status
    except BrokenPipeError:
        # The reader went away (e.g. `lhymirror list 2022 | head`): not an error of ours.
        sys.stderr.close()
        return ExitStatus.OK


def _parse_all(parser: argparse.ArgumentParser, words: list[str]) -> argparse.Namespace:
    """``parse_args``, but a word no option takes is reported by the command that was named.

    (argparse reports it from the top, pointing at `lhymirror --help` instead.)
    """
    args, extras = parser.parse_known_args(words)
    if extras:
        named = parser
        while (chosen := _chosen_command(named, args)) is not None:
            named = chosen
        named.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def _chosen_command(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser | None:
    for action in parser._actions:  # argparse has no public way to the sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            return chosen if isinstance(chosen, argparse.ArgumentParser) else None
    return None


def _parse(parser: argparse.ArgumentParser, words: list[str]) -> argparse.Namespace:
    """Parse the arguments; with ``--json``, an argument error is a JSON document too."""
    if "--json" not in words:
        return _parse_all(parser, words)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return _parse_all(parser, words)
    except SystemExit as exit_:
        message = captured.getvalue()
        sys.stderr.write(message)
        if exit_.code == ExitStatus.USAGE:
            line = message.strip().splitlines()[-1]
            what = line.partition(": error: ")[2] or line  # after `lhymirror sync: error: `
            where = argparse.Namespace(command=_command_in(words) or "lhymirror")
            print_document(where, error=UsageError(what), status=ExitStatus.USAGE)
        raise


def report_error(error: LhymirrorError) -> None:
    """Print an expected error as one line (plus the list of problems of a manifest)."""
    if isinstance(error, ManifestError) and len(error.problems) > 1:
        for problem in error.problems:
            print(f"  {error.where}: {problem}", file=sys.stderr)
    print(f"lhymirror: error: {error.message}", file=sys.stderr)
