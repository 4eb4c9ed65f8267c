"""Start-up stays lazy: answering ``--version`` or ``--help`` imports no heavy dependency.

Timing tests would be flaky on a shared machine; what a command imports is not, and it is what
decides the start-up time (pydantic alone costs about 0.1 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import lhymirror

HEAVY = ("pydantic", "requests", "tqdm", "tomli_w", "lhymirror.manifest.model")


def imported_by(argv: list[str], *modules: str) -> list[str]:
    """Run the CLI with *argv* in a fresh interpreter; the *modules* it imported."""
    code = (
        "import sys\n"
        "from lhymirror.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('imported:', *(m for m in {modules!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(lhymirror.__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.rpartition("imported:")[2].split()


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []], ids=str)
def test_version_and_help_import_nothing_heavy(argv: list[str]) -> None:
    assert imported_by(argv, *HEAVY) == []


def test_importing_the_package_imports_nothing_heavy() -> None:
    assert imported_by(["--version"], "lhymirror.api", "lhymirror.fetch.sync") == []


def test_the_library_loads_lazily() -> None:
    code = (
        "import sys, lhymirror\n"
        "assert 'lhymirror.api' not in sys.modules\n"
        "lhymirror.sync, lhymirror.status, lhymirror.pack\n"
        "print('imported:', *(m for m in ('pydantic', 'requests', 'tqdm') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(lhymirror.__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.rpartition("imported:")[2].split() == []


def test_every_api_name_is_documented_and_typed() -> None:
    from lhymirror import api

    for name in api.__all__:
        value = getattr(lhymirror, name)
        assert value is getattr(api, name)
        assert (value.__doc__ or "").strip(), f"{name} has no docstring"
        if callable(value) and not isinstance(value, type):
            assert "return" in value.__annotations__, f"{name} has no return type"
