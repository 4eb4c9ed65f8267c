"""Racing a silent source with the next ones: the first verified copy wins.

When a file has another source and its first one has not answered within the first-byte timeout
(``RetryPolicy.first_byte_timeout``), the remaining sources are tried meanwhile on a thread of
their own, with a session of their own, while the silent request keeps waiting (up to the read
timeout). The silence counts against the silent host (:class:`~lhymirror.fetch.health.HostHealth`).
Whichever runner verifies its bytes first places them (:meth:`Race.claim`, under one lock); the
other stops at its next chunk or, while it waits for an answer, at once
(:func:`lhymirror.fetch.http.interrupt`). The racer keeps its bytes under a key of its own
(``<key>.race``), and a loser's partial bytes are discarded: they never reach the final path.

The race takes one spare connection of the run's budget; with none free (every ``--jobs``
connection busy) the silent request is given up instead, as without a race, so the run never
holds more connections than it may. The racer's connections go to the file's other sources, one
at a time, as a failover would; the silent host keeps the one it had.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal, TypeVar
from urllib.parse import urlsplit

import requests

from lhymirror.fetch.deadlines import Deadlines
from lhymirror.fetch.http import interrupt, new_session
from lhymirror.fetch.partial import PartialDownload
from lhymirror.fetch.sources.base import Resolved, SourceFailed, TryAgain
from lhymirror.fetch.sources.registry import adapter_for
from lhymirror.fetch.transfer import FetchResult, TransferEvents

if TYPE_CHECKING:
    from lhymirror.fetch.download import Downloader

T = TypeVar("T")
Runner = Literal["first", "racer"]
RaceOutcome = FetchResult | Literal["next", "exhausted"]
RACE_SUFFIX = ".race"
DEADLINES = Deadlines()  # when each file's other sources start racing a silent first one


class RaceLost(BaseException):
    """The rival placed the file first, or this source was dropped: the runner stops.

    A ``BaseException`` so that no retry loop mistakes it for a network failure.
    """


class Race:
    """The state two runners of one file share: who answered, who races, who won."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._winner: Runner | None = None
        self._first_done = False
        self.racing = False  # the racer was started
        self.first_dropped = False  # the silent source was given up (its host is down, ...)
        self.answered = threading.Event()  # the first source answered, or its attempts ended
        self.first_resolved: Resolved | None = None
        self.first_thread = threading.get_ident()
        self.racer_thread: int | None = None

    def start_racing(self) -> bool:
        """Mark the racer as started; False when the first source is already done."""
        with self._lock:
            if self._first_done or self.answered.is_set():
                return False
            self.racing = True
            return True

    def stop_racing(self) -> None:
        """The racer could not start after all."""
        with self._lock:
            self.racing = False

    def first_finished(self) -> None:
        """The first source's attempts ended (whatever the result)."""
        with self._lock:
            self._first_done = True
            self.answered.set()

    def check(self, runner: Runner) -> None:
        """``RaceLost`` when the other runner won, or *runner* is the first and was dropped."""
        if self._winner not in (None, runner) or (runner == "first" and self.first_dropped):
            raise RaceLost

    def claim(self, runner: Runner) -> None:
        """Win the race (verified bytes are about to be placed), or ``RaceLost``."""
        with self._lock:
            self.check(runner)
            self._winner = runner

    def end(self, runner: Runner) -> None:
        """Stop *runner*: it loses at its next chunk, and a request it waits on is broken off."""
        with self._lock:  # only a runner still running is interrupted (thread ids are reused)
            if runner == "first":
                self.first_dropped = True
                thread = None if self._first_done else self.first_thread
            else:
                self._winner = self._winner or "first"
                thread = self.racer_thread
            if thread is not None:
                interrupt(thread)

    def racer_running(self, running: bool) -> None:
        """The racer starts (on this thread) or has stopped."""
        with self._lock:
            self.racer_thread = threading.get_ident() if running else None


