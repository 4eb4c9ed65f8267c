"""``lhymirror check``: every outcome end to end against the 127.0.0.1 server, Drive with responses.

The library function is probed directly for the outcomes; the CLI for the table, ``--json``,
``--markdown``, ``--offline`` and the exit statuses.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import responses
import tomli_w

from factories import blob, manifest_data, sha
from httpserver import CourseServer, Fault
from lhymirror.cli import main
from lhymirror.fetch.check import STATUSES, CheckReport, check_sources
from lhymirror.manifest.model import Manifest, parse_manifest
from lhymirror.mirror.store import FileRecord, MirrorStore

DATA = blob(30_000, seed=3)
FILE_ID = "1AbCdEfGhIjKlMnOpQ"
DRIVE = "https://drive.usercontent.google.com/download"
FIXTURES = Path(__file__).parent / "fixtures" / "gdrive"


def entry(entry_id: str, *urls: str, size: int | None = len(DATA), **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": entry_id,
        "kind": "dataset",
        "path": f"data/{entry_id}.zip",
        "urls": list(urls),
        "insecure_http": True,
        **extra,
    }
    if size is not None:
        fields["size"] = size
    return fields


def manifest(*entries: dict[str, Any]) -> Manifest:
    return parse_manifest(tomli_w.dumps(manifest_data(*entries)))


def statuses(report: CheckReport) -> dict[str, str]:
    return {check.entry_id: check.probe.status for check in report.checks}


def quick(m: Manifest, **options: Any) -> CheckReport:
    return check_sources(m, timeout=(2.0, 2.0), **options)


# -- each outcome --------------------------------------------------------------------------------


def test_each_outcome_against_the_test_server(http_server: CourseServer) -> None:
    alive = http_server.add("/alive.zip", DATA)
    resized = http_server.add("/resized.zip", DATA + b"more")
    http_server.add("/new-home.zip", DATA)
    http_server.set_faults("/moved.zip", Fault(redirect_to="/new-home.zip", redirect_status=301))
    temporary = http_server.add("/temporary.zip", DATA, faults=Fault(redirect_to="/new-home.zip"))
    limited = http_server.url_for("/limited.zip")
    http_server.set_faults("/limited.zip", Fault(statuses=[(429, {"Retry-After": "120"})]))
    broken = http_server.url_for("/broken.zip")
    http_server.set_faults("/broken.zip", Fault(statuses=[503]))
    page = http_server.add("/page.zip", b"<html>login</html>", content_type="text/html")
    m = manifest(
        entry("alive", alive),
        entry("changed", resized),
        entry("moved", http_server.url_for("/moved.zip")),
        entry("temporary", temporary),
        entry("gone", http_server.url_for("/never-there.zip")),
        entry("page", page),
        entry("quota", limited),
        entry("unreachable", broken),
        entry("nobody-home", "http://127.0.0.1:9/closed.zip"),
        entry("kaggle", "kaggle:ml2022spring-hw1/data.zip"),
    )
    report = quick(m)
    assert statuses(report) == {
        "alive": "alive",
        "changed": "changed",
        "moved": "moved",
        "temporary": "alive",  # a temporary redirect is how many hosts serve files
        "gone": "gone",
        "page": "gone",
        "quota": "quota",
        "unreachable": "unreachable",
        "nobody-home": "unreachable",
        "kaggle": "unknown",
    }
    by_id = {check.entry_id: check.probe for check in report.checks}
    assert by_id["alive"].size == len(DATA) and by_id["alive"].etag
    assert by_id["changed"].detail == f"size {len(DATA) + 4} B, manifest {len(DATA)} B"
    assert by_id["moved"].location == http_server.url_for("/new-home.zip")
    assert "retry after 120" in by_id["quota"].detail
    assert "Kaggle credentials" in by_id["kaggle"].detail
    assert report.counts == {
        "alive": 2, "changed": 1, "moved": 1, "gone": 2, "quota": 1, "unreachable": 2,
        "unknown": 1,
    }  # fmt: skip
    assert set(report.counts) == set(STATUSES)


def test_no_body_is_downloaded(http_server: CourseServer) -> None:
    url = http_server.add("/big.zip", blob(2_000_000, seed=4))
    quick(manifest(entry("big", url, size=2_000_000)))
    [request] = http_server.requests
    assert request.method == "HEAD" and request.body_bytes_sent == 0


@pytest.mark.parametrize("refusal", [405, 501, 403])  # 403: GET-only signed storage URLs
def test_a_server_refusing_head_is_asked_for_one_byte(
    http_server: CourseServer, refusal: int
) -> None:
    url = http_server.add("/nohead.zip", DATA, faults=Fault(statuses=[refusal]))
    report = quick(manifest(entry("nohead", url)))
    assert statuses(report) == {"nohead": "alive"}
    head, get = http_server.requests
    assert (head.method, head.status) == ("HEAD", refusal)
    assert (get.method, get.range_header, get.status) == ("GET", "bytes=0-0", 206)
    assert get.body_bytes_sent <= 1
    assert report.checks[0].probe.size == len(DATA)  # from Content-Range


def test_validators_are_compared_with_what_the_mirror_recorded(
    http_server: CourseServer, tmp_path: Path
) -> None:
    url = http_server.add("/same-size.zip", DATA)
    store = MirrorStore(tmp_path / "mirror", 2022)
    store.ensure_dirs()
    record = FileRecord(
        "rev", "data/rev.zip", len(DATA), sha(DATA), 0, "2022-07-01T00:00:00Z",
        source=url, etag='"an-older-revision"',
    )  # fmt: skip
    store.save_record(record)
    m = manifest(entry("rev", url))
    report = quick(m, records=store.record)
    assert statuses(report) == {"rev": "changed"}
    assert 'recorded "an-older-revision"' in report.checks[0].probe.detail
    # a record of another source says nothing about this one
    store.save_record(FileRecord(**{**record.__dict__, "source": "https://elsewhere/x"}))
    assert statuses(quick(m, records=store.record)) == {"rev": "alive"}


def test_parts_are_checked_one_by_one(http_server: CourseServer) -> None:
    first = http_server.add("/d.partaa", DATA)
    m = manifest(
        {
            "id": "split", "kind": "dataset", "path": "data/split.bin", "insecure_http": True,
            "parts": [{"urls": [first], "size": len(DATA)}, http_server.url_for("/d.partab")],
        }
    )  # fmt: skip
    report = quick(m)
    assert [(c.part, c.probe.status) for c in report.checks] == [(0, "alive"), (1, "gone")]


@responses.activate
@pytest.mark.parametrize(
    ("page", "status", "expected"),
    [
        ("confirm_form.html", 200, "alive"),
        ("quota_exceeded.html", 200, "quota"),
        ("not_found.html", 404, "gone"),
        ("need_access.html", 200, "gone"),
    ],
)
def test_drive_pages_are_recognised(page: str, status: int, expected: str) -> None:
    body = (FIXTURES / page).read_text(encoding="utf-8")
    responses.get(DRIVE, body=body, status=status, content_type="text/html; charset=utf-8")
    report = quick(manifest(entry("drive", f"gdrive:{FILE_ID}")))
    assert statuses(report) == {"drive": expected}
    assert responses.calls[0].request.headers["Range"] == "bytes=0-0"


@responses.activate
def test_a_drive_file_answering_with_its_first_byte_is_alive() -> None:
    responses.get(
        DRIVE, body=DATA[:1], status=206,
        headers={"Content-Range": f"bytes 0-0/{len(DATA)}"}, content_type="application/zip",
    )  # fmt: skip
    assert statuses(quick(manifest(entry("drive", f"gdrive:{FILE_ID}")))) == {"drive": "alive"}


@responses.activate
def test_an_unarchived_wayback_source_is_gone() -> None:
    original = "https://speech.ee.ntu.edu.tw/a.pdf"
    responses.head(f"https://web.archive.org/web/2022id_/{original}", status=404)
    m = manifest(entry("w", original, f"wayback:2022/{original}", sha256="a" * 64))
    responses.head(original, body=b"", headers={"Content-Length": str(len(DATA))})
    report = quick(m)
    assert [c.probe.status for c in report.checks] == ["alive", "gone"]
    assert report.checks[1].probe.detail == "not archived in the Wayback Machine"


def test_at_most_per_host_requests_go_to_one_host_at_a_time() -> None:
    busy: dict[str, int] = {}
    peak: dict[str, int] = {}
    lock = threading.Lock()

    class Answer:
        status_code, headers, history, url = 200, {"Content-Length": "1"}, [], ""

        def __enter__(self) -> Answer:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def close(self) -> None:
            pass

    class Session:
        def head(self, url: str, **_: Any) -> Answer:
            host = url.split("/")[2]
            with lock:
                busy[host] = busy.get(host, 0) + 1
                peak[host] = max(peak.get(host, 0), busy[host])
            time.sleep(0.01)
            with lock:
                busy[host] -= 1
            return Answer()

    urls = [f"https://{host}/{n}.zip" for host in ("a.example", "b.example") for n in range(8)]
    m = manifest(*(entry(f"f{i}", url, size=1) for i, url in enumerate(urls)))
    report = check_sources(m, jobs=8, per_host=2, session_factory=Session)  # type: ignore[arg-type]
    assert set(statuses(report).values()) == {"alive"}
    assert max(peak.values()) <= 2


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture
def course(http_server: CourseServer, tmp_path: Path) -> Any:
    def write(*entries: dict[str, Any]) -> list[str]:
        path = tmp_path / "course.toml"
        path.write_text(tomli_w.dumps(manifest_data(*entries)))
        return ["check", "--manifest", str(path), "--root", str(tmp_path / "mirror")]

    return write


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main([*args, "--timeout", "2"])
    out, err = capsys.readouterr()
    return int(status), out, err


def test_all_alive_exits_0_with_a_table(
    http_server: CourseServer, course: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url = http_server.add("/a.zip", DATA)
    status, out, _ = run(course(entry("a", url)), capsys)
    assert status == 0
    assert out.splitlines()[0].split()[:3] == ["a", "alive", url]
    assert "1 source checked: 1 alive" in out


def test_gone_exits_4_and_changed_exits_5(
    http_server: CourseServer, course: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url = http_server.add("/a.zip", DATA)
    gone = http_server.url_for("/gone.zip")
    status, _, err = run(course(entry("a", url, gone)), capsys)
    assert status == 4 and "1 source gone or unreachable" in err
    status, _, err = run(course(entry("a", url, gone), entry("b", url, size=1)), capsys)
    assert status == 5 and "1 source changed" in err  # changed outranks gone


def test_json_and_markdown_reports(
    http_server: CourseServer, course: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = http_server.add("/a.zip", DATA)
    report = tmp_path / "report.md"
    args = course(entry("a", url, http_server.url_for("/gone.zip")))
    status, out, _ = run([*args, "--json", "--markdown", str(report)], capsys)
    assert status == 4
    data = json.loads(out)
    assert data["counts"]["alive"] == 1 and data["counts"]["gone"] == 1
    assert [s["state"] for s in data["sources"]] == ["alive", "gone"]
    text = report.read_text(encoding="utf-8")
    assert "| Entry | Status | Source | Detail |" in text
    assert f"| a | **gone** | <{http_server.url_for('/gone.zip')}> | HTTP 404 |" in text


def test_offline_is_refused(course: Any, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run([*course(entry("a", "https://x.example/a.zip")), "--offline"], capsys)
    assert status == 2 and "check needs the network" in err


def test_an_unknown_id_is_a_usage_error(course: Any, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run([*course(entry("a", "https://x.example/a.zip")), "--only", "b"], capsys)
    assert status == 2 and "no such entry (b)" in err


def test_head_refused_statuses_step_is_consumed_once(http_server: CourseServer) -> None:
    """The fake's statuses sequence answers the HEAD only (guards the test above)."""
    url = http_server.add("/x.zip", DATA, faults=Fault(statuses=[405]))
    quick(manifest(entry("x", url)))
    assert [r.status for r in http_server.requests] == [405, 206]


