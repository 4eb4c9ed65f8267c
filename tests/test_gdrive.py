"""Tests of lhymirror.fetch.gdrive: Drive's pages, from recorded-style fixtures, and transfers."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from responses import matchers

from factories import blob
from lhymirror.core.errors import DownloadError
from lhymirror.fetch.download import Downloader
from lhymirror.fetch.http import RetryPolicy, new_session
from lhymirror.fetch.sources import gdrive
from lhymirror.fetch.transfer import Target
from lhymirror.mirror.store import MirrorStore, PartialState

FIXTURES = Path(__file__).parent / "fixtures" / "gdrive"
FILE_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"
UUID = "5f0e0c1e-7d2b-4f7e-9a52-2c3b1d7e8a90"
DOWNLOAD = "https://drive.usercontent.google.com/download"
PAGE_URL = f"{DOWNLOAD}?id={FILE_ID}&export=download"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# -- pure functions ----------------------------------------------------------------------------


def test_download_url() -> None:
    assert gdrive.download_url(FILE_ID) == PAGE_URL


def test_confirmation_form_is_recognised_with_all_its_fields() -> None:
    page = gdrive.classify_page(fixture("confirm_form.html"), PAGE_URL)
    assert isinstance(page, gdrive.ConfirmPage)
    parts = urlsplit(page.url)
    assert (parts.scheme, parts.hostname, parts.path) == (
        "https",
        "drive.usercontent.google.com",
        "/download",
    )
    assert parse_qs(parts.query) == {
        "id": [FILE_ID],
        "export": ["download"],
        "confirm": ["t"],
        "uuid": [UUID],
    }


def test_older_confirmation_link_is_recognised() -> None:
    legacy = f"https://drive.google.com/uc?export=download&id={FILE_ID}"
    page = gdrive.classify_page(fixture("confirm_link.html"), legacy)
    assert page == gdrive.ConfirmPage(
        f"https://drive.google.com/uc?export=download&confirm=Fk2x&id={FILE_ID}"
    )


def test_quota_page_is_recognised() -> None:
    page = gdrive.classify_page(fixture("quota_exceeded.html"), PAGE_URL)
    assert page == gdrive.QuotaExceeded()
    assert page.reason == "Google Drive quota exceeded for this file; try again later"


@pytest.mark.parametrize("name", ["not_found.html", "need_access.html"])
def test_gone_or_private_pages_are_recognised(name: str) -> None:
    page = gdrive.classify_page(fixture(name), PAGE_URL)
    assert page == gdrive.NotShared()
    assert page.reason == "file does not exist or is not shared publicly"


def test_an_unknown_page_is_named_by_its_title() -> None:
    page = gdrive.classify_page("<html><title>Maintenance</title><p>back soon</p></html>", PAGE_URL)
    assert page == gdrive.UnknownPage("Maintenance")
    assert "'Maintenance'" in page.reason


def test_a_confirmation_leading_away_from_google_is_not_followed() -> None:
    html = fixture("confirm_form.html").replace(
        'action="https://drive.usercontent.google.com/download"',
        'action="https://drive.usercontent.google.com.evil.example/download"',
    )
    assert not isinstance(gdrive.classify_page(html, PAGE_URL), gdrive.ConfirmPage)
    insecure = fixture("confirm_form.html").replace(
        "https://drive.usercontent", "http://drive.usercontent"
    )
    assert not isinstance(gdrive.classify_page(insecure, PAGE_URL), gdrive.ConfirmPage)


# -- transfers -----------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> MirrorStore:
    return MirrorStore(tmp_path / "mirror", 2022)


def drive_target(store: MirrorStore, data: bytes) -> Target:
    return Target(
        "hw2-data",
        store.file_path("hw2/data.zip"),
        len(data),
        hashlib.sha256(data).hexdigest(),
        "hw2/data.zip",
    )


def downloader(store: MirrorStore, sleeps: list[float] | None = None) -> Downloader:
    return Downloader(
        store,
        policy=RetryPolicy(attempts=3),
        sleep=(sleeps if sleeps is not None else []).append,
        rng=random.Random(0),
    )


def first_request(html: str, status: int = 200) -> None:
    responses.get(
        DOWNLOAD,
        body=html,
        status=status,
        content_type="text/html; charset=utf-8",
        match=[matchers.query_param_matcher({"id": FILE_ID, "export": "download"})],
    )


DATA = blob(50_000, 5)


@responses.activate
def test_confirmation_form_is_followed_once(store: MirrorStore) -> None:
    first_request(fixture("confirm_form.html"))
    confirmed = {"id": FILE_ID, "export": "download", "confirm": "t", "uuid": UUID}
    responses.get(
        DOWNLOAD,
        body=DATA,
        content_type="application/octet-stream",
        headers={"Content-Disposition": 'attachment; filename="data.zip"'},
        match=[matchers.query_param_matcher(confirmed)],
    )
    target = drive_target(store, DATA)
    result = downloader(store).fetch(target, [f"gdrive:{FILE_ID}"], new_session())
    assert target.final_path.read_bytes() == DATA
    assert result.source == f"gdrive:{FILE_ID}"
    assert len(responses.calls) == 2


@responses.activate
def test_older_confirmation_link_is_followed(store: MirrorStore) -> None:
    first_request(fixture("confirm_link.html"))
    responses.get(
        "https://drive.google.com/uc",
        body=DATA,
        match=[
            matchers.query_param_matcher({"export": "download", "confirm": "Fk2x", "id": FILE_ID})
        ],
    )
    target = drive_target(store, DATA)
    downloader(store).fetch(target, [f"gdrive:{FILE_ID}"], new_session())
    assert target.final_path.read_bytes() == DATA


@responses.activate
def test_a_second_confirmation_page_fails_the_source(store: MirrorStore) -> None:
    first_request(fixture("confirm_form.html"))
    responses.get(DOWNLOAD, body=fixture("confirm_form.html"), content_type="text/html")
    with pytest.raises(DownloadError, match="asked for confirmation again"):
        downloader(store).fetch(drive_target(store, DATA), [f"gdrive:{FILE_ID}"], new_session())


@responses.activate
def test_quota_exceeded_fails_over_to_the_next_source_without_retrying(store: MirrorStore) -> None:
    first_request(fixture("quota_exceeded.html"))
    mirror = "https://mirror.example.net/2022/hw2/data.zip"
    responses.get(mirror, body=DATA)
    sleeps: list[float] = []
    target = drive_target(store, DATA)
    result = downloader(store, sleeps).fetch(target, [f"gdrive:{FILE_ID}", mirror], new_session())
    assert result.source == mirror
    assert sleeps == []
    assert len(responses.calls) == 2


@responses.activate
def test_quota_exceeded_alone_says_so(store: MirrorStore) -> None:
    first_request(fixture("quota_exceeded.html"))
    with pytest.raises(DownloadError) as caught:
        downloader(store).fetch(drive_target(store, DATA), [f"gdrive:{FILE_ID}"], new_session())
    assert f"gdrive:{FILE_ID}: Google Drive quota exceeded for this file; try again later" in str(
        caught.value
    )
    assert len(responses.calls) == 1


@responses.activate
@pytest.mark.parametrize(("name", "status"), [("not_found.html", 404), ("need_access.html", 200)])
def test_gone_or_private_file_fails_the_source(store: MirrorStore, name: str, status: int) -> None:
    first_request(fixture(name), status=status)
    with pytest.raises(DownloadError, match="file does not exist or is not shared publicly"):
        downloader(store).fetch(drive_target(store, DATA), [f"gdrive:{FILE_ID}"], new_session())
    assert not store.partial_path("hw2-data").exists()


@responses.activate
def test_resume_through_the_confirmation_keeps_range_and_if_range(store: MirrorStore) -> None:
    target = drive_target(store, DATA)
    partial = store.partial_path(target.key)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(DATA[:20_000])
    store.save_partial_state(
        target.key,
        PartialState(PAGE_URL, '"e1"', None, len(DATA), target.expected_sha256, 20_000),
    )
    first_request(fixture("confirm_form.html"))
    responses.get(
        DOWNLOAD,
        status=206,
        body=DATA[20_000:],
        headers={"Content-Range": f"bytes 20000-{len(DATA) - 1}/{len(DATA)}", "ETag": '"e1"'},
    )
    result = downloader(store).fetch(target, [f"gdrive:{FILE_ID}"], new_session())
    for call in responses.calls:
        assert call.request.headers["Range"] == "bytes=20000-"
        assert call.request.headers["If-Range"] == '"e1"'
    assert result.resumed_from == 20_000
    assert target.final_path.read_bytes() == DATA
