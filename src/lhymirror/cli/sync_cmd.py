"""``lhymirror sync``: download a year's files into the local mirror, verified and resumable."""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import replace
from typing import Any

from lhymirror import api
from lhymirror.api import LOCK_WAIT, PER_HOST
from lhymirror.cli.common import (
    add_command,
    add_list_option,
    add_manifest_arguments,
    add_root_argument,
    format_size,
    positive_int,
    selected_manifest,
    selected_store,
    this_run_command,
)
from lhymirror.cli.exitcodes import ExitStatus
from lhymirror.cli.jsonout import JsonLines, finish, wants_json
from lhymirror.cli.progress import TransferProgress
from lhymirror.cli.summary import (
    host_lines,
    problem_lines,
    summary_counts,
)
from lhymirror.cli.swarm_options import add_session_arguments, session_options
from lhymirror.core.units import count_of, parse_rate
from lhymirror.fetch.plan import PlanItem, SyncPlan
from lhymirror.fetch.policy import RetryPolicy
from lhymirror.fetch.report import SyncReport
from lhymirror.manifest.model import FILE_KINDS, Manifest
from lhymirror.mirror.store import MirrorStore
from lhymirror.swarm.leech import DEFAULT_WAIT

MIRROR_ENV = "LHYMIRROR_MIRROR"
DEFAULT_JOBS = 4


