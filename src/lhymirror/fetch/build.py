"""Building the downloader of one worker thread from the run's shared pieces.

Cheap to import (the downloader, and with it ``requests``, is loaded only when one is built), so
the library facade can name it at start-up and tests can replace it to inject sleeps and clocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lhymirror.fetch.bases import BaseCheck
    from lhymirror.fetch.health import HostHealth
    from lhymirror.fetch.job import Fetcher
    from lhymirror.fetch.policy import RetryPolicy
    from lhymirror.fetch.ratelimit import RateLimiter
    from lhymirror.fetch.scheduler import ConnectionBudget
    from lhymirror.fetch.sources.kaggle import KaggleCredentials
    from lhymirror.fetch.transfer import TransferEvents
    from lhymirror.mirror.store import MirrorStore


def build_downloader(
    store: MirrorStore,
    *,
    events: TransferEvents,
    kaggle_credentials: KaggleCredentials | None,
    health: HostHealth | None = None,
    limiter: RateLimiter | None = None,
    budget: ConnectionBudget | None = None,
    policy: RetryPolicy | None = None,
    base_check: BaseCheck | None = None,
) -> Fetcher:
    """The downloader of one worker thread; its shared pieces (*health* and after) are the run's."""
    from lhymirror.fetch.download import Downloader  # noqa: PLC0415 - loads requests
    from lhymirror.fetch.policy import RetryPolicy  # noqa: PLC0415

    return Downloader(
        store,
        events=events,
        kaggle_credentials=kaggle_credentials,
        health=health,
        limiter=limiter,
        budget=budget,
        policy=policy or RetryPolicy(),
        base_check=base_check,
    )