class Gate:
    """What one runner's attempts tell the race, and are told by it."""

    def __init__(self, race: Race, runner: Runner) -> None:
        self.race = race
        self.runner = runner

    def resolved(self, resolved: Resolved) -> None:
        """The source was resolved (the first's host is told of its silence)."""
        if self.runner == "first":
            self.race.first_resolved = resolved

    def opened(self) -> None:
        """The source answered: no race is needed for the first; a loser stops here."""
        if self.runner == "first":
            self.race.answered.set()
        self.race.check(self.runner)

    def check(self) -> None:
        """``RaceLost`` once this runner has lost (called for every chunk)."""
        self.race.check(self.runner)

    def claim(self) -> None:
        """Win before placing verified bytes, or ``RaceLost``."""
        self.race.claim(self.runner)

    def failed(self, failure: TryAgain | SourceFailed) -> None:
        """An attempt failed: a loser stops; the first is not tried again once a racer runs."""
        self.race.check(self.runner)
        if self.runner == "first" and self.race.racing and isinstance(failure, TryAgain):
            raise SourceFailed(failure.reason, "transient", cause=failure.cause) from None


def gated(attempt: Callable[[], T], gate: Gate | None) -> Callable[[], T]:
    """*attempt*, telling *gate* of its failures (a race's loser then stops instead of retrying)."""
    if gate is None:
        return attempt

    def gated_attempt() -> T:
        try:
            return attempt()
        except (TryAgain, SourceFailed) as failure:
            gate.failed(failure)
            raise

    return gated_attempt


def may_race(downloader: Downloader, partial: PartialDownload, source: str) -> bool:
    """Is a race worth starting for *source* (HTTP, a whole file, a short first-byte wait)?"""
    policy = downloader.policy
    return (
        partial.target.offset is None  # a part is written in place: one writer only
        and policy.first_byte_timeout < policy.read_timeout
        and urlsplit(source).scheme in ("http", "https")
    )


def race_sources(
    downloader: Downloader,
    source: str,
    rest: Sequence[str],
    partial: PartialDownload,
    session: requests.Session,
    *,
    failures: list[tuple[str, SourceFailed]],
) -> RaceOutcome:
    """Fetch *source* on this thread, raced by *rest* if it stays silent.

    The result of whichever runner won; ``"next"`` when *source* failed before any race began
    (its failure appended: go on with the next source), ``"exhausted"`` when the race ran and
    every source failed (their failures appended).
    """
    race = Race()
    racer = _Racer(downloader, race, rest, partial)
    racer.arm()
    result: FetchResult | None = None
    try:
        result = downloader._fetch_from(
            adapter_for(source), source, partial, session, False, gate=Gate(race, "first")
        )
    except RaceLost:
        pass
    except SourceFailed as failure:
        failures.append((source, failure))
    except BaseException:
        race.first_finished()
        race.end("racer")
        racer.join()
        raise
    race.first_finished()
    if result is not None:
        race.end("racer")
        racer.join()
        racer.discard()
        return result
    racer.join()
    if not race.racing:
        return "next"
    if racer.error is not None:
        raise racer.error
    if racer.result is not None:
        downloader.store.discard_partial(partial.target.key)  # the silent source's bytes, if any
        return racer.result
    if race.first_dropped and not any(failed == source for failed, _ in failures):
        wait = min(downloader.policy.first_byte_timeout, downloader.policy.read_timeout)
        silent = SourceFailed(
            f"connection failed (no answer in {wait:g} s)", "transient", cause="timeout"
        )
        failures.append((source, silent))
    failures.extend(racer.failures)
    return "exhausted"


