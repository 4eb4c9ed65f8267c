"""Reproducible archive writers: fixed metadata, sorted members, streamed and hashed payload."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path
from typing import BinaryIO

import pytest

from factories import blob
from lhymirror.archive.write import (
    COMPRESS_LEVEL,
    FORMATS,
    ZIP_MIN_EPOCH,
    ArchiveWriter,
    HashingReader,
    HashingSink,
    archive_extension,
    archive_writer,
    zip_date_time,
)
from lhymirror.core.fsutil import CHUNK_SIZE

EPOCH = 1_656_633_600  # 2022-07-01T00:00:00Z


def write_sample(target: BinaryIO, fmt: str, *, mtime: int = EPOCH) -> None:
    """A small archive: folders, a text tag file, a compressed and a text payload file."""
    with archive_writer(target, fmt, mtime=mtime) as writer:
        writer.add_directory("top")
        writer.add_bytes("top/bagit.txt", b"BagIt-Version: 1.0\n")
        writer.add_directory("top/data")
        writer.add_stream("top/data/notes.txt", io.BytesIO(b"text " * 2000), 10_000)
        writer.add_stream("top/data/slides.pdf", io.BytesIO(blob(5000, 1)), 5000)


def sample_bytes(fmt: str, **kwargs: int) -> bytes:
    buffer = io.BytesIO()
    write_sample(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_members_give_identical_bytes(fmt: str) -> None:
    assert sample_bytes(fmt) == sample_bytes(fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_members_must_come_in_sorted_order(fmt: str) -> None:
    with archive_writer(io.BytesIO(), fmt, mtime=EPOCH) as writer:
        writer.add_bytes("top/b.txt", b"")
        with pytest.raises(ValueError, match="out of order"):
            writer.add_bytes("top/a.txt", b"")


def test_a_folder_sorts_as_its_name_with_a_slash() -> None:
    with archive_writer(io.BytesIO(), "tar", mtime=EPOCH) as writer:
        writer.add_bytes("top/data-notes.txt", b"")  # '-' sorts before '/'
        writer.add_directory("top/data")
        writer.add_bytes("top/data/x", b"")


def test_zip_stores_every_member_with_unix_modes() -> None:
    """Stored, text included: the bytes then depend on no deflate implementation."""
    with zipfile.ZipFile(io.BytesIO(sample_bytes("zip"))) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        assert list(infos) == [
            "top/",
            "top/bagit.txt",
            "top/data/",
            "top/data/notes.txt",
            "top/data/slides.pdf",
        ]
        assert {info.compress_type for info in infos.values()} == {zipfile.ZIP_STORED}
        for name, info in infos.items():
            assert info.create_system == 3
            assert info.date_time == (2022, 7, 1, 0, 0, 0)
            mode = info.external_attr >> 16
            assert mode == (0o40755 if name.endswith("/") else 0o100644), name
        assert archive.read("top/data/slides.pdf") == blob(5000, 1)
        assert archive.testzip() is None


def test_zip_timestamps_are_clamped_to_what_zip_can_hold() -> None:
    assert zip_date_time(0) == (1980, 1, 1, 0, 0, 0)
    assert zip_date_time(ZIP_MIN_EPOCH - 1) == (1980, 1, 1, 0, 0, 0)
    assert zip_date_time(10**11)[0] == 2107
    with zipfile.ZipFile(io.BytesIO(sample_bytes("zip", mtime=0))) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


@pytest.mark.parametrize("fmt", ["tar", "tar.gz"])
def test_tar_members_have_normalised_owner_mode_and_time(fmt: str) -> None:
    with tarfile.open(fileobj=io.BytesIO(sample_bytes(fmt))) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == [
            "top",
            "top/bagit.txt",
            "top/data",
            "top/data/notes.txt",
            "top/data/slides.pdf",
        ]
        for member in members:
            assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
            assert member.mtime == EPOCH
            assert isinstance(member.mtime, int)
            assert member.mode == (0o755 if member.isdir() else 0o644)
            assert member.isdir() or member.isreg()
            assert "mtime" not in member.pax_headers
        slides = archive.extractfile("top/data/slides.pdf")
        assert slides is not None
        assert slides.read() == blob(5000, 1)


def test_tar_gz_header_has_no_time_and_no_name() -> None:
    data = sample_bytes("tar.gz")
    assert data[:4] == b"\x1f\x8b\x08\x00"  # deflate, no FNAME flag
    assert data[4:8] == b"\x00\x00\x00\x00"  # MTIME 0
    assert gzip.decompress(data) == sample_bytes("tar")


def test_tar_gz_uses_the_fixed_compression_level() -> None:
    tar_bytes = sample_bytes("tar")
    expected = io.BytesIO()
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=expected, compresslevel=COMPRESS_LEVEL, mtime=0
    ) as stream:
        stream.write(tar_bytes)
    assert sample_bytes("tar.gz") == expected.getvalue()


def test_non_ascii_names_survive_in_every_format() -> None:
    name = "top/data/深度學習 (v2).pdf"
    for fmt in FORMATS:
        buffer = io.BytesIO()
        with archive_writer(buffer, fmt, mtime=EPOCH) as writer:
            writer.add_stream(name, io.BytesIO(b"x"), 1)
        buffer.seek(0)
        if fmt == "zip":
            assert zipfile.ZipFile(buffer).namelist() == [name]
        else:
            with tarfile.open(fileobj=buffer) as archive:
                assert archive.getnames() == [name]


@pytest.mark.parametrize("fmt", FORMATS)
def test_add_stream_returns_size_and_sha256_of_the_bytes_copied(fmt: str) -> None:
    data = blob(CHUNK_SIZE * 2 + 17, 2)
    seen: list[int] = []
    with archive_writer(io.BytesIO(), fmt, mtime=EPOCH) as writer:
        copied = writer.add_stream("f.bin", io.BytesIO(data), len(data), progress=seen.append)
    assert copied.size == len(data)
    assert copied.sha256 == hashlib.sha256(data).hexdigest()
    assert not copied.trailing
    assert sum(seen) == len(data)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_source_shorter_than_announced_is_reported_and_the_archive_stays_readable(
    fmt: str,
) -> None:
    buffer = io.BytesIO()
    with archive_writer(buffer, fmt, mtime=EPOCH) as writer:
        copied = writer.add_stream("a.txt", io.BytesIO(b"abc"), 5)
        writer.add_bytes("b.txt", b"after")
    assert (copied.size, copied.sha256) == (3, hashlib.sha256(b"abc").hexdigest())
    buffer.seek(0)
    if fmt == "zip":
        assert zipfile.ZipFile(buffer).read("b.txt") == b"after"
    else:
        with tarfile.open(fileobj=buffer) as archive:
            member = archive.extractfile("b.txt")
            assert member is not None
            assert member.read() == b"after"


def test_a_source_longer_than_announced_is_flagged_as_trailing() -> None:
    with archive_writer(io.BytesIO(), "zip", mtime=EPOCH) as writer:
        copied = writer.add_stream("a.txt", io.BytesIO(b"abcdef"), 3)
    assert copied.size == 3
    assert copied.trailing


class ChunkGuard(io.RawIOBase):
    """A source that fails on reads of unbounded or more-than-a-chunk size."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.largest = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        assert size is not None and 0 <= size <= CHUNK_SIZE, f"read({size}) is not chunked"
        self.largest = max(self.largest, size)
        return self._data.read(size)


