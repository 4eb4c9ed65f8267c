"""The local mirror layout: paths, records, partial downloads, the lock."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from factories import blob, one_entry, place, sha
from lhymirror.core.errors import ManifestError, StorageError
from lhymirror.mirror.store import (
    LockedError,
    MirrorStore,
    PartialState,
    storage_errors,
)

DATA = blob(5000, seed=7)
OTHER = blob(5000, seed=8)


@pytest.fixture
def store(tmp_path: Path) -> MirrorStore:
    return MirrorStore(tmp_path / "mirror", 2022)


# -- paths ------------------------------------------------------------------------------------


def test_files_live_under_root_year_path(store: MirrorStore, tmp_path: Path) -> None:
    assert store.file_path("slides/a b.pdf") == tmp_path / "mirror" / "2022" / "slides" / "a b.pdf"
    assert store.partial_path("l01") == store.meta_dir / "partial" / "l01.part"
    assert store.assembly_path("d") == store.meta_dir / "partial" / "d.assembly"
    assert store.meta_dir == tmp_path / "mirror" / "2022" / ".lhymirror"


@pytest.mark.parametrize("key", ["../../escaped", "a/b", "", "A", ".hidden", "a\n", "a b"])
def test_book_keeping_names_are_refused_for_a_key_no_id_could_be(
    store: MirrorStore, key: str
) -> None:
    """Ids are checked when a manifest is read; an entry built in Python is checked here."""
    for name_of in (
        store.partial_path,
        store.partial_state_path,
        store.record_path,
        store.assembly_path,
    ):
        with pytest.raises(ManifestError, match="is not a valid id"):
            name_of(key)
    with pytest.raises(ManifestError):
        store.rejected_path(key, "a" * 64)
    assert store.record_path("hw1.part00") == store.meta_dir / "state" / "hw1.part00.json"


@pytest.mark.parametrize("path", ["../escape.pdf", "/etc/passwd", ".lhymirror/state/x.json"])
def test_unsafe_or_reserved_paths_are_refused(store: MirrorStore, path: str) -> None:
    for _ in range(2):  # every time: an unsafe path is never remembered
        with pytest.raises(StorageError, match="unsafe path"):
            store.file_path(path)


def test_a_symlinked_folder_inside_the_mirror_is_refused(
    store: MirrorStore, tmp_path: Path
) -> None:
    # Checked paths are remembered; the links on their way are looked at every time.
    assert store.file_path("slides/l01.pdf") == store.year_dir / "slides" / "l01.pdf"
    outside = tmp_path / "outside"
    outside.mkdir()
    store.year_dir.mkdir(parents=True)
    (store.year_dir / "slides").symlink_to(outside)
    with pytest.raises(StorageError, match="symlink inside the mirror"):
        store.file_path("slides/l01.pdf")


def test_a_symlinked_year_folder_is_refused(store: MirrorStore, tmp_path: Path) -> None:
    store.file_path("slides/l01.pdf")  # remembered as safe before the link appears
    real = tmp_path / "real"
    real.mkdir()
    store.root.mkdir()
    store.year_dir.symlink_to(real)
    with pytest.raises(StorageError, match="symlinked folder"):
        store.file_path("slides/l01.pdf")


# -- records and partial sidecars -------------------------------------------------------------


def test_records_round_trip_and_list(store: MirrorStore) -> None:
    entry = one_entry()
    place(store, entry, DATA, record=DATA)
    record = store.record("l01")
    assert record is not None
    assert (record.size, record.sha256) == (len(DATA), sha(DATA))
    store.record_path("l01").unlink()
    assert store.record("l01") is None


@pytest.mark.parametrize(
    "content", ["not json", "[]", '{"record_version": 99, "id": "l01"}', '{"record_version": 1}']
)
def test_unreadable_records_count_as_absent(store: MirrorStore, content: str) -> None:
    path = store.record_path("l01")
    path.parent.mkdir(parents=True)
    path.write_text(content)
    assert store.record("l01") is None


def test_partial_state_round_trips(store: MirrorStore) -> None:
    state = PartialState(url="https://x/y", etag='"e"', expected_size=10, bytes_held=4)
    store.save_partial_state("l01", state)
    assert store.partial_state("l01") == state
    store.discard_partial("l01")
    assert store.partial_state("l01") is None


def test_a_sidecar_torn_by_a_crash_reads_as_none(store: MirrorStore) -> None:
    """Sidecars are rewritten in place (not atomically): a torn one must never be trusted."""
    state = PartialState(url="https://x/y", etag='"e"', expected_size=10, bytes_held=4)
    store.save_partial_state("l01", state)
    whole = store.partial_state_path("l01").read_bytes()
    for cut in range(len(whole) - 1):  # every prefix a crash can leave behind
        store.partial_state_path("l01").write_bytes(whole[:cut])
        assert store.partial_state("l01") is None, cut
    store.save_partial_state("l01", state)  # and it is written whole again over a torn one
    assert store.partial_state("l01") == state


def test_a_sidecar_write_that_fails_leaves_the_previous_one_whole(
    store: MirrorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk must not cost the resume of bytes already held."""
    held = PartialState(url="https://x/y", etag='"e"', expected_size=10, bytes_held=4)
    store.save_partial_state("l01", held)
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, stream: object) -> None:
            self._stream = stream

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self._stream.close()  # type: ignore[attr-defined]

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))
    with pytest.raises(StorageError):
        store.save_partial_state("l01", PartialState(url="https://x/y", bytes_held=8))
    monkeypatch.undo()
    assert store.partial_state("l01") == held
    assert [p.name for p in store.partial_path("l01").parent.iterdir()] == ["l01.json"]


def test_discarding_a_partial_removes_its_leftovers_and_nothing_of_other_keys(
    store: MirrorStore,
) -> None:
    own = store.partial_path("l01")
    own.parent.mkdir(parents=True, exist_ok=True)
    store.save_partial_state("l01", PartialState(url="https://x/y"))
    leftovers = [own.name, *(own.name + tail for tail in (".4096", ".segments.json", ".staged"))]
    others = ["l01.race.part", "l01.race.json", "l011.part", "l011.part.4096", "l0.part"]
    for name in leftovers + others:
        (own.parent / name).write_bytes(b"x")

    store.discard_partial("l01")

    assert sorted(path.name for path in own.parent.iterdir()) == sorted(others)
    store.discard_partial("l01")  # nothing left: no error
    store.discard_partial("never-started")


# -- lock ------------------------------------------------------------------------------------------


def test_second_lock_gives_up_after_waiting_and_names_the_holder(store: MirrorStore) -> None:
    clock = iter(range(100))
    slept: list[float] = []
    with store.lock(), pytest.raises(LockedError) as info:  # noqa: SIM117
        with store.lock(wait=3, sleep=slept.append, clock=lambda: next(clock)):
            pass
    assert slept  # it waited (without really sleeping) before giving up
    assert f"pid {os.getpid()}" in info.value.message
    with store.lock(wait=0):  # released on exit
        pass


# -- storage errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "what", "hint"),
    [
        (errno.ENOSPC, "cannot write to disk", "Free some space"),
        (errno.EACCES, "file system error", "permissions"),
    ],
)
def test_os_errors_become_one_line_storage_errors(code: int, what: str, hint: str) -> None:
    with pytest.raises(StorageError) as info, storage_errors(Path("/x/y")):
        raise OSError(code, os.strerror(code))
    assert info.value.what == what
    assert info.value.where == "/x/y"
    assert hint in (info.value.hint or "")
