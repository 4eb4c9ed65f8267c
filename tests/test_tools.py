"""tests/tools.py: a missing program skips a test locally and fails it in CI if CI installs it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools import CI_TOOLS, require_tool

CI_RUN = Path(__file__).resolve().parents[1] / ".ci" / "run"


def test_ci_installs_every_tool_whose_tests_must_run_there() -> None:
    loop = re.search(r"^for pair in (.+); do$", CI_RUN.read_text(encoding="utf-8"), re.M)
    assert loop is not None, ".ci/run no longer installs tools in a `for pair in ...` loop"
    installs = dict(pair.split(":", 1) for pair in loop.group(1).split())
    assert {tool: installs.get(tool) for tool in CI_TOOLS} == CI_TOOLS


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))


@pytest.mark.usefixtures("empty_path")
def test_a_missing_tool_skips_with_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install p7zip-full"):
        require_tool("7z", "p7zip-full")


@pytest.mark.usefixtures("empty_path")
def test_in_ci_a_tool_ci_installs_fails_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"\.ci/run installs it"):
        require_tool("chromium", "chromium", "chromium-browser")
    with pytest.raises(pytest.skip.Exception, match="sha256sum"):
        require_tool("sha256sum", "coreutils")  # not installed by CI: still a skip


def test_a_present_tool_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "7z"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert require_tool("7z", "p7zip-full") == str(tool)
