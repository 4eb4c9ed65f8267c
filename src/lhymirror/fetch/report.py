"""What a sync did: one :class:`FileOutcome` per selected file, in a :class:`SyncReport`."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from lhymirror.core.errors import (
    DownloadError,
    IncompleteError,
    IntegrityError,
    LhymirrorError,
    StorageError,
)
from lhymirror.core.jsondata import snake_case, snake_keys
from lhymirror.core.units import count_of
from lhymirror.fetch.health import HostDown
from lhymirror.fetch.plan import OFFLINE_HINT, RESUME_HINT, PlanItem
from lhymirror.fetch.transfer import FailureCause
from lhymirror.mirror.state import FileProblem
from lhymirror.mirror.store import FileRecord

Outcome = Literal["downloaded", "resumed", "up-to-date", "failed", "manual"]
Failure = Literal["download", "integrity", "storage"]
VERIFIED_OUTCOMES = ("downloaded", "resumed", "up-to-date")
# The causes a rerun may overcome: passing network trouble, a quota, a full disk, anything else.
RERUN_HELPS: frozenset[FailureCause] = frozenset({"unreachable", "quota", "storage", "other"})
OFFLINE_LABEL = "not downloaded (offline)"  # a file --offline withheld: not a failure
NO_RERUN_HINT = "Running the same command again will not help; see the reason for each file."


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file."""

    id: str
    path: str
    outcome: Outcome
    size: int | None = None
    sha256: str | None = None
    source: str | None = None  # where the bytes came from
    bytes_received: int = 0
    reason: str | None = None  # why it failed, or the manual step to take
    failure: Failure | None = None
    # Why it failed, grouped by the help that differs (see lhymirror.fetch.transfer.FailureCause)
    cause: FailureCause | None = None
    problem: FileProblem | None = None  # what was wrong with the mirror file before this run

    def to_json(self) -> dict[str, Any]:
        """The outcome as plain data for ``sync --json`` (see docs/json.md): ``outcome`` is
        written as ``state``, the problem with its one wording."""
        data = asdict(self)
        return {
            "id": data.pop("id"),
            "path": data.pop("path"),
            "state": snake_case(data.pop("outcome")),
            **data,
            "problem": self.problem.to_json() if self.problem else None,
        }

    @property
    def verified(self) -> bool:
        """True when the file is present and verified."""
        return self.outcome in VERIFIED_OUTCOMES

    @property
    def failure_cause(self) -> FailureCause | None:
        """Why the file did not make it (``manual`` for a manual step); None when it did.

        The cause fetch recorded, else (outcomes made elsewhere) the one its failure implies.
        """
        if self.outcome == "manual":
            return "manual"
        if self.outcome != "failed":
            return None
        if self.cause is not None:
            return self.cause
        if self.failure == "integrity":
            return "checksum"
        return "storage" if self.failure == "storage" else "other"