@pytest.mark.parametrize("fmt", FORMATS)
def test_payload_is_read_in_chunks_never_whole(fmt: str) -> None:
    source = ChunkGuard(blob(CHUNK_SIZE * 3 + 5, 3))
    with archive_writer(io.BytesIO(), fmt, mtime=EPOCH) as writer:
        copied = writer.add_stream("big.bin", source, CHUNK_SIZE * 3 + 5)  # type: ignore[arg-type]
    assert copied.size == CHUNK_SIZE * 3 + 5
    assert source.largest <= CHUNK_SIZE


def test_hashing_reader_never_returns_more_than_a_chunk() -> None:
    reader = HashingReader(io.BytesIO(blob(CHUNK_SIZE + 10, 4)), CHUNK_SIZE + 10)
    assert len(reader.read()) == CHUNK_SIZE
    assert len(reader.read(-1)) == 10
    assert reader.read() == b""


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown archive format"):
        archive_writer(io.BytesIO(), "rar", mtime=EPOCH).__enter__()
    with pytest.raises(ValueError, match="unknown archive format"):
        archive_extension("7z")


def test_writer_is_an_archive_writer_and_writes_to_a_real_file(tmp_path: Path) -> None:
    target = tmp_path / "a.zip"
    with target.open("w+b") as stream, archive_writer(stream, "zip", mtime=EPOCH) as writer:
        assert isinstance(writer, ArchiveWriter)
        writer.add_bytes("x.txt", b"x")
    assert zipfile.ZipFile(target).read("x.txt") == b"x"


