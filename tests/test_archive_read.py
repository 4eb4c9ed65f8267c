"""Streaming, hostile-input-proof reading of zip / tar / tar.gz members (lhymirror.archive.read).

Also home of the hand-built archive helpers (``Spec``, ``write_archive``) that the verify and
unpack tests reuse: hostile archives cannot be made with a well-behaved writer.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
import threading
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from factories import FORMATS, Spec, blob, sha, write_archive
from lhymirror.archive.read import (
    ArchiveFormatError,
    ArchiveLimits,
    ArchiveReader,
    ArchiveReadError,
    detect_format,
)

MiB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Helpers (archives are built member by member, hostile ones included, by factories)


def read_all(path: Path, **options: object) -> dict[str, object]:
    """name -> sha256 of every safe file, or the tuple of reasons it is unsafe."""
    found: dict[str, object] = {}
    with ArchiveReader(path, **options) as reader:  # type: ignore[arg-type]
        for member in reader:
            if member.is_safe_file:
                with member.open() as stream:
                    found[member.name] = hashlib.sha256(stream.read()).hexdigest()
            elif member.unsafe:
                found[member.name] = member.unsafe
        reader.drain()
    return found


# ---------------------------------------------------------------------------------------------
# Well-formed archives


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_every_member_with_kind_size_and_bytes(tmp_path: Path, fmt: str) -> None:
    big = blob(3 * MiB + 17, 1)
    path = write_archive(
        tmp_path / f"a.{fmt}",
        fmt,
        [
            Spec("top", kind="dir", mode=0o755),
            Spec("top/bagit.txt", b"BagIt-Version: 1.0\n"),
            Spec("top/data/big.bin", big),
            Spec("top/data/run.sh", b"#!/bin/sh\n", mode=0o755),
            Spec("top/data/empty", b""),
        ],
    )
    seen = []
    with ArchiveReader(path) as reader:
        for member in reader:
            digest = None
            if member.is_safe_file:
                with member.open() as stream:
                    digest = sha(stream.read())
            seen.append((member.name, member.kind, member.size, member.mode, digest))
    assert seen == [
        ("top", "dir", 0, 0o755, None),
        ("top/bagit.txt", "file", 19, 0o644, sha(b"BagIt-Version: 1.0\n")),
        ("top/data/big.bin", "file", len(big), 0o644, sha(big)),
        ("top/data/run.sh", "file", 10, 0o755, sha(b"#!/bin/sh\n")),
        ("top/data/empty", "file", 0, 0o644, sha(b"")),
    ]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("read_data", [True, False])
@pytest.mark.parametrize("preadv", [True, False], ids=["preadv", "no-preadv"])
def test_archive_sha256_is_computed_on_the_way(
    tmp_path: Path, fmt: str, read_data: bool, preadv: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not preadv:  # as on Windows: the hashing thread reads through a handle of its own
        monkeypatch.delattr("os.preadv", raising=False)
    members = [Spec(f"top/data/f{i}", blob(300_000, i)) for i in range(4)]
    path = write_archive(tmp_path / f"a.{fmt}", fmt, members)
    with ArchiveReader(path, hash_archive=True) as reader:
        for member in reader:
            if read_data:
                with member.open() as stream:
                    stream.read()
        reader.drain()
        assert reader.archive_sha256() == sha(path.read_bytes())


@pytest.mark.parametrize(
    ("fmt", "options"),
    [*((fmt, {}) for fmt in FORMATS), ("zip", {"compression": zipfile.ZIP_STORED})],
)
@pytest.mark.parametrize("check_crc", [True, False])
def test_readinto_gives_the_same_bytes_as_read(
    tmp_path: Path, fmt: str, options: dict[str, int], check_crc: bool
) -> None:
    # Without the CRC check, a stored zip member is read in place by positional reads.
    data = {f"top/data/f{i}": blob(200_000 + i, i) for i in range(3)}
    path = write_archive(tmp_path / f"a.{fmt}", fmt, list(data.items()), **options)
    found = {}
    with ArchiveReader(path, check_crc=check_crc) as reader:
        for member in reader:
            with member.open() as stream:
                buffer = bytearray(65_537)  # not a divisor of anything
                parts = []
                while n := stream.readinto(buffer):
                    parts.append(bytes(buffer[:n]))
                found[member.name] = b"".join(parts)
    assert found == data


def test_stored_member_with_a_local_extra_field_is_read_from_its_data(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    data = blob(100_000, 3)
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("top/data/a")
        info.extra = struct.pack("<HH", 0xCAFE, 4) + b"abcd"  # an unknown extra block
        archive.writestr(info, data)
    assert read_all(path, check_crc=False) == {"top/data/a": sha(data)}


def test_closing_a_reader_stops_the_archive_hashing(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "a.zip", "zip", [("top/data/a", blob(3 * MiB, 0))])
    with ArchiveReader(path, hash_archive=True) as reader:
        next(iter(reader))
    # Leaving the block before asking for the digest returns at once and leaves no thread.
    assert not any(t.name == "archive-sha256" for t in threading.enumerate())


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_is_detected_from_content_not_name(tmp_path: Path, fmt: str) -> None:
    path = write_archive(tmp_path / "no-extension", fmt, [("top/a", b"x")])
    assert detect_format(path) == fmt


@pytest.mark.parametrize("content", [b"", b"hello, not an archive\n" * 40])
def test_not_an_archive_is_a_clean_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.zip"
    path.write_bytes(content)
    with pytest.raises(ArchiveFormatError, match="not an archive"):
        ArchiveReader(path)


def test_memory_stays_bounded_while_reading_a_large_member(tmp_path: Path) -> None:
    payload = blob(24 * MiB, 5)
    path = write_archive(tmp_path / "big.tar.gz", "tar.gz", [("top/data/big", payload)])
    del payload
    tracemalloc.start()
    try:
        with ArchiveReader(path, hash_archive=True) as reader:
            for member in reader:
                digest = hashlib.sha256()
                with member.open() as stream:
                    while chunk := stream.read(MiB):
                        digest.update(chunk)
            reader.drain()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Bounded by design, not by the member's size: the archive digest's helper thread holds at
    # most 4 blocks of 1 MiB when it falls behind (it does on a busy machine), plus the chunks
    # being read and decompressed.
    assert peak < 12 * MiB


# ---------------------------------------------------------------------------------------------
# Hostile names and kinds


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.txt", "'..' segment"),
        ("top/../../evil.txt", "'..' segment"),
        ("/etc/evil.txt", "absolute"),
        ("C:/evil.txt", "drive letter"),
        ("top\\..\\evil.txt", "backslash"),
        ("top/a\x01b", "control character"),
    ],
)
def test_unsafe_names_are_flagged_and_cannot_be_opened(
    tmp_path: Path, fmt: str, name: str, reason: str
) -> None:
    path = write_archive(tmp_path / f"a.{fmt}", fmt, [("top/ok", b"ok"), (name, b"evil")])
    with ArchiveReader(path) as reader:
        members = {member.name: member for member in reader}
        bad = members[name]
        assert not bad.is_safe_file
        assert any(reason in problem for problem in bad.unsafe)
        with pytest.raises(ValueError, match="cannot be opened"):
            bad.open()
    assert members["top/ok"].is_safe_file


@pytest.mark.parametrize("fmt", ["tar", "tar.gz"])
@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("symlink", "symbolic link"),
        ("hardlink", "hard link"),
        ("fifo", "special file (fifo)"),
        ("device", "special file (device)"),
    ],
)
def test_tar_links_and_special_files_are_unsafe(
    tmp_path: Path, fmt: str, kind: str, reason: str
) -> None:
    path = write_archive(tmp_path / f"a.{fmt}", fmt, [Spec("top/data/x", kind=kind, link="/etc")])
    assert read_all(path) == {"top/data/x": (f"is a {reason}",)}


@pytest.mark.parametrize(
    ("kind", "reason"), [("symlink", "symbolic link"), ("fifo", "special file (fifo)")]
)
def test_zip_links_and_special_files_are_unsafe(tmp_path: Path, kind: str, reason: str) -> None:
    path = write_archive(tmp_path / "a.zip", "zip", [Spec("top/data/x", kind=kind, link="/etc")])
    assert read_all(path) == {"top/data/x": (f"is a {reason}",)}


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicates_and_case_collisions_are_unsafe(tmp_path: Path, fmt: str) -> None:
    path = write_archive(
        tmp_path / f"a.{fmt}",
        fmt,
        [("top/a.txt", b"first"), ("top/a.txt", b"second"), ("top/A.TXT", b"third")],
    )
    with ArchiveReader(path) as reader:
        verdicts = [(member.name, member.unsafe) for member in reader]
    assert verdicts[0] == ("top/a.txt", ())
    assert "duplicate member" in verdicts[1][1][0]
    assert "collides with 'top/a.txt'" in verdicts[2][1][0]


# ---------------------------------------------------------------------------------------------
# Damage: truncation and corruption


def test_truncated_zip_is_a_clean_error(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "a.zip", "zip", [("top/data/a", blob(50_000, 0))])
    path.write_bytes(path.read_bytes()[:30_000])
    with pytest.raises(ArchiveReadError, match="no end-of-archive record: the zip is cut short"):
        read_all(path)


@pytest.mark.parametrize("fmt", ["tar", "tar.gz"])
def test_truncated_tar_names_the_member_being_read(tmp_path: Path, fmt: str) -> None:
    data = blob(400_000, 2)
    path = write_archive(tmp_path / f"a.{fmt}", fmt, [("top/data/a", b"a"), ("top/data/b", data)])
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ArchiveReadError) as caught:
        read_all(path)
    assert caught.value.member == "top/data/b"
    assert caught.value.kind == "truncated"
    assert "the archive ends inside this member" in caught.value.message


def test_tar_without_end_marker_is_truncated(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "a.tar", "tar", [("top/data/a", b"a" * 512)])
    path.write_bytes(path.read_bytes()[: 2 * 512])  # header and data; no end-of-archive blocks
    with pytest.raises(ArchiveReadError, match="ends without its end-of-archive marker") as caught:
        read_all(path)
    assert caught.value.kind == "truncated"


def test_corrupt_tar_header_is_not_a_quiet_end(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "a.tar", "tar", [("top/a", b"a"), ("top/b", b"b")])
    data = bytearray(path.read_bytes())
    second = data.index(b"top/b", 1024)  # the second member's ustar header
    data[second + 100] ^= 0xFF  # its mode field: the header checksum no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveReadError, match="damaged header") as caught:
        read_all(path)
    assert caught.value.member == "after top/a"


def test_corrupt_gzip_is_a_clean_error(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "a.tar.gz", "tar.gz", [("top/data/a", blob(200_000, 3))])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveReadError) as caught:
        read_all(path)
    assert caught.value.kind == "malformed"


def test_gzip_trailer_crc_is_checked(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "a.tar.gz", "tar.gz", [("top/a", b"abc")])
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 of the uncompressed data
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveReadError, match="gzip checksum does not match"):
        read_all(path)


def test_zip_member_with_bad_crc_names_the_member(tmp_path: Path) -> None:
    path = write_archive(
        tmp_path / "a.zip",
        "zip",
        [("top/a", b"A" * 1000), ("top/b", b"B" * 1000)],
        compression=zipfile.ZIP_STORED,
    )
    data = bytearray(path.read_bytes())
    data[data.index(b"B" * 100)] ^= 0x01
    path.write_bytes(bytes(data))
    with ArchiveReader(path) as reader:
        members = iter(reader)
        with next(members).open() as stream:
            assert stream.read() == b"A" * 1000
        with pytest.raises(ArchiveReadError, match="CRC") as caught, next(members).open() as stream:
            stream.read()
    assert caught.value.member == "top/b"


def test_data_after_the_tar_end_marker_is_reported(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "a.tar", "tar", [("top/a", b"a")])
    path.write_bytes(path.read_bytes() + b"smuggled")
    with pytest.raises(ArchiveReadError, match="after the end-of-archive marker"):
        read_all(path)


# ---------------------------------------------------------------------------------------------
# Bombs and impossible claims


def test_zip_bomb_by_compression_ratio_is_refused_unread(tmp_path: Path) -> None:
    path = write_archive(
        tmp_path / "bomb.zip",
        "zip",
        [("top/data/zeros", bytes(4 * MiB))],
        compression=zipfile.ZIP_LZMA,  # zeros compress far beyond the 2000:1 limit
    )
    found = read_all(path)
    assert "zip bomb" in found["top/data/zeros"][0]  # type: ignore[index]


def test_ratio_limit_is_configurable(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "z.zip", "zip", [("top/data/zeros", bytes(2 * MiB))])
    assert read_all(path)["top/data/zeros"] == sha(bytes(2 * MiB))
    strict = ArchiveLimits(max_ratio=50)
    assert "zip bomb" in read_all(path, limits=strict)["top/data/zeros"][0]  # type: ignore[index]


def _patch_zip_sizes(path: Path, name: bytes, size: int) -> None:
    """Make the central directory claim *size* uncompressed bytes for member *name*."""
    data = bytearray(path.read_bytes())
    record = data.index(b"PK\x01\x02")
    while data[record + 46 : record + 46 + len(name)] != name:
        record = data.index(b"PK\x01\x02", record + 4)
    struct.pack_into("<I", data, record + 24, size)
    path.write_bytes(bytes(data))


def test_zip_member_claiming_far_more_than_the_archive_is_unsafe(tmp_path: Path) -> None:
    path = write_archive(
        tmp_path / "liar.zip", "zip", [("top/data/a", b"x" * 100)], compression=zipfile.ZIP_STORED
    )
    _patch_zip_sizes(path, b"top/data/a", 4_000_000_000)
    found = read_all(path)
    assert "claims 4000000000 bytes" in found["top/data/a"][0]  # type: ignore[index]


def test_overlapping_zip_members_are_unsafe(tmp_path: Path) -> None:
    path = write_archive(
        tmp_path / "overlap.zip",
        "zip",
        [("top/a", b"a" * 5000), ("top/b", b"b" * 5000)],
        compression=zipfile.ZIP_STORED,
    )
    data = bytearray(path.read_bytes())
    second = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)
    struct.pack_into("<I", data, second + 42, 0)  # top/b's local header offset -> top/a's
    path.write_bytes(bytes(data))
    with ArchiveReader(path) as reader:
        verdicts = {member.name: member.unsafe for member in reader}
    assert any("overlaps member 'top/b'" in p for p in verdicts["top/a"])


def test_plain_tar_member_claiming_more_than_the_archive_is_refused(tmp_path: Path) -> None:
    header = tarfile.TarInfo("top/data/huge")
    header.size = 50 * 1024**3
    path = tmp_path / "liar.tar"
    path.write_bytes(header.tobuf(format=tarfile.GNU_FORMAT) + bytes(4096))
    with pytest.raises(ArchiveReadError, match="more than the whole") as caught:
        read_all(path)
    assert (caught.value.member, caught.value.kind) == ("top/data/huge", "truncated")


def test_gzip_tar_member_claiming_far_beyond_the_archive_is_refused(tmp_path: Path) -> None:
    header = tarfile.TarInfo("top/data/huge")
    header.size = 50 * 1024**3
    path = tmp_path / "liar.tar.gz"
    path.write_bytes(gzip.compress(header.tobuf(format=tarfile.GNU_FORMAT) + bytes(65536)))
    with pytest.raises(ArchiveReadError, match="possible bomb") as caught:
        read_all(path)
    assert caught.value.member == "top/data/huge"


@pytest.mark.parametrize("fmt", ["tar", "tar.gz"])
def test_oversized_tar_extension_header_is_refused(tmp_path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("top/a")
        info.pax_headers = {"comment": "x" * (2 * MiB)}
        archive.addfile(info, io.BytesIO(b""))
    data = buffer.getvalue()
    path = tmp_path / f"a.{fmt}"
    path.write_bytes(gzip.compress(data) if fmt == "tar.gz" else data)
    with pytest.raises(ArchiveReadError, match="extended header claims") as caught:
        read_all(path)
    assert caught.value.kind == "unsafe"


@pytest.mark.parametrize("fmt", FORMATS)
def test_member_count_is_capped(tmp_path: Path, fmt: str) -> None:
    path = write_archive(tmp_path / f"a.{fmt}", fmt, [(f"top/{i}", b"") for i in range(6)])
    with pytest.raises(ArchiveReadError, match="members"):
        read_all(path, limits=ArchiveLimits(max_members=4))


@pytest.mark.parametrize("fmt", ["tar", "tar.gz"])
def test_repeated_names_count_against_the_member_cap(tmp_path: Path, fmt: str) -> None:
    path = write_archive(tmp_path / f"a.{fmt}", fmt, [("top/same", b"")] * 6)
    with pytest.raises(ArchiveReadError, match="members"):
        read_all(path, limits=ArchiveLimits(max_members=4))


@pytest.mark.parametrize("fmt", ["tar", "tar.gz"])
def test_the_header_size_limit_is_the_callers(tmp_path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("top/a")
        info.pax_headers = {"comment": "x" * 20_000}
        archive.addfile(info, io.BytesIO(b""))
    data = buffer.getvalue()
    path = tmp_path / f"a.{fmt}"
    path.write_bytes(gzip.compress(data) if fmt == "tar.gz" else data)
    read_all(path)  # within the default limit
    with pytest.raises(ArchiveReadError, match="extended header claims"):
        read_all(path, limits=ArchiveLimits(max_header_size=10_000))


def test_a_stored_member_is_read_page_to_page_after_its_first_page(tmp_path: Path) -> None:
    """A copy into a page-aligned buffer from a few bytes before a page is slow (4K aliasing)."""
    from lhymirror.archive.read_zip import _StoredSpan
    from lhymirror.core.fsutil import PAGE_SIZE, read_buffer

    data = blob(3 * PAGE_SIZE + 100, 12)
    name = "n" * (PAGE_SIZE - 8 - 30)  # the data starts 8 bytes before a page
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(name, data)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
        span = _StoredSpan(archive, info)
        got, sizes = bytearray(), []
        with read_buffer() as view:
            while n := span.readinto(view):
                sizes.append(n)
                got += view[:n]
        assert bytes(got) == data
        assert sizes[0] == 8 and len(sizes) == 2  # to the page, then the rest page to page
        assert _StoredSpan(archive, info).read() == data  # read() still gives all it is asked
        assert _StoredSpan(archive, info).read(20) == data[:20]
