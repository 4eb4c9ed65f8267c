"""The Wayback Machine as a source: ``wayback:`` sources and the automatic last resort.

HTTP logic is tested with ``responses`` faking web.archive.org (the 302 to the nearest capture,
404 "not archived", 429 with Retry-After); the end-to-end test runs ``lhymirror sync`` against the
real 127.0.0.1 test server standing in for both the course server and the archive.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import pytest
import responses
import tomli_w

from factories import blob, file_entry, manifest_data, sha
from httpserver import CourseServer, Fault
from lhymirror import api
from lhymirror.cli import main
from lhymirror.core.errors import DownloadError, ManifestError
from lhymirror.fetch.download import Downloader
from lhymirror.fetch.http import RetryPolicy, new_session
from lhymirror.fetch.plan import course_archive, plan_sync
from lhymirror.fetch.sources import registry
from lhymirror.fetch.sources.wayback import WaybackAdapter
from lhymirror.fetch.transfer import Target, UpstreamChangedError
from lhymirror.manifest.model import Manifest, parse_manifest
from lhymirror.manifest.sources import WaybackSource, parse_source
from lhymirror.mirror.store import MirrorStore

ORIGINAL = "https://speech.ee.ntu.edu.tw/~hylee/ml/ml2022-course-data/gone%20(v2).pdf"
SOURCE = f"wayback:20220701/{ORIGINAL}"
ASKED = f"https://web.archive.org/web/20220701id_/{ORIGINAL}"
NEAREST = f"https://web.archive.org/web/20220615083012id_/{ORIGINAL}"
DATA = blob(40_000, seed=11)


# -- the source string ---------------------------------------------------------------------------


def test_wayback_sources_parse_to_the_raw_capture_url() -> None:
    source = parse_source(SOURCE)
    assert source == WaybackSource("20220701", ORIGINAL)
    assert source.capture_url() == ASKED
    assert source.page_url == f"https://web.archive.org/web/20220701/{ORIGINAL}"
    assert str(source) == SOURCE


@pytest.mark.parametrize(
    "text",
    [
        f"wayback:{ORIGINAL}",  # no timestamp
        f"wayback:202/{ORIGINAL}",  # too short
        f"wayback:202207011200001/{ORIGINAL}",  # too long
        "wayback:2022/speech.ee.ntu.edu.tw/a.pdf",  # not a URL
        "wayback:2022/https:///a.pdf",  # no host
    ],
)
def test_malformed_wayback_sources_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"wayback|no host"):
        parse_source(text)


def _manifest(**fields: Any) -> Manifest:
    entry = file_entry("a", **fields)
    return parse_manifest(tomli_w.dumps(manifest_data({k: v for k, v in entry.items() if v})))


def test_a_wayback_source_needs_a_pinned_sha256() -> None:
    assert _manifest(urls=[ORIGINAL, SOURCE], size=1, sha256="a" * 64)
    with pytest.raises(ManifestError) as caught:
        _manifest(urls=[ORIGINAL, SOURCE])
    assert any("wayback: source needs the entry's sha256" in p for p in caught.value.problems)


def test_wayback_sources_are_for_whole_files() -> None:
    with pytest.raises(ManifestError) as caught:
        _manifest(urls=None, parts=[ORIGINAL, SOURCE], sha256="a" * 64)
    assert any("whole files only" in p for p in caught.value.problems)


# -- the adapter against a fake archive ----------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> MirrorStore:
    return MirrorStore(tmp_path / "mirror", 2022)


def target(store: MirrorStore, data: bytes = DATA) -> Target:
    path = "slides/gone (v2).pdf"
    return Target("l01-gone", store.file_path(path), len(data), sha(data), path)


def downloader(store: MirrorStore, sleeps: list[float]) -> Downloader:
    policy = RetryPolicy(attempts=3, backoff_base=0.0)
    return Downloader(store, policy=policy, sleep=sleeps.append, rng=random.Random(0))


@responses.activate
def test_the_redirect_to_the_nearest_capture_is_followed(store: MirrorStore) -> None:
    responses.get(ASKED, status=302, headers={"Location": NEAREST})
    responses.get(NEAREST, body=DATA, content_type="application/pdf")
    result = downloader(store, []).fetch(target(store), [SOURCE], new_session())
    assert result.source == SOURCE
    assert target(store).final_path.read_bytes() == DATA
    assert [call.request.url for call in responses.calls] == [ASKED, NEAREST]


@responses.activate
def test_not_archived_fails_over_to_the_next_source(store: MirrorStore) -> None:
    responses.get(ASKED, status=404, body="<html>Wayback Machine has not archived that URL.")
    mirror = "https://mirror.example.net/2022/slides/gone.pdf"
    responses.get(mirror, body=DATA)
    sleeps: list[float] = []
    result = downloader(store, sleeps).fetch(target(store), [SOURCE, mirror], new_session())
    assert result.source == mirror
    assert sleeps == []  # "not archived" is not retried


@responses.activate
def test_not_archived_alone_says_so(store: MirrorStore) -> None:
    responses.get(ASKED, status=404, content_type="text/html")
    with pytest.raises(DownloadError, match="not archived in the Wayback Machine"):
        downloader(store, []).fetch(target(store), [SOURCE], new_session())


@responses.activate
def test_rate_limiting_waits_as_the_archive_asks(store: MirrorStore) -> None:
    responses.get(ASKED, status=429, headers={"Retry-After": "7"})
    responses.get(ASKED, status=302, headers={"Location": NEAREST})
    responses.get(NEAREST, body=DATA)
    sleeps: list[float] = []
    downloader(store, sleeps).fetch(target(store), [SOURCE], new_session())
    assert sleeps == [7.0]
    assert target(store).final_path.read_bytes() == DATA


@responses.activate
def test_a_redirect_away_from_the_archive_is_refused(store: MirrorStore) -> None:
    elsewhere = "https://ads.example.com/landing.pdf"
    responses.get(ASKED, status=302, headers={"Location": elsewhere})
    responses.get(elsewhere, body=DATA)
    with pytest.raises(DownloadError, match="redirected away from the archive"):
        downloader(store, []).fetch(target(store), [SOURCE], new_session())


@responses.activate
def test_a_capture_of_other_bytes_is_rejected_not_kept(store: MirrorStore) -> None:
    responses.get(ASKED, body=blob(40_000, seed=12), content_type="application/pdf")
    with pytest.raises(UpstreamChangedError, match="sha256 differs"):
        downloader(store, []).fetch(target(store), [SOURCE], new_session())
    assert not target(store).final_path.exists()


# -- the automatic last resort -------------------------------------------------------------------


def _course(*files: dict[str, Any], homepage: str | None, released: dt.date | None) -> Manifest:
    data = manifest_data(*files)
    if homepage:
        data["homepage"] = homepage
    if released:
        data["released"] = released
    return parse_manifest(tomli_w.dumps(data))


SERVER = "https://speech.ee.ntu.edu.tw/~hylee/ml"


def test_pinned_course_server_files_get_their_capture_as_the_last_source(
    store: MirrorStore,
) -> None:
    pinned = file_entry("pinned", DATA, base_url=SERVER)
    pinned["urls"].append("gdrive:1AbCdEfGhIjKlMn")
    manifest = _course(
        pinned,
        file_entry("unpinned", base_url=SERVER),
        file_entry("elsewhere", DATA, base_url="https://github.com/o/r/raw/v1"),
        homepage=f"{SERVER}/2022-spring.php",
        released=dt.date(2022, 7, 1),
    )
    plan = {item.id: item.sources for item in plan_sync(manifest, store).items}
    assert plan["pinned"] == (
        f"{SERVER}/pinned.pdf",
        "gdrive:1AbCdEfGhIjKlMn",
        f"wayback:20220701/{SERVER}/pinned.pdf",
    )
    assert plan["unpinned"] == (f"{SERVER}/unpinned.pdf",)  # nothing could prove a capture
    assert not any(s.startswith("wayback:") for s in plan["elsewhere"])
    offline = plan_sync(manifest, store, offline=True).items
    assert not any(s.startswith("wayback:") for item in offline for s in item.withheld)


def test_the_capture_date_is_the_release_date_else_the_year() -> None:
    with_date = _course(homepage=f"{SERVER}/x", released=dt.date(2021, 7, 1))
    assert course_archive(with_date) is not None
    assert course_archive(with_date).timestamp == "20210701"  # type: ignore[union-attr]
    without = _course(homepage=f"{SERVER}/x", released=None)
    assert course_archive(without).timestamp == "2022"  # type: ignore[union-attr]
    assert course_archive(_course(homepage=None, released=None)) is None


def test_the_shipped_manifests_get_the_archive_as_last_resort(store: MirrorStore) -> None:
    from lhymirror.manifest.model import load_manifest, shipped_manifest_path

    manifest = load_manifest(shipped_manifest_path(2022))
    item = next(i for i in plan_sync(manifest, store, only=["l01-rules-v2"]).items)
    assert item.sources[-1] == (
        "wayback:20220701/https://speech.ee.ntu.edu.tw/~hylee/ml/ml2022-course-data/rule%20(v2).pdf"
    )


# -- end to end: the course server lost a file, the archive has it ----------------------------


@pytest.fixture(autouse=True)
def instant_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = RetryPolicy(attempts=2, backoff_base=0.0, connect_timeout=2.0, read_timeout=2.0)

    def fast_downloader(store: MirrorStore, **options: Any) -> Any:
        return Downloader(store, policy=policy, sleep=lambda _: None, **options)

    monkeypatch.setattr(api, "build_downloader", fast_downloader)
    monkeypatch.delenv("LHYMIRROR_ROOT", raising=False)
    monkeypatch.delenv("LHYMIRROR_MIRROR", raising=False)


def lost_course_file(
    http_server: CourseServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: bytes
) -> tuple[list[str], Path, str]:
    """A pinned course file the server lost (404) whose capture serves *served*: the sync
    command line, its mirror root and the capture's route."""
    archive = WaybackAdapter(base=f"{http_server.url}/web/")
    monkeypatch.setitem(registry.ADAPTERS, "wayback", archive)
    original = http_server.url_for("/ml2022/lost (v3).pdf")  # never added: the server says 404
    asked = f"/web/20220701id_/{original}"
    nearest = f"/web/20220612101500id_/{original}"
    http_server.set_faults(asked, Fault(redirect_to=http_server.url + nearest))
    http_server.add(nearest, served)
    entry = {
        "id": "lost",
        "kind": "slide",
        "path": "slides/lost (v3).pdf",
        "urls": [original],
        "insecure_http": True,
        "size": len(DATA),
        "sha256": sha(DATA),
    }
    data = manifest_data(entry)
    data.update(homepage=f"{http_server.url}/course.php", released=dt.date(2022, 7, 1))
    manifest = tmp_path / "course.toml"
    manifest.write_text(tomli_w.dumps(data))
    root = tmp_path / "mirror"
    return ["sync", "--manifest", str(manifest), "--root", str(root)], root, nearest


def test_sync_takes_a_lost_course_file_from_the_archive(
    http_server: CourseServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv, root, nearest = lost_course_file(http_server, tmp_path, monkeypatch, DATA)
    status = main(argv)
    capsys.readouterr()
    assert status == 0
    assert (root / "2022" / "slides" / "lost (v3).pdf").read_bytes() == DATA
    assert http_server.count("/ml2022/lost (v3).pdf") >= 1  # the course server was asked first
    assert http_server.count(nearest) == 1


def test_a_capture_of_other_bytes_is_a_copy_that_differs_not_a_changed_upstream(
    http_server: CourseServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = bytes(reversed(DATA))
    argv, root, _ = lost_course_file(http_server, tmp_path, monkeypatch, other)
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 4  # the file's own source is gone; the capture is not the pinned file
    assert "this copy differs from the pinned file" in err
    assert "accept-upstream" not in err and "upstream may have been updated" not in err
    assert err.splitlines()[0].startswith("gone: the link died")
    assert not (root / "2022" / "slides" / "lost (v3).pdf").exists()
