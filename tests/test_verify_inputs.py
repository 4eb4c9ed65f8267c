"""`verify` on what a new user or a hostile tester hands it: pipes, devices, FIFOs, sockets,
truncated and corrupt archives, OS clutter in an extracted bag; memory bounded under RLIMIT_AS.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lhymirror.archive.unpack import unpack_archive
from lhymirror.archive.verify import verify_mirror, verify_path
from lhymirror.cli import main
from lhymirror.core.errors import UsageError
from test_verify import FORMATS, PAYLOAD, TOP, found, make_mirror, manifest_text, packed

# ---------------------------------------------------------------------------------------------
# Helpers


@contextlib.contextmanager
def pipe_of(data: bytes) -> Iterator[Path]:
    """A pipe that a thread fills with *data*, as ``<(cat FILE)`` gives: ``/dev/fd/N``."""
    read_fd, write_fd = os.pipe()

    def write() -> None:
        with contextlib.suppress(BrokenPipeError), os.fdopen(write_fd, "wb") as out:
            out.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield Path(f"/dev/fd/{read_fd}")
    finally:
        os.close(read_fd)
        writer.join(timeout=10)


def without_sidecar(archive: Path) -> Path:
    Path(f"{archive}.sha256").unlink()
    return archive


# Runs `lhymirror ARGS` with at most LIMIT bytes of address space; stdin is a pipe (or null).
_LIMITED = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from lhymirror.cli import main
sys.exit(main(sys.argv[2:]))
"""
ADDRESS_LIMIT = 256 * 1024 * 1024


def run_limited(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _LIMITED, str(ADDRESS_LIMIT), *args],
        input=stdin.decode("latin-1") if stdin is not None else None,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="latin-1",
        timeout=30,
        check=False,
    )


# ---------------------------------------------------------------------------------------------
# Pipes, devices, FIFOs, sockets


@pytest.mark.parametrize("fmt", ["tar", "tar.gz"])
def test_a_tar_streams_from_a_pipe_and_says_the_sidecar_was_not_checked(
    tmp_path: Path, fmt: str
) -> None:
    archive = packed(tmp_path, fmt)
    with pipe_of(archive.read_bytes()) as pipe:
        report = verify_path(pipe)
    assert report.ok, report.problems
    assert report.files_checked == 3
    assert any("pipe" in note and ".sha256" in note for note in report.notes), report.notes


