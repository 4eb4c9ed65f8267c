"""The README's "Use as a library" example runs as written (offline, in a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def library_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Use as a library", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    return code


def test_the_library_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(library_example(), "README.md", "exec"), {"__name__": "readme"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("l01-") and lines[0].endswith(" failed")  # offline: not fetched
    assert any(line.endswith("could not be downloaded") or "offline" in line for line in lines)
    next_step, to_fetch, missing = lines[-1].split()
    assert next_step == "sync" and int(to_fetch) > 0 and int(missing) > 0
