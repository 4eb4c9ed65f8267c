"""The one exception hierarchy of lhymirror.

Every failure a user can cause or meet (a broken manifest, a dead link, a corrupt archive, a full
disk) is a :class:`LhymirrorError` subclass. The library raises them; only the CLI turns them into
a message and an exit code (see :mod:`lhymirror.cli.exitcodes`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


class LhymirrorError(Exception):
    """Base class of expected failures.

    The message reads ``<what> (<where>): <detail>. <hint>``: what failed, on which file or URL,
    why, and what the user can do about it.
    """

    def __init__(
        self,
        what: str,
        *,
        where: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.what = what
        self.where = where
        self.detail = detail
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The one-line, human-readable form of the error."""
        text = self.what
        if self.where:
            text += f" ({self.where})"
        if self.detail:
            text += f": {self.detail}"
        if self.hint:
            text = text.rstrip(".") + f". {self.hint}"
        return text


class UsageError(LhymirrorError):
    """The command was asked for something that cannot be done as stated."""


class ManifestError(LhymirrorError):
    """A manifest cannot be read or does not validate; ``problems`` lists every finding."""

    def __init__(self, where: str, problems: list[str], *, hint: str | None = None) -> None:
        self.problems = problems
        count = len(problems)
        detail = problems[0] if count == 1 else f"{count} problems"
        super().__init__(
            "invalid manifest",
            where=where,
            detail=detail,
            hint=hint or "Fix the manifest and run `lhymirror manifest check` again.",
        )


class DownloadError(LhymirrorError):
    """A file could not be fetched from any of its sources."""

    # Why, grouped by the help that differs (lhymirror.fetch.transfer.FailureCause names them).
    cause: str = "other"


class IntegrityError(LhymirrorError):
    """Bytes on disk or in an archive do not match what they must be."""


class StorageError(LhymirrorError):
    """The local disk refused: no space, no permission, a path that is not ours to write."""


class IncompleteError(LhymirrorError):
    """Work is left that needs a human step (a manual download, accepting competition rules)."""


class MissingFilesError(LhymirrorError):
    """Files of the manifest are not in the mirror, or not verified yet: ``sync`` fetches them."""


class MissingExtraError(LhymirrorError):
    """A command needs an optional part of lhymirror that is not installed (e.g. ``swarm``)."""


@contextlib.contextmanager
def storage_errors(path: Path) -> Iterator[None]:
    """Turn ``OSError`` (disk full, permission denied…) into a one-line ``StorageError``."""
    try:
        yield
    except OSError as exc:
        raise StorageError(
            "cannot write to disk" if exc.errno in _WRITE_ERRNOS else "file system error",
            where=str(path),
            detail=exc.strerror or str(exc),
            hint=_storage_hint(exc),
        ) from exc


_WRITE_ERRNOS = {28, 122, 30, 27}  # ENOSPC, EDQUOT, EROFS, EFBIG


def _storage_hint(exc: OSError) -> str:
    if exc.errno in (28, 122):
        return "Free some space (partial downloads are kept and resume), then run again."
    if exc.errno in (13, 1):
        return "Check the folder's permissions or choose another --root."
    return "Check the path and the disk."
