"""``lhymirror add`` (import a file downloaded by hand) and ``lhymirror pin`` (pin checksums)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from factories import blob, file_entry, sha, write_manifest
from lhymirror.cli import main
from lhymirror.manifest.model import load_manifest
from lhymirror.mirror.state import local_state
from lhymirror.mirror.store import FileRecord, MirrorStore, PartialState, part_key

YEAR = 2022
UNREACHABLE = "https://127.0.0.1:1/ml"  # nothing here may need the network


def entry(entry_id: str, data: bytes | None = None, **extra: Any) -> dict[str, Any]:
    return file_entry(entry_id, data, kind="dataset", base_url=UNREACHABLE, **extra)


@pytest.fixture
def store(tmp_path: Path) -> MirrorStore:
    return MirrorStore(tmp_path / "mirror", YEAR)


def downloaded(tmp_path: Path, data: bytes, name: str = "Downloaded File.zip") -> Path:
    path = tmp_path / "downloads" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def add(manifest: Path, store: MirrorStore, entry_id: str, file: Path) -> int:
    return main(
        ["add", "--manifest", str(manifest), entry_id, str(file), "--root", str(store.root)]
    )


def sync(manifest: Path, store: MirrorStore) -> int:
    return main(["sync", "--manifest", str(manifest), "--root", str(store.root), "--offline"])


# -- add -----------------------------------------------------------------------------------


def test_add_places_a_matching_file_and_records_it(
    tmp_path: Path, store: MirrorStore, capsys: pytest.CaptureFixture[str]
) -> None:
    data = blob(3 * 1024 * 1024 + 7, 1)
    manifest = write_manifest(tmp_path / "m.toml", entry("hw04", data))
    source = downloaded(tmp_path, data)
    assert add(manifest, store, "hw04", source) == 0
    assert "matches the manifest sha256" in capsys.readouterr().out
    assert store.file_path("data/hw04.zip").read_bytes() == data
    record = store.record("hw04")
    assert record is not None
    assert record.source == f"file:{source}"
    assert record.sha256 == sha(data)
    assert sync(manifest, store) == 0  # now up to date, offline


def test_add_refuses_a_different_file(
    tmp_path: Path, store: MirrorStore, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = blob(1000, 2), blob(1000, 3)
    manifest = write_manifest(tmp_path / "m.toml", entry("hw04", good))
    assert add(manifest, store, "hw04", downloaded(tmp_path, bad)) == 5
    err = capsys.readouterr().err
    assert sha(good) in err
    assert sha(bad) in err
    target = store.file_path("data/hw04.zip")
    assert not target.exists()
    assert not list(target.parent.iterdir())  # no temporary file left behind
    assert store.record("hw04") is None


def test_add_names_the_users_file_not_the_destination(
    tmp_path: Path, store: MirrorStore, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path / "m.toml", entry("hw04", blob(1000, 2)))
    source = downloaded(tmp_path, blob(1000, 3))
    assert add(manifest, store, "hw04", source) == 5
    (line,) = capsys.readouterr().err.splitlines()
    assert f"({source})" in line
    assert str(store.file_path("data/hw04.zip")) not in line


def test_add_of_a_folder_says_so(
    tmp_path: Path, store: MirrorStore, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path / "m.toml", entry("hw04"))
    folder = tmp_path / "downloads"
    folder.mkdir()
    assert add(manifest, store, "hw04", folder) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"lhymirror: error: is a folder ({folder}). Give the downloaded file."


@pytest.mark.parametrize("pinned", [False, True])
def test_add_refuses_the_file_of_another_entry(
    tmp_path: Path, store: MirrorStore, capsys: pytest.CaptureFixture[str], pinned: bool
) -> None:
    faces, birds = blob(1000, 10), blob(1200, 11)
    manifest = write_manifest(
        tmp_path / "m.toml", entry("hw05", faces), entry("hw06", birds if pinned else None)
    )
    assert add(manifest, store, "hw06", downloaded(tmp_path, faces)) == 5
    err = capsys.readouterr().err
    assert "this is the file of another entry, not of hw06" in err
    assert "sha256 is that of hw05 (data/hw05.zip)" in err
    assert "Import it as hw05" in err
    assert not store.file_path("data/hw06.zip").exists()
    assert store.record("hw06") is None


def test_add_refuses_the_recorded_file_of_another_entry(
    tmp_path: Path, store: MirrorStore, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path / "m.toml", entry("hw05"), entry("hw06"))
    faces = downloaded(tmp_path, blob(1000, 12))
    assert add(manifest, store, "hw05", faces) == 0
    assert add(manifest, store, "hw06", faces) == 5
    assert "that of hw05" in capsys.readouterr().err


def test_add_refuses_a_file_of_the_wrong_size(tmp_path: Path, store: MirrorStore) -> None:
    data = blob(1000, 4)
    manifest = write_manifest(tmp_path / "m.toml", entry("hw04", size=999))
    assert add(manifest, store, "hw04", downloaded(tmp_path, data)) == 5
    assert not store.file_path("data/hw04.zip").exists()


def test_add_without_known_checksum_records_it_as_the_reference(
    tmp_path: Path, store: MirrorStore, capsys: pytest.CaptureFixture[str]
) -> None:
    data = blob(1000, 5)
    manifest = write_manifest(tmp_path / "m.toml", entry("hw04"))
    assert add(manifest, store, "hw04", downloaded(tmp_path, data)) == 0
    assert "recorded as the reference" in capsys.readouterr().out
    assert sync(manifest, store) == 0
    # From now on the file is held to it: another file is refused.
    assert add(manifest, store, "hw04", downloaded(tmp_path, blob(1000, 6), "other.zip")) == 5


def test_add_completes_a_manual_step_and_clears_partials(
    tmp_path: Path, store: MirrorStore
) -> None:
    data = blob(2000, 7)
    manual = {"id": "hw05", "kind": "dataset", "path": "data/hw05.zip", "manual": "Log in."}
    split = entry("hw06", data, parts=[f"{UNREACHABLE}/a", f"{UNREACHABLE}/b"])
    del split["urls"]
    manifest = write_manifest(tmp_path / "m.toml", manual, split)
    assert sync(manifest, store) == 4  # hw06 needs the network, hw05 is manual
    store.ensure_dirs()
    store.assembly_path("hw06").write_bytes(data[:1500])
    store.save_partial_state(part_key("hw06", 0), PartialState("x", bytes_held=1000, complete=True))
    store.save_partial_state(part_key("hw06", 1), PartialState("y", bytes_held=500))
    assert add(manifest, store, "hw05", downloaded(tmp_path, blob(10, 8))) == 0
    assert add(manifest, store, "hw06", downloaded(tmp_path, data, "hw06.zip")) == 0
    assert not any((store.meta_dir / "partial").iterdir())
    assert sync(manifest, store) == 0


def test_add_unknown_id_is_a_usage_error(
    tmp_path: Path, store: MirrorStore, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path / "m.toml", entry("hw04"))
    assert add(manifest, store, "hw99", downloaded(tmp_path, b"x")) == 2
    assert "hw99" in capsys.readouterr().err
    assert add(manifest, store, "hw04", tmp_path / "missing.zip") == 2


def test_add_takes_a_year_before_the_id(
    tmp_path: Path, store: MirrorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = blob(100, 9)
    manifest = write_manifest(tmp_path / "2022.toml", entry("hw04", data))
    monkeypatch.setattr("lhymirror.manifest.listing.shipped_manifest_path", lambda year: manifest)
    source = downloaded(tmp_path, data)
    assert main(["add", "2022", "hw04", str(source), "--root", str(store.root)]) == 0
    assert store.file_path("data/hw04.zip").is_file()


# -- pin -----------------------------------------------------------------------------------


def record(store: MirrorStore, entry_id: str, data: bytes, **extra: Any) -> None:
    store.save_record(
        FileRecord(
            entry_id, f"data/{entry_id}.zip", len(data), sha(data), 0, "2024-01-01T00:00:00Z",
            **extra,
        )
    )  # fmt: skip


def pin(manifest: Path, store: MirrorStore, *extra: str) -> int:
    return main(["pin", "--manifest", str(manifest), "--root", str(store.root), *extra])


def test_pin_fills_in_recorded_checksums_only_where_missing(
    tmp_path: Path, store: MirrorStore, capsys: pytest.CaptureFixture[str]
) -> None:
    pinned, new, other = blob(100, 10), blob(200, 11), blob(300, 12)
    manifest = write_manifest(
        tmp_path / "m.toml", entry("a", pinned), entry("b"), entry("c"), entry("d")
    )
    record(store, "a", other)  # differs from the pin, but not accepted: ignored
    record(store, "b", new)
    store.save_record(
        FileRecord("c", "elsewhere/c.zip", 1, "f" * 64, 0, "2024-01-01T00:00:00Z")
    )  # recorded under another path: ignored
    assert pin(manifest, store) == 0
    out = capsys.readouterr().out
    assert f"pinned b: size 200, sha256 {sha(new)}" in out
    assert "pinned a" not in out and "pinned c" not in out
    result = load_manifest(manifest)
    assert [f.id for f in result.files] == ["a", "b", "c", "d"]
    assert (result.file("a").size, result.file("a").sha256) == (100, sha(pinned))
    assert (result.file("b").size, result.file("b").sha256) == (200, sha(new))
    assert result.file("c").sha256 is None
    assert pin(manifest, store) == 0
    assert "nothing to pin" in capsys.readouterr().out


def test_pin_writes_accepted_upstream_content(tmp_path: Path, store: MirrorStore) -> None:
    old, new = blob(100, 13), blob(150, 14)
    manifest = write_manifest(tmp_path / "m.toml", entry("a", old))
    record(store, "a", new, accepted_upstream=True)
    assert pin(manifest, store) == 0
    assert load_manifest(manifest).file("a").sha256 == sha(new)


def test_pin_dry_run_writes_nothing(
    tmp_path: Path, store: MirrorStore, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path / "m.toml", entry("b"))
    before = manifest.read_text()
    record(store, "b", blob(10, 15))
    assert pin(manifest, store, "--dry-run") == 0
    assert "would change" in capsys.readouterr().out
    assert manifest.read_text() == before


def test_pin_refuses_a_manifest_inside_the_installed_package(
    tmp_path: Path,
    store: MirrorStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shipped = tmp_path / "site-packages" / "lhymirror" / "manifests" / "2022.toml"
    shipped.parent.mkdir(parents=True)
    write_manifest(shipped, entry("b"))
    before = shipped.read_text()
    record(store, "b", blob(10, 16))
    monkeypatch.setattr("lhymirror.manifest.listing.shipped_manifest_path", lambda year: shipped)
    assert main(["pin", "2022", "--root", str(store.root)]) == 2
    err = capsys.readouterr().err
    assert "installed package" in err and "--manifest" in err
    assert shipped.read_text() == before
    assert pin(shipped, store) == 0  # named explicitly: the maintainer means it
    assert load_manifest(shipped).file("b").sha256 is not None


def test_importing_accepted_content_keeps_it_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pinned, accepted = blob(1000, 40), blob(1100, 41)
    store = MirrorStore(tmp_path / "mirror", YEAR)
    target = store.file_path("data/hw04.zip")
    target.parent.mkdir(parents=True)
    target.write_bytes(accepted)
    store.save_record(
        FileRecord(
            "hw04", "data/hw04.zip", len(accepted), sha(accepted), 0, "t", accepted_upstream=True
        )
    )
    manifest = write_manifest(tmp_path / "m.toml", entry("hw04", pinned))
    source = tmp_path / "download.zip"
    source.write_bytes(accepted)
    assert add(manifest, store, "hw04", source) == 0
    record = store.record("hw04")
    assert record is not None and record.accepted_upstream
    assert local_state(store, load_manifest(manifest).file("hw04")).status == "ok"


def test_add_quiet_prints_nothing_when_it_works(
    tmp_path: Path, store: MirrorStore, capsys: pytest.CaptureFixture[str]
) -> None:
    data = blob(1000, 13)
    manifest = write_manifest(tmp_path / "m.toml", entry("hw04", data))
    words = ["add", "-q", "--manifest", str(manifest), "hw04", str(downloaded(tmp_path, data))]
    assert main([*words, "--root", str(store.root)]) == 0
    assert capsys.readouterr() == ("", "")
    assert store.file_path("data/hw04.zip").is_file()
