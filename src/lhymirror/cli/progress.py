"""How ``sync`` shows its work while it runs: one progress bar, or one line per event.

The bar (stderr, only on a terminal) counts bytes of every file to fetch in decimal units (as
the summary does: ``20.5MB``), how many files are done, and the running transfers with their
state ("retrying in 4s") and any host found down. At the default level a retry is not a line: it
shows in the bar, and the summary names each file's last error. With ``--verbose`` every failed
attempt, every host found down and every finished file is one whole line; with ``--quiet``
nothing is shown while the sync runs. All writes to the stream go through one lock, so lines
from worker threads never interleave.
"""

from __future__ import annotations

import shutil
import sys
import threading
from typing import Any, TextIO

from lhymirror.core.units import format_size
from lhymirror.fetch.plan import SyncPlan
from lhymirror.fetch.report import FileOutcome

BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B {rate_fmt}{postfix}"
BAR_FORMAT_NO_TOTAL = "{desc} {n_fmt}B {rate_fmt}{postfix}"
STATS_WIDTH = 50  # "12/120 files 100%|" + "|" + "999.9MB/999.9MB 999.9MB/s" + ", " (about)
MIN_BAR_WIDTH = 20  # the bar itself never gets narrower than this
MIN_NAME_WIDTH = 12


