"""The shipped manifests travel inside the wheel, so `lhymirror list 2022` works anywhere."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import lhymirror
from lhymirror.manifest.model import shipped_manifest_dir

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contains_the_manifests_and_the_console_script(tmp_path: Path) -> None:
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip("hatchling (the build backend, in the test extra) is not installed")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("lhymirror-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert {"lhymirror/manifests/2021.toml", "lhymirror/manifests/2022.toml"} <= names
    assert "lhymirror = lhymirror.cli:main" in scripts
    for shipped in (REPO / "manifests").glob("*.toml"):
        assert f"lhymirror/manifests/{shipped.name}" in names


def test_installed_package_uses_its_own_copy_of_the_manifests() -> None:
    package_dir = Path(lhymirror.__file__).resolve().parent
    if package_dir == REPO / "src" / "lhymirror":
        pytest.skip("running from the source tree (editable install); CI installs the wheel")
    assert shipped_manifest_dir() == package_dir / "manifests"


def test_list_works_from_any_directory(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(lhymirror.__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-m", "lhymirror", "list", "2022"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Lecture 1" in result.stdout
