"""SIGTERM is handled like Ctrl-C: one line, partial downloads kept, exit status 143."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from httpserver import CourseServer, Fault, pdf_payload
from lhymirror.cli import main
from lhymirror.cli.exitcodes import ExitStatus
from test_sync_e2e import YEAR, Course, cli_process

MiB = 1024 * 1024


@pytest.fixture
def course(http_server: CourseServer, tmp_path: os.PathLike[str]) -> Course:
    return Course(http_server, tmp_path)  # type: ignore[arg-type]


@pytest.mark.slow
def test_sigterm_stops_a_sync_like_ctrl_c_and_keeps_the_partial(
    course: Course, processes: list[subprocess.Popen[str]]
) -> None:
    route = course.slide("big", pdf_payload(MiB, 31))
    course.server.set_faults(route, Fault(trickle=(16 * 1024, 0.02)))  # a slow response
    proc = cli_process(course.args())
    processes.append(proc)
    course.server.wait_for_bytes(route, 100 * 1024, timeout=10)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == (
        "lhymirror: interrupted; run the same command again to resume."
    )
    assert "Traceback" not in err
    assert not course.path("big").exists()
    partial = course.root / str(YEAR) / ".lhymirror" / "partial"
    assert (partial / "big.part").stat().st_size > 0
    assert (partial / "big.json").is_file()
    course.server.set_faults(route, None)
    resumed = cli_process(course.args())
    processes.append(resumed)
    _, err = resumed.communicate(timeout=20)
    assert resumed.returncode == 0, err
    assert course.server.requests[-1].range_header is not None


def test_sigterm_in_process_returns_143_and_restores_the_handler(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lhymirror.cli import list_cmd

    def terminated(args: object) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the signal should have interrupted")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(list_cmd, "run", terminated)
    assert main(["list", "2022"]) == ExitStatus.TERMINATED == 143
    assert "interrupted; run the same command again" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before
