"""The one naming rule of the ``--json`` output (docs/json.md): names are snake_case.

Internally some states read better with hyphens (``up-to-date``, ``needs-network``); every
name and every state word a report writes as JSON goes through :func:`snake_case`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

V = TypeVar("V")


def snake_case(name: str) -> str:
    """``up-to-date`` -> ``up_to_date``."""
    return name.replace("-", "_")


def snake_keys(mapping: Mapping[str, V]) -> dict[str, V]:
    """*mapping* with snake_case keys, order kept."""
    return {snake_case(key): value for key, value in mapping.items()}