class TransferProgress:
    """Renders transfer events (from worker threads) as a bar or lines; a ``SyncEvents``."""

    def __init__(
        self,
        plan: SyncPlan,
        *,
        enabled: bool,
        quiet: bool = False,
        verbose: bool = False,
        stream: TextIO | None = None,
        ncols: int | None = None,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._quiet = quiet
        self._verbose = verbose and not quiet
        self._ncols = ncols  # None: the terminal's width, read at each redraw
        self._lock = threading.RLock()  # state and every write to the stream
        self._names = _names_by_key(plan)
        self._short = _names_by_key(plan, short=True)
        self._entry_of = _entry_ids_by_key(plan)
        self._known_size = {item.id for item in plan.items if item.size is not None}
        self.total_bytes = plan.bytes_to_fetch()
        self.files_total = len(plan.items)
        self.files_done = 0
        self.held: dict[str, int] = {}  # bytes counted per transfer key
        self._done = 0  # sum of held, kept up to date (advanced() runs once per chunk)
        self.active: list[str] = []
        self.state: dict[str, str] = {}  # what a running transfer is waiting for, per key
        self.hosts_down: list[str] = []
        self._bar: Any = self._new_bar() if enabled and not quiet else None
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
            self.state.pop(key, None)
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
        wait = waiting(delay)
        with self._lock:
            if key not in self.active:
                self.active.append(key)
            self.state[key] = f"retrying{wait}"
            if self._verbose:
                self._write(f"retrying {self._names.get(key, key)}{wait}: {reason} ({source})")
            self._refresh()

    def note(self, line: str) -> None:
        """A line for the user above the bar (unless quiet), e.g. what the swarm delivered."""
        if not self._quiet:
            self._write(line)

    def host_down(self, host: str, reason: str) -> None:
        """*host* is down for the rest of the run (``HostHealth``'s ``on_down``)."""
        with self._lock:
            if host not in self.hosts_down:
                self.hosts_down.append(host)
            if self._verbose:
                self._write(f"{host}: not reachable ({reason}); skipped from now on")
            self._refresh()

    # -- SyncEvents ----------------------------------------------------------------------

    def file_finished(self, outcome: FileOutcome) -> None:
        """A file is done, whatever the outcome."""
        with self._lock:
            self.files_done += 1
            ended = [key for key in self.active if self._entry_of.get(key) == outcome.id]
            self.active = [key for key in self.active if key not in ended]
            for key in ended:
                self.state.pop(key, None)
            if self._verbose:
                self._write(outcome_line(outcome))
            self._refresh()

    def close(self) -> None:
        """Remove the bar from the terminal."""
        with self._lock:
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
            unit_divisor=1000,  # decimal, like format_size in the summary
            file=self._stream,
            ncols=self._ncols,
            dynamic_ncols=self._ncols is None,
            bar_format=BAR_FORMAT,
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
        self._bar.bar_format = BAR_FORMAT if self.total_bytes else BAR_FORMAT_NO_TOTAL
        self._bar.n = self.bytes_done
        labels = [self._label(key) for key in self.active]
        if self.hosts_down:
            more = f" +{len(self.hosts_down) - 1}" if len(self.hosts_down) > 1 else ""
            labels.insert(0, f"host down: {self.hosts_down[-1]}{more}")
        self._bar.set_description_str(f"{self.files_done}/{self.files_total} files", False)
        self._bar.set_postfix_str(fit(labels, self._columns() - STATS_WIDTH - MIN_BAR_WIDTH))

    def _label(self, key: str) -> str:
        name = self._short.get(key, key)
        state = self.state.get(key)
        return f"{name} ({state})" if state else name

    def _columns(self) -> int:
        if self._ncols is not None:
            return self._ncols
        return shutil.get_terminal_size((80, 24)).columns

    def _write(self, line: str) -> None:
        with self._lock:
            if self._bar is None:
                print(line, file=self._stream, flush=True)
            else:
                type(self._bar).write(line, file=self._stream)  # tqdm.write keeps the bar intact


def waiting(delay: float) -> str:
    """`` in 4s`` for a wait worth mentioning, else nothing (never "in 0s")."""
    return f" in {delay:.0f}s" if delay >= 0.5 else ""


def fit(labels: list[str], width: int) -> str:
    """*labels* joined by ", " in at most *width* characters: long ones shortened in the
    middle (each to its share of the room, so several stay visible), the ones that do not fit
    counted as ``+N``."""
    if not labels or width < MIN_NAME_WIDTH:
        return f"{len(labels)} running" if labels and width >= len("99 running") else ""
    share = max(MIN_NAME_WIDTH, (width - 2 * (len(labels) - 1)) // len(labels))
    shown: list[str] = []
    for index, label in enumerate(labels):
        rest = len(labels) - index - 1
        more = f", +{rest}" if rest else ""
        used = len(", ".join(shown)) + (2 if shown else 0)
        room = width - used - len(more)
        if room < MIN_NAME_WIDTH:
            return ", ".join([*shown, f"+{len(labels) - index}"])
        shown.append(shorten(label, min(room, share) if rest else room))
    return ", ".join(shown)


def shorten(text: str, width: int) -> str:
    """*text* cut to *width* characters with an ellipsis in the middle (ends stay readable)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + text[len(text) - tail :]


def outcome_line(outcome: FileOutcome) -> str:
    """One line for a finished file (``--verbose``)."""
    size = f" ({format_size(outcome.size)})" if outcome.size is not None else ""
    if outcome.outcome in ("downloaded", "resumed"):
        origin = f" from {outcome.source}" if outcome.source else ""
        return f"{outcome.outcome} {outcome.path}{size}{origin}"
    if outcome.outcome == "up-to-date":
        return f"up to date {outcome.path}{size}"
    return f"{outcome.outcome} {outcome.path}: {outcome.reason}"


def _names_by_key(plan: SyncPlan, *, short: bool = False) -> dict[str, str]:
    """Display name of every transfer key: the file's path (*short*: its name), with the part
    number for parts."""
    names = {}
    for item in plan.items:
        name = item.entry.path.rsplit("/", 1)[-1] if short else item.entry.path
        names[item.id] = name
        for part in item.parts:
            names[part.key] = f"{name} (part {part.index + 1}/{len(item.parts)})"
    return names


def _entry_ids_by_key(plan: SyncPlan) -> dict[str, str]:
    """The entry id each transfer key belongs to."""
    ids = {item.id: item.id for item in plan.items}
    ids.update({part.key: item.id for item in plan.items for part in item.parts})
    return ids
