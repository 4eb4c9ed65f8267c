"""External programs some tests run, and what a missing one means.

Locally a test whose program is missing skips, saying how to install it. In CI (``CI=true``) a
program that ``.ci/run`` installs must be there: its tests fail instead of skipping, so a broken
install cannot turn them silently into skips.
"""

from __future__ import annotations

import os
import shutil

import pytest

# Program -> the Debian package .ci/run installs it from (tests/test_tools.py checks .ci/run).
CI_TOOLS = {"chromium": "chromium", "unzip": "unzip", "7z": "p7zip-full"}


def in_ci() -> bool:
    """True when running under CI (``CI=true``, as CI services and .ci/run's caller set it)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def find_tool(*names: str) -> str | None:
    """The path of the first of *names* on PATH, or None."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_tool(name: str, package: str, *alternatives: str) -> str:
    """The path of *name* (or an alternative); else skip, or fail in CI if CI installs it."""
    found = find_tool(name, *alternatives)
    if found is not None:
        return found
    reason = f"{name} is not installed (Debian: apt-get install {package})"
    if in_ci() and name in CI_TOOLS:
        pytest.fail(f"{reason}, but .ci/run installs it: in CI this test must run", pytrace=False)
    pytest.skip(reason)
