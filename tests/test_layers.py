"""The package's shape, checked from its source (ast only, nothing is imported).

- Imports follow the flow: a layer imports only lower layers and itself, never a higher one or
  a sibling of the same rank (fetch and archive do not know each other).
- Subpackage ``__init__.py`` files hold no imports, so importing one module loads only what that
  module needs; the top-level ``__init__.py`` imports nothing at start-up (it may load ``api``
  lazily, from inside a function such as a module ``__getattr__``).
- Small units: no module over MAX_MODULE_LINES lines and no class over MAX_CLASS_LINES, except
  the listed ones, which may only shrink.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "lhymirror"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# Rank of each top-level module or subpackage of lhymirror, lowest first. A module may import
# from its own part and from parts of a lower rank only; two parts of one rank are independent.
# A new part must be added here (the test fails until it is).
LAYERS: dict[str, int] = {
    "core": 0,  # errors, file-system and stream helpers: depends on nothing of ours
    "manifest": 1,
    "mirror": 2,
    "fetch": 3,  # fetch and archive: the two halves of the flow, independent of each other
    "archive": 3,
    "swarm": 4,  # peer-to-peer sharing (if it appears): above fetch and archive, below api
    "share": 4,
    "_api_events": 5,  # private parts of the facade, re-exported by api: what operations tell,
    "_api_share": 6,  # and sharing over BitTorrent
    "api": 7,  # the library facade (lhymirror/api.py)
    "cli": 8,
    "__main__": 9,
}

MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 200

# Over the limit and not yet split (none today). Each entry is the size it may not grow past: an
# entry within the limit fails the test, so the list only shrinks.
OVERSIZED_MODULES: dict[str, int] = {}
OVERSIZED_CLASSES: dict[str, int] = {}

# Subpackage __init__ files that still import (remove as they are emptied): cli/__init__.py
# holds main(), the console-script entry point `lhymirror.cli:main`.
INIT_WITH_IMPORTS = {"cli"}


@dataclass(frozen=True)
class Import:
    """One import statement of a module of ours, resolved to an absolute dotted name."""

    module: str  # the importing module, e.g. lhymirror.fetch.sync
    target: str  # what it imports, e.g. lhymirror.core.errors
    line: int
    at_top: bool  # at module level (run on import), not inside a function or class


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _dotted(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _relative(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def _imports(path: Path) -> list[Import]:
    """Every import of *path*, anywhere in it (lazy and TYPE_CHECKING imports count too)."""
    module = _dotted(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top_level = {id(node) for node in tree.body}
    found: list[Import] = []
    for node in ast.walk(tree):
        at_top = id(node) in top_level
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno, at_top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.module == "__future__":
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # `from lhymirror import api` imports a module; `import __version__` does not.
                candidate = f"{base}.{alias.name}"
                target = candidate if _is_module(candidate) else base
                found.append(Import(module, target, node.lineno, at_top))
    return found


def _is_module(dotted: str) -> bool:
    parts = dotted.split(".")
    if parts[0] != PACKAGE:
        return False
    path = SRC.joinpath(*parts[1:])
    return path.with_suffix(".py").is_file() or path.is_dir() or parts[1:2] == ["api"]


def _part(dotted: str) -> str | None:
    """The top-level part of lhymirror a dotted name belongs to (None for the package itself)."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else None


def _layer_problem(imp: Import) -> str | None:
    source, target = _part(imp.module), _part(imp.target)
    if imp.target.split(".")[0] != PACKAGE or target is None or source == target:
        return None  # third-party, the package root (its __version__), or the same part
    where = f"{imp.module} (line {imp.line}) imports {imp.target}"
    for part in (source, target):
        if part is not None and part not in LAYERS:
            return f"{where}: add {part!r} to LAYERS in tests/test_layers.py"
    if source is None:
        return None  # the top-level __init__, checked by its own test
    if LAYERS[target] > LAYERS[source]:
        return f"{where}: {source} may not import the higher layer {target}"
    if LAYERS[target] == LAYERS[source]:
        return f"{where}: {source} and {target} are independent layers"
    return None


def layer_problems(paths: list[Path]) -> list[str]:
    """Imports against the flow in *paths*, one line each."""
    return [
        problem
        for path in paths
        for imp in _imports(path)
        if (problem := _layer_problem(imp)) is not None
    ]


def test_every_part_has_a_layer() -> None:
    parts = {_part(_dotted(path)) for path in _modules()} - {None}
    assert parts, f"no modules found under {SRC}"
    assert not parts - LAYERS.keys(), "add these to LAYERS in tests/test_layers.py"


def test_imports_follow_the_layers() -> None:
    problems = layer_problems(_modules())
    assert not problems, "\n".join(problems)