@pytest.mark.parametrize("fmt", FORMATS)
def test_hashing_sink_gives_the_sha256_of_the_finished_archive(tmp_path: Path, fmt: str) -> None:
    target = tmp_path / "a.bin"
    with target.open("w+b") as stream:
        sink = HashingSink(stream)
        try:
            with archive_writer(sink, fmt, mtime=EPOCH) as writer:  # type: ignore[arg-type]
                for index in range(3):
                    data = blob(CHUNK_SIZE + index, index)
                    writer.add_stream(f"f{index}.bin", io.BytesIO(data), len(data))
            digest = sink.hexdigest()
        finally:
            sink.close()
        assert sink.tell() == stream.tell()
    assert digest == hashlib.sha256(target.read_bytes()).hexdigest()
    if fmt == "zip":  # written front to back: each member's sizes follow it in a data descriptor
        with zipfile.ZipFile(target) as archive:
            assert all(info.flag_bits & 0x08 for info in archive.infolist())
            assert archive.testzip() is None


def test_hashing_sink_lends_page_aligned_buffers(tmp_path: Path) -> None:
    import ctypes
    import mmap

    with (tmp_path / "c.bin").open("wb") as stream:
        sink = HashingSink(stream)
        try:
            view = sink.borrow()
            assert ctypes.addressof(ctypes.c_char.from_buffer(view)) % mmap.PAGESIZE == 0
            sink.give_back(view)
        finally:
            sink.close()


def test_hashing_sink_copies_mutable_buffers_before_hashing(tmp_path: Path) -> None:
    target = tmp_path / "b.bin"
    buffer = bytearray(b"first")
    with target.open("wb") as stream:
        sink = HashingSink(stream)
        sink.write(buffer)
        buffer[:] = b"XXXXX"  # a caller reusing its buffer must not change what was hashed
        digest = sink.hexdigest()
        sink.close()
    assert (
        digest
        == hashlib.sha256(b"first").hexdigest()
        == hashlib.sha256(target.read_bytes()).hexdigest()
    )


def test_lent_buffers_are_written_before_they_are_lent_again(tmp_path: Path) -> None:
    target = tmp_path / "c.bin"
    pieces = [blob(CHUNK_SIZE // 2 + index, index) for index in range(20)]  # 5x the pool
    with target.open("wb") as stream:
        sink = HashingSink(stream)
        for piece in pieces:
            view = sink.borrow()
            view[: len(piece)] = piece
            sink.write(view[: len(piece)])  # no copy: the writer thread gives it back
        digest = sink.hexdigest()
        sink.close()
    assert target.read_bytes() == b"".join(pieces)
    assert digest == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_a_write_error_is_raised_by_the_next_call() -> None:
    class FullDisk(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    sink = HashingSink(FullDisk())  # type: ignore[arg-type]
    try:
        sink.write(b"x" * 100)  # queued: the helper thread meets the error
        with pytest.raises(OSError, match="No space left"):
            sink.flush()
        with pytest.raises(OSError, match="No space left"):
            sink.write(b"y")
    finally:
        sink.close()
