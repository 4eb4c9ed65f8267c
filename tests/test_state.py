"""One expected-state concept: what a file is held to, what is on disk, the one check."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from factories import blob, make_manifest, one_entry, place, sha
from lhymirror.manifest.model import FileEntry
from lhymirror.mirror.state import (
    EntryState,
    Expected,
    FileProblem,
    check_bytes,
    describe,
    local_state,
)
from lhymirror.mirror.store import FileRecord, MirrorStore

DATA = blob(5000, seed=7)
OTHER = blob(5000, seed=8)


@pytest.fixture
def store(tmp_path: Path) -> MirrorStore:
    return MirrorStore(tmp_path / "mirror", 2022)


def held_to(store: MirrorStore, entry: FileEntry) -> Expected:
    return EntryState.read(store, entry).expected


def unchanged(store: MirrorStore, entry: FileEntry) -> bool:
    return EntryState.read(store, entry).unchanged_since_verified


# -- what a file is held to ---------------------------------------------------------------------


def test_expected_prefers_the_manifest_pin(store: MirrorStore) -> None:
    entry = one_entry(size=len(DATA), sha256=sha(DATA))
    place(store, entry, OTHER, record=OTHER)
    expected = held_to(store, entry)
    assert (expected.sha256, expected.origin) == (sha(DATA), "manifest")


def test_expected_uses_the_record_when_nothing_is_pinned(store: MirrorStore) -> None:
    entry = one_entry()
    assert held_to(store, entry).origin == "none"
    place(store, entry, DATA, record=DATA)
    expected = held_to(store, entry)
    assert (expected.size, expected.sha256, expected.origin) == (len(DATA), sha(DATA), "recorded")


def test_accepted_upstream_content_overrides_the_pin(store: MirrorStore) -> None:
    entry = one_entry(sha256=sha(DATA))
    target = place(store, entry, OTHER, record=None)
    store.save_record(
        FileRecord(
            "l01",
            entry.path,
            len(OTHER),
            sha(OTHER),
            target.stat().st_mtime_ns,
            "t",
            accepted_upstream=True,
        )
    )
    assert held_to(store, entry).sha256 == sha(OTHER)


def test_a_record_for_another_path_is_ignored(store: MirrorStore) -> None:
    place(store, one_entry(), DATA, record=DATA)
    moved = one_entry(path="slides/renamed.pdf")
    assert held_to(store, moved).origin == "none"
    assert not unchanged(store, moved)


# -- local state ---------------------------------------------------------------------------------


def test_state_ok_when_verified_and_unchanged(store: MirrorStore) -> None:
    entry = one_entry()
    place(store, entry, DATA, record=DATA)
    assert unchanged(store, entry)
    assert local_state(store, entry).status == "ok"


def test_state_changed_when_the_bytes_on_disk_differ(store: MirrorStore) -> None:
    entry = one_entry()
    target = place(store, entry, DATA, record=DATA)
    target.write_bytes(OTHER)  # same size, new mtime: re-hashed, and it differs
    os.utime(target, ns=(1, 1))
    assert not unchanged(store, entry)
    state = local_state(store, entry)
    assert state.status == "changed"
    assert state.detail == f"sha256 differs: expected {sha(DATA)} (recorded), got {sha(OTHER)}"


def test_state_ok_after_a_touch_that_kept_the_bytes(store: MirrorStore) -> None:
    entry = one_entry()
    target = place(store, entry, DATA, record=DATA)
    os.utime(target, ns=(1, 1))
    assert local_state(store, entry).status == "ok"


def test_rehash_finds_damage_that_kept_size_and_mtime(store: MirrorStore) -> None:
    entry = one_entry()
    target = place(store, entry, DATA, record=DATA)
    stat = target.stat()
    target.write_bytes(OTHER)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert local_state(store, entry).status == "ok"  # the cheap check cannot see it
    assert local_state(store, entry, rehash=True).status == "changed"


def test_state_of_absent_files(store: MirrorStore) -> None:
    entry = one_entry(size=1000)
    assert local_state(store, entry).status == "missing"
    store.partial_path("l01").parent.mkdir(parents=True)
    store.partial_path("l01").write_bytes(b"x" * 250)
    state = local_state(store, entry)
    assert (state.status, state.detail) == ("partial", "250 bytes held 25%")
    manual = one_entry(id="hw", urls=None, manual="Baidu pan, code sv1i")
    assert local_state(store, manual).status == "manual"


def test_state_unverified_when_no_checksum_is_known(store: MirrorStore) -> None:
    entry = one_entry()
    place(store, entry, DATA, record=None)
    assert local_state(store, entry).status == "unverified"


# -- the one check and its wording --------------------------------------------------------------


def test_size_is_checked_before_the_checksum() -> None:
    expected = Expected(5000, sha(DATA), "manifest")
    problem = check_bytes(expected, 10, sha(OTHER))
    assert problem == FileProblem("size", 5000, 10, "manifest")
    assert check_bytes(expected, 5000, sha(OTHER)) == FileProblem(
        "checksum", sha(DATA), sha(OTHER), "manifest"
    )
    assert check_bytes(expected, 5000, None) is None  # not hashed: the size is all there is
    assert check_bytes(Expected(None, None, "none"), 7, sha(OTHER)) is None


def test_each_kind_has_one_wording() -> None:
    words = {
        FileProblem("missing"): "not in the mirror",
        FileProblem(
            "symlink", actual="slides"
        ): "symlink inside the mirror at slides (not followed)",
        FileProblem("not_a_file", detail="a fifo"): "not a regular file (a fifo)",
        FileProblem("unreadable", detail="Permission denied"): "unreadable (Permission denied)",
        FileProblem("size", 5, 3, "recorded"): "size differs: expected 5 bytes (recorded), got 3",
        FileProblem("size", 5, None, "none"): "size differs: expected 5 bytes, got more",
        FileProblem("checksum", "aa", "bb", "manifest"): (
            "sha256 differs: expected aa (manifest), got bb"
        ),
        FileProblem("unverified"): "no checksum known yet",
    }
    for problem, text in words.items():
        assert describe(problem) == str(problem) == problem.to_json()["text"] == text


def test_a_present_file_of_the_right_size_without_checksum_is_unverified(
    store: MirrorStore,
) -> None:
    entry = one_entry(size=len(DATA))
    place(store, entry, DATA, record=None)
    state = EntryState.read(store, entry)
    assert state.check() == FileProblem("unverified")
    place(store, entry, DATA[:10], record=None)
    assert EntryState.read(store, entry).check() == FileProblem("size", len(DATA), 10, "none")


def test_the_record_is_read_once_per_entry_by_status_and_the_plan(
    store: MirrorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lhymirror.fetch.plan import plan_sync

    entries = [one_entry(), one_entry(id="l02", path="slides/l02.pdf")]
    place(store, entries[0], DATA, record=DATA)
    place(store, entries[1], OTHER, record=DATA)  # changed since verified
    reads: list[str] = []
    real_record = MirrorStore.record

    def counting(self: MirrorStore, entry_id: str) -> FileRecord | None:
        reads.append(entry_id)
        return real_record(self, entry_id)

    monkeypatch.setattr(MirrorStore, "record", counting)
    for entry in entries:
        local_state(store, entry)
    assert sorted(reads) == ["l01", "l02"]
    reads.clear()
    plan_sync(replace(make_manifest(), files=tuple(entries)), store)
    assert sorted(reads) == ["l01", "l02"]
