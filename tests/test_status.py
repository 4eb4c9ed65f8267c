"""``lhymirror status``: every local state, as text and JSON, without any network access."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from factories import blob, file_entry, sha, write_manifest
from lhymirror.cli import main
from lhymirror.mirror.store import FileRecord, MirrorStore

YEAR = 2022
UNREACHABLE = "https://127.0.0.1:1/ml"  # status must never try it


def slide(entry_id: str, data: bytes | None = None, **extra: Any) -> dict[str, Any]:
    return file_entry(entry_id, data, base_url=UNREACHABLE, **extra)


def place(store: MirrorStore, entry_id: str, data: bytes, *, record: bool = True) -> Path:
    target = store.file_path(f"slides/{entry_id}.pdf")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    if record:
        store.save_record(
            FileRecord(
                entry_id,
                f"slides/{entry_id}.pdf",
                len(data),
                sha(data),
                target.stat().st_mtime_ns,
                "2024-01-01T00:00:00Z",
            )
        )
    return target


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[Path, MirrorStore]:
    """A manifest with one file in every state, and its mirror."""
    store = MirrorStore(tmp_path / "mirror", YEAR)
    store.ensure_dirs()
    ok, changed, unverified, partial = blob(500, 1), blob(500, 2), blob(500, 3), blob(1000, 4)
    files = [
        slide("ok", ok),
        slide("missing", blob(10, 5)),
        slide("partial", partial),
        slide("changed", changed),
        slide("unverified"),
        {"id": "manual", "kind": "dataset", "path": "data/m.zip", "manual": "Log in at X."},
    ]
    place(store, "ok", ok)
    target = place(store, "changed", changed)
    target.write_bytes(blob(500, 6))
    os.utime(target, ns=(0, target.stat().st_mtime_ns + 2_000_000_000))
    place(store, "unverified", unverified, record=False)
    store.partial_path("partial").write_bytes(partial[:250])
    manifest = write_manifest(tmp_path / "course.toml", *files, year=YEAR)
    return manifest, store


def status_args(manifest: Path, store: MirrorStore, *extra: str) -> list[str]:
    return ["status", "--manifest", str(manifest), "--root", str(store.root), *extra]


def test_status_shows_every_state(
    mirror: tuple[Path, MirrorStore], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, store = mirror
    assert main(status_args(manifest, store)) == 5  # a file changed on disk
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "ok" in rows["ok"].split()[1]
    assert "missing" in rows["missing"]
    assert "partial" in rows["partial"] and "25%" in rows["partial"]
    assert "changed on disk" in rows["changed"]
    assert "unverified" in rows["unverified"]
    assert "manual pending" in rows["manual"] and "Log in at X." in rows["manual"]
    assert "1 of 6 files ok" in out


def test_status_json(mirror: tuple[Path, MirrorStore], capsys: pytest.CaptureFixture[str]) -> None:
    manifest, store = mirror
    assert main(status_args(manifest, store, "--json")) == 5
    data = json.loads(capsys.readouterr().out)
    states = {f["id"]: f["state"] for f in data["files"]}
    assert states == {
        "ok": "ok",
        "missing": "missing",
        "partial": "partial",
        "changed": "changed",
        "unverified": "unverified",
        "manual": "manual",
    }
    assert data["counts"]["ok"] == 1
    assert data["files"][0]["checksum_origin"] == "manifest"


def test_rehash_finds_damage_that_kept_size_and_mtime(
    mirror: tuple[Path, MirrorStore], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, store = mirror
    target = store.file_path("slides/ok.pdf")
    stat = target.stat()
    target.write_bytes(blob(500, 7))  # same size
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    main(status_args(manifest, store, "--json"))
    assert json.loads(capsys.readouterr().out)["files"][0]["state"] == "ok"
    main(status_args(manifest, store, "--json", "--rehash"))
    assert json.loads(capsys.readouterr().out)["files"][0]["state"] == "changed"


def test_status_of_an_empty_mirror_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path / "course.toml", slide("a"), year=YEAR)
    root = tmp_path / "empty"
    root.mkdir()
    assert main(["status", "--manifest", str(manifest), "--root", str(root)]) == 8
    assert "missing" in capsys.readouterr().out
    assert list(root.iterdir()) == []


def test_root_comes_from_the_environment(
    mirror: tuple[Path, MirrorStore],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest, store = mirror
    monkeypatch.setenv("LHYMIRROR_ROOT", str(store.root))
    assert main(["status", "--manifest", str(manifest), "--json"]) == 5
    assert json.loads(capsys.readouterr().out)["root"] == str(store.root)


def test_an_unreadable_file_is_shown_as_unreadable_not_a_traceback(
    mirror: tuple[Path, MirrorStore],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest, store = mirror

    def broken_disk(path: Path, progress: object = None) -> tuple[int, str]:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("lhymirror.mirror.state.hash_regular", broken_disk)
    assert main(status_args(manifest, store, "--rehash")) == 5  # changed and unreadable files
    out, err = capsys.readouterr()
    assert "unreadable (Input/output error)" in out
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# What a person can act on: sections, bytes still to fetch, the next step, the exit status


def course(tmp_path: Path, *files: dict[str, Any]) -> Path:
    return write_manifest(tmp_path / "course.toml", *files, year=YEAR)


def test_a_complete_mirror_exits_0_with_no_next_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = MirrorStore(tmp_path / "mirror", YEAR)
    data = blob(300, 1)
    place(store, "a", data)
    assert main(status_args(course(tmp_path, slide("a", data)), store)) == 0
    captured = capsys.readouterr()
    assert "1 of 1 file ok (300 B)" in captured.out
    assert "next:" not in captured.out
    assert captured.err == ""


def test_missing_files_exit_8_with_the_bytes_to_fetch_and_the_sync_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = MirrorStore(tmp_path / "mirror", YEAR)
    store.ensure_dirs()
    partial = blob(1000, 4)
    store.partial_path("b").write_bytes(partial[:400])
    manifest = course(tmp_path, slide("a", blob(2000, 2)), slide("b", partial), slide("c"))
    assert main(status_args(manifest, store)) == 8
    captured = capsys.readouterr()
    next_line = captured.out.splitlines()[-1]
    assert next_line == (
        f"next: `lhymirror sync --manifest {manifest} --root {store.root}` fetches 3 files "
        "(2.6 kB, 1 of unknown size)"
    )
    (error,) = captured.err.splitlines()
    assert error.startswith("lhymirror: error: 3 files not downloaded and verified yet (")
    assert main(status_args(manifest, store, "--json")) == 8
    data = json.loads(capsys.readouterr().out)
    assert data["bytes_to_fetch"] == 2600 and data["unknown_sizes"] == 1
    assert [f["bytes_to_fetch"] for f in data["files"]] == [2000, 600, None]
    assert data["next_step"] == "sync" and data["complete"] is False
    assert data["exit_code"] == 8 and data["error"]["kind"] == "missing"


def test_only_manual_steps_left_exit_7_with_the_add_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = MirrorStore(tmp_path / "mirror", YEAR)
    data = blob(300, 1)
    place(store, "a", data)
    manual = {"id": "m", "kind": "dataset", "path": "data/m.zip", "manual": "Log in at X."}
    manifest = course(tmp_path, slide("a", data), manual)
    assert main(status_args(manifest, store)) == 7
    out = capsys.readouterr().out
    assert "manual pending" in out and "Log in at X." in out
    assert out.splitlines()[-1] == (
        "next: download it by hand as noted above, then "
        f"`lhymirror add --manifest {manifest} --root {store.root} ID FILE`"
    )


def test_files_are_grouped_by_section_as_list_groups_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = MirrorStore(tmp_path / "mirror", YEAR)
    store.ensure_dirs()
    manifest = course(
        tmp_path,
        slide("hw1", section="HW01"),
        slide("l02", section="Lecture 2"),
        slide("loose"),
        slide("l01", section="Lecture 1"),
    )
    main(status_args(manifest, store))
    lines = capsys.readouterr().out.splitlines()
    headings = [line for line in lines[1:] if line and not line.startswith(("  ", "next:"))]
    assert headings[:4] == ["Lecture 1", "Lecture 2", "HW01", "(no section)"]
    assert lines[lines.index("Lecture 1") + 1].split()[:2] == ["l01", "missing"]


@pytest.mark.parametrize("kind", ["file", "missing folder"])
def test_a_wrong_root_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    root = tmp_path / "root"
    if kind == "file":
        root.write_text("not a folder")
    manifest = course(tmp_path, slide("a"))
    assert main(["status", "--manifest", str(manifest), "--root", str(root)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("lhymirror: error: ")
    assert str(root) in line
    assert root.exists() == (kind == "file")