def register(subparsers: Any) -> None:
    """Add the ``sync`` command."""
    parser = add_command(
        subparsers,
        "sync",
        description=f"""
            Download every file of a year's manifest into ROOT/<year>/<path>, verify each
            against its size and sha256 and remember it. Interrupted downloads resume; files
            already verified are skipped without any network access. Files the manifest does
            not list are never touched. Where the manifest gives no checksum, the first
            verified download is recorded and later runs hold the file to it.

            Sources are tried in order: --from bases, --mirror copies, then the manifest's own.
            At the end, files that did not make it are listed by cause, each cause with the
            hint that helps; -v prints every attempt as it happens, -q only errors.
            Exit status: 0 all files present and verified, 4 downloads failed, 5 integrity
            (e.g. upstream changed), 6 storage, 7 manual steps pending, 130 Ctrl-C and 143
            SIGTERM (partial downloads are kept: run the same command again to resume).
            Environment: $LHYMIRROR_ROOT (default --root), ${MIRROR_ENV} (default --mirror).
        """,
        example="""
            lhymirror sync 2022
            lhymirror sync 2022 --only 'hw0*' --kind dataset,code --jobs 8
            lhymirror sync 2022 --from /media/usb/lhymirror --offline
            lhymirror sync 2022 --swarm lhy-ml-2022-mirror.torrent
        """,
    )
    add_manifest_arguments(parser)
    add_root_argument(parser)
    parser.add_argument(
        "--jobs", "-j", type=positive_int, default=DEFAULT_JOBS, metavar="N",
        help=f"parallel transfers (default {DEFAULT_JOBS}); at most {PER_HOST} go to one "
        "course server, while --mirror and --from bases get all N",
    )  # fmt: skip
    add_list_option(
        parser, "--only", metavar="ID_OR_GLOB",
        help="only these files: ids or globs on ids or paths ('hw0*', 'data/*'); "
        "comma-separated or repeated (a comma in a path glob: [,])",
    )  # fmt: skip
    add_list_option(
        parser, "--kind", metavar="KIND", choices=FILE_KINDS,
        help=f"only files of these kinds ({', '.join(FILE_KINDS)}); comma-separated or repeated",
    )  # fmt: skip
    parser.add_argument(
        "--mirror", action="append", default=None, metavar="BASE",
        help="try a `wget --mirror` copy first: BASE/HOST/PATH of each URL (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--from", dest="from_bases", action="append", default=[], metavar="BASE",
        help="try another lhymirror mirror first: BASE/<year>/<path>; a URL or folder",
    )  # fmt: skip
    parser.add_argument(
        "--fallback-upstream", action="store_true",
        help="when a --from or --mirror base cannot be reached, download from the original "
        "sources instead of stopping",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=_seconds, default=None, metavar="SECONDS",
        help="give up on a connection, or a server that sends nothing, after this long "
        "(default 10 s to connect, 30 s for data)",
    )  # fmt: skip
    parser.add_argument(
        "--retries", type=_count, default=None, metavar="N",
        help="tries after the first one, per source, before the next source (default 4)",
    )  # fmt: skip
    parser.add_argument(
        "--limit-rate", type=_rate, default=None, metavar="RATE",
        help="cap the total download speed of all transfers, in bytes per second: "
        "e.g. 500k or 2M (k, M, G = 1024, 1024², 1024³)",
    )  # fmt: skip
    parser.add_argument(
        "--split-size", type=_split_size, default=None, metavar="SIZE",
        help="fetch a file with at least SIZE still to come from a --from or --mirror base as "
        "up to 4 ranges at once, on connections --jobs has to spare (default: 32M, or the "
        "run's bytes / --jobs when smaller, at least 4M, and only when one connection would "
        "need over a second for the rest; given: always from SIZE; 0: never)",
    )  # fmt: skip
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would be done; touch nothing"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    parser.add_argument(
        "--json-lines", action="store_true",
        help="each event as one JSON line on stdout while it runs, then the report on one line",
    )  # fmt: skip
    parser.add_argument(
        "--offline", action="store_true",
        help="never use the network; report what would need it",
    )  # fmt: skip
    parser.add_argument(
        "--rehash", action="store_true", help="re-hash files even when unchanged since verified"
    )
    add_list_option(
        parser, "--accept-upstream", metavar="ID",
        help="take these files as upstream serves them now, although they differ from the "
        "manifest's checksum (recorded; `lhymirror pin` writes them back); comma-separated "
        "or repeated",
    )  # fmt: skip
    parser.add_argument(
        "--swarm", metavar="TORRENT",
        help="first take the files from BitTorrent peers and web seeds: a .torrent of the "
        "year's mirror (`lhymirror torrent`) or a magnet link; every file is verified against "
        "the manifest, the rest come from their usual sources (swarm extra)",
    )  # fmt: skip
    parser.add_argument(
        "--swarm-wait", type=float, default=DEFAULT_WAIT, metavar="SECONDS",
        help=f"give up on the swarm after it delivered nothing for this long "
        f"(default {DEFAULT_WAIT:.0f})",
    )  # fmt: skip
    add_session_arguments(parser, port=None)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Plan, then (unless --dry-run) download; print the summary; return the exit status."""
    manifest, _ = selected_manifest(args)
    store = selected_store(args, manifest)
    selection: dict[str, Any] = {
        "only": args.only,
        "kinds": args.kind,
        "mirrors": mirror_bases(args.mirror),
        "from_bases": args.from_bases,
        "rehash": args.rehash,
        "accept_upstream": args.accept_upstream,
        "offline": args.offline,
    }
    plan = api.plan(manifest, store, **selection)
    if args.dry_run:
        if wants_json(args):
            return finish(args, {"dry_run": True, **plan.to_json()}, None)
        print("\n".join(plan_lines(plan)))
        return ExitStatus.OK
    show_bar = not args.quiet and not wants_json(args) and sys.stderr.isatty()
    swarm = None
    if args.swarm is not None:
        swarm = api.SwarmSource(args.swarm, session_options(args), args.peers, args.swarm_wait)
    quiet = args.quiet or wants_json(args)
    with TransferProgress(plan, enabled=show_bar, quiet=quiet, verbose=args.verbose) as progress:
        events: api.SyncEvents = JsonLines() if args.json_lines else progress
        report = api.sync(
            manifest,
            store,
            **selection,
            jobs=args.jobs,
            events=events,
            lock_wait=LOCK_WAIT,
            sync_plan=plan,
            swarm=swarm,
            policy=retry_policy(args),
            limit_rate=args.limit_rate,
            fallback_upstream=args.fallback_upstream,
        )
    if wants_json(args):
        return finish(args, {"dry_run": False, **report.to_json()}, report.error())
    print_report(args, manifest, store, report)
    return finish(args, {}, report.error())


def retry_policy(args: argparse.Namespace) -> RetryPolicy | None:
    """The retry policy --timeout and --retries ask for (None: the default one)."""
    changes: dict[str, Any] = {}
    if args.timeout is not None:
        changes.update(connect_timeout=args.timeout, read_timeout=args.timeout)
    if args.retries is not None:
        changes.update(attempts=args.retries + 1)
    if args.split_size is not None:
        # 0: never split; a size given is used as it is
        changes.update(
            segment_min_size=args.split_size or 2**63, segment_share=False, segment_min_seconds=0
        )
    return replace(RetryPolicy(), **changes) if changes else None


def _split_size(text: str) -> int:
    if text.strip() == "0":
        return 0
    try:
        return int(parse_rate(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 8M or 32M (or 0), got {text!r}"
        ) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _rate(text: str) -> float:
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def mirror_bases(given: list[str] | None) -> list[str]:
    """``--mirror`` values, else ``$LHYMIRROR_MIRROR`` split at spaces or commas."""
    if given is not None:
        return given
    return [base for base in re.split(r"[\s,]+", os.environ.get(MIRROR_ENV, "")) if base]


def print_report(
    args: argparse.Namespace, manifest: Manifest, store: MirrorStore, report: SyncReport
) -> None:
    """The summary: problems by cause on stderr, counts on stdout."""
    if report.no_network:  # the error says it all; a line per file would only repeat it
        lines = []
    else:
        lines = host_lines(report)
        lines += problem_lines(
            report,
            lambda entry_id: this_run_command(args, manifest, "add", entry_id, "FILE"),
            rejected=str(store.meta_dir / "rejected") + "/",
            verbose=args.verbose,
        )
    for line in lines:
        print(line, file=sys.stderr)
    if not args.quiet:
        print(summary_counts(report))


# ---------------------------------------------------------------------------------------------
# --dry-run


def plan_lines(plan: SyncPlan) -> list[str]:
    """The plan as text: one line per file with work to do, then the totals."""
    lines = [_plan_line(item) for item in plan.items if item.action != "up-to-date"]
    counts = plan.counts
    unknown = sum(1 for item in plan.with_action("fetch") if item.size is None)
    sizes = f"{format_size(plan.bytes_still_needed())} still needed" + (
        f", {unknown} of unknown size" if unknown else ""
    )
    lines.append(
        f"{counts.get('up-to-date', 0)} up to date, {counts.get('fetch', 0)} to fetch "
        f"({sizes}), "
        f"{counts.get('verify', 0)} to re-hash, {counts.get('manual', 0)} manual, "
        f"{counts.get('needs-network', 0)} need the network; nothing was changed (--dry-run)"
    )
    return lines


def _plan_line(item: PlanItem) -> str:
    first = item.sources[:1] or next((p.sources[:1] for p in item.parts if p.sources), ())
    origin = f" from {first[0]}" if first else ""
    if item.action == "needs-network":
        origin = f" from {', '.join(item.withheld)}"
    parts = f" in {count_of(len(item.parts), 'part')}" if item.parts else ""
    size = format_size(item.size)
    return f"{item.action:<13} {item.id}  {item.entry.path} ({size}){parts}{origin}: {item.reason}"
