#!/usr/bin/env python3
"""Class-scale sharing: 6 students sync one course from a slow origin, with and without a swarm.

Loopback only. The origin is an HTTP server with one 4 MiB/s budget shared by all its
connections (a course server, a Drive quota), serving the corpus of ``shared/bench/corpus.py``
as a ``--mirror`` base. Two scenarios, run one after the other:

* plain: 6 ``lhymirror sync`` at once against the origin;
* swarm: a TA syncs once from the origin, makes the class torrent and seeds it; then 6
  ``lhymirror sync --swarm`` at once (DHT and LSD off, the seed named with --peer; students find
  each other by peer exchange). What the swarm does not deliver would come from the origin.

Prints a markdown table: bytes the origin served (and as a multiple of the course's size) and
the time until the last student finished.

    bench/swarm.py --corpus /tmp/swarm-bench/corpus            # made with shared/bench/corpus.py
    bench/swarm.py --corpus DIR --students 6 --rate 4 --lhymirror .venv/bin/lhymirror
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 64 * 1024
MiB = 1024 * 1024


class SharedBudget:
    """One byte rate for every connection together (a token bucket without burst)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.lock = threading.Lock()
        self.free_at = time.monotonic()
        self.sent = 0

    def take(self, nbytes: int) -> None:
        with self.lock:
            start = max(time.monotonic(), self.free_at)
            self.free_at = start + nbytes / self.rate
            self.sent += nbytes
            wait = self.free_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)


class OriginHandler(http.server.SimpleHTTPRequestHandler):
    budget: SharedBudget

    def copyfile(self, source: BinaryIO, outputfile: Any) -> None:  # type: ignore[override]
        while chunk := source.read(CHUNK):
            self.budget.take(len(chunk))
            outputfile.write(chunk)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_origin(corpus: Path, rate: float) -> tuple[http.server.ThreadingHTTPServer, SharedBudget]:
    budget = SharedBudget(rate)
    handler = type("Handler", (OriginHandler,), {"budget": budget})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(corpus))
    )
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, budget


def run_all(commands: list[list[str]]) -> list[float]:
    """Start every command at once; the seconds each took (all must succeed)."""
    started = time.monotonic()
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for c in commands]  # fmt: skip
    times = []
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            sys.exit(f"failed ({process.returncode}): {' '.join(process.args)}\n{err}")
        times.append(time.monotonic() - started)
    return times


LOOPBACK = ["--bind", "127.0.0.1", "--port", "0", "--no-dht", "--no-lsd"]


def plain(a: argparse.Namespace, sync: list[str], budget: SharedBudget, work: Path) -> tuple:
    """Every student from the origin: (origin bytes, last student's seconds)."""
    budget.sent = 0
    times = run_all([[*sync, "--root", str(work / f"plain-{i}")] for i in range(a.students)])
    return budget.sent, max(times)


def swarm(a: argparse.Namespace, sync: list[str], budget: SharedBudget, work: Path) -> tuple:
    """The TA from the origin, then the class from the swarm:
    (origin bytes in all, last student's seconds, the TA's seconds)."""
    budget.sent = 0
    manifest = a.corpus / "bench-manifest.toml"
    ta = work / "ta"
    ta_time = run_all([[*sync, "--root", str(ta)]])[0]
    torrent = work / "class.torrent"
    subprocess.run(
        [a.lhymirror, "torrent", "--manifest", str(manifest), "--root", str(ta),
         "--out", str(torrent), "--quiet"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    seed = subprocess.Popen(
        [a.lhymirror, "seed", "--manifest", str(manifest), "--root", str(ta), *LOOPBACK],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert seed.stderr is not None
        port = int(seed.stderr.readline().rsplit(":", 1)[1])
        students = [*sync, "--swarm", str(torrent), "--peer", f"127.0.0.1:{port}", *LOOPBACK]
        times = run_all(
            [[*students, "--root", str(work / f"swarm-{i}")] for i in range(a.students)]
        )
    finally:
        seed.terminate()
        seed.wait(timeout=30)
    return budget.sent, max(times), ta_time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True, help="made by shared/bench/corpus.py")
    ap.add_argument("--students", type=int, default=6)
    ap.add_argument("--rate", type=float, default=4.0, help="origin budget, MiB/s (default 4)")
    ap.add_argument("--lhymirror", default=shutil.which("lhymirror") or "lhymirror")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp)")
    a = ap.parse_args()
    files = [p for p in a.corpus.rglob("*") if p.is_file() and p.parent != a.corpus]
    course = sum(p.stat().st_size for p in files)
    work = a.work or Path(tempfile.mkdtemp(prefix="lhymirror-swarm-bench-"))
    origin, budget = start_origin(a.corpus, a.rate * MiB)
    base = f"http://127.0.0.1:{origin.server_address[1]}"
    manifest = a.corpus / "bench-manifest.toml"
    sync = [a.lhymirror, "sync", "--manifest", str(manifest), "--mirror", base, "--quiet"]
    try:
        plain_bytes, plain_time = plain(a, sync, budget, work)
        swarm_bytes, swarm_time, ta_time = swarm(a, sync, budget, work)
    finally:
        origin.shutdown()
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"course: {course / MiB:.1f} MiB, {a.students} students at once, origin "
          f"{a.rate:g} MiB/s shared by all its connections\n")  # fmt: skip
    print("| scenario | origin served | × course | last student done |")
    print("|---|---:|---:|---:|")
    print(f"| {a.students} plain `sync` | {plain_bytes / MiB:.1f} MiB | "
          f"{plain_bytes / course:.2f} | {plain_time:.1f} s |")  # fmt: skip
    print(f"| TA `sync`, then {a.students} `sync --swarm` (one seed) | {swarm_bytes / MiB:.1f} "
          f"MiB | {swarm_bytes / course:.2f} | {swarm_time:.1f} s after the TA's "
          f"{ta_time:.1f} s |")  # fmt: skip
    print(
        f"\nlast student, swarm / plain: {swarm_time / plain_time:.2f} "
        f"(counting the TA's sync too: {(swarm_time + ta_time) / plain_time:.2f})"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
