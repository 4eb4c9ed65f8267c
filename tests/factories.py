"""Small builders shared by the test modules: seeded payloads and their checksums."""

from __future__ import annotations

import hashlib
import random


def blob(n: int, seed: int) -> bytes:
    """*n* deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(n)


def sha(data: bytes) -> str:
    """sha256 hex digest of *data*."""
    return hashlib.sha256(data).hexdigest()
