"""How ``sync`` shows its work: a tqdm progress bar on stderr, and the summary at the end.

The bar counts bytes of every file to fetch (a resumed file starts at the offset it resumes
from) and shows how many files are done and which transfers are running. It is off when stdout
is not a terminal or with ``--quiet``; retries are then still reported one line each (unless
``--quiet``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from lhymirror.cli.common import format_size
from lhymirror.fetch.plan import SyncPlan
from lhymirror.fetch.report import FileOutcome, SyncReport

MAX_ACTIVE_SHOWN = 3
RESUME_HINT = "run the same command again to resume"


class TransferProgress:
    """Renders transfer events (from worker threads) as one progress bar; a ``SyncEvents``."""

    def __init__(
        self,
        plan: SyncPlan,
        *,
        enabled: bool,
        quiet: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._quiet = quiet
        self._lock = threading.Lock()
        self._names = _names_by_key(plan)
        self._entry_of = _entry_ids_by_key(plan)
        self._known_size = {item.id for item in plan.items if item.size is not None}
        self.total_bytes = plan.bytes_to_fetch()
        self.files_total = len(plan.items)
        self.files_done = 0
        self.held: dict[str, int] = {}  # bytes counted per transfer key
        self._done = 0  # sum of held, kept up to date (advanced() runs once per chunk)
        self.active: list[str] = []
        self._bar: Any = self._new_bar() if enabled else None
        self._refresh()

    @property
    def bytes_done(self) -> int:
        """Bytes of the files being fetched that are on disk now (resumed bytes included)."""
        return self._done

    # -- TransferEvents ------------------------------------------------------------------

    def started(self, key: str, total: int | None, offset: int) -> None:
        """A transfer began (at *offset* when resuming)."""
        with self._lock:
            entry_id = self._entry_of.get(key, key)
            if total is not None and entry_id not in self._known_size and key not in self.held:
                self.total_bytes += total  # size learnt only now
            self._set_held(key, offset)
            if key not in self.active:
                self.active.append(key)
            self._refresh()

    def advanced(self, key: str, nbytes: int) -> None:
        """*nbytes* more bytes of *key* arrived."""
        with self._lock:
            self._set_held(key, self.held.get(key, 0) + nbytes)

    def restarted(self, key: str, offset: int) -> None:
        """The transfer of *key* starts over from *offset* (its earlier bytes were dropped)."""
        with self._lock:
            self._set_held(key, offset)

    def retrying(self, key: str, source: str, reason: str, delay: float) -> None:
        """A source failed; the engine tries again after *delay* seconds."""
        if self._quiet:
            return
        name = self._names.get(key, key)
        self._write(f"retrying {name} in {delay:.0f}s: {reason} ({source})")

    def note(self, line: str) -> None:
        """A line for the user above the bar (unless quiet), e.g. what the swarm delivered."""
        if not self._quiet:
            self._write(line)

    # -- SyncEvents ----------------------------------------------------------------------

    def file_finished(self, outcome: FileOutcome) -> None:
        """A file is done, whatever the outcome."""
        with self._lock:
            self.files_done += 1
            self.active = [key for key in self.active if self._entry_of.get(key) != outcome.id]
            self._refresh()

    def close(self) -> None:
        """Remove the bar from the terminal."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> TransferProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------

    def _new_bar(self) -> Any:
        # Imported only when shown: tqdm costs start-up time that scripts and cron jobs can skip.
        from tqdm import tqdm  # noqa: PLC0415

        return tqdm(
            total=self.total_bytes or None,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=self._stream,
            dynamic_ncols=True,
            leave=False,
        )

    def _set_held(self, key: str, value: int) -> None:
        delta = value - self.held.get(key, 0)
        self.held[key] = value
        self._done += delta
        if self._bar is None:
            return
        if delta >= 0:
            self._bar.update(delta)  # tqdm redraws at most every mininterval
        else:  # a restart: the bar goes back
            self._bar.n = self._done
            self._bar.refresh()

    def _refresh(self) -> None:
        if self._bar is None:
            return
        self._bar.total = self.total_bytes or None
        self._bar.n = self.bytes_done
        active = [self._names.get(key, key) for key in self.active]
        shown = ", ".join(active[:MAX_ACTIVE_SHOWN])
        if len(active) > MAX_ACTIVE_SHOWN:
            shown += f" +{len(active) - MAX_ACTIVE_SHOWN}"
        self._bar.set_description_str(f"{self.files_done}/{self.files_total} files", False)
        self._bar.set_postfix_str(shown, refresh=True)

    def _write(self, line: str) -> None:
        if self._bar is None:
            print(line, file=self._stream)
        else:
            type(self._bar).write(line, file=self._stream)  # tqdm.write keeps the bar intact


def _names_by_key(plan: SyncPlan) -> dict[str, str]:
    """Display name of every transfer key: the file's path, with the part number for parts."""
    names = {}
    for item in plan.items:
        names[item.id] = item.entry.path
        for part in item.parts:
            names[part.key] = f"{item.entry.path} (part {part.index + 1}/{len(item.parts)})"
    return names


def _entry_ids_by_key(plan: SyncPlan) -> dict[str, str]:
    """The entry id each transfer key belongs to."""
    ids = {item.id: item.id for item in plan.items}
    ids.update({part.key: item.id for item in plan.items for part in item.parts})
    return ids


# ---------------------------------------------------------------------------------------------
# Summary


def summary_counts(report: SyncReport) -> str:
    """One line: how many files ended which way, and how much was transferred."""
    counts = report.counts()
    parts = [
        f"{counts['downloaded']} downloaded",
        f"{counts['resumed']} resumed",
        f"{counts['up-to-date']} already up to date",
        f"{counts['failed']} failed",
        f"{counts['manual']} manual steps pending",
    ]
    return ", ".join(parts) + f" ({format_size(report.bytes_received)} received)"


def problem_lines(
    report: SyncReport, import_command: Callable[[str], str], *, resume_hint: bool = True
) -> list[str]:
    """One line per failure (with a hint) and, per manual step, what to do and how to import."""
    lines = []
    for failed in report.with_outcome("failed"):
        wanted = resume_hint and failed.failure == "download"
        hint = f"; {RESUME_HINT}" if wanted and "resume" not in (failed.reason or "") else ""
        lines.append(f"failed: {failed.id} ({failed.path}): {failed.reason}{hint}")
    for pending in report.with_outcome("manual"):
        lines.append(f"manual step: {pending.id} ({pending.path}): {pending.reason}")
        lines.append(f"  then import it: {import_command(pending.id)}")
    return lines
