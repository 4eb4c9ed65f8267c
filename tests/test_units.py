"""Human-readable sizes."""

from __future__ import annotations

import pytest

from lhymirror.core.units import count_of, format_size


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (None, "?"),
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1_604_553, "1.6 MB"),
        (999_999_999, "1.0 GB"),
        (2_500_000_000, "2.5 GB"),
        (5 * 10**13, "50000.0 GB"),
    ],
)
def test_format_size_uses_decimal_units(size: int | None, text: str) -> None:
    assert format_size(size) == text


def test_count_of_is_singular_only_for_one() -> None:
    assert count_of(1, "manual step") == "1 manual step"
    assert count_of(0, "file") == "0 files"
    assert count_of(2, "entry", "entries") == "2 entries"
    assert count_of(1, "entry", "entries") == "1 entry"
