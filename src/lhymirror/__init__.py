"""lhymirror: complete, verified, offline mirrors of Hung-yi Lee's NTU Machine Learning course.

The operations are functions of :mod:`lhymirror.api`, also available here (``lhymirror.sync``,
``lhymirror.status``…). They are loaded on first use, so ``import lhymirror`` costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lhymirror.api import (
        CheckEvents as CheckEvents,
    )
    from lhymirror.api import (
        Events as Events,
    )
    from lhymirror.api import (
        Silent as Silent,
    )
    from lhymirror.api import (
        add as add,
    )
    from lhymirror.api import (
        list_entries as list_entries,
    )
    from lhymirror.api import (
        open_manifest as open_manifest,
    )
    from lhymirror.api import (
        open_mirror as open_mirror,
    )
    from lhymirror.api import (
        pack as pack,
    )
    from lhymirror.api import (
        pin as pin,
    )
    from lhymirror.api import (
        plan as plan,
    )
    from lhymirror.api import (
        status as status,
    )
    from lhymirror.api import (
        sync as sync,
    )
    from lhymirror.api import (
        unpack as unpack,
    )
    from lhymirror.api import (
        verify as verify,
    )
    from lhymirror.api import (
        verify_mirror as verify_mirror,
    )


def __getattr__(name: str) -> Any:
    """``lhymirror.sync`` and the other operations of :mod:`lhymirror.api`, loaded on first use."""
    api = importlib.import_module("lhymirror.api")
    if name in api.EXPORTS:
        return getattr(api, name)
    raise AttributeError(f"module 'lhymirror' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({"__version__", *importlib.import_module("lhymirror.api").EXPORTS})
