"""What a sync did: one :class:`FileOutcome` per selected file, in a :class:`SyncReport`."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from lhymirror.core.errors import DownloadError, LhymirrorError
from lhymirror.fetch.health import HostDown
from lhymirror.fetch.plan import PlanItem
from lhymirror.fetch.transfer import FailureCause
from lhymirror.mirror.state import FileProblem

Outcome = Literal["downloaded", "resumed", "up-to-date", "failed", "manual"]
Failure = Literal["download", "integrity", "storage"]
VERIFIED_OUTCOMES = ("downloaded", "resumed", "up-to-date")


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
        """The outcome as plain JSON-ready data (the problem with its one wording)."""
        return {**asdict(self), "problem": self.problem.to_json() if self.problem else None}

    @property
    def verified(self) -> bool:
        """True when the file is present and verified."""
        return self.outcome in VERIFIED_OUTCOMES


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
    def bytes_received(self) -> int:
        """Bytes transferred in this run."""
        return sum(f.bytes_received for f in self.files)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        return {
            "year": self.year,
            "root": self.root,
            "complete": self.complete,
            "totals": {**self.counts(), "bytes_received": self.bytes_received},
            "offline": self.offline,
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
