"""lhymirror: complete, verified, offline mirrors of Hung-yi Lee's NTU Machine Learning course.

The operations are the functions of :mod:`lhymirror.api`, also available here
(``lhymirror.sync``, ``lhymirror.status``…). ``lhymirror.api`` is loaded on first use, so
``import lhymirror`` costs nothing.
"""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``lhymirror.sync`` and the other names of :mod:`lhymirror.api`, loaded on first use."""
    if name == "api" or name.startswith("__"):
        # `from lhymirror import api` asks for the attribute before importing the submodule.
        raise AttributeError(f"module 'lhymirror' has no attribute {name!r}")
    from lhymirror import api  # noqa: PLC0415

    if name in api.__all__:
        return getattr(api, name)
    raise AttributeError(f"module 'lhymirror' has no attribute {name!r}")


def __dir__() -> list[str]:
    from lhymirror import api  # noqa: PLC0415

    return sorted(["__version__", *api.__all__])
