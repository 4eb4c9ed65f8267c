"""What ``sync`` shows while it runs (lhymirror.cli.progress): bar, states, verbose lines."""

from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from factories import blob, file_entry, manifest_data
from lhymirror.cli.progress import MIN_BAR_WIDTH, TransferProgress, fit, shorten, waiting
from lhymirror.fetch.plan import plan_sync
from lhymirror.fetch.report import FileOutcome
from lhymirror.manifest.model import manifest_from_data
from lhymirror.mirror.store import MirrorStore, part_key

YEAR = 2022
BASE = "https://course.example.edu/ml"


def entry(entry_id: str, data: bytes | None = None, **options: Any) -> dict[str, Any]:
    return file_entry(entry_id, data, base_url=BASE, **options)


@pytest.fixture
def store(tmp_path: Path) -> MirrorStore:
    return MirrorStore(tmp_path / "mirror", YEAR)


def progress_for(store: MirrorStore, *files: dict[str, Any], **options: Any) -> Any:
    split = entry("d", blob(600, 21), kind="dataset", path="data/d.tar")
    split["parts"] = [f"{BASE}/d.a", f"{BASE}/d.b"]
    del split["urls"], split["sha256"], split["size"]
    files = files or (entry("a", blob(1000, 20)), entry("b"), split)
    manifest = manifest_from_data(manifest_data(*files, year=YEAR))
    stream = options.pop("stream", None) or io.StringIO()
    progress = TransferProgress(plan_sync(manifest, store), stream=stream, **options)
    return progress, stream


def last_frame(stream: io.StringIO) -> str:
    """The bar as the terminal shows it last (tqdm redraws with carriage returns)."""
    frames = [frame for frame in stream.getvalue().split("\r") if frame.strip()]
    return frames[-1].rstrip("\n")


def test_progress_counts_bytes_from_the_resume_offset(store: MirrorStore) -> None:
    progress, stream = progress_for(store, enabled=False)
    assert progress.total_bytes == 1000
    progress.started("a", 1000, 400)  # resumed: 400 bytes were already held
    progress.advanced("a", 100)
    assert progress.bytes_done == 500
    progress.restarted("a", 0)  # the server ignored the range: start over
    assert progress.bytes_done == 0
    progress.started("b", 250, 0)  # size learnt only now
    progress.started(part_key("d", 0), 300, 0)
    assert progress.total_bytes == 1000 + 250 + 300
    assert progress.active == ["a", "b", part_key("d", 0)]
    progress.file_finished(FileOutcome("d", "data/d.tar", "downloaded"))
    assert progress.active == ["a", "b"]
    assert progress.files_done == 1
    progress.close()
    assert stream.getvalue() == ""


def test_a_retry_is_not_a_line_at_the_default_level(store: MirrorStore) -> None:
    progress, stream = progress_for(store, enabled=False)
    progress.retrying("a", "https://x/a.pdf", "HTTP 503", 2.0)
    progress.file_finished(FileOutcome("a", "slides/a.pdf", "downloaded", size=1000))
    assert stream.getvalue() == ""
    quiet, quiet_stream = progress_for(store, enabled=True, quiet=True)
    quiet.retrying("a", "https://x/a.pdf", "HTTP 503", 2.0)
    quiet.close()
    assert quiet_stream.getvalue() == ""


def test_verbose_prints_every_attempt_and_every_file_as_one_line(store: MirrorStore) -> None:
    progress, stream = progress_for(store, enabled=False, verbose=True)
    progress.retrying("a", "https://x/a.pdf", "HTTP 503", 2.0)
    progress.retrying(part_key("d", 1), "https://x/d.b", "connection failed (refused)", 0.0)
    progress.file_finished(
        FileOutcome("a", "a.pdf", "downloaded", size=1000, source="https://x/a.pdf")
    )
    progress.file_finished(FileOutcome("b", "b.pdf", "failed", reason="HTTP 404"))
    assert stream.getvalue().splitlines() == [
        "retrying slides/a.pdf in 2s: HTTP 503 (https://x/a.pdf)",
        "retrying data/d.tar (part 2/2): connection failed (refused) (https://x/d.b)",
        "downloaded a.pdf (1.0 kB) from https://x/a.pdf",
        "failed b.pdf: HTTP 404",
    ]


