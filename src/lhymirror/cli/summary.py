"""The end of a ``sync``: one line of counts, and the files that did not make it, by cause.

Each cause (host not reachable, link gone, quota, HTML page, checksum mismatch, storage,
offline, manual step) is one group: a heading with its count, each file with its last error,
then the one hint that helps with that cause. "Run the same command again" is said only where
a rerun can help.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lhymirror.core.units import count_of, format_size
from lhymirror.fetch.plan import OFFLINE_HINT, RESUME_HINT
from lhymirror.fetch.report import OFFLINE_LABEL, FileOutcome, SyncReport

MAX_LISTED = 10  # files listed per cause at the default level (--verbose lists them all)


@dataclass(frozen=True)
class Cause:
    """How a group of files that did not make it is shown: a heading and the hint that helps."""

    heading: str
    hint: str  # may name {import_command} and {rejected}


# One group per cause the library records (lhymirror.fetch.report.FileOutcome.failure_cause),
# in the order they are shown.
CAUSES: dict[str, Cause] = {
    "unreachable": Cause(
        "host not reachable",
        "Check the network connection and proxy settings (HTTPS_PROXY, ALL_PROXY), or sync "
        "from a classmate's copy with --from URL; then run the same command again.",
    ),
    "quota": Cause(
        "Google Drive quota exceeded",
        "Drive allows only so many downloads of a file a day: wait a few hours and run the "
        "same command again, or download it in a browser and import it: {import_command}",
    ),
    "gone": Cause(
        "gone: the link died (HTTP 404/410 or no longer shared)",
        "The manifest needs a new source for it; tell its maintainers. If you get the file "
        "elsewhere, import it: {import_command}",
    ),
    "html": Cause(
        "an HTML page came instead of the file",
        "A login, quota or error page was served; open the link in a browser, download the "
        "file and import it: {import_command}",
    ),
    "checksum": Cause(
        "checksum mismatch",
        "The bytes are not the ones the manifest pins; they are kept under {rejected} and "
        "nothing was replaced. If the course re-published the file, a maintainer can take it "
        "with `sync --accept-upstream ID` and `lhymirror pin`.",
    ),
    "copy": Cause(
        "only copies that differ from the pinned file",
        "The copies tried serve other bytes than the manifest pins (kept under {rejected}; "
        "nothing was replaced). Sync from the file's own source, or import the right file: "
        "{import_command}",
    ),
    "unusable": Cause(
        "not a usable file at its path (a link, a folder, a special or unreadable file)",
        "lhymirror never follows links nor replaces what it did not write: remove or replace "
        "what stands there, then run the same command again.",
    ),
    "storage": Cause(
        "could not be stored",
        "Free some space or fix the permissions (or choose another --root), then run the "
        "same command again.",
    ),
    "offline": Cause(OFFLINE_LABEL, OFFLINE_HINT),
    "other": Cause("failed", RESUME_HINT),
}


def summary_counts(report: SyncReport) -> str:
    """One line: how many files ended which way, and how much was transferred."""
    failed = report.with_outcome("failed")
    offline = sum(1 for f in failed if f.failure_cause == "offline")
    counts = report.counts()
    parts = [
        f"{counts['downloaded']} downloaded",
        f"{counts['resumed']} resumed",
        f"{counts['up-to-date']} already up to date",
        f"{len(failed) - offline} failed",
        f"{offline} {OFFLINE_LABEL}",
        f"{count_of(counts['manual'], 'manual step')} pending",
    ]
    shown = [part for part in parts if not part.startswith("0 ")] or ["nothing to do"]
    return ", ".join(shown) + f" ({format_size(report.bytes_received)} received)"


def host_lines(report: SyncReport) -> list[str]:
    """One line per host that was down: skipped for the rest of the run."""
    return [
        f"{down.host}: not reachable ({down.reason}); skipped for the rest of the run "
        f"({count_of(down.files, 'file')} had a source there)"
        for down in report.hosts_down
    ]


def problem_lines(
    report: SyncReport,
    import_command: Callable[[str], str],
    *,
    rejected: str = ".lhymirror/rejected/",
    verbose: bool = False,
) -> list[str]:
    """The files that did not make it, grouped by cause, each group ending with its hint."""
    groups: dict[str, list[FileOutcome]] = {}
    for outcome in report.files:
        if outcome.outcome in ("failed", "manual"):
            groups.setdefault(outcome.failure_cause or "other", []).append(outcome)
    lines = []
    for key, cause in CAUSES.items():
        if key in groups:
            lines += _group_lines(cause, groups[key], import_command, rejected, verbose=verbose)
    if "manual" in groups:
        lines += _manual_lines(groups["manual"], import_command)
    return lines


def _group_lines(
    cause: Cause,
    files: list[FileOutcome],
    import_command: Callable[[str], str],
    rejected: str,
    *,
    verbose: bool,
) -> list[str]:
    lines = [f"{cause.heading} ({count_of(len(files), 'file')}):"]
    listed = files if verbose else files[:MAX_LISTED]
    lines += [f"  {f.path}: {last_error(f)}" for f in listed]
    if len(listed) < len(files):
        lines.append(f"  … and {len(files) - len(listed)} more (--verbose lists them all)")
    example = import_command(files[0].id) if len(files) == 1 else import_command("ID")
    hint = cause.hint.format(import_command=example, rejected=rejected)
    lines.append(f"  hint: {hint}")
    return lines


def _manual_lines(files: list[FileOutcome], import_command: Callable[[str], str]) -> list[str]:
    lines = [f"manual steps ({count_of(len(files), 'file')}):"]
    for pending in files:
        lines.append(f"  {pending.path}: {pending.reason}")
        lines.append(f"    then import it: {import_command(pending.id)}")
    return lines


def last_error(outcome: FileOutcome) -> str:
    """A failure's detail: without the "what (path): " the heading says and the hint after it.

    Reasons read ``<what> (<where>): <detail>. <Hint>`` (see ``LhymirrorError.message``).
    """
    reason = outcome.reason or "no reason given"
    at = reason.find(outcome.path)
    end = reason.find("): ", at) if at >= 0 else -1
    if end >= 0:
        reason = reason[end + 3 :]
    reason = reason.removeprefix("offline: ")
    head, _, tail = reason.rpartition(". ")
    if head and tail[:1].isupper():
        reason = head
    return reason.rstrip(".")
