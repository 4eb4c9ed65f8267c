"""Manifest texts that passed the manifest's rules before, so that they need no second check.

Checking a manifest needs pydantic (:mod:`lhymirror.manifest.schema`), whose import and model
building cost about 0.1 s of every command that reads one: more than a whole no-op sync. The
same few manifests are read again and again, so a text that passed is remembered as an empty
file in the user's cache, named by the sha256 of the text and of the rules that passed it
(the versions of lhymirror and Python, and the size and time of the modules that hold the rules
and of pydantic: an edited checkout or an upgrade checks again). A text that fails is never
remembered, so its errors are always shown.

The cache is ``$LHYMIRROR_CACHE_DIR``, else ``$XDG_CACHE_HOME/lhymirror``, else
``~/.cache/lhymirror``; ``LHYMIRROR_CACHE_DIR=""`` turns it off. It is an optimisation only: a
cache that cannot be read or written is ignored, and deleting it at any time is safe. It is
trusted as the user's own files are (a name put there skips the checks of that text), so
lhymirror creates its folder writable by the user alone; a cache shared between users is theirs
to trust.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.machinery
import os
import sys
from pathlib import Path

import lhymirror

CACHE_ENV = "LHYMIRROR_CACHE_DIR"
FOLDER = "manifests-passed"
KEEP = 200  # names kept; beyond that the oldest go, so the folder stays small

# The modules whose code decides whether a manifest passes.
_RULES = (
    ("manifest", "schema.py"),
    ("manifest", "checks.py"),
    ("manifest", "sources.py"),
    ("manifest", "model.py"),
    ("core", "safepath.py"),
)


def cache_dir() -> Path | None:
    """lhymirror's cache folder; None when ``$LHYMIRROR_CACHE_DIR`` is empty or there is no home."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return Path(chosen) if chosen else None
    base = Path(os.environ.get("XDG_CACHE_HOME") or ".")
    if base.is_absolute():  # the XDG spec: a relative value is to be ignored
        return base / "lhymirror"
    try:
        home = Path("~").expanduser()
    except RuntimeError:  # no $HOME and no password entry
        return None
    return home / ".cache" / "lhymirror" if home.is_absolute() else None


def passed_before(text: str) -> bool:
    """True when *text* passed the current rules before (as remembered in the cache)."""
    marker = _marker(text)
    if marker is None:
        return False
    try:
        found = marker.is_file()
    except OSError:  # a cache that cannot be searched is no cache
        return False
    if found:
        with contextlib.suppress(OSError):  # a hit counts as new: trimming drops the oldest
            os.utime(marker)
    return found


def remember_passed(text: str) -> None:
    """Remember that *text* passed; silently nothing when the cache cannot be written."""
    marker = _marker(text)
    if marker is None:
        return
    try:
        marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        marker.touch()
        _trim(marker.parent)
    except OSError:
        pass


def _marker(text: str) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    name = hashlib.sha256(_rules() + b"\0" + text.encode("utf-8", "surrogatepass")).hexdigest()
    return folder / FOLDER / name


@functools.cache
def _rules() -> bytes:
    """What identifies the rules in force: the versions, and the size and time of their code.

    That code is lhymirror's rule modules and the pydantic and pydantic-core installed (found,
    not imported: an upgrade in place changes their files' times).
    """
    package = Path(lhymirror.__file__).parent
    files = [package.joinpath(*parts) for parts in _RULES]
    for name in ("pydantic", "pydantic_core"):
        spec = importlib.machinery.PathFinder.find_spec(name)
        files.append(Path(spec.origin) if spec and spec.origin else Path(name))
    stamps = [lhymirror.__version__, sys.version]
    for path in files:
        try:
            info = path.stat()
        except OSError:
            stamps.append(f"{path}:?")
            continue
        stamps.append(f"{path}:{info.st_size}:{info.st_mtime_ns}")
    return "\n".join(stamps).encode()


def _trim(folder: Path) -> None:
    """Keep the newest KEEP names; the rest go (another process may remove them first)."""
    with os.scandir(folder) as found:
        names = [entry for entry in found if entry.is_file()]
    if len(names) <= KEEP:
        return
    names.sort(key=lambda entry: entry.stat().st_mtime_ns)
    for entry in names[: len(names) - KEEP]:
        Path(entry.path).unlink(missing_ok=True)
