"""Trying one source again and again, within budgets: the retry loop of every transfer.

Modelled on urllib3's ``Retry``: each failed attempt is recorded in a history (its cause, reason,
the delay chosen and when it happened, by the injected clock), and the next attempt is allowed
while both the total budget and the budget of that cause last. There is no recursion: one loop
calls the attempt until it returns, fails the source, or a budget is spent.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from lhymirror.fetch.http import RetryPolicy
from lhymirror.fetch.sources.base import Cause, SourceFailed, TryAgain

T = TypeVar("T")


@dataclass(frozen=True)
class FailedAttempt:
    """One attempt that failed, and what was decided about it."""

    cause: Cause
    reason: str
    delay: float  # seconds waited before the next attempt
    at: float  # clock reading when it failed


@dataclass
class Attempts:
    """The attempt history of one source and the budgets that bound it."""

    policy: RetryPolicy
    rng: random.Random
    clock: Callable[[], float]
    per_cause: Mapping[Cause, int] = field(default_factory=dict)  # attempts allowed per cause
    history: list[FailedAttempt] = field(default_factory=list)

    def after(self, failure: TryAgain) -> float:
        """Record *failure*; the delay before the next attempt, or ``SourceFailed`` when spent."""
        failed = len(self.history) + 1
        by_cause = Counter(attempt.cause for attempt in self.history)[failure.cause] + 1
        cause_budget = self.per_cause.get(failure.cause)
        if failed >= self.policy.attempts or (
            cause_budget is not None and by_cause >= cause_budget
        ):
            reason = f"{failure.reason}; gave up after {failed} attempts"
            self.history.append(FailedAttempt(failure.cause, failure.reason, 0.0, self.clock()))
            raise SourceFailed(reason, "transient", cause=failure.cause) from None
        delay = failure.delay
        if delay is None:
            delay = self.policy.backoff(failed, self.rng)
        self.history.append(FailedAttempt(failure.cause, failure.reason, delay, self.clock()))
        return delay


def run_attempts(
    attempt: Callable[[], T],
    attempts: Attempts,
    *,
    sleep: Callable[[float], None],
    on_retry: Callable[[str, float], None],
    on_restart: Callable[[], None],
) -> T:
    """Call *attempt* until it returns; ``SourceFailed`` when the source should be given up.

    A transfer that resumed and then failed to verify is tried once more from zero (the bytes
    held before the resume may be what was wrong): *on_restart* is called before that attempt.
    """
    restarted_after_mismatch = False
    while True:
        try:
            return attempt()
        except TryAgain as failure:
            delay = attempts.after(failure)
            on_retry(failure.reason, delay)
            if delay > 0:
                sleep(delay)
        except SourceFailed as failure:
            if not failure.retry_from_zero or restarted_after_mismatch:
                raise
            restarted_after_mismatch = True
            on_restart()
