"""Offline verification of archives, bag folders and the mirror (`lhymirror.archive.verify`).

Also home of the bag helpers (``bag_specs``, ``make_mirror``) that the unpack tests reuse.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import bagit
import pytest

import lhymirror
from factories import FORMATS, Spec, blob, sha, write_archive
from lhymirror.archive.bag import (
    BAG_DECLARATION,
    format_bag_info,
    format_checksum_manifest,
    payload_oxum,
)
from lhymirror.archive.pack import pack_year
from lhymirror.archive.read import ArchiveFormatError
from lhymirror.archive.unpack import unpack_archive
from lhymirror.archive.verify import Problem, VerifyReport, verify_mirror, verify_path
from lhymirror.cli import main
from lhymirror.core.errors import UsageError
from lhymirror.core.units import utc_now
from lhymirror.manifest.model import Manifest, parse_manifest
from lhymirror.mirror.store import FileRecord, MirrorStore
from tools import require_tool

TOP = "ml-2022-v1"
PAYLOAD = {
    "slides/lecture 1.pdf": blob(150_000, 11),
    "data/hw1/train.csv": b"id,x,y\n" + b"1,2,3\n" * 4000,
    "data/hw1/empty.txt": b"",
}


# ---------------------------------------------------------------------------------------------
# Helpers


def manifest_text(payload: dict[str, bytes], *, pin: bool = True, manual: str | None = None) -> str:
    """A manifest listing *payload* (pinned sizes and checksums unless ``pin=False``)."""
    lines = ["schema = 1", 'course = "ML"', 'slug = "ml"', "year = 2022", 'version = "1"']
    for index, (path, data) in enumerate(payload.items()):
        lines += ["[[files]]", f'id = "f{index}"', 'kind = "slide"', 'section = "Lecture 1"']
        lines.append(f'path = "{path}"')
        if manual is not None and path == manual:
            lines.append('manual = "log in and download it"')
        else:
            lines.append(f'urls = ["https://example.org/{index}"]')
        if pin:
            lines += [f"size = {len(data)}", f'sha256 = "{sha(data)}"']
    return "\n".join(lines) + "\n"


def bag_specs(payload: dict[str, bytes] = PAYLOAD, *, top: str = TOP) -> list[Spec]:
    """The members of a valid bag holding *payload*, built by hand (not by `pack`)."""
    files = {f"data/{path}": data for path, data in payload.items()}
    tags = {
        "bagit.txt": BAG_DECLARATION,
        "bag-info.txt": format_bag_info(
            [
                ("Source-Organization", "NTU"),
                ("Payload-Oxum", payload_oxum(sum(map(len, files.values())), len(files))),
            ]
        ),
        "manifest-sha256.txt": format_checksum_manifest(
            (path, sha(data)) for path, data in files.items()
        ),
        "lhymirror.toml": manifest_text(payload),
        "index.html": "<!doctype html><title>ML</title>",
    }
    encoded = {name: text.encode() for name, text in tags.items()}
    encoded["tagmanifest-sha256.txt"] = format_checksum_manifest(
        (name, sha(data)) for name, data in encoded.items()
    ).encode()
    members = [Spec(top, kind="dir", mode=0o755)]
    members += [Spec(f"{top}/{name}", data) for name, data in sorted(encoded.items())]
    members += [Spec(f"{top}/{name}", data) for name, data in sorted(files.items())]
    return members


def replace_member(
    specs: list[Spec], member: str, data: bytes | None = None, *, name: str | None = None
) -> list[Spec]:
    """*specs* with bag file *member* given new data or a new name, or dropped (neither)."""
    result = []
    for spec in specs:
        if spec.name != f"{TOP}/{member}":
            result.append(spec)
        elif data is not None or name is not None:
            new_name = f"{TOP}/{name}" if name is not None else spec.name
            result.append(Spec(new_name, spec.data if data is None else data, spec.kind))
    return result


def make_mirror(
    root: Path, payload: dict[str, bytes] = PAYLOAD, *, pin: bool = True
) -> tuple[Manifest, MirrorStore]:
    """A mirror holding *payload*; without ``pin``, each file has a record of its verification."""
    manifest = parse_manifest(manifest_text(payload, pin=pin))
    store = MirrorStore(root, manifest.year)
    for entry in manifest.files:
        target = store.year_dir / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        data = payload[entry.path]
        target.write_bytes(data)
        if not pin:
            store.save_record(
                FileRecord(
                    id=entry.id,
                    path=entry.path,
                    size=len(data),
                    sha256=sha(data),
                    mtime_ns=target.stat().st_mtime_ns,
                    verified_at=utc_now(),
                )
            )
    return manifest, store


def packed(tmp_path: Path, fmt: str = "zip") -> Path:
    """An archive written by `lhymirror pack` itself."""
    manifest, store = make_mirror(tmp_path / "mirror")
    return pack_year(manifest, store, tmp_path / "dist", fmt=fmt).archive


def found(report: VerifyReport) -> set[tuple[str, str]]:
    return {(problem.kind, problem.path) for problem in report.problems}


def archive_with(tmp_path: Path, fmt: str, specs: list[Spec]) -> Path:
    suffix = {"zip": ".zip", "tar": ".tar", "tar.gz": ".tar.gz"}[fmt]
    return write_archive(tmp_path / f"{TOP}{suffix}", fmt, specs)


# ---------------------------------------------------------------------------------------------
# Intact bags


@pytest.mark.parametrize("fmt", FORMATS)
def test_packed_archive_is_intact(tmp_path: Path, fmt: str) -> None:
    archive = packed(tmp_path, fmt)
    report = verify_path(archive)
    assert report.problems == []
    assert report.ok and report.bag == TOP and not report.fast
    assert report.files_checked == len(PAYLOAD)
    assert report.bytes_checked == sum(map(len, PAYLOAD.values()))
    assert report.notes == []  # the sidecar was checked too


@pytest.mark.parametrize("fmt", FORMATS)
def test_hand_built_bag_is_intact(tmp_path: Path, fmt: str) -> None:
    report = verify_path(archive_with(tmp_path, fmt, bag_specs()))
    assert report.ok, report.problems


def test_extracted_bag_folder_is_intact(tmp_path: Path) -> None:
    with zipfile.ZipFile(packed(tmp_path)) as archive:
        archive.extractall(tmp_path / "out")
    report = verify_path(tmp_path / "out" / TOP)
    assert report.ok, report.problems
    assert report.files_checked == len(PAYLOAD)


# ---------------------------------------------------------------------------------------------
# Tampering: every problem named


@pytest.mark.parametrize("fmt", FORMATS)
def test_flipped_byte_is_a_checksum_mismatch_with_both_sums(tmp_path: Path, fmt: str) -> None:
    original = PAYLOAD["slides/lecture 1.pdf"]
    damaged = bytearray(original)
    damaged[1000] ^= 0x01
    specs = replace_member(bag_specs(), "data/slides/lecture 1.pdf", bytes(damaged))
    report = verify_path(archive_with(tmp_path, fmt, specs))
    assert report.problems == [
        Problem(
            "checksum",
            f"{TOP}/data/slides/lecture 1.pdf",
            f"expected sha256 {sha(original)}, got {sha(bytes(damaged))}",
        )
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_member_is_a_size_mismatch(tmp_path: Path, fmt: str) -> None:
    specs = replace_member(bag_specs(), "data/data/hw1/train.csv", b"id,x,y\n")
    report = verify_path(archive_with(tmp_path, fmt, specs))
    assert found(report) == {
        ("size", f"{TOP}/data/data/hw1/train.csv"),
        ("oxum", f"{TOP}/bag-info.txt"),
    }
    size_problem = next(p for p in report.problems if p.kind == "size")
    assert size_problem.detail == f"expected {len(PAYLOAD['data/hw1/train.csv'])} bytes, found 7"


@pytest.mark.parametrize("fmt", FORMATS)
def test_deleted_member_is_missing(tmp_path: Path, fmt: str) -> None:
    specs = replace_member(bag_specs(), "data/data/hw1/empty.txt")
    report = verify_path(archive_with(tmp_path, fmt, specs))
    assert found(report) == {
        ("missing", f"{TOP}/data/data/hw1/empty.txt"),
        ("oxum", f"{TOP}/bag-info.txt"),
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_added_member_is_extra(tmp_path: Path, fmt: str) -> None:
    specs = [*bag_specs(), Spec(f"{TOP}/data/smuggled.exe", b"MZ"), Spec(f"{TOP}/notes.txt")]
    report = verify_path(archive_with(tmp_path, fmt, specs))
    assert found(report) == {
        ("extra", f"{TOP}/data/smuggled.exe"),
        ("extra", f"{TOP}/notes.txt"),
        ("oxum", f"{TOP}/bag-info.txt"),
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_renamed_member_is_missing_and_extra(tmp_path: Path, fmt: str) -> None:
    specs = replace_member(bag_specs(), "data/slides/lecture 1.pdf", name="data/slides/l1.pdf")
    report = verify_path(archive_with(tmp_path, fmt, specs))
    assert found(report) == {
        ("missing", f"{TOP}/data/slides/lecture 1.pdf"),
        ("extra", f"{TOP}/data/slides/l1.pdf"),
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_edited_and_deleted_tag_files_are_named(tmp_path: Path, fmt: str) -> None:
    specs = replace_member(bag_specs(), "lhymirror.toml", b'schema = 1\ncourse = "x"\n')
    specs = replace_member(specs, "index.html")
    report = verify_path(archive_with(tmp_path, fmt, specs))
    assert ("tagmanifest", f"{TOP}/lhymirror.toml") in found(report)
    assert ("missing", f"{TOP}/index.html") in found(report)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_problem_is_reported_in_one_pass(tmp_path: Path, fmt: str) -> None:
    specs = replace_member(bag_specs(), "data/slides/lecture 1.pdf", b"changed")
    specs = replace_member(specs, "data/data/hw1/empty.txt")
    specs = replace_member(specs, "bagit.txt")
    specs += [
        Spec(f"{TOP}/data/extra.bin", b"x"),
        Spec(f"{TOP}/data/link", kind="symlink", link="/etc/passwd"),
        Spec("../escape.txt", b"evil"),
        Spec("elsewhere/file.txt", b"?"),
    ]
    report = verify_path(archive_with(tmp_path, fmt, specs))
    assert found(report) == {
        ("size", f"{TOP}/data/slides/lecture 1.pdf"),
        ("missing", f"{TOP}/data/data/hw1/empty.txt"),
        ("missing", f"{TOP}/bagit.txt"),
        ("extra", f"{TOP}/data/extra.bin"),
        ("unsafe", f"{TOP}/data/link"),
        ("unsafe", "../escape.txt"),
        ("extra", "elsewhere/file.txt"),
        ("oxum", f"{TOP}/bag-info.txt"),
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_flipped_byte_in_a_packed_archive_is_named(tmp_path: Path, fmt: str) -> None:
    archive = packed(tmp_path, "tar" if fmt == "tar" else fmt)
    data = bytearray(archive.read_bytes())
    if fmt == "tar.gz":
        data[len(data) // 2] ^= 0x01
    else:  # inside the stored PDF's bytes
        data[data.index(PAYLOAD["slides/lecture 1.pdf"][:64]) + 5000] ^= 0x01
    archive.write_bytes(bytes(data))
    report = verify_path(archive)
    assert not report.ok
    assert ("sidecar", f"{archive}.sha256") in found(report)
    if fmt != "tar.gz":
        assert {p.path for p in report.problems} >= {f"{TOP}/data/slides/lecture 1.pdf"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_packed_archive_is_named_not_a_traceback(tmp_path: Path, fmt: str) -> None:
    archive = packed(tmp_path, fmt)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])
    report = verify_path(archive)
    kinds = {problem.kind for problem in report.problems}
    assert kinds == {"truncated", "sidecar"}


def test_sidecar_naming_another_file_is_a_problem(tmp_path: Path) -> None:
    archive = packed(tmp_path)
    sidecar = Path(f"{archive}.sha256")
    sidecar.write_text(f"{sha(archive.read_bytes())}  other.zip\n")
    assert found(verify_path(archive)) == {("sidecar", str(sidecar))}


def test_fast_checks_counts_and_sizes_only_and_says_so(tmp_path: Path) -> None:
    data = bytearray(PAYLOAD["slides/lecture 1.pdf"])
    data[0] ^= 0xFF  # same size, other bytes
    specs = replace_member(bag_specs(), "data/slides/lecture 1.pdf", bytes(data))
    archive = archive_with(tmp_path, "zip", specs)
    fast = verify_path(archive, fast=True)
    assert fast.ok and fast.fast
    assert any("checksums not checked" in note for note in fast.notes)
    assert found(verify_path(archive)) == {("checksum", f"{TOP}/data/slides/lecture 1.pdf")}
    shorter = replace_member(bag_specs(), "data/slides/lecture 1.pdf", b"short")
    report = verify_path(archive_with(tmp_path, "tar", shorter), fast=True)
    assert ("size", f"{TOP}/data/slides/lecture 1.pdf") in found(report)


def test_fast_on_a_packed_zip_reads_no_payload(tmp_path: Path) -> None:
    archive = packed(tmp_path)
    report = verify_path(archive, fast=True)
    assert report.ok
    assert any(".sha256 not checked" in note for note in report.notes)


def test_partial_bag_is_intact_and_says_what_is_missing(tmp_path: Path) -> None:
    manifest, store = make_mirror(tmp_path / "mirror")
    (store.year_dir / "data/hw1/train.csv").unlink()
    archive = pack_year(manifest, store, tmp_path / "dist", partial=True).archive
    report = verify_path(archive)
    assert report.ok, report.problems
    assert any("partial bag: 1 course files" in note for note in report.notes)


# ---------------------------------------------------------------------------------------------
# Not an archive, no such path


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file or folder"):
        verify_path(tmp_path / "nope.zip")


def test_not_an_archive_is_one_clean_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"<html>not found</html>")
    with pytest.raises(ArchiveFormatError, match="not an archive"):
        verify_path(junk)


def test_empty_archive_holds_no_bag(tmp_path: Path) -> None:
    report = verify_path(write_archive(tmp_path / "empty.tar", "tar", []))
    assert found(report) == {("malformed", str(tmp_path / "empty.tar"))}


# ---------------------------------------------------------------------------------------------
# Bag folders


def _extracted(tmp_path: Path) -> Path:
    folder = tmp_path / TOP
    for spec in bag_specs():
        target = tmp_path / spec.name
        if spec.kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(spec.data)
    return folder


def test_symlinks_in_a_bag_folder_are_reported_not_followed(tmp_path: Path) -> None:
    folder = _extracted(tmp_path)
    outside = tmp_path / "outside.csv"
    target = folder / "data/data/hw1/train.csv"
    outside.write_bytes(target.read_bytes())  # the right bytes, but out of the bag
    target.unlink()
    target.symlink_to(outside)
    (folder / "data/escape").symlink_to(tmp_path, target_is_directory=True)
    report = verify_path(folder)
    assert found(report) == {
        ("unsafe", f"{TOP}/data/data/hw1/train.csv"),
        ("unsafe", f"{TOP}/data/escape"),
        ("oxum", f"{TOP}/bag-info.txt"),
    }


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no fifos on this platform")
def test_fifo_in_a_bag_folder_is_unsafe_and_never_opened(tmp_path: Path) -> None:
    folder = _extracted(tmp_path)
    os.mkfifo(folder / "data/pipe")
    assert ("unsafe", f"{TOP}/data/pipe") in found(verify_path(folder))


def test_tampered_bag_folder(tmp_path: Path) -> None:
    folder = _extracted(tmp_path)
    (folder / "data/data/hw1/empty.txt").write_bytes(b"not empty")
    (folder / "data/new.txt").write_bytes(b"")
    assert found(verify_path(folder)) == {
        ("size", f"{TOP}/data/data/hw1/empty.txt"),
        ("extra", f"{TOP}/data/new.txt"),
        ("oxum", f"{TOP}/bag-info.txt"),
    }


# ---------------------------------------------------------------------------------------------
# The mirror


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "recorded"])
def test_intact_mirror(tmp_path: Path, pin: bool) -> None:
    manifest, store = make_mirror(tmp_path, pin=pin)
    report = verify_mirror(manifest, store)
    assert report.ok, report.problems
    assert report.files_checked == 3


def test_mirror_rehashes_even_when_size_and_mtime_are_unchanged(tmp_path: Path) -> None:
    manifest, store = make_mirror(tmp_path, pin=False)
    target = store.year_dir / "slides/lecture 1.pdf"
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[0] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    report = verify_mirror(manifest, store)
    assert found(report) == {("checksum", "slides/lecture 1.pdf")}
    assert "(recorded)" in report.problems[0].detail
    assert verify_mirror(manifest, store, fast=True).ok


def test_mirror_problems_are_all_named(tmp_path: Path) -> None:
    payload = {**PAYLOAD, "data/hw2/faces.zip": b"PK", "slides/unknown.pdf": b"%PDF"}
    text = manifest_text(payload, manual="data/hw2/faces.zip")
    text = text.replace(f'sha256 = "{sha(b"%PDF")}"', "").replace("size = 4\n", "")
    manifest = parse_manifest(text)
    store = MirrorStore(tmp_path, 2022)
    for path, data in payload.items():
        if path != "data/hw2/faces.zip":
            (store.year_dir / path).parent.mkdir(parents=True, exist_ok=True)
            (store.year_dir / path).write_bytes(data)
    (store.year_dir / "slides/lecture 1.pdf").write_bytes(b"truncated")
    (store.year_dir / "data/hw1/empty.txt").unlink()
    (store.year_dir / "data/hw1/empty.txt").symlink_to(tmp_path / "elsewhere")
    report = verify_mirror(manifest, store)
    assert found(report) == {
        ("size", "slides/lecture 1.pdf"),
        ("symlink", "data/hw1/empty.txt"),
        ("missing", "data/hw2/faces.zip"),
        ("unverified", "slides/unknown.pdf"),
    }
    manual = next(p for p in report.problems if p.path == "data/hw2/faces.zip")
    assert "lhymirror add" in manual.detail


# ---------------------------------------------------------------------------------------------
# Offline by construction


def test_verify_works_with_all_networking_disabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archives = [packed(tmp_path / fmt, fmt) for fmt in FORMATS]
    manifest, store = make_mirror(tmp_path / "mirror")
    with zipfile.ZipFile(archives[0]) as archive:
        archive.extractall(tmp_path / "out")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("verify tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    for archive in archives:
        assert verify_path(archive).ok
        assert verify_path(archive, fast=True).ok
        assert unpack_archive(archive, tmp_path / "unpacked" / archive.name).is_dir()
    assert verify_path(tmp_path / "out" / TOP).ok
    assert verify_mirror(manifest, store).ok


def test_verify_and_unpack_import_no_http_client() -> None:
    code = (
        "import sys, lhymirror.archive.verify, lhymirror.archive.unpack, lhymirror.cli.verify_cmd, "
        "lhymirror.cli.unpack_cmd\n"
        "print(sorted(m for m in ('requests', 'urllib3', 'http.client', 'urllib.request') "
        "if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(lhymirror.__file__).parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Bags made by tools no one here wrote


def test_bag_made_by_bagit_python_verifies_as_folder_and_gnu_tar_archive(tmp_path: Path) -> None:
    folder = tmp_path / "course"
    for path, data in PAYLOAD.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    bagit.make_bag(str(folder), checksums=["sha256"])
    report = verify_path(folder)
    assert report.ok, report.problems
    assert report.files_checked == len(PAYLOAD)
    tar = require_tool("tar", "tar")
    archive = tmp_path / "course.tar.gz"
    subprocess.run([tar, "-czf", str(archive), "-C", str(tmp_path), "course"], check=True)
    report = verify_path(archive)
    assert report.ok, report.problems


def test_zip_made_by_7z_verifies(tmp_path: Path) -> None:
    seven = require_tool("7z", "p7zip-full")
    for spec in bag_specs():
        target = tmp_path / "src" / spec.name
        if spec.kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(spec.data)
    archive = tmp_path / "bag.zip"
    subprocess.run(
        [seven, "a", "-tzip", "-bd", str(archive), TOP],
        cwd=tmp_path / "src",
        check=True,
        capture_output=True,
    )
    report = verify_path(archive)
    assert report.ok, report.problems


# ---------------------------------------------------------------------------------------------
# JSON and the command line


def test_report_json_shape(tmp_path: Path) -> None:
    specs = replace_member(bag_specs(), "data/data/hw1/empty.txt", name="data/renamed.txt")
    report = verify_path(archive_with(tmp_path, "tar", specs))
    data = json.loads(json.dumps(report.to_json()))
    assert set(data) == {
        "target", "bag", "ok", "fast", "files_checked", "bytes_checked", "problems", "notes",
    }  # fmt: skip
    assert data["ok"] is False and data["bag"] == TOP
    assert data["problems"] == [
        {"kind": "missing", "path": f"{TOP}/data/data/hw1/empty.txt", "detail": "listed in "
         "manifest-sha256.txt, absent from the bag"},
        {"kind": "extra", "path": f"{TOP}/data/renamed.txt",
         "detail": "not listed in manifest-sha256.txt"},
    ]  # fmt: skip


def test_cli_intact_archive_exits_0_with_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = packed(tmp_path)
    assert main(["verify", str(archive)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"intact: 3 files, 174.0 kB checked: {archive}"]


def test_cli_lists_every_problem_and_exits_5(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = replace_member(bag_specs(), "data/data/hw1/empty.txt", name="data/renamed.txt")
    archive = archive_with(tmp_path, "tar.gz", specs)
    assert main(["verify", str(archive)]) == 5
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"missing: {TOP}/data/data/hw1/empty.txt: ")
    assert out[1].startswith(f"extra: {TOP}/data/renamed.txt: ")
    assert out[-1].startswith("NOT intact: 2 problems")


def test_cli_ends_a_failed_verify_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = replace_member(bag_specs(), "data/data/hw1/empty.txt", name="data/renamed.txt")
    archive = archive_with(tmp_path, "tar", specs)
    assert main(["verify", str(archive)]) == 5
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"lhymirror: error: not intact ({archive}): 2 problems. ")


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = packed(tmp_path, "tar")
    assert main(["verify", str(archive), "--json", "--fast"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["fast"] is True and data["files_checked"] == 3


def test_cli_mirror(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest_file = tmp_path / "m.toml"
    manifest_file.write_text(manifest_text(PAYLOAD))
    make_mirror(tmp_path / "mirror")
    args = ["verify", "--manifest", str(manifest_file), "--root", str(tmp_path / "mirror")]
    assert main(args) == 0
    (tmp_path / "mirror/2022/data/hw1/train.csv").unlink()
    assert main(args) == 5
    assert "missing: data/hw1/train.csv: not in the mirror" in capsys.readouterr().out


@pytest.mark.parametrize(
    "case",
    [
        (["verify", "nope.zip"], 2, "no such file or folder"),
        (["verify"], 2, "nothing to verify"),
        (["verify", "x.zip", "--year", "2022"], 2, "not both"),
        (["verify", "junk.zip"], 5, "not an archive"),
        (["verify", "--year", "2022", "--root", "no-mirror"], 2, "no mirror of this year"),
    ],
    ids=["no-such-path", "no-target", "both-targets", "junk", "no-mirror"],
)
def test_cli_errors_are_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: tuple[list[str], int, str],
) -> None:
    argv, status, message = case
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.zip").write_bytes(b"junk")
    assert main(argv) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cli_help_ends_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    assert "lhymirror verify --year 2022 --fast --json" in capsys.readouterr().out.rstrip()[-80:]