def test_a_wait_of_zero_seconds_is_not_announced() -> None:
    assert waiting(0.0) == ""
    assert waiting(0.3) == ""
    assert waiting(4.2) == " in 4s"


class ByteByByteStream(io.StringIO):
    """A stream that lets other threads run between characters, as a slow terminal does."""

    def write(self, text: str) -> int:
        for char in text:
            super().write(char)
            time.sleep(0)
        return len(text)


def test_verbose_lines_from_many_workers_never_interleave(store: MirrorStore) -> None:
    stream = ByteByByteStream()
    progress, _ = progress_for(store, enabled=False, verbose=True, stream=stream)

    def worker(n: int) -> None:
        for attempt in range(30):
            progress.retrying("a", f"https://host{n}/a.pdf", f"HTTP 50{n} try {attempt}", 1.0)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 6 * 30
    pattern = re.compile(
        r"retrying slides/a\.pdf in 1s: HTTP 50(\d) try \d+ \(https://host\1/a\.pdf\)"
    )
    assert all(pattern.fullmatch(line) for line in lines), lines


def test_the_bar_shows_a_retry_as_the_state_of_its_transfer(store: MirrorStore) -> None:
    progress, stream = progress_for(store, enabled=True, ncols=120)
    progress.started("a", 1000, 0)
    progress.retrying("a", "https://x/a.pdf", "HTTP 503", 4.0)
    assert "a.pdf (retrying in 4s)" in last_frame(stream)
    progress.started("a", 1000, 0)  # the next attempt runs
    assert "retrying" not in last_frame(stream)
    progress.close()


def test_the_bar_counts_in_decimal_units_like_the_summary(store: MirrorStore) -> None:
    big = entry("big", blob(10, 1))
    big["size"] = 30_100_000
    del big["sha256"]
    progress, stream = progress_for(store, big, enabled=True, ncols=120)
    progress.started("big", 30_100_000, 0)
    progress.advanced("big", 20_500_000)
    progress._bar.refresh()
    frame = last_frame(stream)
    assert "20.5MB/30.1MB" in frame
    progress.close()


def test_two_long_names_leave_a_usable_bar_at_120_columns(store: MirrorStore) -> None:
    long_a = "slides/" + "Attention is all you need and more, the long version " * 2 + ".pdf"
    long_b = "data/HW04/" + "Dataset of speakers with a very long file name " * 2 + ".tar.gz"
    files = (entry("a", blob(10_000, 1), path=long_a), entry("b", blob(20_000, 2), path=long_b))
    progress, stream = progress_for(store, *files, enabled=True, ncols=120)
    progress.started("a", 10_000, 0)
    progress.started("b", 20_000, 0)
    progress.advanced("a", 5_000)
    progress._bar.refresh()
    frame = last_frame(stream)
    assert len(frame) <= 120
    bar = frame.split("|")[1]
    assert len(bar) >= MIN_BAR_WIDTH
    assert "…" in frame  # the names were shortened, not the bar
    assert frame.count(".pdf") + frame.count(".tar.gz") == 2  # and both are shown
    progress.close()


def test_fit_shortens_names_and_counts_the_rest() -> None:
    assert fit(["a.pdf", "b.pdf"], 40) == "a.pdf, b.pdf"
    assert fit(["x" * 50], 20) == shorten("x" * 50, 20)
    assert len(shorten("x" * 50, 20)) == 20
    assert fit(["first-name.pdf", "second-name.pdf", "third.pdf"], 20).endswith("+2")
    assert fit(["a.pdf", "b.pdf"], 3) == ""


def test_the_bar_shows_a_host_found_down(store: MirrorStore) -> None:
    progress, stream = progress_for(store, enabled=True, ncols=120)
    progress.started("a", 1000, 0)
    progress.host_down("github.com", "connect timed out")
    assert "host down: github.com" in last_frame(stream)
    progress.close()
