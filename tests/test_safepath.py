"""Path safety rules shared by manifests and archive members."""

from __future__ import annotations

import pytest

from lhymirror.core.safepath import collision_key, path_problems


@pytest.mark.parametrize(
    "path",
    [
        "slides/rule (v2).pdf",
        "data/HW04/Dataset.tar.gz",
        "slides/自注意力.pdf",
        "a/.hidden/b",
        "CONSOLE.txt",
        "com10.txt",
        "x..y",
    ],
)
def test_safe_paths_have_no_problems(path: str) -> None:
    assert path_problems(path) == []


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", "is empty"),
        ("/abs", "absolute"),
        ("C:/x", "drive letter"),
        ("c:x", "drive letter"),
        ("a\\b", "backslash"),
        ("a/../b", "'..'"),
        ("./a", "'.'"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        ("a\tb", "control"),
        ("a\x7fb", "control"),
        ("aux", "reserves"),
        ("AUX.tar.gz", "reserves"),
        ("nul .txt", "reserves"),
        ("dir./x", "ending in a dot"),
        ("x ", "ending in a dot or space"),
        ("a:b", "forbids"),
    ],
)
def test_unsafe_paths_are_named(path: str, expected: str) -> None:
    assert any(expected in problem for problem in path_problems(path))


def test_collision_key_folds_case_and_unicode_form() -> None:
    assert collision_key("Slides/Caf\u00e9.PDF") == collision_key("slides/cafe\u0301.pdf")
    assert collision_key("a.pdf") != collision_key("b.pdf")
