"""A manifest text is checked by its rules once; later reads build it without pydantic.

The conftest gives every test an empty cache folder of its own ($LHYMIRROR_CACHE_DIR).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w

import lhymirror
from lhymirror.core.errors import ManifestError
from lhymirror.manifest import checked, model, schema
from lhymirror.manifest.model import (
    dump_manifest,
    load_manifest,
    parse_manifest,
    shipped_manifest_path,
    shipped_years,
)

VALID = tomli_w.dumps(
    {
        "schema": 1,
        "course": "ML",
        "year": 2022,
        "version": "1",
        "files": [
            {"id": "a", "kind": "slide", "path": "a.pdf", "urls": ["https://e.org/a.pdf"]},
            {"id": "b", "kind": "dataset", "path": "b.zip", "parts": ["https://e.org/b.aa"]},
        ],
        "links": [{"kind": "video", "url": "https://youtu.be/x"}],
    }
)
INVALID = VALID.replace('"a.pdf"', '"../a.pdf"')


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The raw data of every check of the manifest's rules the test makes."""
    seen: list[dict[str, Any]] = []
    real = schema.data_problems

    def counting(raw: dict[str, Any]) -> list[str]:
        seen.append(raw)
        return real(raw)

    monkeypatch.setattr(schema, "data_problems", counting)
    return seen


def remembered(cache: Path) -> list[str]:
    folder = cache / checked.FOLDER
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def test_a_text_that_passed_is_built_without_a_second_check(
    checks: list[dict[str, Any]], manifest_cache: Path
) -> None:
    first = parse_manifest(VALID)
    second = parse_manifest(VALID)
    assert len(checks) == 1
    assert second == first
    assert len(remembered(manifest_cache)) == 1
    assert parse_manifest(VALID + "\n# edited\n") == first  # another text: checked
    assert len(checks) == 2


def test_a_text_that_failed_is_never_remembered(
    checks: list[dict[str, Any]], manifest_cache: Path
) -> None:
    messages = []
    for _ in range(2):
        with pytest.raises(ManifestError) as caught:
            parse_manifest(INVALID)
        messages.append(caught.value.problems)
    assert len(checks) == 2
    assert messages[0] == messages[1] and "../a.pdf" in messages[0][0]
    assert remembered(manifest_cache) == []


def test_other_rules_check_again(
    checks: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    parse_manifest(VALID)
    monkeypatch.setattr(checked, "_rules", lambda: b"lhymirror 9.9")
    parse_manifest(VALID)
    assert len(checks) == 2


def test_the_rules_key_follows_the_version_and_the_rule_modules(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    version = lhymirror.__version__
    checked._rules.cache_clear()
    before = checked._rules()
    checked._rules.cache_clear()
    monkeypatch.setattr(lhymirror, "__version__", "9.9")
    assert checked._rules() != before
    checked._rules.cache_clear()
    monkeypatch.setattr(lhymirror, "__version__", version)
    fake = tmp_path / "lhymirror"  # a copy of the package folder's rule modules, one edited
    for folder, name in checked._RULES:
        (fake / folder).mkdir(parents=True, exist_ok=True)
        (fake / folder / name).write_text("rules")
    monkeypatch.setattr(lhymirror, "__file__", str(fake / "__init__.py"))
    one = checked._rules()
    checked._rules.cache_clear()
    (fake / "manifest" / "schema.py").write_text("other rules")
    assert checked._rules() != one
    checked._rules.cache_clear()


def test_every_shipped_manifest_builds_as_it_validates() -> None:
    for year in shipped_years():
        path = shipped_manifest_path(year)
        checked_once = load_manifest(path)
        assert checked.passed_before(path.read_text(encoding="utf-8"))
        assert load_manifest(path) == checked_once
        assert dump_manifest(checked_once) == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("setting", ["", None])
def test_the_cache_can_be_off_or_in_xdg_cache_home(
    setting: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if setting is None:
        monkeypatch.delenv(checked.CACHE_ENV)
    else:
        monkeypatch.setenv(checked.CACHE_ENV, setting)
    parse_manifest(VALID)
    xdg = tmp_path / "xdg" / "lhymirror"
    assert (remembered(xdg) != []) == (setting is None)


def test_a_cache_that_cannot_be_written_is_ignored(
    checks: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(checked.CACHE_ENV, str(blocker))
    assert parse_manifest(VALID) == parse_manifest(VALID)
    assert len(checks) == 2


def test_a_cache_that_cannot_be_searched_is_ignored(
    checks: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(checked.CACHE_ENV, str(tmp_path / ("a" * 300)))  # name too long
    assert parse_manifest(VALID) == parse_manifest(VALID)
    assert len(checks) == 2


def test_a_relative_xdg_cache_home_is_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(checked.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    assert checked.cache_dir() == tmp_path / ".cache" / "lhymirror"


def test_the_folder_is_the_users_alone_and_a_hit_is_new_again(manifest_cache: Path) -> None:
    checked.remember_passed(VALID)
    marker = checked._marker(VALID)
    assert marker is not None
    assert marker.parent.stat().st_mode & 0o777 == 0o700
    os.utime(marker, ns=(0, 0))
    assert checked.passed_before(VALID)
    assert marker.stat().st_mtime_ns > 0  # so trimming keeps the texts in use


def test_the_cache_keeps_only_the_newest_names(
    monkeypatch: pytest.MonkeyPatch, manifest_cache: Path
) -> None:
    monkeypatch.setattr(checked, "KEEP", 3)
    texts = [f"{VALID}\n# {n}\n" for n in range(5)]
    for n, text in enumerate(texts):
        checked.remember_passed(text)
        marker = checked._marker(text)
        assert marker is not None
        os.utime(marker, ns=(n * 10**9, n * 10**9))  # distinct ages, oldest first
    assert len(remembered(manifest_cache)) == 3
    assert [checked.passed_before(text) for text in texts] == [False, False, True, True, True]


@pytest.mark.parametrize(
    ("rules", "built"),
    [
        (schema.PartSchema, model.Part),
        (schema.FileSchema, model.FileEntry),
        (schema.LinkSchema, model.Link),
        (schema.ManifestSchema, model.Manifest),
    ],
)
def test_the_rules_and_the_dataclasses_have_the_same_fields(rules: Any, built: Any) -> None:
    required = object()
    checked_fields = [
        (info.alias or name, required if info.is_required() else info.default)
        for name, info in rules.model_fields.items()
    ]
    built_fields = [
        (field.name, required if field.default is dataclasses.MISSING else field.default)
        for field in dataclasses.fields(built)
    ]
    if built is model.Manifest:  # `schema` is required in TOML and always 1 once built
        assert built_fields[0] == ("schema", 1)
        built_fields[0] = ("schema", required)
    assert built_fields == checked_fields


def test_reading_a_checked_manifest_imports_no_pydantic(tmp_path: Path) -> None:
    path = tmp_path / "course.toml"
    path.write_text(VALID, encoding="utf-8")
    code = (
        "import sys\n"
        "from lhymirror.cli import main\n"
        "try:\n"
        f"    main(['list', '--manifest', {str(path)!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('imported:', 'pydantic' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(lhymirror.__file__).resolve().parents[1])}
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        for _ in range(2)
    ]
    listed, imported = zip(*(run.stdout.rpartition("imported:")[::2] for run in runs), strict=True)
    assert [words.split() for words in imported] == [["True"], ["False"]]
    assert listed[0] == listed[1] and "b.zip" in listed[0]
