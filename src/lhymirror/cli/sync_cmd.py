"""``lhymirror sync``: download a year's files into the local mirror, verified and resumable."""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import replace
from typing import Any

from lhymirror.cli.common import (
    add_command,
    add_list_option,
    add_manifest_arguments,
    add_root_argument,
    format_size,
    positive_int,
    print_json,
    selected_manifest,
    selected_store,
)
from lhymirror.cli.exitcodes import ExitStatus
from lhymirror.cli.progress import TransferProgress, problem_lines, summary_counts
from lhymirror.cli.swarm_options import add_session_arguments, session_options
from lhymirror.core.errors import DownloadError, IncompleteError, IntegrityError, StorageError
from lhymirror.core.units import count_of, parse_rate
from lhymirror.fetch.bases import check_base, network_bases, probe_bases
from lhymirror.fetch.health import HostHealth
from lhymirror.fetch.job import Fetcher
from lhymirror.fetch.plan import OFFLINE_HINT, PlanItem, SyncPlan, plan_sync
from lhymirror.fetch.policy import RetryPolicy
from lhymirror.fetch.ratelimit import RateLimiter
from lhymirror.fetch.report import FileOutcome, SyncReport
from lhymirror.fetch.sources.kaggle import KaggleCredentials, load_credentials
from lhymirror.fetch.sync import run_sync
from lhymirror.fetch.transfer import TransferEvents
from lhymirror.manifest.model import FILE_KINDS, Manifest
from lhymirror.manifest.sources import source_kind
from lhymirror.mirror.store import MirrorStore
from lhymirror.swarm.engine import libtorrent
from lhymirror.swarm.leech import DEFAULT_WAIT, merge_reports, sync_from_swarm

MIRROR_ENV = "LHYMIRROR_MIRROR"
DEFAULT_JOBS = 4
PER_HOST = 2  # concurrent transfers to one host: polite to course servers, still parallel
LOCK_WAIT = 5.0  # seconds a second sync waits for the first before giving up


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
            Exit status: 0 all files present and verified, 4 downloads failed, 5 integrity
            (e.g. upstream changed), 6 storage, 7 manual steps pending.
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
        "--dry-run", action="store_true", help="show what would be done; touch nothing"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only problems")
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


def import_command(args: argparse.Namespace, manifest: Manifest, entry_id: str) -> str:
    """The ``lhymirror add`` command that imports a hand-downloaded file for this selection."""
    selection = f"--manifest {args.manifest}" if args.manifest else str(manifest.year)
    root = f" --root {args.root}" if args.root else ""
    return f"lhymirror add {selection} {entry_id} FILE{root}"


def run(args: argparse.Namespace) -> int:
    """Plan, then (unless --dry-run) download; print the summary; return the exit status."""
    manifest, _ = selected_manifest(args)
    store = selected_store(args, manifest)
    bases = [("--from", base) for base in args.from_bases]
    bases += [("--mirror", base) for base in mirror_bases(args.mirror)]
    for option, base in bases:
        check_base(base, option)
    use_swarm = args.swarm is not None and not args.offline and not args.dry_run
    if use_swarm:
        libtorrent()  # a missing extra is reported before any work

    def make_plan() -> SyncPlan:
        return plan_sync(
            manifest,
            store,
            only=args.only,
            kinds=args.kind,
            mirrors=mirror_bases(args.mirror),
            from_bases=args.from_bases,
            rehash=args.rehash,
            accept_upstream=args.accept_upstream,
            offline=args.offline,
        )

    plan = make_plan()
    if args.dry_run:
        if args.json:
            print_json(plan.to_json())
        else:
            print("\n".join(plan_lines(plan)))
        return ExitStatus.OK
    policy = retry_policy(args)
    if not args.offline and not args.fallback_upstream and plan.with_action("fetch"):
        network = [(option, base) for option, base in bases if network_bases([base])]
        probe_bases(network, timeout=(policy or RetryPolicy()).timeout)
    limiter = RateLimiter(args.limit_rate) if args.limit_rate else None
    show_bar = not args.quiet and sys.stdout.isatty()
    credentials = kaggle_credentials_for(plan)
    from_swarm: dict[str, FileOutcome] = {}
    health = HostHealth()
    with TransferProgress(plan, enabled=show_bar, quiet=args.quiet) as progress:
        if use_swarm and any(item.action == "fetch" for item in plan.items):
            swarm = sync_from_swarm(
                plan,
                store,
                args.swarm,
                options=session_options(args),
                events=progress,
                peers=args.peers,
                wait=args.swarm_wait,
            )
            progress.note(swarm.summary())
            from_swarm = swarm.placed
            plan = make_plan() if from_swarm else plan
        report = run_sync(
            plan,
            store,
            lambda events: build_downloader(
                store,
                events=events,
                kaggle_credentials=credentials,
                health=health,
                limiter=limiter,
                **({"policy": policy} if policy else {}),
            ),
            health=health,
            jobs=args.jobs,
            per_host=PER_HOST,
            events=progress,
            lock_wait=LOCK_WAIT,
        )
    report = merge_reports(report, from_swarm)
    print_report(args, manifest, report)
    raise_for_report(report, store)
    return ExitStatus.OK


