"""Pieces every command shares: help formatting, manifest selection, output helpers."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from lhymirror.cli.commands import COMMANDS
from lhymirror.core.errors import LhymirrorError, UsageError
from lhymirror.core.units import format_size

if TYPE_CHECKING:  # imported when used: --version and --help must not pay for pydantic
    from lhymirror.manifest.model import Manifest
    from lhymirror.mirror.store import MirrorStore

__all__ = [
    "HelpFormatter",
    "Parser",
    "add_command",
    "add_list_option",
    "add_manifest_arguments",
    "add_root_argument",
    "add_verbosity_options",
    "byte_progress",
    "format_size",
    "mirror_root",
    "positive_int",
    "selected_manifest",
    "selected_store",
    "year_number",
]

ROOT_ENV = "LHYMIRROR_ROOT"
DEFAULT_ROOT = Path("mirror")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-written line breaks of descriptions and examples."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the option plainly (``--jobs: …``)."""

    def error(self, message: str) -> NoReturn:
        """Print one error line pointing at ``--help``, then exit with the usage status (2)."""
        self.exit(
            2,
            f"{self.prog}: error: {_plain_option_error(message)}. See `{self.prog} --help`.\n",
        )


def _plain_option_error(message: str) -> str:
    """``argument --jobs/-j: x`` becomes ``--jobs: x`` (the long name is the one documented)."""
    match = re.match(r"argument ([^:]+): (.*)", message, re.DOTALL)
    if match is None:
        return message
    names, rest = match.groups()
    return f"{names.split('/')[0]}: {rest}"


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (``--jobs``)."""
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def year_number(text: str) -> int:
    """An argparse type: a course year such as 2022."""
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a year such as 2022, got {text!r}") from None


class _ListAction(argparse.Action):
    """One value per use, split at commas; repeated uses add up (``--only a,b --only c``).

    One value per use (not ``nargs="+"``) so an option never swallows the YEAR after it.
    argparse would check ``choices`` against the whole ``a,b`` text, so *allowed* is checked
    here, item by item.
    """

    def __init__(self, *args: Any, allowed: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allowed = allowed

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        items = [item.strip() for item in str(values).split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentError(self, f"expected {self.metavar}, got {values!r}")
        wrong = [item for item in items if self.allowed is not None and item not in self.allowed]
        if wrong:
            choices = ", ".join(self.allowed or ())
            raise argparse.ArgumentError(self, f"unknown value {wrong[0]!r} (one of {choices})")
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), *items])


def add_list_option(
    parser: argparse.ArgumentParser,
    *flags: str,
    metavar: str,
    help: str,
    choices: Sequence[str] | None = None,
) -> None:
    """A repeatable option whose values may also be comma-separated; the default is ``[]``."""
    parser.add_argument(
        *flags, action=_ListAction, default=[], metavar=metavar, help=help, allowed=choices
    )


def add_command(
    subparsers: Any,
    name: str,
    *,
    description: str,
    example: str,
    summary: str | None = None,
) -> argparse.ArgumentParser:
    """Add a sub-command whose ``--help`` ends with an example.

    The one-line summary of a top-level command comes from :data:`commands.COMMANDS`.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary if summary is not None else COMMANDS[name].summary,
        description=textwrap.dedent(description).strip(),
        epilog="example:\n" + textwrap.indent(textwrap.dedent(example).strip(), "  "),
        formatter_class=HelpFormatter,
    )
    # Also accepted after the command; SUPPRESS keeps a --debug given before it.
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    add_verbosity_options(parser, default=argparse.SUPPRESS)
    return parser


def add_verbosity_options(parser: argparse.ArgumentParser, *, default: Any = False) -> None:
    """``-q/--quiet`` and ``-v/--verbose``, which every command takes.

    The top-level parser has them with real defaults; each command's parser with SUPPRESS, so
    ``lhymirror -q sync`` and ``lhymirror sync -q`` mean the same.
    """
    levels = parser.add_mutually_exclusive_group()
    levels.add_argument(
        "-q", "--quiet", action="store_true", default=default,
        help="no progress bar, no summary: only errors (and the report a command is for)",
    )  # fmt: skip
    levels.add_argument(
        "-v", "--verbose", action="store_true", default=default,
        help="more detail where there is some (sync: each download attempt as one line)",
    )  # fmt: skip


