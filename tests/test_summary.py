"""The end of a sync (lhymirror.cli.summary): counts, and the failures grouped by cause."""

from __future__ import annotations

from pathlib import Path

import pytest

from httpserver import CourseServer, Fault, pdf_payload
from lhymirror.cli.summary import problem_lines, summary_counts
from lhymirror.fetch.report import FileOutcome, SyncReport
from lhymirror.fetch.sources.base import most_hopeful
from test_sync_e2e import Course, instant_retries, run_cli  # noqa: F401 - an autouse fixture

YEAR = 2022
REFUSED = "http://127.0.0.1:1"  # nothing listens on port 1: connection refused at once


@pytest.fixture
def course(http_server: CourseServer, tmp_path: Path) -> Course:
    return Course(http_server, tmp_path)


def failed(
    entry_id: str, reason: str, failure: str = "download", cause: str | None = None
) -> FileOutcome:
    return FileOutcome(
        entry_id,
        f"slides/{entry_id}.pdf",
        "failed",
        reason=reason,
        failure=failure,  # type: ignore[arg-type]
        cause=cause,  # type: ignore[arg-type]
    )


def report(*files: FileOutcome) -> SyncReport:
    return SyncReport(YEAR, "/m", files)


def add_command(entry_id: str) -> str:
    return f"lhymirror add 2022 {entry_id} FILE"


def test_counts_use_singular_and_plural_and_skip_zeros() -> None:
    done = report(
        FileOutcome("a", "a.pdf", "downloaded", bytes_received=2_000_000),
        failed("b", "download failed (b.pdf): https://x/b.pdf: HTTP 404 Not Found"),
        FileOutcome("c", "c.zip", "manual", reason="Log in at X."),
    )
    assert summary_counts(done) == "1 downloaded, 1 failed, 1 manual step pending (2.0 MB received)"
    two = report(
        FileOutcome("c", "c.zip", "manual", reason="X"),
        FileOutcome("d", "d.zip", "manual", reason="Y"),
    )
    assert summary_counts(two) == "2 manual steps pending (0 B received)"


@pytest.mark.parametrize(
    ("failure", "cause", "expected"),
    [
        ("download", "gone", "gone"),
        ("download", None, "other"),
        ("integrity", None, "checksum"),
        ("storage", None, "storage"),
        ("download", "offline", "offline"),
    ],
)  # fmt: skip
def test_each_failure_has_its_cause_from_the_library(
    failure: str, cause: str | None, expected: str
) -> None:
    assert failed("x", "whatever the text says: HTTP 404", failure, cause).failure_cause == expected


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        (["gone", "gone"], "gone"),
        (["unreachable", "gone"], "unreachable"),  # first timed out, last 404: not gone
        (["gone", "quota"], "quota"),
        (["gone", "other"], "other"),  # e.g. HTTP 503: a rerun may help
        (["html", "gone"], "html"),
    ],
)  # fmt: skip
def test_a_file_is_gone_only_when_every_source_is(categories: list[str], expected: str) -> None:
    assert most_hopeful(categories) == expected  # type: ignore[arg-type]


def test_failures_are_grouped_by_cause_with_one_hint_each() -> None:
    done = report(
        failed("a", "download failed (slides/a.pdf): https://h/a: HTTP 404 Not Found",
               cause="gone"),
        failed("b", "download failed (slides/b.pdf): https://h/b: HTTP 410 Gone", cause="gone"),
        failed("c", "download failed (slides/c.pdf): https://h/c: connection failed (refused). "
               "Run the same command again to resume.", cause="unreachable"),
        FileOutcome("m", "data/m.zip", "manual", reason="Log in at X."),
    )  # fmt: skip
    lines = problem_lines(done, add_command)
    assert lines == [
        "host not reachable (1 file):",
        "  slides/c.pdf: https://h/c: connection failed (refused)",
        "  hint: Check the network connection and proxy settings (HTTPS_PROXY, ALL_PROXY), or "
        "sync from a classmate's copy with --from URL; then run the same command again.",
        "gone: the link died (HTTP 404/410 or no longer shared) (2 files):",
        "  slides/a.pdf: https://h/a: HTTP 404 Not Found",
        "  slides/b.pdf: https://h/b: HTTP 410 Gone",
        "  hint: The manifest needs a new source for it; tell its maintainers. If you get the "
        "file elsewhere, import it: lhymirror add 2022 ID FILE",
        "manual steps (1 file):",
        "  data/m.zip: Log in at X.",
        "    then import it: lhymirror add 2022 m FILE",
    ]
    assert done.rerun_helps
    assert not report(done.files[0], done.files[1], done.files[3]).rerun_helps


def test_a_long_group_is_cut_unless_verbose() -> None:
    done = report(
        *(
            failed(f"f{n}", "offline: would download from https://h", cause="offline")
            for n in range(25)
        )
    )
    assert len(problem_lines(done, add_command)) == 1 + 10 + 1 + 1
    assert "  … and 15 more (--verbose lists them all)" in problem_lines(done, add_command)
    assert len(problem_lines(done, add_command, verbose=True)) == 1 + 25 + 1


# -- end to end: a mixed run against the test server -------------------------------------------