def build_downloader(
    store: MirrorStore,
    *,
    events: TransferEvents,
    kaggle_credentials: KaggleCredentials | None,
    health: HostHealth | None = None,
    limiter: RateLimiter | None = None,
    policy: RetryPolicy | None = None,
) -> Fetcher:
    """The downloader of one worker thread (tests replace this to inject sleeps and clocks)."""
    # Imported here: requests is needed only once a file is transferred (see lhymirror.fetch.sync).
    from lhymirror.fetch.download import Downloader  # noqa: PLC0415

    return Downloader(
        store,
        events=events,
        kaggle_credentials=kaggle_credentials,
        health=health,
        limiter=limiter,
        policy=policy or RetryPolicy(),
    )


def retry_policy(args: argparse.Namespace) -> RetryPolicy | None:
    """The retry policy --timeout and --retries ask for (None: the default one)."""
    changes: dict[str, Any] = {}
    if args.timeout is not None:
        changes.update(connect_timeout=args.timeout, read_timeout=args.timeout)
    if args.retries is not None:
        changes.update(attempts=args.retries + 1)
    return replace(RetryPolicy(), **changes) if changes else None


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


def kaggle_credentials_for(plan: SyncPlan) -> KaggleCredentials | None:
    """Kaggle credentials, read only when a planned transfer may need them."""
    uses_kaggle = any(
        source_kind(source) == "kaggle"
        for item in plan.items
        if item.needs_transfer
        for source in (*item.sources, *(s for part in item.parts for s in part.sources))
    )
    return load_credentials() if uses_kaggle else None


def mirror_bases(given: list[str] | None) -> list[str]:
    """``--mirror`` values, else ``$LHYMIRROR_MIRROR`` split at spaces or commas."""
    if given is not None:
        return given
    return [base for base in re.split(r"[\s,]+", os.environ.get(MIRROR_ENV, "")) if base]


def raise_for_report(report: SyncReport, store: MirrorStore) -> None:
    """Raise the error that sums up an unfinished sync (the CLI maps it to the exit code).

    Failures outrank manual steps; among failures integrity outranks storage, which outranks
    download: the most serious finding decides. After an ``--offline`` plan the files were not
    downloaded because it forbade it, so the hint is to run without it, not to resume.
    """
    where = str(store.year_dir)
    failed = len(report.with_outcome("failed"))
    if report.failures_of("integrity"):
        raise IntegrityError(
            f"{count_of(len(report.failures_of('integrity')), 'file')} did not verify",
            where=where,
            hint="The bad bytes are kept under .lhymirror/rejected/; see the lines above.",
        )
    if report.failures_of("storage"):
        raise StorageError(
            f"{count_of(failed, 'file')} could not be stored",
            where=where,
            hint="Free some space or fix the permissions, then run the same command again.",
        )
    if failed and report.no_network:
        hosts = [down.host for down in report.hosts_down]
        shown = ", ".join(hosts[:3]) + (", …" if len(hosts) > 3 else "")
        raise DownloadError(
            "no network",
            where=f"could not reach {shown}"
            if len(hosts) == 1
            else f"could not reach any of {len(hosts)} hosts: {shown}",
            hint="Check the connection or proxy settings, or sync from a classmate's copy "
            "with --from URL.",
        )
    if failed:
        raise DownloadError(
            f"{count_of(failed, 'file')} could not be downloaded",
            where=where,
            hint=OFFLINE_HINT if report.offline else "Run the same command again to resume.",
        )
    manual = len(report.with_outcome("manual"))
    if manual:
        raise IncompleteError(
            f"{count_of(manual, 'manual step')} pending",
            where=where,
            hint="Download each file as listed above and import it with `lhymirror add`.",
        )


def print_report(args: argparse.Namespace, manifest: Manifest, report: SyncReport) -> None:
    """The JSON report on stdout, or the summary (problems on stderr)."""
    if args.json:
        print_json(report.to_json())
        return
    if report.no_network:  # the error says it all; a line per file would only repeat it
        lines = []
    else:
        lines = problem_lines(
            report,
            lambda entry_id: import_command(args, manifest, entry_id),
            resume_hint=not report.offline,
        )
        lines += [
            f"{down.host}: not reachable ({down.reason}); "
            f"{count_of(down.files, 'file')} used their other sources"
            for down in report.hosts_down
        ]
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
    parts = f" in {len(item.parts)} parts" if item.parts else ""
    size = format_size(item.size)
    return f"{item.action:<13} {item.id}  {item.entry.path} ({size}){parts}{origin}: {item.reason}"
