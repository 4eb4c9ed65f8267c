"""Shared pytest fixtures for the lhymirror test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
# (further fixtures are added by the lead below this line)
# =====================================================================================
