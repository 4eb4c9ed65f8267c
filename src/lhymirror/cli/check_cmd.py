"""``lhymirror check``: ask every source of a year whether it is still there and unchanged."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lhymirror import api
from lhymirror.cli.common import (
    add_command,
    add_list_option,
    add_manifest_arguments,
    add_root_argument,
    positive_int,
    selected_manifest,
    selected_store,
)
from lhymirror.cli.jsonout import finish, wants_json
from lhymirror.core.errors import UsageError
from lhymirror.core.units import count_of, format_size

if TYPE_CHECKING:
    from lhymirror.fetch.check import CheckReport


def register(subparsers: Any) -> None:
    """Add the ``check`` command."""
    parser = add_command(
        subparsers,
        "check",
        description="""
            For maintainers: ask every source of every file of a year whether it is still there
            and unchanged, without downloading it (HEAD, or GET of one byte where HEAD is
            refused). Each source is alive, changed (size differs from the manifest, or ETag /
            Last-Modified from what the mirror recorded when it downloaded from it), moved
            (permanently redirected), gone, quota (rate limited, Drive's quota page),
            unreachable or unknown (e.g. Kaggle without credentials). At most --per-host
            requests go to one host at a time. Exit status: 0 when nothing is gone, unreachable
            or changed; 4 when some source is gone or unreachable; 5 when some changed.
        """,
        example="""
            lhymirror check 2022
            lhymirror check 2022 --only hw03-food11 --json
            lhymirror check 2021 --archive --markdown link-report.md
        """,
    )
    add_manifest_arguments(parser)
    add_root_argument(parser, help_prefix="where recorded ETags are read from: ")
    add_list_option(parser, "--only", metavar="ID", help="check only these entries (repeatable)")
    parser.add_argument(
        "--jobs", type=positive_int, default=8, metavar="N", help="requests at once (default 8)"
    )
    parser.add_argument(
        "--per-host", type=positive_int, default=2, metavar="N",
        help="requests at once to one host (default 2)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=float, default=20.0, metavar="SECONDS",
        help="give up on a source after this long without an answer (default 20)",
    )  # fmt: skip
    parser.add_argument(
        "--archive", action="store_true",
        help="also ask the Internet Archive for the capture sync tries last (pinned files)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--markdown", type=Path, metavar="FILE", help="also write the table as Markdown to FILE"
    )
    parser.add_argument(
        "--offline", action="store_true", help="refused: checking sources needs the network"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Probe the sources, print the table (or JSON), write the Markdown report, set the exit."""
    if args.offline:
        raise UsageError(
            "check needs the network",
            where="--offline",
            hint="Run `lhymirror status` for what can be known without it.",
        )
    manifest, _ = selected_manifest(args)
    report = api.check(
        manifest,
        selected_store(args, manifest),
        only=args.only or (),
        jobs=args.jobs,
        per_host=args.per_host,
        timeout=args.timeout,
        archive=args.archive,
    )
    if args.markdown is not None:
        _write_markdown(args.markdown, manifest.course, report)
    if not wants_json(args):
        _print_table(report)
    return finish(args, report.to_json(), report.error())


def _rows(report: CheckReport) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    for check in report.checks:
        entry = (
            check.entry_id if check.part is None else f"{check.entry_id} [part {check.part + 1}]"
        )
        probe = check.probe
        facts = [probe.detail] if probe.detail else []
        if probe.status == "alive" and probe.size is not None:
            facts.append(format_size(probe.size))
        rows.append((entry, probe.status, check.source, "; ".join(facts)))
    return rows


def _print_table(report: CheckReport) -> None:
    rows = _rows(report)
    width = max((len(row[0]) for row in rows), default=5)
    previous = None
    for entry, status, source, facts in rows:
        shown = entry if entry != previous else ""
        previous = entry
        print(f"{shown:<{width}}  {status:<11}  {source}" + (f"  ({facts})" if facts else ""))
    print(_summary(report))


def _summary(report: CheckReport) -> str:
    counts = report.counts
    found = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    return f"{count_of(len(report.checks), 'source')} checked: {found or 'none'}"


def _write_markdown(path: Path, course: str, report: CheckReport) -> None:
    lines = [
        f"# Link check: {course} {report.year}",
        "",
        _summary(report) + ".",
        "",
        "| Entry | Status | Source | Detail |",
        "|---|---|---|---|",
    ]
    for entry, status, source, facts in _rows(report):
        link = f"<{source}>" if source.startswith(("https://", "http://")) else f"`{source}`"
        cells = (entry, f"**{status}**" if status != "alive" else status, link, facts)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    try:
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError("cannot write the report", where=str(path), detail=str(exc)) from exc