@dataclass(frozen=True)
class SyncReport:
    """Result of a sync: one outcome per selected file, in manifest order."""

    year: int
    root: str
    files: tuple[FileOutcome, ...]
    hosts_down: tuple[HostDown, ...] = ()  # hosts that could not be reached, skipped meanwhile
    no_network: bool = False  # every host the run tried was down: nothing could be reached
    offline: bool = False  # the plan withheld network sources (``--offline``)

    @property
    def complete(self) -> bool:
        """True when every selected file is present and verified."""
        return all(f.verified for f in self.files)

    def with_outcome(self, outcome: Outcome) -> list[FileOutcome]:
        """The files that ended with *outcome*."""
        return [f for f in self.files if f.outcome == outcome]

    def counts(self) -> dict[str, int]:
        """How many files ended with each outcome (every outcome listed)."""
        counter = Counter(f.outcome for f in self.files)
        return {name: counter.get(name, 0) for name in get_args(Outcome)}

    def failures_of(self, kind: Failure) -> list[FileOutcome]:
        """Failed files of one kind (download, integrity, storage)."""
        return [f for f in self.files if f.failure == kind]

    @property
    def rerun_helps(self) -> bool:
        """True when running the same sync again may fetch some of the failed files."""
        return any(f.failure_cause in RERUN_HELPS for f in self.with_outcome("failed"))

    @property
    def bytes_received(self) -> int:
        """Bytes transferred in this run."""
        return sum(f.bytes_received for f in self.files)

    def error(self) -> LhymirrorError | None:
        """The error that sums up an unfinished sync, or None when every file is verified.

        Failures outrank manual steps; among failures integrity outranks storage, which
        outranks download: the most serious finding decides.
        """
        where = str(Path(self.root) / str(self.year))
        failed = len(self.with_outcome("failed"))
        integrity = self._integrity_error(where)
        if integrity is not None:
            return integrity
        if self.failures_of("storage"):
            return StorageError(
                f"{count_of(len(self.failures_of('storage')), 'file')} could not be stored",
                where=where,
                hint="Free some space or fix the permissions, then run the same command again.",
            )
        if failed and self.no_network:
            hosts = [down.host for down in self.hosts_down]
            shown = ", ".join(hosts[:3]) + (", …" if len(hosts) > 3 else "")
            reasons = dict.fromkeys(down.reason for down in self.hosts_down)  # the last errors
            return DownloadError(
                "no network",
                where=f"could not reach {shown}"
                if len(hosts) == 1
                else f"could not reach any of {len(hosts)} hosts: {shown}",
                detail="; ".join(list(reasons)[:3]) or None,
                hint="Check the connection or proxy settings, or sync from a classmate's copy "
                "with --from URL.",
            )
        if failed:
            return self._download_error(where)
        manual = len(self.with_outcome("manual"))
        if manual:
            return IncompleteError(
                f"{count_of(manual, 'manual step')} pending",
                where=where,
                hint="Download each of them by hand and import it with `lhymirror add`.",
            )
        return None

    def _download_error(self, where: str) -> DownloadError:
        """Files that could not be downloaded: withheld by --offline, or with a hint that says
        whether a rerun can help."""
        failed = self.with_outcome("failed")
        if all(f.failure_cause == "offline" for f in failed):
            return DownloadError(
                f"{count_of(len(failed), 'file')} {OFFLINE_LABEL}", where=where, hint=OFFLINE_HINT
            )
        hint = OFFLINE_HINT if self.offline else RESUME_HINT
        if not self.offline and not self.rerun_helps:
            hint = NO_RERUN_HINT
        return DownloadError(
            f"{count_of(len(failed), 'file')} could not be downloaded", where=where, hint=hint
        )

    def _integrity_error(self, where: str) -> IntegrityError | None:
        """Paths that are no usable file (a link, a folder…), else files that did not verify."""
        unusable = [f for f in self.files if f.cause == "unusable"]
        if unusable:
            return IntegrityError(
                f"{count_of(len(unusable), 'path')} not usable as the file",
                where=where,
                detail=", ".join(f"{f.path}: {f.problem}" for f in unusable[:3])
                + (", …" if len(unusable) > 3 else ""),
                hint="Remove or replace what stands there (links are never followed), "
                "then run the same command again.",
            )
        if self.failures_of("integrity"):
            return IntegrityError(
                f"{count_of(len(self.failures_of('integrity')), 'file')} did not verify",
                where=where,
                hint="The bad bytes are kept under .lhymirror/rejected/ for inspection.",
            )
        return None

    def to_json(self) -> dict[str, Any]:
        """The report as plain data, as ``sync --json`` prints it (see docs/json.md)."""
        return {
            "year": self.year,
            "root": self.root,
            "offline": self.offline,
            "complete": self.complete,
            "counts": snake_keys(self.counts()),
            "bytes_received": self.bytes_received,
            "files": [f.to_json() for f in self.files],
            "hosts_down": [asdict(h) for h in self.hosts_down],
            "no_network": self.no_network,
        }


def outcome_of(item: PlanItem, outcome: Outcome, **fields: Any) -> FileOutcome:
    """The outcome of *item*."""
    return FileOutcome(item.id, item.entry.path, outcome, **fields)


def failed_outcome(item: PlanItem, error: LhymirrorError, failure: Failure) -> FileOutcome:
    """*item* failed with *error*, of kind *failure*."""
    cause: FailureCause = "other"
    if isinstance(error, DownloadError):
        cause = error.cause  # type: ignore[assignment]  # set from a FailureCause
    elif failure in ("integrity", "storage"):
        cause = "checksum" if failure == "integrity" else "storage"
    return outcome_of(
        item, "failed", size=item.size, reason=error.message, failure=failure, cause=cause
    )


@dataclass(frozen=True)
class AddReport:
    """A file ``add`` imported: where it went, its record, what it was checked against."""

    id: str
    path: Path
    record: FileRecord
    checked_against: Literal["manifest", "recorded"] | None  # None: it became the reference

    def to_json(self) -> dict[str, Any]:
        """Plain data (see docs/json.md)."""
        return {
            "id": self.id,
            "path": str(self.path),
            "size": self.record.size,
            "sha256": self.record.sha256,
            "checksum_origin": self.checked_against,
        }
