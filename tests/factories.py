"""Small builders shared by the test modules: seeded payloads and their checksums."""

from __future__ import annotations

import hashlib
import random
from typing import Any


def blob(n: int, seed: int) -> bytes:
    """*n* deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(n)


def sha(data: bytes) -> str:
    """sha256 hex digest of *data*."""
    return hashlib.sha256(data).hexdigest()


def file_entry(
    entry_id: str,
    data: bytes | None = None,
    *,
    kind: str = "slide",
    base_url: str = "https://course.example.edu/ml",
    pin: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """Raw manifest data for one file: a slide (or, with ``kind="dataset"``, a zip).

    With *data* and *pin*, its size and sha256 are pinned; *extra* adds or overrides fields.
    """
    folder, suffix = ("data", "zip") if kind == "dataset" else ("slides", "pdf")
    fields: dict[str, Any] = {
        "id": entry_id,
        "kind": kind,
        "path": f"{folder}/{entry_id}.{suffix}",
        "urls": [f"{base_url}/{entry_id}.{suffix}"],
    }
    if data is not None and pin:
        fields.update(size=len(data), sha256=sha(data))
    fields.update(extra)
    return fields


def manifest_data(*files: dict[str, Any], year: int = 2022) -> dict[str, Any]:
    """Raw data of a minimal valid manifest holding *files*."""
    return {"schema": 1, "course": "ML", "year": year, "version": "1", "files": list(files)}
