"""The one helper thread that runs armed calls at their deadlines (races start from it)."""

from __future__ import annotations

import threading
import time

import pytest

from lhymirror.fetch.deadlines import Deadlines


def test_armed_calls_run_in_deadline_order_on_one_thread() -> None:
    deadlines = Deadlines(idle=0.05)
    ran: list[tuple[str, str]] = []
    done = threading.Event()
    deadlines.call_later(
        0.3, lambda: (ran.append(("late", threading.current_thread().name)), done.set())
    )
    deadlines.call_later(0.05, lambda: ran.append(("early", threading.current_thread().name)))
    started = time.monotonic()

    assert done.wait(5)
    assert time.monotonic() - started >= 0.25
    assert ran == [("early", "lhymirror-deadlines"), ("late", "lhymirror-deadlines")]


def test_a_cancelled_call_never_runs_and_is_not_kept() -> None:
    deadlines = Deadlines(idle=0.05)
    ran: list[str] = []
    done = threading.Event()
    cancels = [deadlines.call_later(0.1, lambda: ran.append("cancelled")) for _ in range(1000)]
    deadlines.call_later(0.2, done.set)
    for cancel in cancels:
        cancel()

    assert deadlines.armed() == 1
    assert done.wait(5)
    assert ran == []
    cancels[0]()  # harmless after the fact


def test_the_helper_thread_ends_when_idle_and_starts_again_when_needed() -> None:
    deadlines = Deadlines(idle=0.05)
    first = threading.Event()
    deadlines.call_later(0.01, first.set)
    assert first.wait(5)
    for _ in range(500):  # it ends 0.05 s after its last call
        if not deadlines.serving:
            break
        time.sleep(0.01)
    assert not deadlines.serving

    again = threading.Event()
    deadlines.call_later(0.01, again.set)
    assert deadlines.serving
    assert again.wait(5)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_call_that_raises_does_not_stop_later_deadlines() -> None:
    deadlines = Deadlines(idle=0.05)
    later = threading.Event()

    def broken() -> None:
        raise RuntimeError("can't start new thread")

    deadlines.call_later(0.01, broken)
    for _ in range(500):
        if not deadlines.serving:
            break
        time.sleep(0.01)
    deadlines.call_later(0.01, later.set)
    assert later.wait(5)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_calls_armed_before_one_that_raises_still_run() -> None:
    deadlines = Deadlines(idle=0.05)
    later = threading.Event()

    def broken() -> None:
        raise RuntimeError("a bug")

    deadlines.call_later(0.01, broken)
    deadlines.call_later(0.1, later.set)  # armed already: no later call_later comes
    assert later.wait(5)


def test_no_thread_to_be_had_arms_nothing_and_the_next_call_starts_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deadlines = Deadlines(idle=0.05)
    real_start = threading.Thread.start

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    refused: list[str] = []
    with pytest.raises(RuntimeError):
        deadlines.call_later(0.01, lambda: refused.append("ran"))
    monkeypatch.setattr(threading.Thread, "start", real_start)
    assert not deadlines.serving
    assert deadlines.armed() == 0
    ran = threading.Event()
    deadlines.call_later(0.05, ran.set)
    assert ran.wait(5)
    assert refused == []
