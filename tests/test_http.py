"""Tests of lhymirror.fetch.http: session defaults, retry policy, Retry-After, redirect safety."""

from __future__ import annotations

import datetime as dt
import random

import pytest
import requests
import responses

from lhymirror import __version__
from lhymirror.fetch.http import (
    MAX_REDIRECTS,
    InsecureRedirectError,
    RetryPolicy,
    SafeSession,
    is_retryable_status,
    new_session,
    parse_retry_after,
)

NOW = dt.datetime(2024, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def test_new_session_defaults() -> None:
    session = new_session()
    assert session.verify is True
    assert session.max_redirects == MAX_REDIRECTS == 10
    assert session.headers["Accept-Encoding"] == "identity"
    assert session.headers["User-Agent"].startswith(f"lhymirror/{__version__}")


def test_new_session_custom_user_agent() -> None:
    assert new_session("probe/1.0").headers["User-Agent"] == "probe/1.0"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("soon", None),
        ("0", 0.0),
        ("7", 7.0),
        (" 120 ", 120.0),
        ("Fri, 01 Mar 2024 12:00:30 GMT", 30.0),
        ("Fri, 01 Mar 2024 11:00:00 GMT", 0.0),  # in the past: now
        ("Friday, 01-Mar-24 12:01:00 GMT", 60.0),  # obsolete RFC 850 form
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_naive_now_is_utc() -> None:
    assert parse_retry_after("Fri, 01 Mar 2024 12:00:10 GMT", NOW.replace(tzinfo=None)) == 10.0


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(408, True), (429, True), (500, True), (503, True), (599, True), (404, False), (403, False)],
)
def test_retryable_statuses(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def test_backoff_is_full_jitter_below_an_exponential_cap() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=4.0)
    rng = random.Random(7)
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = [policy.backoff(failures, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # really spread over the whole range


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    policy = RetryPolicy()
    first = [policy.backoff(n, random.Random(3)) for n in range(1, 6)]
    second = [policy.backoff(n, random.Random(3)) for n in range(1, 6)]
    assert first == second


def test_policy_timeout_pair() -> None:
    assert RetryPolicy(connect_timeout=3, read_timeout=9).timeout == (3, 9)


@responses.activate
def test_https_to_http_redirect_is_refused() -> None:
    responses.get(
        "https://example.org/file.pdf", status=302, headers={"Location": "http://example.org/f"}
    )
    responses.get("http://example.org/f", body=b"plain")
    with pytest.raises(InsecureRedirectError, match="https to http"):
        new_session().get("https://example.org/file.pdf", timeout=5)
    assert len(responses.calls) == 1  # the http URL was never asked


@responses.activate
def test_relative_and_https_redirects_are_followed() -> None:
    responses.get("https://a.example/x", status=301, headers={"Location": "/y"})
    responses.get("https://a.example/y", status=302, headers={"Location": "https://b.example/z"})
    responses.get("https://b.example/z", body=b"ok")
    assert new_session().get("https://a.example/x", timeout=5).content == b"ok"


@responses.activate
def test_http_to_https_upgrade_is_allowed() -> None:
    responses.get("http://a.example/x", status=301, headers={"Location": "https://a.example/x"})
    responses.get("https://a.example/x", body=b"ok")
    assert new_session().get("http://a.example/x", timeout=5).content == b"ok"


@responses.activate
def test_redirect_loop_stops_after_ten_hops() -> None:
    for i in range(12):
        responses.get(f"https://a.example/{i}", status=302, headers={"Location": f"/{i + 1}"})
    with pytest.raises(requests.TooManyRedirects):
        new_session().get("https://a.example/0", timeout=5)


# -- the environment's proxies, read once per host -------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/a.pdf",
        "https://speech.ee.ntu.edu.tw/~hylee/ml/a.pdf",
        "https://github.com/x/y/releases/download/v1/a.zip",
        "http://internal.example/b.pdf",
    ],
)
@pytest.mark.parametrize("explicit", [None, {}, {"https": "http://explicit:1"}])
def test_proxies_merge_as_requests_merges_them(
    monkeypatch: pytest.MonkeyPatch, url: str, explicit: dict[str, str] | None
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://tls-proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,internal.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/course-ca.pem")
    ours, theirs = SafeSession(), requests.Session()
    for _ in range(2):  # the second answer comes from the cache
        expected = theirs.merge_environment_settings(
            url, None if explicit is None else dict(explicit), True, None, None
        )
        got = ours.merge_environment_settings(
            url, None if explicit is None else dict(explicit), True, None, None
        )
        assert got == expected
    assert ours.trust_env


def test_the_environment_is_read_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    import lhymirror.fetch.http as http_module

    reads: list[str] = []
    real = http_module.get_environ_proxies

    def counted(url: str, no_proxy: str | None = None) -> dict[str, str]:
        reads.append(url)
        return real(url, no_proxy)

    monkeypatch.setattr(http_module, "get_environ_proxies", counted)
    session = SafeSession()
    for name in ("a", "b", "c"):
        session.merge_environment_settings(
            f"http://127.0.0.1:8080/{name}.pdf", {}, True, None, None
        )
    session.merge_environment_settings("http://127.0.0.2:8080/a.pdf", {}, True, None, None)
    assert reads == ["http://127.0.0.1:8080/a.pdf", "http://127.0.0.2:8080/a.pdf"]
