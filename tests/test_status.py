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
    assert main(status_args(manifest, store)) == 0
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
    assert main(status_args(manifest, store, "--json")) == 0
    data = json.loads(capsys.readouterr().out)
    states = {f["id"]: f["status"] for f in data["files"]}
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
    assert json.loads(capsys.readouterr().out)["files"][0]["status"] == "ok"
    main(status_args(manifest, store, "--json", "--rehash"))
    assert json.loads(capsys.readouterr().out)["files"][0]["status"] == "changed"


def test_status_of_an_empty_mirror_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path / "course.toml", slide("a"), year=YEAR)
    root = tmp_path / "nothing-here"
    assert main(["status", "--manifest", str(manifest), "--root", str(root)]) == 0
    assert "missing" in capsys.readouterr().out
    assert not root.exists()


def test_root_comes_from_the_environment(
    mirror: tuple[Path, MirrorStore],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest, store = mirror
    monkeypatch.setenv("LHYMIRROR_ROOT", str(store.root))
    assert main(["status", "--manifest", str(manifest), "--json"]) == 0
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
    assert main(status_args(manifest, store, "--rehash")) == 0  # status reports, never fails
    out, err = capsys.readouterr()
    assert "unreadable (Input/output error)" in out
    assert "Traceback" not in err
