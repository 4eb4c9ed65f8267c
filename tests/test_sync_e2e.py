"""``lhymirror sync`` end to end against the real test HTTP server.

Most tests call the CLI in-process (``lhymirror.cli.main``) with the downloader's sleeps made
instant; the ones that need a real second process (SIGKILL mid-transfer, two syncs at once)
run ``python -m lhymirror`` with PYTHONPATH pointing at the package actually imported.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w

import lhymirror
from factories import sha
from httpserver import CourseServer, Fault, pdf_payload
from lhymirror import api
from lhymirror.cli import main, sync_cmd
from lhymirror.fetch.download import Downloader
from lhymirror.fetch.http import RetryPolicy
from lhymirror.mirror.store import MirrorStore

YEAR = 2022
MiB = 1024 * 1024
FAST_POLICY = RetryPolicy(attempts=2, backoff_base=0.0, connect_timeout=2.0, read_timeout=2.0)


@pytest.fixture(autouse=True)
def instant_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process CLI's downloader never really sleeps, and gives up fast."""

    def fast_downloader(store: MirrorStore, **options: Any) -> Any:
        return Downloader(store, policy=FAST_POLICY, sleep=lambda _: None, **options)

    monkeypatch.setattr(api, "build_downloader", fast_downloader)
    monkeypatch.delenv("LHYMIRROR_ROOT", raising=False)
    monkeypatch.delenv("LHYMIRROR_MIRROR", raising=False)


class Course:
    """A manifest in tmp_path whose files the test server serves."""

    def __init__(self, server: CourseServer, tmp_path: Path) -> None:
        self.server = server
        self.tmp = tmp_path
        self.root = tmp_path / "mirror"
        self.manifest = tmp_path / "course.toml"
        self.files: list[dict[str, Any]] = []
        self.data: dict[str, bytes] = {}

    def slide(self, entry_id: str, data: bytes, *, pin: bool = True, **extra: Any) -> str:
        route = f"/ml{YEAR}/{entry_id}.pdf"
        url = self.server.add(route, data)
        fields: dict[str, Any] = {
            "id": entry_id,
            "kind": "slide",
            "path": f"slides/{entry_id}.pdf",
            "urls": [url],
            "insecure_http": True,
        }
        if pin:
            fields.update(size=len(data), sha256=sha(data))
        fields.update(extra)
        self.files.append(fields)
        self.data[entry_id] = data
        return route

    def add_entry(self, **fields: Any) -> None:
        self.files.append(fields)

    def split(self, pieces: list[bytes], faults: dict[int, Fault] | None = None) -> list[str]:
        """A pinned split file ``data/hw.bin`` whose parts the server serves; their routes."""
        routes = [f"/data/hw.parta{chr(ord('a') + i)}" for i in range(len(pieces))]
        urls = [
            self.server.add(route, piece, faults=(faults or {}).get(i))
            for i, (route, piece) in enumerate(zip(routes, pieces, strict=True))
        ]
        whole = b"".join(pieces)
        self.add_entry(
            id="hw-data", kind="dataset", path="data/hw.bin", parts=urls, insecure_http=True,
            size=len(whole), sha256=sha(whole),
        )  # fmt: skip
        return routes

    def write(self) -> Path:
        manifest = {"schema": 1, "course": "ML", "year": YEAR, "version": "1", "files": self.files}
        self.manifest.write_text(tomli_w.dumps(manifest))
        return self.manifest

    def path(self, entry_id: str) -> Path:
        return self.root / str(YEAR) / "slides" / f"{entry_id}.pdf"

    def args(self, *extra: str) -> list[str]:
        self.write()
        return ["sync", "--manifest", str(self.manifest), "--root", str(self.root), *extra]


@pytest.fixture
def course(http_server: CourseServer, tmp_path: Path) -> Course:
    return Course(http_server, tmp_path)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(args)
    out, err = capsys.readouterr()
    return status, out, err


# -- the everyday path ---------------------------------------------------------------------


def test_sync_downloads_everything_and_a_second_run_sends_no_request(
    course: Course, capsys: pytest.CaptureFixture[str]
) -> None:
    course.slide("l01", pdf_payload(300_000, 1))
    course.slide("l02", pdf_payload(200_000, 2), pin=False)
    status, out, err = run_cli(course.args(), capsys)
    assert status == 0
    assert "2 downloaded" in out
    assert err == ""  # no progress bar when stdout is not a terminal
    assert course.path("l01").read_bytes() == course.data["l01"]
    course.server.reset_log()
    started = time.monotonic()
    status, out, _ = run_cli(course.args(), capsys)
    assert status == 0
    assert course.server.count() == 0
    assert "2 already up to date" in out
    assert time.monotonic() - started < 2


