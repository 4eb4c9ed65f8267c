"""Shared pytest fixtures for the lhymirror test suite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# =====================================================================================
# HTTP test server (tests/httpserver.py)
# =====================================================================================
from httpserver import CourseServer


@pytest.fixture
def http_server() -> Iterator[CourseServer]:
    """A started CourseServer on 127.0.0.1:<random port>, stopped after the test.

    Teardown fails the test if a handler thread raised an unexpected exception.
    """
    with CourseServer() as server:
        yield server
    assert not server.errors, "CourseServer handler errors:\n" + "\n".join(server.errors)


# =====================================================================================
# Hypothesis profiles: `ci` (default) keeps the property tests to a few hundred examples in
# all, derandomized so that every run is the same; HYPOTHESIS_PROFILE=long runs at least
# 10,000 examples per property (see tests/test_fuzz.py), with fresh randomness.
# =====================================================================================
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, suppress_health_check=_QUIET
)
settings.register_profile(
    "long", max_examples=10_000, database=None, deadline=None, suppress_health_check=_QUIET
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# =====================================================================================
# (further fixtures are added by the lead below this line)
# =====================================================================================


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """CLI subprocesses a test starts; any still running at teardown is killed with its group."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@pytest.fixture(autouse=True)
def manifest_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test (and every CLI it starts) gets an empty cache of checked manifests of its own.

    Nothing reaches the user's ~/.cache, and no test depends on which manifests another checked.
    """
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("LHYMIRROR_CACHE_DIR", str(folder))
    return folder
