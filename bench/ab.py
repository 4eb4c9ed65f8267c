#!/usr/bin/env python3
"""Alternating A/B timing: the only fair comparison on a machine whose speed drifts.

    bench/ab.py --pairs 5 [--prepare CMD] [--check CMD] --a NAME CMD --b NAME CMD [--json FILE]

Runs A, B, A, B, ... (``--pairs`` times each, default 5) through ``bash -c``. Before every run
``--prepare`` runs untimed (e.g. ``rm -rf out``); after every run ``--check`` must exit 0.
Wall time is taken around the child; user+sys CPU and peak RSS come from ``wait4()``.
Prints the median wall and CPU time of each side and the median of the pairwise ratios B/A
(wall and CPU), which cancels drift slower than one pair. Exit 1 when a run or a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float


def run_once(command: str, timeout: float) -> Run:
    """Run ``command`` in its own process group; wall, CPU and peak RSS of its tree."""
    start = time.perf_counter()
    child = subprocess.Popen(
        ["bash", "-c", command],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            os.killpg(child.pid, 9)
            raise SystemExit(f"ab: timed out after {timeout} s: {command}")
        time.sleep(0.002)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    err = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.returncode != 0:
        raise SystemExit(f"ab: exit {child.returncode}: {command}\n{err[-2000:]}")
    # children's rusage also counts grandchildren that were waited for
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def shell(command: str | None) -> None:
    if command and subprocess.run(["bash", "-c", command], check=False).returncode != 0:
        raise SystemExit(f"ab: failed: {command}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--a", nargs=2, metavar=("NAME", "CMD"), required=True, help="reference")
    ap.add_argument("--b", nargs=2, metavar=("NAME", "CMD"), required=True, help="measured")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--prepare", help="untimed, before every run")
    ap.add_argument("--prepare-a", help="untimed, before every A run (after --prepare)")
    ap.add_argument("--prepare-b", help="untimed, before every B run (after --prepare)")
    ap.add_argument("--check", help="untimed, after every run; must exit 0")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json", help="append one JSON line with every run")
    args = ap.parse_args()
    runs: dict[str, list[Run]] = {"a": [], "b": []}
    for _ in range(args.pairs):
        for side, extra in (("a", args.prepare_a), ("b", args.prepare_b)):
            shell(args.prepare)
            shell(extra)
            runs[side].append(run_once(getattr(args, side)[1], args.timeout))
            shell(args.check)
    ratio_wall = statistics.median(
        b.wall / a.wall for a, b in zip(runs["a"], runs["b"], strict=True)
    )
    ratio_cpu = statistics.median(
        b.cpu / a.cpu for a, b in zip(runs["a"], runs["b"], strict=True) if a.cpu
    )
    (na, _), (nb, _) = args.a, args.b
    for side, name in (("a", na), ("b", nb)):
        r = runs[side]
        print(
            f"{name:40s} wall {statistics.median(x.wall for x in r):7.3f} s "
            f"(min {min(x.wall for x in r):.3f}, max {max(x.wall for x in r):.3f})  "
            f"cpu {statistics.median(x.cpu for x in r):7.3f} s  "
            f"rss {max(x.rss_mb for x in r):6.1f} MB"
        )
    print(
        f"{nb} / {na}: median of {args.pairs} pairwise ratios: "
        f"wall {ratio_wall:.3f}x, cpu {ratio_cpu:.3f}x"
    )
    if args.json:
        with Path(args.json).open("a", encoding="utf-8") as out:
            out.write(
                json.dumps(
                    {
                        "a": na,
                        "b": nb,
                        "ratio_wall": ratio_wall,
                        "ratio_cpu": ratio_cpu,
                        "runs": {k: [asdict(x) for x in v] for k, v in runs.items()},
                    }
                )
                + "\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
