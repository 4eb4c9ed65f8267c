"""The library facade: every operation of the ``lhymirror`` command as a function.

Each function takes plain values, returns a report (a frozen dataclass with ``to_json()``) and
tells what it is doing through an :class:`~lhymirror.api.events.Events` object; none prints or
exits. Expected failures raise :class:`~lhymirror.core.errors.LhymirrorError` subclasses; a
report's ``error()`` is the error that sums up unfinished work (``None`` when all is done).

Names are loaded on first use (``lhymirror.api.sync`` imports the download engine only then), so
importing :mod:`lhymirror` stays cheap. The same names are available as ``lhymirror.<name>``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> module under lhymirror.api that defines it (module names differ from function names,
# so importing a module never hides a function of the same name).
EXPORTS: dict[str, str] = {
    "Events": "events",
    "CheckEvents": "events",
    "Silent": "events",
    "open_manifest": "manifests",
    "list_entries": "manifests",
    "open_mirror": "manifests",
    "plan": "syncing",
    "sync": "syncing",
    "add": "syncing",
    "pin": "pinning",
    "status": "checking",
    "pack": "archiving",
    "verify": "archiving",
    "verify_mirror": "archiving",
    "unpack": "archiving",
}

__all__ = [  # noqa: RUF022 - grouped as EXPORTS is
    "Events",
    "CheckEvents",
    "Silent",
    "open_manifest",
    "list_entries",
    "open_mirror",
    "plan",
    "sync",
    "add",
    "pin",
    "status",
    "pack",
    "verify",
    "verify_mirror",
    "unpack",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads them
    from lhymirror.api.archiving import (
        pack as pack,
    )
    from lhymirror.api.archiving import (
        unpack as unpack,
    )
    from lhymirror.api.archiving import (
        verify as verify,
    )
    from lhymirror.api.archiving import (
        verify_mirror as verify_mirror,
    )
    from lhymirror.api.checking import status as status
    from lhymirror.api.events import CheckEvents as CheckEvents
    from lhymirror.api.events import Events as Events
    from lhymirror.api.events import Silent as Silent
    from lhymirror.api.manifests import (
        list_entries as list_entries,
    )
    from lhymirror.api.manifests import (
        open_manifest as open_manifest,
    )
    from lhymirror.api.manifests import (
        open_mirror as open_mirror,
    )
    from lhymirror.api.pinning import pin as pin
    from lhymirror.api.syncing import add as add
    from lhymirror.api.syncing import plan as plan
    from lhymirror.api.syncing import sync as sync


def __getattr__(name: str) -> Any:
    """Load an exported name from its module on first use."""
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lhymirror.api' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lhymirror.api.{module}"), name)


def __dir__() -> list[str]:
    return sorted(EXPORTS)