class _Racer:
    """The other sources of a file, tried on a thread of their own once the first is silent."""

    def __init__(
        self, downloader: Downloader, race: Race, rest: Sequence[str], partial: PartialDownload
    ) -> None:
        self._downloader = downloader
        self._race = race
        self._rest = rest
        self._key = partial.target.key
        target = replace(partial.target, key=partial.target.key + RACE_SUFFIX)
        self._partial = PartialDownload(downloader.store, target)
        self.result: FetchResult | None = None
        self.error: BaseException | None = None
        self.failures: list[tuple[str, SourceFailed]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancel: Callable[[], None] = lambda: None

    @property
    def _wait(self) -> float:
        policy = self._downloader.policy
        return min(policy.first_byte_timeout, policy.read_timeout)

    def arm(self) -> None:
        """Race the first source once the first-byte timeout has passed without its answer."""
        self._cancel = DEADLINES.call_later(self._wait, self._expired)

    def join(self) -> None:
        """Disarm, and wait for the racer if it started (call after ``Race.first_finished``)."""
        self._cancel()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()

    def _expired(self) -> None:
        """On the deadlines thread: start racing unless the first source answered meanwhile."""
        if self._race.answered.is_set():
            return
        thread = threading.Thread(target=self._race_now, name="lhymirror-race", daemon=True)
        with self._lock:  # join() sees the thread, or the race was refused: the first is done
            if self._race.start_racing():
                try:
                    thread.start()
                except RuntimeError:  # no thread to be had: the first source keeps waiting
                    self._race.stop_racing()
                    return
                self._thread = thread

    def _race_now(self) -> None:
        """Try the other sources; the first loses once one of them verified its bytes."""
        downloader, race = self._downloader, self._race
        wait = self._wait
        self._note_silence(wait)
        budget = downloader.budget
        held = budget.try_acquire(1) if budget is not None else 1
        if not held:  # no spare connection: give the silent source up, as without a race
            race.end("first")
        try:
            self._run()
            if self.result is not None:
                race.end("first")  # it lost: break off the request it may still wait on
        except RaceLost:
            pass
        except BaseException as exc:  # handed to the file's thread (a cancel, a full disk)
            self.error = exc
        finally:
            if held and budget is not None:
                budget.release(held)

    def _note_silence(self, wait: float) -> None:
        """The silence counts against the first source's host; a host now down is given up."""
        health, resolved = self._downloader.health, self._race.first_resolved
        if health is None or resolved is None or resolved.host is None:
            return
        if health.failed(resolved.host, f"no answer in {wait:g} s", self._key):
            self._race.end("first")

    def _run(self) -> None:
        downloader = copy.copy(self._downloader)
        downloader._events = _SameKey(downloader._events, self._partial.target.key, self._key)
        self._partial.load()
        session = new_session()
        self._race.racer_running(True)
        try:
            self._race.check("racer")  # the first may have won meanwhile
            for index, source in enumerate(self._rest):
                alternative = index + 1 < len(self._rest)
                gate = Gate(self._race, "racer")
                try:
                    self.result = downloader._fetch_from(
                        adapter_for(source), source, self._partial, session, alternative, gate=gate
                    )
                    return
                except SourceFailed as failure:
                    self.failures.append((source, failure))
        finally:
            self._race.racer_running(False)
            session.close()

    def discard(self) -> None:
        """Drop the racer's bytes (it lost), or what a racer of an earlier run left."""
        store, key = self._downloader.store, self._partial.target.key
        left = self._partial.path.exists() or store.partial_state_path(key).exists()
        if self._race.racing or left:
            store.discard_partial(key)


class _SameKey:
    """The racer's transfer events, under the file's own key (one line in the progress bar)."""

    def __init__(self, events: TransferEvents, own: str, shown: str) -> None:
        self._events = events
        self._own = own
        self._shown = shown

    def _key(self, key: str) -> str:
        return self._shown if key == self._own else key

    def started(self, key: str, total: int | None, offset: int) -> None:
        """Forwarded."""
        self._events.started(self._key(key), total, offset)

    def advanced(self, key: str, nbytes: int) -> None:
        """Forwarded."""
        self._events.advanced(self._key(key), nbytes)

    def restarted(self, key: str, offset: int) -> None:
        """Forwarded."""
        self._events.restarted(self._key(key), offset)

    def retrying(self, key: str, source: str, reason: str, delay: float) -> None:
        """Forwarded."""
        self._events.retrying(self._key(key), source, reason, delay)