def test_a_mixed_run_is_summarised_by_cause_with_the_right_counts(
    course: Course, capsys: pytest.CaptureFixture[str]
) -> None:
    course.slide("ok", pdf_payload(5_000, 1))
    course.server.remove(course.slide("gone1", pdf_payload(5_000, 2)))
    course.server.remove(course.slide("gone2", pdf_payload(5_000, 3)))
    html = course.slide("html", pdf_payload(5_000, 4), pin=False)
    course.server.set_faults(html, Fault(body_override=b"<!doctype html><title>Login</title>"))
    changed = course.slide("changed", pdf_payload(5_000, 5))
    course.server.replace(changed, pdf_payload(5_001, 6))
    course.add_entry(
        id="far", kind="slide", path="slides/far.pdf", urls=[f"{REFUSED}/far.pdf"],
        insecure_http=True,
    )  # fmt: skip
    course.add_entry(id="hw", kind="dataset", path="data/hw.zip", manual="Log in at X.")
    status, out, err = run_cli(course.args(), capsys)
    assert status == 5  # the checksum mismatch is the most serious finding
    headings = [line for line in err.splitlines() if not line.startswith(" ")]
    assert headings[:-1] == [
        "127.0.0.1:1: not reachable (Connection refused); skipped for the rest of the run "
        "(1 file had a source there)",
        "host not reachable (1 file):",
        "gone: the link died (HTTP 404/410 or no longer shared) (2 files):",
        "an HTML page came instead of the file (1 file):",
        "checksum mismatch (1 file):",
        "manual steps (1 file):",
    ]
    assert "  slides/far.pdf: " in err and "connection failed" in err
    assert f"kept under {course.root / str(YEAR) / '.lhymirror' / 'rejected'}/" in err
    assert out.strip() == "1 downloaded, 5 failed, 1 manual step pending (5.0 kB received)"


def test_a_rerun_is_suggested_only_when_it_can_help(
    course: Course, capsys: pytest.CaptureFixture[str]
) -> None:
    course.server.remove(course.slide("gone", pdf_payload(5_000, 2)))
    status, _, err = run_cli(course.args(), capsys)
    assert status == 4
    assert "run the same command again" not in err.lower()
    assert err.splitlines()[-1].endswith(
        "Running the same command again will not help; see the reason for each file."
    )
    course.add_entry(
        id="far", kind="slide", path="slides/far.pdf", urls=[f"{REFUSED}/far.pdf"],
        insecure_http=True,
    )  # fmt: skip
    status, _, err = run_cli(course.args(), capsys)
    assert status == 4
    assert err.splitlines()[-1].endswith("Run the same command again to resume.")
    assert "2 files could not be downloaded" in err.splitlines()[-1]


def test_a_file_unreachable_on_one_source_and_gone_on_the_last_may_come_with_a_rerun(
    course: Course, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = course.server.url_for("/gone.pdf")  # nothing served there: HTTP 404
    course.add_entry(
        id="far", kind="slide", path="slides/far.pdf", urls=[f"{REFUSED}/far.pdf", gone],
        insecure_http=True,
    )  # fmt: skip
    status, _, err = run_cli(course.args(), capsys)
    assert status == 4
    headings = [line for line in err.splitlines() if not line.startswith(" ")]
    assert "host not reachable (1 file):" in headings
    assert not any(line.startswith("gone:") for line in headings)
    assert err.splitlines()[-1].endswith("Run the same command again to resume.")


def test_offline_says_not_downloaded_not_failed(
    course: Course, capsys: pytest.CaptureFixture[str]
) -> None:
    course.slide("l01", pdf_payload(5_000, 1))
    course.slide("l02", pdf_payload(5_000, 2))
    status, out, err = run_cli(course.args("--offline"), capsys)
    assert status == 4
    assert "failed" not in err.lower() and "failed" not in out.lower()
    assert err.splitlines()[0] == "not downloaded (offline) (2 files):"
    assert err.splitlines()[-1] == (
        f"lhymirror: error: 2 files not downloaded (offline) ({course.root / str(YEAR)}). "
        "Run it without --offline to download them."
    )
    assert out.strip() == "2 not downloaded (offline) (0 B received)"
    assert course.server.count() == 0


# -- output levels, end to end -----------------------------------------------------------------


def test_retries_are_lines_only_with_verbose(
    course: Course, capsys: pytest.CaptureFixture[str]
) -> None:
    route = course.slide("l01", pdf_payload(5_000, 1))
    course.server.set_faults(route, Fault(statuses=[503]))
    status, out, err = run_cli(course.args(), capsys)
    assert status == 0
    assert "retrying" not in err
    assert out.strip() == "1 downloaded (5.0 kB received)"
    course.path("l01").unlink()
    course.server.set_faults(route, Fault(statuses=[503]))
    status, out, err = run_cli(course.args("-v"), capsys)
    assert status == 0
    url = course.server.url_for(route)
    assert f"retrying slides/l01.pdf: HTTP 503 ({url})" in err.splitlines()  # never "in 0s"
    assert f"downloaded slides/l01.pdf (5.0 kB) from {url}" in err.splitlines()


def test_quiet_prints_only_errors(course: Course, capsys: pytest.CaptureFixture[str]) -> None:
    course.slide("l01", pdf_payload(5_000, 1))
    assert run_cli(course.args("-q"), capsys) == (0, "", "")
    course.server.remove(course.slide("l02", pdf_payload(5_000, 2)))
    status, out, err = run_cli(course.args("--quiet"), capsys)
    assert status == 4 and out == ""
    assert err.splitlines()[0].startswith("gone: the link died")


def test_a_host_found_down_is_one_verbose_line(
    course: Course, capsys: pytest.CaptureFixture[str]
) -> None:
    course.slide("ok", pdf_payload(5_000, 1))
    for name in ("a", "b", "c"):
        course.add_entry(
            id=name, kind="slide", path=f"slides/{name}.pdf", urls=[f"{REFUSED}/{name}.pdf"],
            insecure_http=True,
        )  # fmt: skip
    status, _, err = run_cli(course.args("-v", "--jobs", "1"), capsys)
    assert status == 4
    down = [line for line in err.splitlines() if "skipped from now on" in line]
    assert down == ["127.0.0.1:1: not reachable (Connection refused); skipped from now on"]
