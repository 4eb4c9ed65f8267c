"""Every ``--json`` output follows the one contract of docs/json.md (tests/json_contract.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from factories import blob, file_entry, manifest_data
from httpserver import CourseServer
from json_contract import BODIES, COMMON, EVENTS, problems, schema_for
from lhymirror.cli import build_parser, main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "json.md"
YEAR = 2022


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    """Run the CLI; its exit status and its one JSON document, checked against the contract."""
    status = main([*argv, "--json"])
    captured = capsys.readouterr()
    document = json.loads(captured.out)  # one document, nothing else on stdout
    assert problems(document, schema_for(document)) == [], argv
    assert document["exit_code"] == status
    assert "listed above" not in captured.err and "lines above" not in captured.err
    return status, document


@pytest.fixture
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A manifest with a file a --from folder holds and a manual step; an empty mirror root."""
    monkeypatch.delenv("LHYMIRROR_ROOT", raising=False)
    monkeypatch.delenv("LHYMIRROR_MIRROR", raising=False)
    data = blob(3000, 1)
    files = [
        file_entry("a", data, section="Lecture 1"),
        {"id": "m", "kind": "dataset", "path": "data/m.zip", "manual": "Log in at X."},
    ]
    manifest = tmp_path / "course.toml"
    manifest.write_text(tomli_w.dumps(manifest_data(*files, year=YEAR)))
    share = tmp_path / "share"
    (share / str(YEAR) / "slides").mkdir(parents=True)
    (share / str(YEAR) / "slides" / "a.pdf").write_bytes(data)
    root = tmp_path / "mirror"
    root.mkdir()
    return {"manifest": manifest, "root": root, "share": share}


def selection(course: dict[str, Path]) -> list[str]:
    return ["--manifest", str(course["manifest"]), "--root", str(course["root"])]


def test_sync_status_and_verify_follow_the_contract(
    course: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = selection(course)
    share = ["--from", str(course["share"])]
    status, plan = run_json(["sync", *args, *share, "--dry-run"], capsys)
    assert status == 0 and plan["dry_run"] is True
    assert [f["state"] for f in plan["files"]] == ["fetch", "manual"]

    status, report = run_json(["sync", *args, *share], capsys)
    assert status == 7 and report["error"]["kind"] == "incomplete"
    assert [f["state"] for f in report["files"]] == ["downloaded", "manual"]
    assert report["counts"]["downloaded"] == 1 and report["counts"]["up_to_date"] == 0

    status, again = run_json(["sync", *args, *share], capsys)
    assert [f["state"] for f in again["files"]] == ["up_to_date", "manual"]

    status, state = run_json(["status", *args], capsys)
    assert status == 7 and state["next_step"] == "add"
    assert state["counts"]["ok"] == 1 and state["counts"]["manual"] == 1

    status, checked = run_json(["verify", *args], capsys)
    assert status == 5 and checked["ok"] is False
    assert checked["error"]["kind"] == "integrity"


def test_offline_failures_and_missing_files(
    course: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = selection(course)
    status, report = run_json(["sync", *args, "--offline", "--only", "a"], capsys)
    assert status == 4 and report["offline"] is True
    assert report["files"][0]["state"] == "failed" and report["files"][0]["cause"] == "offline"

    status, state = run_json(["status", *args], capsys)
    assert status == 8 and state["error"]["kind"] == "missing"
    assert state["bytes_to_fetch"] == 3000 and state["next_step"] == "sync"


def test_list_follows_the_contract(
    course: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status, shipped = run_json(["list", "2022", "--links"], capsys)
    assert status == 0 and shipped["files"] and shipped["links"]
    assert any(f["parts"] for f in shipped["files"])  # split files, with their parts
    status, own = run_json(["list", "--manifest", str(course["manifest"])], capsys)
    assert own["files"][0]["title"] is None  # unset fields are null, never left out


def test_check_follows_the_contract(
    http_server: CourseServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = blob(2000, 2)
    url = http_server.add("/a.zip", data)
    entry = file_entry("a", data, kind="dataset", insecure_http=True)
    entry["urls"] = [url, http_server.url_for("/gone.zip")]
    manifest = tmp_path / "course.toml"
    manifest.write_text(tomli_w.dumps(manifest_data(entry, year=YEAR)))
    status, report = run_json(["check", "--manifest", str(manifest)], capsys)
    assert status == 4 and report["error"]["kind"] == "download_failed"
    assert [s["state"] for s in report["sources"]] == ["alive", "gone"]


def test_errors_are_a_json_document_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, document = run_json(["list", "1999"], capsys)
    assert status == 2 and document["error"]["kind"] == "usage"
    assert set(document) == set(COMMON)

    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not an archive at all")
    status, document = run_json(["verify", str(junk)], capsys)
    assert status == 5 and document["error"]["kind"] == "integrity"

    root = tmp_path / "a-file"
    root.write_text("x")
    status, document = run_json(["status", "2022", "--root", str(root)], capsys)
    assert status == 2 and "not a folder" in document["error"]["message"]


def test_every_command_with_json_has_a_documented_schema() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    with_json = {
        name
        for name, sub in commands.items()
        if any("--json" in action.option_strings for action in sub._actions)
    }
    assert with_json, "no command has --json?"
    assert with_json <= {name.split()[0] for name in BODIES}


def test_the_documentation_names_every_key() -> None:
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z0-9_]+)`", text))
    keys: set[str] = set()

    def collect(schema: Any) -> None:
        if isinstance(schema, dict):
            keys.update(schema)
            for sub in schema.values():
                collect(sub)
        elif isinstance(schema, list | tuple):
            for sub in schema:
                collect(sub)

    collect(COMMON)
    collect(list(BODIES.values()))
    assert sorted(keys - documented) == []
    for command in BODIES:
        assert f"## `{command}`" in text or f"### `{command}`" in text, command


def test_an_argument_error_is_a_json_document_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["sync", "2022", "--jobs", "abc", "--json"])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert problems(document, schema_for(document)) == []
    assert document["command"] == "sync" and document["exit_code"] == 2
    assert document["error"]["kind"] == "usage" and "--jobs" in document["error"]["message"]
    assert "--jobs" in captured.err  # and the one line on stderr, as without --json


def test_sync_json_lines_streams_events_then_the_report(
    course: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*selection(course), "--from", str(course["share"]), "--json-lines"]
    status = main(["sync", *args])
    lines = capsys.readouterr().out.splitlines()
    documents = [json.loads(line) for line in lines]  # every line is one JSON object
    *events, report = documents
    assert status == 7 and report["exit_code"] == 7
    assert problems(report, schema_for(report)) == []
    for event in events:
        assert problems(event, EVENTS[event["event"]]) == [], event
    kinds = [event["event"] for event in events]
    assert "started" in kinds and kinds.count("file_finished") == 2
