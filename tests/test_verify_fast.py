"""``verify --fast`` reads the embedded manifest's file list without pydantic, and says the same."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lhymirror
from factories import write_archive
from lhymirror.archive.verify import verify_path
from lhymirror.manifest.model import parse_manifest
from lhymirror.manifest.peek import peek_files
from test_verify import PAYLOAD, TOP, bag_specs, found, manifest_text, replace_member


def test_peek_reads_what_the_full_parse_reads() -> None:
    text = manifest_text(PAYLOAD)
    full = {entry.path: (entry.size, entry.sha256) for entry in parse_manifest(text).files}
    assert peek_files(text) == full
    unpinned = manifest_text(PAYLOAD, pin=False)
    assert peek_files(unpinned) == dict.fromkeys(PAYLOAD, (None, None))


@pytest.mark.parametrize(
    "text",
    [
        "not = [toml",
        "schema = 1\n",
        'files = "x"\n',
        "files = [1]\n",
        '[[files]]\npath = ""\n',
        '[[files]]\npath = "../x"\n',
        '[[files]]\npath = "a"\n[[files]]\npath = "a"\n',
        '[[files]]\npath = "a"\nsize = -1\n',
        '[[files]]\npath = "a"\nsize = true\n',
        '[[files]]\npath = "a"\nsize = "12"\n',
        '[[files]]\npath = "a"\nsha256 = "ABC"\n',
    ],
)
def test_peek_gives_up_on_what_is_not_a_valid_file_list(text: str) -> None:
    assert peek_files(text) is None


@given(st.text(max_size=300))
def test_peek_never_raises(text: str) -> None:
    peek_files(text)


def test_fast_verify_still_names_a_malformed_manifest(tmp_path: Path) -> None:
    bad = b'schema = 1\n[[files]]\npath = "../up"\n'
    specs = replace_member(bag_specs(), "lhymirror.toml", bad)
    archive = write_archive(tmp_path / f"{TOP}.zip", "zip", specs)
    assert ("malformed", f"{TOP}/lhymirror.toml") in found(verify_path(archive, fast=True))


def test_fast_verify_compares_sizes_and_checksums_from_the_manifest(tmp_path: Path) -> None:
    payload = {**PAYLOAD, "slides/lecture 1.pdf": b"shorter"}
    specs = replace_member(bag_specs(payload), "lhymirror.toml", manifest_text(PAYLOAD).encode())
    archive = write_archive(tmp_path / f"{TOP}.zip", "zip", specs)
    problems = found(verify_path(archive, fast=True))
    assert ("size", f"{TOP}/data/slides/lecture 1.pdf") in problems
    assert ("checksum", f"{TOP}/data/slides/lecture 1.pdf") in problems


def test_fast_verify_of_an_archive_imports_no_pydantic(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / f"{TOP}.zip", "zip", bag_specs())
    code = (
        "import sys\n"
        "from lhymirror.cli import main\n"
        f"code = main(['verify', '--fast', {str(archive)!r}])\n"
        "print('imported:', *(m for m in ('pydantic', 'requests') if m in sys.modules))\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(lhymirror.__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.rpartition("imported:")[2].split() == []
