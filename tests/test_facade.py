"""The library facade (lhymirror.api): check and the swarm operations, their verdicts in the
library (the CLI only renders them)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import lhymirror
from httpserver import CourseServer
from lhymirror import api
from lhymirror.core.errors import DownloadError, IntegrityError, UsageError
from lhymirror.fetch.check import CheckReport, Probe, SourceCheck, Status
from lhymirror.manifest.model import Manifest
from test_swarm import Class, fast_http, needs_libtorrent  # noqa: F401 - an autouse fixture

NEW = [
    "check", "require_swarm", "torrent_archive", "torrent_mirror", "fetch_torrent",
    "seed_archive", "seed_mirror", "SwarmSource", "WrittenTorrent",
]  # fmt: skip


@pytest.mark.parametrize("name", NEW)
def test_check_and_the_swarm_operations_are_in_the_facade(name: str) -> None:
    assert name in api.__all__
    assert getattr(lhymirror, name) is getattr(api, name)
    assert name in dir(lhymirror)
    function = getattr(api, name)
    assert inspect.getdoc(function)
    if inspect.isfunction(function):
        signature = inspect.signature(function)
        assert signature.return_annotation is not inspect.Signature.empty
        assert all(
            p.annotation is not inspect.Parameter.empty for p in signature.parameters.values()
        )


@pytest.fixture
def course(http_server: CourseServer, tmp_path: Path) -> Class:
    return Class(http_server, tmp_path, {"l01": 60_000, "l02": 25_000, "hw01": 120_000})


def report(*statuses: Status) -> CheckReport:
    checks = tuple(
        SourceCheck(f"e{n}", None, f"https://h/{n}", Probe(status))
        for n, status in enumerate(statuses)
    )
    return CheckReport(2022, checks)


def test_the_check_verdict_is_the_reports() -> None:
    assert report("alive", "moved", "quota", "unknown").error() is None
    changed = report("alive", "gone", "changed").error()
    assert isinstance(changed, IntegrityError) and changed.message.startswith("1 source changed")
    gone = report("alive", "gone", "unreachable").error()
    assert isinstance(gone, DownloadError)
    assert gone.message.startswith("2 sources gone or unreachable")
    silent = report("unreachable", "unreachable").error()
    assert isinstance(silent, DownloadError) and silent.message.startswith("no source answered")


def test_check_refuses_an_unknown_id_before_asking_anything(course: Class, tmp_path: Path) -> None:
    manifest, _ = api.open_manifest(path=course.manifest)
    assert isinstance(manifest, Manifest)
    with pytest.raises(UsageError, match="no such entry"):
        api.check(manifest, api.open_mirror(manifest, tmp_path), only=["l01", "nope"])


@needs_libtorrent
def test_pack_torrent_and_fetch_through_the_facade(course: Class) -> None:
    from lhymirror.swarm.engine import SessionOptions

    manifest, _ = api.open_manifest(path=course.manifest)
    packed = api.pack(manifest, api.open_mirror(manifest, course.ta), course.tmp / "dist")
    url = course.server.url_for("/dl/" + packed.archive.name)
    written = api.torrent_archive(packed.archive, manifest, web_seeds=[url])
    assert written.path == packed.archive.with_name(packed.archive.name + ".torrent")
    assert written.magnet.startswith("magnet:?") and written.path.is_file()
    course.server.add_file("/dl/" + packed.archive.name, packed.archive)
    options = SessionOptions(bind="127.0.0.1", port=0, dht=False, lsd=False)
    fetched = api.fetch_torrent(str(written.path), course.tmp / "got", options=options, wait=10)
    assert fetched.read_bytes() == packed.archive.read_bytes()
    mirror = api.torrent_mirror(
        manifest, api.open_mirror(manifest, course.ta), course.tmp / "class.torrent"
    )
    assert mirror.left_out == 0 and len(mirror.torrent.files) == 3
