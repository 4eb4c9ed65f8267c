"""Human-readable units, shared by listings, progress lines and index pages."""

from __future__ import annotations

import datetime as dt
import re


def format_size(size: int | None) -> str:
    """Size in decimal units, as file managers show it: ``1.6 MB`` (``?`` when unknown)."""
    if size is None:
        return "?"
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if round(value, 1) < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?(?:/s)?\s*$", re.IGNORECASE)
_RATE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_rate(text: str) -> float:
    """Bytes per second from ``500k``, ``2M``, ``1.5MiB/s`` or a plain number (as wget reads it).

    ``ValueError`` for anything else, or for zero.
    """
    match = _RATE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"expected a rate such as 500k or 2M, got {text!r}")
    return float(match.group(1)) * _RATE_UNITS[match.group(2).lower()]


def count_of(number: int, noun: str, plural: str | None = None) -> str:
    """``1 file``, ``2 files``: a count with its noun, plural (*plural*, else noun + "s")
    when it is not one."""
    if number == 1:
        return f"{number} {noun}"
    return f"{number} {plural or noun + 's'}"


def slugify(text: str, *, default: str) -> str:
    """Lowercase letters and digits joined by single hyphens (*default* when none are left)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or default


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string (seconds precision)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
