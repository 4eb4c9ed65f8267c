"""Human-readable sizes."""

from __future__ import annotations

import pytest

from lhymirror.core.units import format_size


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
