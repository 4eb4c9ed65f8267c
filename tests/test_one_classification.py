"""``status``, ``verify --year``, ``pack`` and ``sync`` classify one odd mirror the same way.

One mirror holds a file in each odd case (missing, short, long, wrong bytes, a symlink, a linked
folder, a folder or a fifo in place of a file, an unreadable file); every command must name the
same problem kind and use the same words for it (:func:`lhymirror.mirror.state.describe`).
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from factories import blob, file_entry, manifest_data, sha
from lhymirror.cli import main
from lhymirror.mirror import state as state_module

YEAR = 2022
UNREACHABLE = "https://127.0.0.1:1/ml"  # no command may try it
GOOD = blob(1000, 1)
WRONG = blob(1000, 2)
IDS = ("ok", "missing", "short", "long", "wrong", "link", "infolder", "folder", "fifo", "noread")


def expected_problems() -> dict[str, tuple[str, str]]:
    """Entry path -> (kind, the one wording), for every odd case."""
    return {
        "slides/missing.pdf": ("missing", "not in the mirror"),
        "slides/short.pdf": ("size", "size differs: expected 1000 bytes (manifest), got 10"),
        "slides/long.pdf": ("size", "size differs: expected 1000 bytes (manifest), got 1010"),
        "slides/wrong.pdf": (
            "checksum",
            f"sha256 differs: expected {sha(GOOD)} (manifest), got {sha(WRONG)}",
        ),
        "slides/link.pdf": (
            "symlink",
            "symlink inside the mirror at slides/link.pdf (not followed)",
        ),
        "linked/infolder.pdf": ("symlink", "symlink inside the mirror at linked (not followed)"),
        "slides/folder.pdf": ("not_a_file", "not a regular file (a directory)"),
        "slides/fifo.pdf": ("not_a_file", "not a regular file (a fifo)"),
        "slides/noread.pdf": ("unreadable", "unreadable (Permission denied)"),
    }


@pytest.fixture
def odd_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The manifest and mirror; returns the options every command takes."""
    files = [
        file_entry(i, GOOD, base_url=UNREACHABLE)
        if i != "infolder"
        else file_entry(i, GOOD, base_url=UNREACHABLE, path="linked/infolder.pdf")
        for i in IDS
    ]
    manifest = tmp_path / "course.toml"
    manifest.write_text(tomli_w.dumps(manifest_data(*files, year=YEAR)), encoding="utf-8")
    year = tmp_path / "mirror" / str(YEAR)
    slides = year / "slides"
    slides.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "infolder.pdf").write_bytes(GOOD)  # right bytes, but reached through a link
    (outside / "link.pdf").write_bytes(GOOD)
    (slides / "ok.pdf").write_bytes(GOOD)
    (slides / "short.pdf").write_bytes(GOOD[:10])
    (slides / "long.pdf").write_bytes(GOOD + GOOD[:10])
    (slides / "wrong.pdf").write_bytes(WRONG)
    (slides / "link.pdf").symlink_to(outside / "link.pdf")
    (year / "linked").symlink_to(outside, target_is_directory=True)
    (slides / "folder.pdf").mkdir()
    os.mkfifo(slides / "fifo.pdf")
    unreadable = slides / "noread.pdf"
    unreadable.write_bytes(GOOD)
    unreadable.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the open fail as it would for a user
        real_open = state_module.open_no_follow

        def refuse(path: Path) -> int:
            if Path(path) == unreadable:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path)

        monkeypatch.setattr(state_module, "open_no_follow", refuse)
    return ["--manifest", str(manifest), "--root", str(tmp_path / "mirror")]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


def test_status_verify_pack_and_sync_classify_each_odd_file_alike(
    odd_mirror: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = expected_problems()

    status, out, _ = run(["status", *odd_mirror, "--json"], capsys)
    assert status == 5  # damaged and unusable files (status exits 0 only when complete)
    files = json.loads(out)["files"]
    by_status = {
        f["path"]: (f["problem"]["kind"], f["problem"]["text"]) for f in files if f["problem"]
    }
    assert by_status == expected

    status, out, _ = run(["verify", *odd_mirror, "--json"], capsys)
    assert status == 5
    problems = json.loads(out)["problems"]
    assert {p["path"]: (p["kind"], p["detail"]) for p in problems} == expected

    out_dir = tmp_path / "dist"
    status, _, err = run(["pack", *odd_mirror, "--out", str(out_dir), "--quiet"], capsys)
    assert status == 5
    listed = [re.fullmatch(r"  (\w+): (\S+) \((.*)\)", line) for line in err.splitlines()]
    by_pack = {m.group(2): (m.group(1), m.group(3)) for m in listed if m}
    assert by_pack == expected
    assert not out_dir.exists() or not any(out_dir.iterdir())

    status, out, _ = run(["sync", *odd_mirror, "--offline", "--json"], capsys)
    assert status == 5  # not intact, as verify and pack say; after all the other files
    outcomes: list[dict[str, Any]] = json.loads(out)["files"]
    by_sync = {
        f["path"]: (f["problem"]["kind"], f["problem"]["text"]) for f in outcomes if f["problem"]
    }
    assert by_sync == expected
    assert {f["path"]: f["state"] for f in outcomes}["slides/ok.pdf"] == "up_to_date"
    refused = [f for f in outcomes if f["cause"] == "unusable"]
    assert sorted(f["path"] for f in refused) == sorted(
        path
        for path, (kind, _) in expected.items()
        if kind in ("symlink", "not_a_file", "unreadable")
    )
    assert all(f["reason"] == expected[f["path"]][1] for f in refused)
    assert all(f["failure"] == "integrity" for f in refused)


def test_sync_leaves_odd_paths_alone_and_follows_no_link(
    odd_mirror: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    year = tmp_path / "mirror" / str(YEAR)
    run(["sync", *odd_mirror, "--offline"], capsys)
    assert (year / "slides/link.pdf").is_symlink()
    assert (year / "linked").is_symlink()
    assert (year / "slides/folder.pdf").is_dir()
    assert (tmp_path / "elsewhere/link.pdf").read_bytes() == GOOD
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == [
        "infolder.pdf",
        "link.pdf",
    ]
    assert not (year / ".lhymirror/state/link.json").exists()
    assert not (year / ".lhymirror/state/infolder.json").exists()