@responses.activate
def test_the_archive_option_asks_for_the_last_resort_capture_of_pinned_files() -> None:
    server = "https://speech.ee.ntu.edu.tw/ml"
    data = manifest_data(
        entry("pinned", f"{server}/a.pdf", sha256="a" * 64),
        entry("unpinned", f"{server}/b.pdf"),
    )
    data.update(homepage=f"{server}/2022.php", released=dt.date(2022, 7, 1))
    m = parse_manifest(tomli_w.dumps(data))
    capture = f"https://web.archive.org/web/20220701id_/{server}/a.pdf"
    nearest = f"https://web.archive.org/web/20220614101010id_/{server}/a.pdf"
    responses.head(f"{server}/a.pdf", status=404)
    responses.head(f"{server}/b.pdf", status=404)
    responses.head(capture, status=302, headers={"Location": nearest})
    responses.head(nearest, headers={"Content-Length": str(len(DATA))})
    report = quick(m, archive=True)
    assert [(c.entry_id, c.source, c.probe.status) for c in report.checks] == [
        ("pinned", f"{server}/a.pdf", "gone"),
        ("pinned", f"wayback:20220701/{server}/a.pdf", "alive"),
        ("unpinned", f"{server}/b.pdf", "gone"),
    ]
    assert [c.source for c in quick(m).checks] == [f"{server}/a.pdf", f"{server}/b.pdf"]


def test_no_answer_at_all_says_so(course: Any, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(course(entry("a", "http://127.0.0.1:9/a.zip")), capsys)
    assert status == 4 and "no source answered" in err and "connection" in err
