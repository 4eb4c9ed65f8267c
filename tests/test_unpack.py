"""Safe, verified extraction (lhymirror.archive.unpack, `lhymirror unpack`)."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from factories import FORMATS, Spec, write_archive
from lhymirror.archive.unpack import TEMP_PREFIX, UnpackError, unpack_archive
from lhymirror.cli import main
from lhymirror.core.errors import UsageError
from test_verify import PAYLOAD, TOP, archive_with, bag_specs, packed, replace_member


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path below *root* (folders as None), without following links."""
    found: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(Path(folder, name), root)] = None
        for name in files:
            path = Path(folder, name)
            found[os.path.relpath(path, root)] = None if path.is_symlink() else path.read_bytes()
    return found


def assert_nothing_left(parent: Path, *allowed: str) -> None:
    """Only *allowed* names in *parent*: no temporary folder, no stray file."""
    assert sorted(p.name for p in parent.iterdir()) == sorted(allowed)


@pytest.mark.parametrize("fmt", FORMATS)
def test_unpacks_a_packed_archive(tmp_path: Path, fmt: str) -> None:
    archive = packed(tmp_path, fmt)
    dest = tmp_path / "out" / "course"
    assert unpack_archive(archive, dest) == dest
    files = tree(dest)
    for path, data in PAYLOAD.items():
        assert files[f"data/{path}"] == data
    assert {"bagit.txt", "bag-info.txt", "manifest-sha256.txt", "index.html"} <= set(files)
    for path in dest.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), path
    assert_nothing_left(dest.parent, "course")


def test_default_destination_is_the_top_folder_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = packed(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert unpack_archive(archive) == work / TOP
    assert_nothing_left(work, TOP)


def test_executable_members_keep_0755(tmp_path: Path) -> None:
    specs = [
        Spec(s.name, s.data, s.kind, 0o775 if s.name.endswith(".pdf") else 0o600)
        for s in bag_specs()
    ]
    dest = unpack_archive(archive_with(tmp_path, "tar", specs), tmp_path / "out")
    assert stat.S_IMODE((dest / "data/slides/lecture 1.pdf").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "bagit.txt").stat().st_mode) == 0o644


def test_an_existing_empty_folder_is_accepted_as_destination(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    assert unpack_archive(packed(tmp_path), dest) == dest
    assert (dest / "bagit.txt").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_a_link_to_an_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "empty")
    with pytest.raises(UsageError, match="destination already exists"):
        unpack_archive(packed(tmp_path), tmp_path / "out")
    assert list((tmp_path / "empty").iterdir()) == []


def test_existing_destination_is_refused_untouched(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    with pytest.raises(UsageError, match="destination already exists"):
        unpack_archive(packed(tmp_path), dest)
    assert tree(dest) == {"mine.txt": b"keep me"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_tampered_archive_leaves_nothing_at_dest(tmp_path: Path, fmt: str) -> None:
    specs = replace_member(bag_specs(), "data/data/hw1/train.csv", b"tampered")
    archive = archive_with(tmp_path, fmt, specs)
    out = tmp_path / "out"
    with pytest.raises(UnpackError) as caught:
        unpack_archive(archive, out / "course")
    assert [(p.kind, p.path) for p in caught.value.report.problems] == [
        ("size", f"{TOP}/data/data/hw1/train.csv"),
        ("oxum", f"{TOP}/bag-info.txt"),
    ]
    assert "nothing extracted" in caught.value.message
    assert_nothing_left(out)


HOSTILE = {
    "dotdot": Spec("../escaped.txt", b"evil"),
    "inner-dotdot": Spec(f"{TOP}/data/../../escaped.txt", b"evil"),
    "absolute": Spec("/tmp/escaped.txt", b"evil"),
    "symlink": Spec(f"{TOP}/data/link", kind="symlink", link="../../escaped.txt"),
    "hardlink": Spec(f"{TOP}/data/hard", kind="hardlink", link="/etc/passwd"),
    "duplicate": Spec(f"{TOP}/data/data/hw1/train.csv", b"second copy"),
}


@pytest.mark.parametrize(
    ("fmt", "hostile"),
    [
        pytest.param(fmt, spec, id=f"{fmt}-{name}")
        for fmt in FORMATS
        for name, spec in HOSTILE.items()
        if not (fmt == "zip" and name == "hardlink")  # zip has no hard links
    ],
)
def test_hostile_members_are_refused_and_nothing_escapes(
    tmp_path: Path, fmt: str, hostile: Spec
) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    archive = archive_with(tmp_path, fmt, [*bag_specs(), hostile])
    with pytest.raises(UnpackError) as caught:
        unpack_archive(archive, work / "out")
    assert [p.kind for p in caught.value.report.problems] == ["unsafe"]
    assert_nothing_left(work)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "a/escaped.txt").exists()
    assert not Path("/tmp/escaped.txt").exists()


def test_truncated_archive_leaves_nothing(tmp_path: Path) -> None:
    archive = packed(tmp_path, "tar.gz")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnpackError):
        unpack_archive(archive, tmp_path / "out" / "x")
    assert_nothing_left(tmp_path / "out")


def test_file_where_a_folder_is_needed_is_refused(tmp_path: Path) -> None:
    specs = [*bag_specs(), Spec(f"{TOP}/data/slides/lecture 1.pdf/inner", b"x")]
    with pytest.raises(UnpackError) as caught:
        unpack_archive(write_archive(tmp_path / "a.zip", "zip", specs), tmp_path / "out")
    assert "unsafe" in {p.kind for p in caught.value.report.problems}
    assert not (tmp_path / "out").exists()


def test_zip_bomb_is_refused_before_a_byte_is_written(tmp_path: Path) -> None:
    specs = [*bag_specs(), Spec(f"{TOP}/data/zeros", bytes(4 * 1024 * 1024))]
    archive = write_archive(tmp_path / "bomb.zip", "zip", specs, compression=zipfile.ZIP_LZMA)
    with pytest.raises(UnpackError) as caught:
        unpack_archive(archive, tmp_path / "out" / "x")
    assert [(p.kind, p.path) for p in caught.value.report.problems] == [
        ("unsafe", f"{TOP}/data/zeros")
    ]
    assert_nothing_left(tmp_path / "out")


def test_missing_archive_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such archive"):
        unpack_archive(tmp_path / "nope.zip")


def test_cli_unpack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = packed(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["unpack", str(archive), "out"]) == 0
    assert capsys.readouterr().out.strip() == "out"
    assert main(["unpack", str(archive), "out"]) == 2
    assert "destination already exists" in capsys.readouterr().err


def test_cli_unpack_damaged_lists_problems_and_exits_5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = replace_member(bag_specs(), "data/data/hw1/empty.txt")
    archive = archive_with(tmp_path, "zip", specs)
    monkeypatch.chdir(tmp_path)
    assert main(["unpack", str(archive), "out"]) == 5
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"  missing: {TOP}/data/data/hw1/empty.txt: listed in manifest-sha256.txt, absent "
        "from the bag"
    )
    assert err[-1].startswith("lhymirror: error: archive failed verification, nothing extracted")
    assert not (tmp_path / "out").exists()


def test_temp_prefix_is_hidden() -> None:
    assert TEMP_PREFIX.startswith(".")
