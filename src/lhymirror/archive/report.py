"""What a verification found: a :class:`VerifyReport` of :class:`Problem` lines and notes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lhymirror.core.errors import IntegrityError
from lhymirror.core.units import count_of


@dataclass(frozen=True)
class Problem:
    """One finding: what is wrong (``kind``), where (``path``) and the specifics (``detail``).

    Kinds: missing, extra, size, checksum, unsafe, malformed, oxum, tagmanifest, sidecar;
    for a mirror file also unverified (no checksum known yet), symlink, not_a_file and
    unreadable (see :mod:`lhymirror.mirror.state`).
    """

    kind: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


@dataclass
class VerifyReport:
    """The outcome of one verification: intact when it lists no problem."""

    target: str
    bag: str | None = None  # the bag's top folder name, once known
    files_checked: int = 0
    bytes_checked: int = 0
    fast: bool = False
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts worth telling that are not problems

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def add(self, kind: str, path: str, detail: str) -> None:
        """Record a problem."""
        self.problems.append(Problem(kind, path, detail))

    def error(self) -> IntegrityError | None:
        """The error that sums up a failed verification, or None when intact."""
        if self.ok:
            return None
        return IntegrityError(
            "not intact",
            where=self.target,
            detail=count_of(len(self.problems), "problem"),
            hint="Fetch the archive again or re-pack it from a good mirror.",
        )

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "target": self.target,
            "bag": self.bag,
            "ok": self.ok,
            "fast": self.fast,
            "files_checked": self.files_checked,
            "bytes_checked": self.bytes_checked,
            "problems": [asdict(problem) for problem in self.problems],
            "notes": list(self.notes),
        }
