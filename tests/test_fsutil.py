"""Streaming hashes, atomic writes and background writeback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from factories import blob, sha
from lhymirror.core import fsutil
from lhymirror.core.fsutil import (
    BackgroundWriteback,
    atomic_write_bytes,
    hash_file,
    hash_stream,
    open_regular,
)


def _address(buffer: memoryview) -> int:
    import ctypes

    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


def test_read_buffers_start_on_a_page_and_are_reused_by_the_thread() -> None:
    """File data is read into page-aligned memory (see aligned_buffer: the kernel copies faster)."""
    with fsutil.read_buffer():
        pass  # the thread now keeps a spare
    with fsutil.read_buffer() as first:
        assert first.nbytes == fsutil.CHUNK_SIZE and not first.readonly
        assert _address(first) % fsutil.PAGE_SIZE == 0
        with fsutil.read_buffer() as inner:  # a loop inside another: a buffer of its own
            assert _address(inner) != _address(first)
            assert _address(inner) % fsutil.PAGE_SIZE == 0
    with fsutil.read_buffer() as again:  # the next loop of this thread: no new mapping
        assert _address(again) == _address(first)
    assert _address(memoryview(fsutil.aligned_buffer(4096))) % fsutil.PAGE_SIZE == 0


def test_threads_reading_at_once_get_buffers_of_their_own() -> None:
    import threading

    both = threading.Barrier(2)
    seen: list[int] = []

    def read() -> None:
        with fsutil.read_buffer() as view:
            seen.append(_address(view))
            both.wait(timeout=10)  # both inside at once

    threads = [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_never_writes_into_the_parents_buffer() -> None:
    """A library user's multiprocessing (fork) must not corrupt the parent's reads."""
    with fsutil.read_buffer() as view:
        view[:4] = b"mine"
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            view[:4] = b"kid!"
            os._exit(0)
        os.waitpid(child, 0)
        assert bytes(view[:4]) == b"mine"


def test_hash_stream_reads_into_page_aligned_memory() -> None:
    data = blob(2 * fsutil.CHUNK_SIZE + 5, seed=3)
    addresses: list[int] = []

    class Recording:
        def __init__(self) -> None:
            self.pos = 0

        def readinto(self, view: memoryview) -> int:
            addresses.append(_address(view))
            n = min(len(view), len(data) - self.pos)
            view[:n] = data[self.pos : self.pos + n]
            self.pos += n
            return n

    assert hash_stream(Recording()) == (len(data), sha(data))
    assert addresses and all(address % fsutil.PAGE_SIZE == 0 for address in addresses)


def test_hash_file_streams_in_chunks(tmp_path: Path) -> None:
    data = blob(3 * fsutil.CHUNK_SIZE + 17, seed=1)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert hash_file(path) == (len(data), sha(data))


@pytest.mark.parametrize(
    "limit", [fsutil.CHUNK_SIZE + 5, fsutil.CHUNK_SIZE, 3, 0, 10 * fsutil.CHUNK_SIZE]
)
def test_hash_stream_stops_at_its_limit(tmp_path: Path, limit: int) -> None:
    data = blob(2 * fsutil.CHUNK_SIZE + 9, seed=2)
    path = tmp_path / "f"
    path.write_bytes(data)
    with path.open("rb", buffering=0) as stream:
        stream.seek(4)
        size, digest = hash_stream(stream, limit=limit)  # type: ignore[arg-type]
        assert stream.tell() == 4 + size  # nothing read past the limit
    assert (size, digest) == (len(data[4 : 4 + limit]), sha(data[4 : 4 + limit]))


@pytest.mark.parametrize("durable", [True, False])
def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "sub" / "f.json"
    atomic_write_bytes(target, b"one", durable=durable)
    atomic_write_bytes(target, b"two", durable=durable)
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.json"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_background_writeback_syncs_every_so_many_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fdatasync", synced.append, raising=False)
    with (tmp_path / "f").open("wb") as stream, BackgroundWriteback(stream, every=10) as wb:
        for _ in range(5):
            stream.write(b"x" * 6)
            wb.written(6)
    assert len(synced) >= 1  # at least once after the first 12 bytes; never per write
    assert len(synced) <= 2
    assert (tmp_path / "f").stat().st_size == 30


def test_background_writeback_leaves_errors_to_the_final_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fdatasync", failing, raising=False)
    with (tmp_path / "f").open("wb") as stream, BackgroundWriteback(stream, every=1) as wb:
        stream.write(b"abc")
        wb.written(3)  # must not raise here


def test_background_writeback_can_count_the_writes_of_a_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fdatasync", synced.append, raising=False)
    with (tmp_path / "f").open("w+b") as stream, BackgroundWriteback(stream, every=10) as wb:
        watched = wb.watching(stream)
        watched.write(b"x" * 12)
        watched.seek(0)  # everything but write passes through
        assert watched.tell() == 0
    assert len(synced) == 1


# -- open_regular: the one no-follow open of files a mirror or an extracted bag holds ----------


def test_open_regular_reads_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"bytes")
    with open_regular(path) as stream:
        assert stream.read() == b"bytes"


def test_open_regular_never_follows_a_link_nor_opens_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"secret")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OSError):
        open_regular(link)
    with pytest.raises(OSError):
        open_regular(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no fifos here")
def test_open_regular_refuses_a_fifo_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        open_regular(fifo)  # a blocking open would wait here forever


def test_only_fsutil_opens_files_for_reading_without_following_links() -> None:
    src = Path(fsutil.__file__).resolve().parents[1]
    opens = [
        path.relative_to(src).as_posix()
        for path in sorted(src.rglob("*.py"))
        if 'O_RDONLY | getattr(os, "O_NOFOLLOW"' in path.read_text(encoding="utf-8")
    ]
    assert opens == ["core/fsutil.py"]


def test_in_folder_creates_a_missing_folder_only_when_the_action_needs_it(tmp_path: Path) -> None:
    calls: list[bool] = []
    folder = tmp_path / "a" / "b"

    def write() -> int:
        calls.append(folder.is_dir())
        return (folder / "f").write_bytes(b"x")

    assert fsutil.in_folder(folder, write) == 1
    assert calls == [False, True]
    assert fsutil.in_folder(folder, write) == 1
    assert calls == [False, True, True]  # there: tried once, no mkdir


def test_in_folder_passes_on_what_a_folder_does_not_cure(tmp_path: Path) -> None:
    missing = tmp_path / "gone.part"
    with pytest.raises(FileNotFoundError):  # the source is missing, not the folder
        fsutil.in_folder(tmp_path / "new", lambda: missing.replace(tmp_path / "new" / "f"))
    with pytest.raises(PermissionError):
        fsutil.in_folder(tmp_path, lambda: (_ for _ in ()).throw(PermissionError("no")))
