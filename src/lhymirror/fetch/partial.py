"""The unfinished bytes of one download and their sidecar: what makes a resume provable.

A partial download lives at ``store.partial_path(key)``; its sidecar (``PartialState``) records the
original URL, the validator (strong ETag, else Last-Modified) and the bytes held. A fresh download
writes it once :data:`FIRST_STATE_AT` bytes are held, then every few MiB, and whenever a transfer
stops on an error or an interrupt: a process killed with SIGKILL loses at most the first MiB of
each file in flight (so does one stopped by a full disk, where a new sidecar cannot be written
either), and a smaller file that ends well never needs one (a file creation, a rename and a
removal spared per file). The bytes are hashed as they grow, so verifying a finished download
needs no second read.

A part of a split file is kept in place instead: its bytes are the region of the assembly file
that starts at ``target.offset`` (the parts before it end there), and a verified part stays where
it is, its sidecar marked ``complete``. The parts are thus never copied to be joined, and as each
part's bytes are appended they also feed the assembly's running digest
(:class:`~lhymirror.fetch.transfer.AssemblyDigest`), so the joined whole is never read again either.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from lhymirror.core.errors import StorageError, storage_errors
from lhymirror.core.fsutil import (
    CHUNK_SIZE,
    BackgroundWriteback,
    atomic_writer,
    fsync_file,
    hash_stream,
    in_folder,
    replace_durably,
)
from lhymirror.mirror.store import MirrorStore, PartialState

if TYPE_CHECKING:
    from lhymirror.fetch.transfer import Target

FIRST_STATE_AT = CHUNK_SIZE  # bytes a fresh download holds before its sidecar is first written
STATE_EVERY = 32 * CHUNK_SIZE  # bytes between sidecar updates (resume uses the file size)


class PartialDownload:
    """The unfinished bytes of one target, hashed as they grow, and their sidecar."""

    def __init__(self, store: MirrorStore, target: Target) -> None:
        self.store = store
        self.target = target
        self.in_place = target.offset is not None
        self.base = target.offset or 0  # bytes of the file before this target's own
        self.path = target.final_path if self.in_place else store.partial_path(target.key)
        # A part without a checksum of its own is checked as part of the joined whole (through
        # the assembly digest): its own digest is made only if a failure needs it (sha256()).
        self.hashes_while_streaming = not self.in_place or target.expected_sha256 is not None
        self.url: str | None = None
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.held = 0
        self.received = 0  # network bytes received for this target during this fetch
        self._digest: hashlib._Hash | None = None
        self._whole = target.assembly_digest  # a part: the digest of the assembly so far
        self._next_save = FIRST_STATE_AT  # the bytes held at which the sidecar is written next
        self._writeback: BackgroundWriteback | None = None

    @property
    def validator(self) -> str | None:
        """What proves the held bytes are still the server's: ETag, else Last-Modified."""
        return self.etag or self.last_modified

    def load(self) -> None:
        """Adopt the partial left by an earlier run when its sidecar fits this target."""
        state = self.store.partial_state(self.target.key)
        if state is None or not self.path.is_file():
            return
        with storage_errors(self.path):
            size = self.path.stat().st_size - self.base
        if size < 0:
            return
        expected_size = self.target.expected_size
        if state.expected_sha256 != self.target.expected_sha256:
            return
        if expected_size is not None and (
            state.expected_size not in (None, expected_size) or size > expected_size
        ):
            return
        self.url, self.etag, self.last_modified = state.url, state.etag, state.last_modified
        self.held = size

    def resume_offset(self, url: str) -> int:
        """Where a request to *url* may resume: the bytes held, if they came from it with proof."""
        if self.held and self.url == url and self.validator:
            return self.held
        return 0

    def begin(self, url: str, etag: str | None, last_modified: str | None, offset: int) -> None:
        """Start keeping bytes from *url* at *offset* (0: from scratch, as the module says)."""
        if offset == 0:  # the bytes held go, and first the sidecar that describes them
            with storage_errors(self.path):
                self.store.partial_state_path(self.target.key).unlink(missing_ok=True)
            self._truncate()
            self.held = 0
            self._digest = hashlib.sha256() if self.hashes_while_streaming else None
        elif self.hashes_while_streaming:
            self._hash_held_prefix()
        if self._whole is not None:
            with storage_errors(self.path):
                self._whole.cover(self.path, self.base + offset)
        self.url = url
        if offset == 0 or etag or last_modified:
            self.etag, self.last_modified = strong_etag(etag), last_modified
        self._next_save = FIRST_STATE_AT
        if offset:
            self.save_state()

    def _hash_held_prefix(self) -> None:
        """Hash the bytes already held, once per fetch."""
        if self._digest is not None:
            return
        digest = hashlib.sha256()
        with storage_errors(self.path), self.path.open("rb", buffering=0) as stream:
            stream.seek(self.base)
            hash_stream(stream, digest=digest)
        self._digest = digest

    @contextlib.contextmanager
    def appending(self) -> Iterator[BinaryIO]:
        """The partial file open for appending; closed on any exit, the sidecar saved on failure."""
        with storage_errors(self.path):
            handle = in_folder(self.path.parent, lambda: self.path.open("ab"))
        self._writeback = BackgroundWriteback(handle)
        try:
            yield handle
        except BaseException:
            with contextlib.suppress(OSError, StorageError):
                self._writeback.close()
                handle.close()
            with contextlib.suppress(OSError, StorageError):  # even when the close failed
                self.save_state()
            raise
        with storage_errors(self.path):
            self._writeback.close()
            handle.close()

    def append(self, handle: BinaryIO, chunk: bytes) -> None:
        """Keep *chunk*; write the sidecar past the first MiB, then every few MiB (resumable)."""
        with storage_errors(self.path):
            handle.write(chunk)
        if self._digest is not None:
            self._digest.update(chunk)
        if self._whole is not None:
            self._whole.update(chunk)
        self.held += len(chunk)
        if self._writeback is not None:
            self._writeback.written(len(chunk))
        if self.held >= self._next_save:
            with storage_errors(self.path):
                handle.flush()
            self.save_state()

    def save_state(self, *, complete: bool = False) -> None:
        """Write the sidecar describing the bytes held (*complete*: a verified part in place)."""
        if self.url is None:
            return
        self.store.save_partial_state(
            self.target.key,
            PartialState(
                url=self.url,
                etag=self.etag,
                last_modified=self.last_modified,
                expected_size=self.target.expected_size,
                expected_sha256=self.target.expected_sha256,
                bytes_held=self.held,
                complete=complete,
            ),
        )
        self._next_save = self.held + STATE_EVERY

    def count_received(self, nbytes: int) -> None:
        """Account for *nbytes* received over the network (kept or not)."""
        self.received += nbytes

    def sha256(self) -> str:
        """sha256 of the bytes held (read back when they were not hashed while streaming)."""
        self._hash_held_prefix()
        assert self._digest is not None
        return self._digest.hexdigest()

    def commit(self) -> None:
        """Move the verified bytes to the final path (atomically) and forget the partial.

        A part stays in place: its sidecar is marked complete, and the assembly as a whole is
        checked, fsynced and renamed once every part is there.
        """
        if self.in_place:
            self.save_state(complete=True)
            return
        final_path = self.target.final_path
        with storage_errors(self.path):
            fsync_file(self.path)
        with storage_errors(final_path):
            in_folder(final_path.parent, lambda: replace_durably(self.path, final_path))
        self.store.discard_partial(self.target.key)
        self._forget()

    def quarantine(self, sha256: str) -> Path:
        """Put bytes that failed verification aside; return where."""
        if not self.in_place:
            rejected = self.store.reject(self.target.key, self.path, sha256)
            self.discard()
            return rejected
        rejected = self.store.rejected_path(self.target.key, sha256)
        with storage_errors(rejected), self.path.open("rb") as source:
            rejected.parent.mkdir(parents=True, exist_ok=True)
            source.seek(self.base)
            with atomic_writer(rejected) as out:
                shutil.copyfileobj(source, out, CHUNK_SIZE)
        self.discard()
        return rejected

    def discard(self) -> None:
        """Drop the bytes held and their sidecar."""
        with storage_errors(self.path):
            if self.in_place and self.path.exists():
                self._truncate()
            self.store.discard_partial(self.target.key)
        self._forget()

    def _truncate(self) -> None:
        """Keep only the bytes before this target's own (none, unless it is a part in place)."""
        with storage_errors(self.path):
            try:
                os.truncate(self.path, self.base)
            except FileNotFoundError:  # nothing held yet: the usual case
                if self.in_place:
                    with in_folder(self.path.parent, lambda: self.path.open("ab")) as handle:
                        handle.truncate(self.base)

    def _forget(self) -> None:
        self.url = self.etag = self.last_modified = None
        self.held, self._digest, self._next_save = 0, None, FIRST_STATE_AT


def strong_etag(value: str | None) -> str | None:
    """An ETag usable in If-Range (weak ones are not), else None."""
    if value is None or value.strip().startswith("W/"):
        return None
    return value.strip()
