"""SIGTERM (``kill``, a closing session, a container stopping) handled like Ctrl-C.

Without a handler Python dies at once on SIGTERM: no message, and worker threads are not told to
stop. Raising :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread instead takes the
path Ctrl-C takes: transfers stop at their next event, partial downloads are kept for a resume,
and one line says so. A second SIGTERM ends the process at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM is not held up
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