@pytest.mark.parametrize("fmt", ["tar", "tar.gz"])
def test_a_damaged_tar_from_a_pipe_is_reported(tmp_path: Path, fmt: str) -> None:
    data = bytearray(packed(tmp_path, fmt).read_bytes())
    data[len(data) // 3] ^= 0xFF
    with pipe_of(bytes(data)) as pipe:
        report = verify_path(pipe)
    assert not report.ok


def test_cli_verifies_a_tar_gz_from_a_pipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = packed(tmp_path, "tar.gz")
    with pipe_of(archive.read_bytes()) as pipe:
        assert main(["verify", str(pipe)]) == 0
    out = capsys.readouterr().out
    assert "was not checked" in out and "intact: 3 files" in out


def test_a_zip_from_a_pipe_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = packed(tmp_path, "zip")
    with pipe_of(archive.read_bytes()) as pipe:
        assert main(["verify", str(pipe)]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert "cannot read a zip from a pipe" in line and "Save it to a file first" in line
    assert captured.out == ""


def test_an_empty_pipe_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pipe_of(b"") as pipe:
        assert main(["verify", str(pipe)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "nothing to read" in line


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_a_device_is_refused_before_a_byte_is_read(device: str) -> None:
    if not Path(device).exists():
        pytest.skip(f"no {device} here")
    done = run_limited(["verify", device])  # a child: reading /dev/zero once grew without limit
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert f"not an archive ({device}): a device, not a file" in line


def test_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        with pytest.raises(UsageError, match="a socket, not a file"):
            verify_path(path)


def test_a_fifo_with_no_writer_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # In a child process: if opening waited for a writer, the timeout ends the test, not CI.
    done = run_limited(["verify", str(fifo)])
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "nothing to read" in line


def test_stdin_redirected_from_a_file_is_a_file(tmp_path: Path) -> None:
    archive = packed(tmp_path, "zip")
    with archive.open("rb") as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "lhymirror", "verify", "/dev/stdin"],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------------------------------
# Memory stays bounded for every input (the process gets 256 MB of address space)


@pytest.mark.parametrize(
    ("args", "stdin", "status"),
    [
        (["verify", "/dev/zero"], None, 2),  # once: zipfile.is_zipfile read it whole
        (["verify", "/dev/stdin"], bytes(32 * 1024 * 1024), 5),  # zeros: "too much padding"
        (["verify", "/dev/stdin"], gzip.compress(bytes(32 * 1024 * 1024)), 5),
        (["verify", "/dev/stdin"], os.urandom(4 * 1024 * 1024), 5),  # not an archive
    ],
    ids=["dev-zero", "zeros-on-a-pipe", "gzipped-zeros-on-a-pipe", "noise-on-a-pipe"],
)
def test_memory_stays_bounded_under_rlimit_as(
    args: list[str], stdin: bytes | None, status: int
) -> None:
    done = run_limited(args, stdin)
    assert done.returncode == status, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("lhymirror: error: ")


# ---------------------------------------------------------------------------------------------
# Truncated and corrupt archives: one clear problem, in our words


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("keep", [0.1, 0.34, 0.5, 0.67, 0.9])
def test_a_truncated_archive_is_one_truncated_problem(
    tmp_path: Path, fmt: str, keep: float
) -> None:
    archive = without_sidecar(packed(tmp_path, fmt))
    data = archive.read_bytes()
    archive.write_bytes(data[: int(len(data) * keep)])
    report = verify_path(archive)
    assert [problem.kind for problem in report.problems] == ["truncated"], report.problems
    assert not any(problem.kind == "extra" for problem in report.problems)


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_an_archive_missing_only_its_last_bytes_is_one_truncated_problem(
    tmp_path: Path, fmt: str
) -> None:
    archive = without_sidecar(packed(tmp_path, fmt))
    archive.write_bytes(archive.read_bytes()[:-4])  # zip: the end record; gzip: its length
    report = verify_path(archive)
    assert [problem.kind for problem in report.problems] == ["truncated"], report.problems


def test_a_truncated_tar_gz_names_the_member_it_ends_in(tmp_path: Path) -> None:
    archive = without_sidecar(packed(tmp_path, "tar.gz"))
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])
    report = verify_path(archive)
    assert found(report) == {("truncated", f"{TOP}/data/slides/lecture 1.pdf")}
    assert report.problems[0].detail == "the archive ends inside this member"
    assert any("could not be read to its end" in note for note in report.notes)


def _rename_in_directory(data: bytes) -> bytes:
    """The last directory entry's name with its last letter changed (its local header kept)."""
    entry = data.rindex(b"PK\x01\x02")
    name_end = entry + 46 + int.from_bytes(data[entry + 28 : entry + 30], "little")
    return data[: name_end - 1] + b"X" + data[name_end:]


def _bad_method_in_directory(data: bytes) -> bytes:
    entry = data.rindex(b"PK\x01\x02")
    return data[: entry + 10] + b"\x63\x00" + data[entry + 12 :]


def _bad_local_header(data: bytes) -> bytes:
    entry = data.rindex(b"PK\x01\x02")
    offset = int.from_bytes(data[entry + 42 : entry + 46], "little")
    return data[:offset] + b"PK\x07\x07" + data[offset + 4 :]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_rename_in_directory, "disagree on its name"),
        (_bad_method_in_directory, "an unknown compression method"),
        (_bad_local_header, "no member header where the central directory points"),
    ],
    ids=["name", "method", "local-header"],
)
def test_a_corrupt_central_directory_is_one_line_in_our_words(
    tmp_path: Path, edit: object, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = without_sidecar(packed(tmp_path, "zip"))
    data = archive.read_bytes()
    archive.write_bytes(edit(data))  # type: ignore[operator]
    assert main(["verify", str(archive)]) == 5
    out = capsys.readouterr().out
    assert expected in out, out
    for python_words in ("b'", 'b"', "header b", "File name in directory", "Bad magic"):
        assert python_words not in out, out


def test_library_error_texts_never_reach_the_user() -> None:
    import zipfile

    from lhymirror.archive.members import ArchiveReadError, read_error

    texts = [
        read_error("m", zipfile.BadZipFile("File name in directory 'a' and header b'b' differ.")),
        read_error("m", zipfile.BadZipFile("Bad magic number for file header")),
        read_error("m", gzip.BadGzipFile("Not a gzipped file (b'PK')")),
        read_error("m", EOFError("Compressed file ended before the end-of-stream marker")),
        read_error("m", ValueError("weird b'\\x00\\x01' bytes")),
    ]
    for error in texts:
        assert isinstance(error, ArchiveReadError)
        assert "b'" not in error.message and "\\x" not in error.message, error.message


# ---------------------------------------------------------------------------------------------
# The mirror's hint, OS clutter in an extracted bag


def test_a_failed_mirror_verify_hints_at_sync_not_at_the_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest_file = tmp_path / "m.toml"
    manifest_file.write_text(manifest_text(PAYLOAD))
    make_mirror(tmp_path / "mirror")
    (tmp_path / "mirror/2022/data/hw1/train.csv").write_bytes(b"damaged")
    args = ["verify", "--manifest", str(manifest_file), "--root", str(tmp_path / "mirror")]
    assert main(args) == 5
    (line,) = capsys.readouterr().err.strip().splitlines()
    # in this run's terms: its own manifest and root
    assert (
        f"lhymirror sync --manifest {manifest_file} --root {tmp_path / 'mirror'} --rehash" in line
    )
    assert "archive" not in line


def test_verify_mirror_knows_its_year(tmp_path: Path) -> None:
    manifest, store = make_mirror(tmp_path)
    assert verify_mirror(manifest, store).mirror_year == 2022


@pytest.fixture
def extracted(tmp_path: Path) -> Path:
    return unpack_archive(packed(tmp_path, "zip"), tmp_path / "bag")


def test_os_clutter_in_an_extracted_bag_is_a_note(extracted: Path) -> None:
    (extracted / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (extracted / "data/Thumbs.db").write_bytes(b"thumbs")
    (extracted / "data/data/hw1/desktop.ini").write_text("[.ShellClassInfo]\n")
    (extracted / "data/slides/.DS_Store").write_bytes(b"Bud1")
    report = verify_path(extracted)
    assert report.ok, report.problems
    assert report.files_checked == 3
    clutter_notes = [note for note in report.notes if "operating system" in note]
    assert len(clutter_notes) == 4
    assert any(note.startswith("bag/data/Thumbs.db ignored") for note in clutter_notes)


def test_other_unlisted_files_in_an_extracted_bag_still_fail(extracted: Path) -> None:
    (extracted / ".DS_Store").write_bytes(b"Bud1")
    (extracted / "data/notes.txt").write_text("mine")
    (extracted / "DS_Store").write_text("not the OS's")
    report = verify_path(extracted)
    assert found(report) == {
        ("extra", "bag/data/notes.txt"),
        ("extra", "bag/DS_Store"),
        ("oxum", "bag/bag-info.txt"),  # the payload holds one file more than declared
    }


def test_os_clutter_in_an_archive_is_still_extra(tmp_path: Path) -> None:
    from factories import Spec
    from test_verify import archive_with, bag_specs

    specs = [*bag_specs(), Spec(f"{TOP}/data/.DS_Store", b"Bud1")]
    report = verify_path(without_sidecar_if_any(archive_with(tmp_path, "zip", specs)))
    assert ("extra", f"{TOP}/data/.DS_Store") in found(report)


def without_sidecar_if_any(archive: Path) -> Path:
    Path(f"{archive}.sha256").unlink(missing_ok=True)
    return archive


def test_a_hostile_member_name_prints_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_archive_read import Spec
    from test_verify import archive_with, bag_specs

    specs = [*bag_specs(), Spec(f"{TOP}/data/evil\n\x1b[2Jname", b"x")]
    archive = without_sidecar_if_any(archive_with(tmp_path, "tar", specs))
    assert main(["verify", str(archive)]) == 5
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert f"unsafe: {TOP}/data/evil\\n\\x1b[2Jname: contains a NUL or control" in out, out


def test_unpack_streams_a_tar_gz_from_a_pipe(tmp_path: Path) -> None:
    archive = packed(tmp_path, "tar.gz")
    with pipe_of(archive.read_bytes()) as pipe:
        bag = unpack_archive(pipe, tmp_path / "out" / "bag")
    assert verify_path(bag).ok


@pytest.mark.parametrize("what", ["zip-pipe", "device"])
def test_unpack_refuses_a_zip_pipe_and_devices_leaving_nothing(tmp_path: Path, what: str) -> None:
    dest = tmp_path / "out" / "bag"
    if what == "device":
        with pytest.raises(UsageError, match="a device, not a file"):
            unpack_archive(Path("/dev/null"), dest)
    else:
        with (
            pipe_of(packed(tmp_path, "zip").read_bytes()) as pipe,
            pytest.raises(UsageError, match="cannot read a zip from a pipe"),
        ):
            unpack_archive(pipe, dest)
    assert list((tmp_path / "out").iterdir()) == []


def test_an_unreadable_archive_is_a_storage_error_in_our_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lhymirror.core.errors import StorageError

    archive = packed(tmp_path, "tar")

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)  # root reads everything: simulate the refusal
    with pytest.raises(StorageError) as caught:
        verify_path(archive)
    assert caught.value.message.startswith(f"file system error ({archive}): Permission denied.")
    assert "Errno" not in caught.value.message
