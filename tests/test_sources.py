"""Source strings: https URLs, gdrive:ID and kaggle:COMPETITION[/FILE]."""

from __future__ import annotations

import pytest

from lhymirror.manifest.sources import (
    GDriveSource,
    HttpSource,
    KaggleSource,
    parse_source,
    source_kind,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://x.example/a.pdf", HttpSource("https://x.example/a.pdf")),
        ("http://x.example/a.pdf", HttpSource("http://x.example/a.pdf")),
        (
            "gdrive:1awF7pZ9Dz7X1jn1_QAiKN-_v56veCEKy",
            GDriveSource("1awF7pZ9Dz7X1jn1_QAiKN-_v56veCEKy"),
        ),
        ("kaggle:ml2021spring-hw1", KaggleSource("ml2021spring-hw1")),
        (
            "kaggle:ml2021spring-hw1/covid.train.csv",
            KaggleSource("ml2021spring-hw1", "covid.train.csv"),
        ),
    ],
)
def test_sources_parse_and_print_back(text: str, expected: object) -> None:
    source = parse_source(text)
    assert source == expected
    assert str(source) == text


@pytest.mark.parametrize(
    "text", ["no-scheme", "ftp://x/y", "gdrive:short", "kaggle:", "kaggle:UPPER", "https://"]
)
def test_bad_sources_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text)[1:-1][:6]):
        parse_source(text)


def test_source_kind_for_listings() -> None:
    assert source_kind("gdrive:1awF7pZ9Dz7X1jn1") == "gdrive"
    assert source_kind("https://x.example/") == "https"
    assert source_kind("bogus") == "?"


def test_kaggle_page_url_is_the_data_page() -> None:
    assert (
        KaggleSource("ml2022spring-hw1").page_url
        == "https://www.kaggle.com/c/ml2022spring-hw1/data"
    )