def test_subpackage_inits_hold_no_imports() -> None:
    folders = {path.parent for path in _modules()} - {SRC}
    missing = sorted(
        _relative(folder) for folder in folders if not (folder / "__init__.py").is_file()
    )
    assert missing == [], "every subpackage needs an __init__.py (without imports)"
    importing = {_relative(folder) for folder in folders if _imports(folder / "__init__.py")}
    assert importing <= INIT_WITH_IMPORTS, f"imports in the __init__.py of {sorted(importing)}"
    assert importing >= INIT_WITH_IMPORTS, "stale INIT_WITH_IMPORTS entry: remove it"


def test_top_level_init_imports_nothing_at_start_up() -> None:
    init = SRC / "__init__.py"
    for imp in _imports(init):
        assert not imp.at_top, f"line {imp.line}: {imp.target} is imported at start-up"
        assert imp.target == f"{PACKAGE}.api", f"line {imp.line}: only api may be loaded lazily"


def _module_sizes() -> dict[str, int]:
    return {
        _relative(path): len(path.read_text(encoding="utf-8").splitlines()) for path in _modules()
    }


def _class_sizes() -> dict[str, int]:
    sizes = {}
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                end = node.end_lineno or node.lineno
                sizes[f"{_relative(path)}:{node.name}"] = end - node.lineno + 1
    return sizes


def size_problems(sizes: dict[str, int], allowed: dict[str, int], limit: int) -> list[str]:
    """Units over *limit* not in *allowed*, allowed ones that grew, and stale allowances."""
    problems = []
    for name, size in sorted(sizes.items()):
        if name in allowed and size > allowed[name]:
            problems.append(f"{name}: {size} lines, grew past its allowance of {allowed[name]}")
        elif name not in allowed and size > limit:
            problems.append(f"{name}: {size} lines, over the limit of {limit}")
    for name in sorted(allowed):
        if sizes.get(name, 0) <= limit:
            problems.append(f"{name}: now within {limit} lines; remove it from the allow-list")
    return problems


def test_no_module_is_too_long() -> None:
    problems = size_problems(_module_sizes(), OVERSIZED_MODULES, MAX_MODULE_LINES)
    assert not problems, "\n".join(problems)


def test_no_class_is_too_long() -> None:
    problems = size_problems(_class_sizes(), OVERSIZED_CLASSES, MAX_CLASS_LINES)
    assert not problems, "\n".join(problems)


# -- the checks themselves can fail ---------------------------------------------------------


def _write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("relative", "text", "expected"),
    [
        ("core/x.py", "from lhymirror.manifest import model\n", "higher layer manifest"),
        ("mirror/x.py", "def f():\n    import lhymirror.fetch.plan\n", "higher layer fetch"),
        ("fetch/x.py", "from lhymirror.archive.read import R\n", "independent layers"),
        ("archive/x.py", "from ..fetch import plan\n", "independent layers"),
        ("fetch/x.py", "from lhymirror import api\n", "higher layer api"),
        ("api.py", "from lhymirror.cli import main\n", "higher layer cli"),
        ("swarm/x.py", "from lhymirror.api import sync\n", "higher layer api"),
        ("gizmo/x.py", "from lhymirror.core import errors\n", "add 'gizmo' to LAYERS"),
    ],
)
def test_layer_check_finds_imports_against_the_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: str, text: str, expected: str
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    for part in ("core", "manifest", "mirror", "fetch", "archive", "cli", "swarm", "gizmo"):
        _write(tmp_path, f"{part}/__init__.py", "")
    _write(tmp_path, "core/errors.py", "")
    _write(tmp_path, "fetch/plan.py", "")
    path = _write(tmp_path, relative, text)
    problems = layer_problems([path])
    assert len(problems) == 1
    assert expected in problems[0]


@pytest.mark.parametrize(
    ("relative", "text"),
    [
        ("cli/x.py", "from lhymirror.fetch.sync import run\nfrom lhymirror import __version__\n"),
        ("fetch/x.py", "from lhymirror.core.errors import E\nfrom . import plan\n"),
        ("swarm/x.py", "from lhymirror.fetch import plan\nfrom lhymirror.archive import read\n"),
        ("api.py", "from lhymirror.swarm import peers\nimport requests\n"),
    ],
)
def test_layer_check_allows_imports_along_the_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: str, text: str
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    path = _write(tmp_path, relative, text)
    assert layer_problems([path]) == []


def test_size_check_finds_growth_newcomers_and_stale_entries() -> None:
    allowed = {"a.py": 600, "b.py": 700, "c.py": 550}
    sizes = {"a.py": 601, "b.py": 400, "c.py": 550, "d.py": 501, "e.py": 500}
    assert size_problems(sizes, allowed, 500) == [
        "a.py: 601 lines, grew past its allowance of 600",
        "d.py: 501 lines, over the limit of 500",
        "b.py: now within 500 lines; remove it from the allow-list",
    ]
