"""The CLI frame: exit codes, error lines, help texts, `list` and `manifest check`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lhymirror
from lhymirror import __version__
from lhymirror.cli import _command_in, build_parser, main
from lhymirror.cli.exitcodes import ExitStatus, exit_status_for
from lhymirror.core.errors import (
    DownloadError,
    IncompleteError,
    IntegrityError,
    LhymirrorError,
    ManifestError,
    MissingFilesError,
    StorageError,
    UsageError,
)

VALID = """\
schema = 1
course = "Test Course"
year = 2099
version = "3"

[[files]]
id = "l01-intro"
kind = "slide"
section = "Lecture 1"
path = "slides/intro.pdf"
urls = ["https://example.org/intro.pdf"]
size = 2000000

[[files]]
id = "hw02-data"
kind = "dataset"
section = "HW02"
path = "data/HW02/data.zip"
urls = ["gdrive:1HPkcmQmFGu-3OknddKIa5dNDsR05lIQR", "kaggle:ml2099-hw2"]

[[links]]
kind = "video"
title = "Intro video"
section = "Lecture 1"
url = "https://youtu.be/abc"
"""


@pytest.fixture
def manifest_file(tmp_path: Path) -> Path:
    path = tmp_path / "course.toml"
    path.write_text(VALID, encoding="utf-8")
    return path


@pytest.fixture
def broken_manifest(tmp_path: Path) -> Path:
    path = tmp_path / "broken.toml"
    path.write_text(VALID.replace("size = 2000000", 'size = -1\ncolour = "red"'), encoding="utf-8")
    return path


# -- exit codes: one test per code ---------------------------------------------------------------


def test_exit_codes_are_the_documented_numbers() -> None:
    assert {s.name: int(s) for s in ExitStatus} == {
        "OK": 0,
        "INTERNAL_ERROR": 1,
        "USAGE": 2,
        "INVALID_MANIFEST": 3,
        "DOWNLOAD_FAILED": 4,
        "INTEGRITY": 5,
        "STORAGE": 6,
        "INCOMPLETE": 7,
        "MISSING": 8,
        "INTERRUPTED": 130,
        "TERMINATED": 143,
    }


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UsageError("x"), ExitStatus.USAGE),
        (ManifestError("m.toml", ["bad"]), ExitStatus.INVALID_MANIFEST),
        (DownloadError("x"), ExitStatus.DOWNLOAD_FAILED),
        (IntegrityError("x"), ExitStatus.INTEGRITY),
        (StorageError("x"), ExitStatus.STORAGE),
        (IncompleteError("x"), ExitStatus.INCOMPLETE),
        (MissingFilesError("x"), ExitStatus.MISSING),
        (LhymirrorError("x"), ExitStatus.USAGE),
    ],
)
def test_each_error_kind_maps_to_its_exit_code(error: LhymirrorError, status: ExitStatus) -> None:
    assert exit_status_for(error) == status


def test_exit_0_when_ok(manifest_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--manifest", str(manifest_file)]) == ExitStatus.OK


def test_exit_2_for_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["list", "--no-such-option"])
    assert info.value.code == ExitStatus.USAGE
    assert main(["list"]) == ExitStatus.USAGE
    assert "no year given" in capsys.readouterr().err
    assert main([]) == ExitStatus.USAGE


def test_exit_3_for_an_invalid_manifest(
    broken_manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", "--manifest", str(broken_manifest)]) == ExitStatus.INVALID_MANIFEST
    err = capsys.readouterr().err
    assert "files[0] (l01-intro).size" in err
    assert "files[0] (l01-intro).colour: unknown key" in err
    assert err.splitlines()[-1].startswith(
        f"lhymirror: error: invalid manifest ({broken_manifest})"
    )
    assert "Traceback" not in err


def test_exit_130_when_interrupted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("lhymirror.cli.list_cmd.run", interrupted)
    assert main(["list", "2022"]) == ExitStatus.INTERRUPTED
    assert "run the same command again" in capsys.readouterr().err


def test_exit_1_and_traceback_for_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise RuntimeError("bug")

    monkeypatch.setattr("lhymirror.cli.list_cmd.run", broken)
    with pytest.raises(RuntimeError):  # the interpreter prints the traceback and exits 1
        main(["list", "2022"])


def test_debug_shows_the_traceback_of_an_expected_error(
    broken_manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", "--manifest", str(broken_manifest), "--debug"]) == 3
    assert "Traceback" in capsys.readouterr().err


def test_one_line_error_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--manifest", str(tmp_path / "missing.toml")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"lhymirror: error: no such manifest file ({tmp_path / 'missing.toml'}). "
        "Check the path, or name a YEAR to use a shipped manifest."
    )


# -- help ------------------------------------------------------------------------------------------


def _all_parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _all_parsers(sub)
    return found


@pytest.mark.parametrize(("prog", "parser"), _all_parsers(build_parser()), ids=str)
def test_every_help_ends_with_an_example(prog: str, parser: argparse.ArgumentParser) -> None:
    lines = parser.format_help().rstrip().splitlines()
    example_at = max(i for i, line in enumerate(lines) if line.strip() == "example:")
    assert example_at < len(lines) - 1
    assert all(line.strip().startswith("lhymirror") for line in lines[example_at + 1 :]), prog


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"lhymirror {__version__}"


# -- list ------------------------------------------------------------------------------------------


def test_list_groups_by_section(manifest_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--manifest", str(manifest_file)]) == 0
    out = capsys.readouterr().out
    assert (
        out.index("Lecture 1") < out.index("l01-intro") < out.index("HW02") < out.index("hw02-data")
    )
    assert "2.0 MB" in out
    assert "(gdrive,kaggle)" in out
    assert "2 files, 2.0 MB known (1 of unknown size); 1 link (--links to show them)" in out


def test_list_filters_by_kind_and_shows_links(
    manifest_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", "--manifest", str(manifest_file), "--kind", "video"]) == 0
    out = capsys.readouterr().out
    assert "https://youtu.be/abc" in out
    assert "l01-intro" not in out


def test_list_json(manifest_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--manifest", str(manifest_file), "--json", "--kind", "dataset"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["year"] == 2099
    assert [f["id"] for f in data["files"]] == ["hw02-data"]
    assert data["files"][0]["source_kinds"] == ["gdrive", "kaggle"]
    assert data["links"] == []


def test_list_year_and_manifest_must_agree(
    manifest_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", "2022", "--manifest", str(manifest_file)]) == ExitStatus.USAGE
    assert "year does not match the manifest" in capsys.readouterr().err
    assert main(["list", "2021", "--year", "2022"]) == ExitStatus.USAGE


def test_list_unknown_year(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "1999"]) == ExitStatus.USAGE
    assert "no manifest for this year (1999)" in capsys.readouterr().err


# -- manifest check --------------------------------------------------------------------------------


def test_manifest_check_ok_with_warnings(
    manifest_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["manifest", "check", str(manifest_file)]) == 0
    captured = capsys.readouterr()
    assert "ok: 2 files, 1 link, 2 warnings" in captured.out
    assert "warning: files[0] (l01-intro): no sha256" in captured.err


def test_manifest_check_strict_fails_on_warnings(
    manifest_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["manifest", "check", "--strict", str(manifest_file)]) == 3
    assert "failed (--strict)" in capsys.readouterr().out


def test_manifest_check_reports_every_problem_of_every_file(
    manifest_file: Path, broken_manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["manifest", "check", str(broken_manifest), str(manifest_file)]) == 3
    err = capsys.readouterr().err
    assert err.count(f"{broken_manifest}: error:") == 2
    assert "1 of 2 manifests failed" in err


def test_manifest_check_of_a_missing_file_or_a_folder_is_a_usage_error(
    manifest_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "MISSING.toml"
    assert main(["manifest", "check", str(manifest_file), str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"lhymirror: error: no such manifest file ({missing}). Check the path."
    ]
    assert captured.out == ""  # nothing is checked before the arguments are right
    assert main(["manifest", "check", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"lhymirror: error: FILE is a folder ({tmp_path}). Give the manifest's .toml file."
    ]


def test_manifest_check_defaults_to_the_shipped_manifests(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["manifest", "check", "--quiet"]) == 0


def test_only_the_command_being_run_is_imported() -> None:
    """`lhymirror verify` must not pay for the HTTP stack at start-up."""
    code = (
        "import sys\n"
        "from lhymirror.cli import build_parser, _command_in\n"
        "build_parser(only=_command_in(['verify', 'x.zip']))\n"
        "print('requests' in sys.modules, 'lhymirror.cli.sync_cmd' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(lhymirror.__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]


def test_command_is_found_after_global_options() -> None:
    assert _command_in(["--debug", "sync", "2022"]) == "sync"
    assert _command_in(["--version"]) is None
    assert _command_in(["nonsense"]) is None


def test_an_error_document_to_a_reader_that_went_away_is_no_traceback(tmp_path: Path) -> None:
    # `lhymirror status --json | head -1`: the reader is gone when the error document is written
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        command = [sys.executable, "-m", "lhymirror", "status", "2022", "--json"]
        command += ["--root", str(tmp_path / "nowhere")]
        done = subprocess.run(
            command, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, check=False
        )
    finally:
        os.close(write_end)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1  # the one-line error only
    assert "no mirror here" in done.stderr


def test_a_report_document_to_a_reader_that_went_away_keeps_the_reports_exit_code(
    tmp_path: Path,
) -> None:
    # `lhymirror status 2022 --json | head -1` over an empty mirror: the files are still missing
    (tmp_path / "mirror").mkdir()
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        command = [sys.executable, "-m", "lhymirror", "status", "2022", "--json"]
        command += ["--root", str(tmp_path / "mirror")]
        done = subprocess.run(
            command, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, check=False
        )
    finally:
        os.close(write_end)
    assert done.returncode == 8  # files still to fetch, as with a reader that stays
    assert "Traceback" not in done.stderr
