"""Exit codes: the one place where errors become numbers."""

from __future__ import annotations

from enum import IntEnum

from lhymirror.core.errors import (
    DownloadError,
    IncompleteError,
    IntegrityError,
    LhymirrorError,
    ManifestError,
    MissingExtraError,
    MissingFilesError,
    StorageError,
    UsageError,
)


class ExitStatus(IntEnum):
    """Process exit codes of ``lhymirror``, documented in the README."""

    OK = 0
    INTERNAL_ERROR = 1
    USAGE = 2
    INVALID_MANIFEST = 3
    DOWNLOAD_FAILED = 4
    INTEGRITY = 5
    STORAGE = 6
    INCOMPLETE = 7
    MISSING = 8
    INTERRUPTED = 130  # Ctrl-C (SIGINT)
    TERMINATED = 143  # SIGTERM, handled like Ctrl-C


_BY_ERROR: tuple[tuple[type[LhymirrorError], ExitStatus], ...] = (
    (UsageError, ExitStatus.USAGE),
    (MissingExtraError, ExitStatus.USAGE),  # e.g. `pip install 'lhymirror[swarm]'`
    (ManifestError, ExitStatus.INVALID_MANIFEST),
    (DownloadError, ExitStatus.DOWNLOAD_FAILED),
    (IntegrityError, ExitStatus.INTEGRITY),
    (StorageError, ExitStatus.STORAGE),
    (IncompleteError, ExitStatus.INCOMPLETE),
    (MissingFilesError, ExitStatus.MISSING),
)


def exit_status_for(error: LhymirrorError) -> ExitStatus:
    """The exit status for an expected error (usage error when it has no more specific kind)."""
    for error_type, status in _BY_ERROR:
        if isinstance(error, error_type):
            return status
    return ExitStatus.USAGE