def add_manifest_arguments(parser: argparse.ArgumentParser) -> None:
    """``YEAR`` | ``--year YEAR`` | ``--manifest FILE``: which manifest a command works on."""
    parser.add_argument("year_pos", nargs="?", type=year_number, metavar="YEAR", help="course year")
    parser.add_argument(
        "--year", type=year_number, dest="year_opt", metavar="YEAR", help="course year"
    )
    parser.add_argument(
        "--manifest", type=Path, metavar="FILE", help="use this manifest instead of a shipped one"
    )


def add_root_argument(parser: argparse.ArgumentParser, *, help_prefix: str = "") -> None:
    """``--root DIR``: the mirror folder (default ``$LHYMIRROR_ROOT``, else ``./mirror``)."""
    parser.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help=f"{help_prefix}the mirror folder (default: ${ROOT_ENV}, else ./{DEFAULT_ROOT})",
    )


def mirror_root(root: Path | None) -> Path:
    """The mirror folder: ``--root``, else ``$LHYMIRROR_ROOT``, else ``./mirror``."""
    if root is None:
        root = Path(os.environ.get(ROOT_ENV, "").strip() or DEFAULT_ROOT)
    return root.expanduser()


def selected_store(args: argparse.Namespace, manifest: Manifest) -> MirrorStore:
    """The mirror of the manifest's year under the chosen root."""
    from lhymirror.api import open_mirror  # noqa: PLC0415

    return open_mirror(manifest, mirror_root(args.root))


def this_run_command(args: argparse.Namespace, manifest: Manifest, command: str, *rest: str) -> str:
    """``lhymirror COMMAND`` for this run's manifest (or year) and root; *rest* before --root."""
    selection = f"--manifest {args.manifest}" if args.manifest else str(manifest.year)
    root = f" --root {args.root}" if args.root else ""
    return " ".join(["lhymirror", command, selection, *rest]) + root


def selected_manifest(args: argparse.Namespace) -> tuple[Manifest, Path]:
    """Load the manifest chosen by ``YEAR`` / ``--year`` / ``--manifest``."""
    from lhymirror.api import open_manifest  # noqa: PLC0415

    return open_manifest(_selected_year(args), args.manifest)


def _selected_year(args: argparse.Namespace) -> int | None:
    if args.year_pos is not None and args.year_opt is not None and args.year_pos != args.year_opt:
        raise UsageError(
            "two different years given",
            detail=f"{args.year_pos} and --year {args.year_opt}",
            hint="Give the year once.",
        )
    year: int | None = args.year_pos if args.year_pos is not None else args.year_opt
    return year


@contextlib.contextmanager
def byte_progress(
    desc: str, *, total: int | None = None, quiet: bool = False
) -> Iterator[Callable[[int], None]]:
    """A byte progress bar on stderr, shown only on a terminal and never when *quiet*."""
    if quiet or not sys.stderr.isatty():
        yield _ignore  # and tqdm is not even imported: it costs start-up time in scripts
        return
    from tqdm import tqdm  # noqa: PLC0415

    with tqdm(
        total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr, leave=False
    ) as bar:

        def advance(nbytes: int) -> None:
            bar.update(nbytes)

        yield advance


def _ignore(nbytes: int) -> None:
    """A progress callback that shows nothing."""


class ByteProgress:
    """Renders a library operation's ``CheckEvents`` as :func:`byte_progress` bars."""

    def __init__(self, *, quiet: bool = False) -> None:
        self._quiet = quiet
        self._bars = contextlib.ExitStack()
        self._advance: Callable[[int], None] = _ignore

    def checking(self, what: str, total: int | None) -> None:
        """A bar for *what*, of *total* bytes when known."""
        self._advance = self._bars.enter_context(
            byte_progress(what, total=total, quiet=self._quiet)
        )

    def progressed(self, nbytes: int) -> None:
        """Advance the bar."""
        self._advance(nbytes)

    def __enter__(self) -> ByteProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.close()


_COMMAND_WITH_YEAR = re.compile(r"`lhymirror ([a-z]+) (\d{4})\b")


def hint_for_this_run(args: argparse.Namespace, error: LhymirrorError) -> LhymirrorError:
    """*error* with its hint's ```lhymirror CMD YEAR``` in this run's terms.

    The library words its hints with the year; a run on ``--manifest FILE`` (and ``--root
    DIR``) needs that file and folder named instead, or the command it suggests fails.
    """
    manifest = getattr(args, "manifest", None)
    if not error.hint or not manifest:
        return error
    root = getattr(args, "root", None)

    def reworded(match: re.Match[str]) -> str:
        command = match.group(1)
        where = f" --root {root}" if root and command != "list" else ""
        return f"`lhymirror {command} --manifest {manifest}{where}"

    error.hint = _COMMAND_WITH_YEAR.sub(reworded, error.hint)
    return error