def test_json_report(course: Course, capsys: pytest.CaptureFixture[str]) -> None:
    route = course.slide("l01", pdf_payload(50_000, 3))
    status, out, _ = run_cli(course.args("--json"), capsys)
    report = json.loads(out)
    assert status == 0
    assert report["complete"] is True
    assert report["files"][0]["state"] == "downloaded"
    assert report["files"][0]["source"] == course.server.url_for(route)


def test_dry_run_touches_nothing(course: Course, capsys: pytest.CaptureFixture[str]) -> None:
    course.slide("l01", pdf_payload(50_000, 4))
    status, out, _ = run_cli(course.args("--dry-run"), capsys)
    assert status == 0
    assert "fetch" in out
    assert "l01" in out
    assert not course.root.exists()
    assert course.server.count() == 0
    status, out, _ = run_cli(course.args("--dry-run", "--json"), capsys)
    assert json.loads(out)["files"][0]["state"] == "fetch"


def test_split_file_is_downloaded_in_parts_and_joined(
    course: Course, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = pdf_payload(700_000, 5)
    course.split([whole[:300_000], whole[300_000:]])
    # The whole is hashed as the parts stream in: the joined file is never read again.
    monkeypatch.setattr("lhymirror.fetch.job.hash_file", lambda path: pytest.fail(f"read {path}"))
    status, _, _ = run_cli(course.args(), capsys)
    assert status == 0
    assert (course.root / str(YEAR) / "data" / "hw.bin").read_bytes() == whole
    assert not list((course.root / str(YEAR) / ".lhymirror" / "partial").iterdir())


def test_an_interrupted_split_file_resumes_in_the_part_it_stopped_in(
    course: Course, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = pdf_payload(900_000, 9)
    pieces = [whole[:300_000], whole[300_000:600_000], whole[600_000:]]
    cut = Fault(cut_after=100_000, cut_times=FAST_POLICY.attempts)  # each attempt gets 100 kB
    routes = course.split(pieces, faults={1: cut})
    status, _, _ = run_cli(course.args(), capsys)
    assert status == 4
    course.server.reset_log()

    status, _, _ = run_cli(course.args(), capsys)

    assert status == 0
    assert (course.root / str(YEAR) / "data" / "hw.bin").read_bytes() == whole
    assert course.server.count(routes[0]) == 0  # the finished part stayed in the assembly
    resumed_at = 100_000 * FAST_POLICY.attempts
    assert [r.range_header for r in course.server.requests if r.path == routes[1]] == [
        f"bytes={resumed_at}-"
    ]
    assert course.server.bytes_sent() <= 600_000 - resumed_at + 64 * 1024
    assert not list((course.root / str(YEAR) / ".lhymirror" / "partial").iterdir())


# -- other sources -------------------------------------------------------------------------


def test_mirror_is_tried_before_upstream(
    course: Course, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pdf_payload(80_000, 6)
    upstream = "https://127.0.0.1:1/ml2022/l01.pdf"  # never reachable: must not be needed
    course.add_entry(
        id="l01", kind="slide", path="slides/l01.pdf", urls=[upstream],
        size=len(data), sha256=sha(data),
    )  # fmt: skip
    course.server.add("/wget/127.0.0.1:1/ml2022/l01.pdf", data)
    status, _, _ = run_cli(course.args("--mirror", f"{course.server.url}/wget"), capsys)
    assert status == 0
    assert course.server.count("/wget/127.0.0.1:1/ml2022/l01.pdf") == 1
    assert course.path("l01").read_bytes() == data


def test_mirror_from_the_environment_and_a_bad_mirror_falls_back_to_upstream(
    course: Course, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    route = course.slide("l01", pdf_payload(80_000, 7))
    host = f"127.0.0.1:{course.server.port}"
    course.server.add(f"/wget/{host}{route}", pdf_payload(80_000, 8))  # wrong bytes
    monkeypatch.setenv("LHYMIRROR_MIRROR", f"{course.server.url}/nothing, {course.server.url}/wget")
    status, _, _ = run_cli(course.args(), capsys)
    assert status == 0
    assert course.server.count(f"/wget/{host}{route}") == 1
    assert course.server.count(route) == 1
    assert course.path("l01").read_bytes() == course.data["l01"]


def test_from_a_local_folder_needs_no_network(
    course: Course, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    course.slide("l01", pdf_payload(60_000, 9))
    other = tmp_path / "usb"
    copy = other / str(YEAR) / "slides" / "l01.pdf"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(course.data["l01"])
    status, _, _ = run_cli(course.args("--from", str(other), "--offline"), capsys)
    assert status == 0
    assert course.server.count() == 0
    assert course.path("l01").read_bytes() == course.data["l01"]


def test_from_an_http_base(course: Course, capsys: pytest.CaptureFixture[str]) -> None:
    course.slide("l01", pdf_payload(60_000, 10))
    course.server.add(f"/other/{YEAR}/slides/l01.pdf", course.data["l01"])
    status, _, _ = run_cli(course.args("--from", f"{course.server.url}/other/"), capsys)
    assert status == 0
    assert course.server.count(f"/other/{YEAR}/slides/l01.pdf") == 1
    assert course.server.count(f"/ml{YEAR}/l01.pdf") == 0


# -- exit codes ------------------------------------------------------------------------------


def test_offline_with_missing_files_lists_what_is_needed(
    course: Course, capsys: pytest.CaptureFixture[str]
) -> None:
    route = course.slide("l01", pdf_payload(60_000, 11))
    status, _, err = run_cli(course.args("--offline"), capsys)
    assert status == 4
    assert course.server.url_for(route) in err
    assert course.server.count() == 0
    assert err.splitlines()[-1].endswith("Run it without --offline to download them.")


def test_unreachable_file_exits_4_with_a_resume_hint(
    course: Course, capsys: pytest.CaptureFixture[str]
) -> None:
    course.add_entry(
        id="l01", kind="slide", path="slides/l01.pdf", urls=["http://127.0.0.1:1/l01.pdf"],
        insecure_http=True,
    )  # fmt: skip
    course.slide("l02", pdf_payload(10_000, 12))  # the network itself works
    status, _, err = run_cli(course.args(), capsys)
    assert status == 4
    lines = err.splitlines()
    at = lines.index("host not reachable (1 file):")
    assert lines[at + 1].startswith("  slides/l01.pdf: http://127.0.0.1:1/l01.pdf: ")
    assert err.splitlines()[-1] == (
        f"lhymirror: error: 1 file could not be downloaded ({course.root / str(YEAR)}). "
        "Run the same command again to resume."
    )


def test_changed_upstream_exits_5_and_accept_upstream_takes_it(
    course: Course, capsys: pytest.CaptureFixture[str]
) -> None:
    route = course.slide("l01", pdf_payload(60_000, 13))
    newer = pdf_payload(61_000, 14)
    course.server.replace(route, newer)
    status, _, err = run_cli(course.args(), capsys)
    assert status == 5
    assert "upstream" in err
    assert err.splitlines()[-1].startswith("lhymirror: error: 1 file did not verify (")
    assert not course.path("l01").exists()
    status, _, _ = run_cli(course.args("--accept-upstream", "l01"), capsys)
    assert status == 0
    assert course.path("l01").read_bytes() == newer


def test_manual_step_exits_7_with_the_import_command(
    course: Course, capsys: pytest.CaptureFixture[str]
) -> None:
    course.slide("l01", pdf_payload(10_000, 15))
    course.add_entry(id="hw-data", kind="dataset", path="data/hw.zip", manual="Log in at X.")
    status, _, err = run_cli(course.args(), capsys)
    assert status == 7
    assert "Log in at X." in err
    assert err.splitlines()[-1].startswith("lhymirror: error: 1 manual step pending (")
    assert f"lhymirror add --manifest {course.manifest} hw-data FILE" in err


def test_failures_outrank_manual_steps(course: Course, capsys: pytest.CaptureFixture[str]) -> None:
    route = course.slide("l01", pdf_payload(10_000, 16))
    course.server.remove(route)
    course.add_entry(id="hw-data", kind="dataset", path="data/hw.zip", manual="Log in at X.")
    assert run_cli(course.args(), capsys)[0] == 4


# -- real processes ----------------------------------------------------------------------------


def cli_process(args: list[str], **popen: Any) -> subprocess.Popen[str]:
    """``python -m lhymirror`` of the package the tests imported (source tree or installed)."""
    env = {**os.environ, "PYTHONPATH": str(Path(lhymirror.__file__).resolve().parents[1])}
    return subprocess.Popen(
        [sys.executable, "-m", "lhymirror", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **popen,
    )


def test_a_quiet_sync_with_nothing_to_transfer_loads_no_network_or_progress_library(
    course: Course,
) -> None:
    data = pdf_payload(20_000, 10)
    course.slide("l01", data)
    hand_downloaded = course.tmp / "l01.pdf"
    hand_downloaded.write_bytes(data)
    add = ["add", "--manifest", str(course.write()), "l01", str(hand_downloaded)]
    code = (
        "import sys; from lhymirror.cli import main; "
        f"assert main({[*add, '--root', str(course.root)]!r}) == 0; "
        f"assert main({course.args()!r}) == 0; "
        "print(sorted({'requests', 'urllib3', 'tqdm'} & set(sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(lhymirror.__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines()[-1] == "[]"
    assert course.server.count() == 0


@pytest.mark.slow
def test_resume_after_the_process_is_killed_mid_transfer(
    course: Course, processes: list[subprocess.Popen[str]]
) -> None:
    data = pdf_payload(2 * MiB + 12_345, 17)
    route = course.slide("big", data)
    course.server.set_faults(route, Fault(trickle=(32 * 1024, 0.02)))
    proc = cli_process(course.args())
    processes.append(proc)
    held = course.root / str(YEAR) / ".lhymirror" / "partial" / "big.part"
    sidecar = held.with_suffix(".json")  # written once the first MiB is held
    course.server.wait_for_bytes(route, MiB, timeout=10)
    deadline = time.monotonic() + 10
    while not sidecar.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert not course.path("big").exists()
    assert sidecar.exists() and held.stat().st_size >= MiB
    course.server.set_faults(route, None)
    second = cli_process(course.args())
    processes.append(second)
    _, err = second.communicate(timeout=20)
    assert second.returncode == 0, err
    assert course.path("big").read_bytes() == data
    last = course.server.requests[-1]
    assert last.range_header is not None and last.range_header.startswith("bytes=")
    assert course.server.bytes_sent(route) <= len(data) + MiB + 32 * 1024


@pytest.mark.slow
def test_a_second_sync_waits_then_exits_clearly(
    course: Course,
    processes: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    route = course.slide("big", pdf_payload(MiB, 18))
    course.server.set_faults(route, Fault(trickle=(16 * 1024, 0.05)))
    proc = cli_process(course.args())
    processes.append(proc)
    course.server.wait_for_bytes(route, 16 * 1024, timeout=10)  # the first holds the lock
    monkeypatch.setattr(sync_cmd, "LOCK_WAIT", 0.3)
    status, _, err = run_cli(course.args(), capsys)
    assert status == 6
    assert "in use by another lhymirror command" in err
    assert f"pid {proc.pid}" in err


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_keeps_the_partial(
    course: Course, processes: list[subprocess.Popen[str]]
) -> None:
    route = course.slide("big", pdf_payload(MiB, 19))
    course.server.set_faults(route, Fault(trickle=(16 * 1024, 0.02)))
    proc = cli_process(course.args())
    processes.append(proc)
    course.server.wait_for_bytes(route, 100 * 1024, timeout=10)
    partial = course.root / str(YEAR) / ".lhymirror" / "partial"
    # Bytes the server sent may still sit in socket buffers on a busy machine: interrupt once
    # the client has written some, which is what "keeps the partial" is about.
    deadline = time.monotonic() + 10
    while not _has_bytes(partial / "big.part") and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert "interrupted; run the same command again to resume" in err
    assert "Traceback" not in err
    assert not course.path("big").exists()
    assert (partial / "big.part").stat().st_size > 0
    assert (partial / "big.json").is_file()


def test_a_symlink_inside_the_mirror_is_refused_and_nothing_is_written_through_it(
    course: Course, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    course.slide("l01", pdf_payload(10_000, 17))
    outside = tmp_path / "outside"
    outside.mkdir()
    (course.root / str(YEAR)).mkdir(parents=True)
    (course.root / str(YEAR) / "slides").symlink_to(outside)
    status, _, err = run_cli(course.args(), capsys)
    assert status == 5  # not intact, as status, verify --year and pack say too
    assert "symlink inside the mirror" in err
    assert list(outside.iterdir()) == []


def test_only_files_that_did_not_verify_are_counted_as_such(
    course: Course, capsys: pytest.CaptureFixture[str]
) -> None:
    route = course.slide("l01", pdf_payload(60_000, 13))
    course.server.replace(route, pdf_payload(61_000, 14))
    gone = course.slide("l02", pdf_payload(10_000, 19))
    course.server.remove(gone)  # a download failure besides
    status, _, err = run_cli(course.args(), capsys)
    assert status == 5
    assert err.splitlines()[-1].startswith("lhymirror: error: 1 file did not verify (")


def test_kaggle_without_credentials_is_a_manual_step_with_the_right_import_command(
    course: Course,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    course.slide("l01", pdf_payload(10_000, 20))
    course.add_entry(
        id="hw-data", kind="dataset", path="data/hw.csv", urls=["kaggle:ml2022spring-hw1/a.csv"]
    )
    status, _, err = run_cli(course.args(), capsys)
    assert status == 7
    assert "https://www.kaggle.com/settings" in err
    assert f"lhymirror add --manifest {course.manifest} hw-data FILE" in err
    assert course.server.count() == 1  # only the slide was requested


def _has_bytes(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False
