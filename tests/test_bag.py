"""BagIt tag files: formatting, strict parsing, RFC 8493 path encoding."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest

from lhymirror.archive.bag import (
    BAG_DECLARATION,
    TAG_FILES,
    bag_folder_name,
    bag_info_values,
    decode_bag_path,
    encode_bag_path,
    format_bag_info,
    format_checksum_manifest,
    format_sidecar,
    parse_bag_info,
    parse_checksum_manifest,
    parse_payload_oxum,
    parse_sidecar,
    payload_oxum,
    sidecar_path,
)
from lhymirror.core.errors import IntegrityError
from lhymirror.manifest.model import manifest_from_data

SHA_A = "a" * 64
SHA_B = "b" * 64


def test_declaration_is_bagit_1_0_in_utf8() -> None:
    assert BAG_DECLARATION == "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
    assert TAG_FILES[:4] == (
        "bagit.txt",
        "bag-info.txt",
        "manifest-sha256.txt",
        "tagmanifest-sha256.txt",
    )


@pytest.mark.parametrize(
    ("path", "encoded"),
    [
        ("data/plain name (v2).pdf", "data/plain name (v2).pdf"),
        ("data/100%.txt", "data/100%25.txt"),
        ("data/a\nb\rc", "data/a%0Ab%0Dc"),
        ("data/深度學習.pdf", "data/深度學習.pdf"),
    ],
)
def test_path_encoding_round_trips_and_touches_only_percent_cr_lf(path: str, encoded: str) -> None:
    assert encode_bag_path(path) == encoded
    assert decode_bag_path(encoded) == path


def test_decoding_leaves_other_percent_sequences_and_accepts_lowercase() -> None:
    assert decode_bag_path("data/a%20b%0a%0d") == "data/a%20b\n\r"


def test_checksum_manifest_is_sorted_two_space_separated_and_parses_back() -> None:
    text = format_checksum_manifest([("data/b c.pdf", SHA_B), ("data/a.txt", SHA_A.upper())])
    assert text == f"{SHA_A}  data/a.txt\n{SHA_B}  data/b c.pdf\n"
    assert parse_checksum_manifest(text, where="m") == {"data/a.txt": SHA_A, "data/b c.pdf": SHA_B}


def test_checksum_manifest_parser_accepts_crlf_tabs_and_blank_lines() -> None:
    text = f"{SHA_A}\tdata/x y.txt\r\n\r\n{SHA_B} data/100%25\r\n"
    assert parse_checksum_manifest(text, where="m") == {
        "data/x y.txt": SHA_A,
        "data/100%": SHA_B,
    }


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (f"{SHA_A}  data/a\nnot a checksum line\n", 2),
        (f"{SHA_A[:-1]}  data/a\n", 1),
        (f"{SHA_A}\n", 1),
        (f"{SHA_A}  data/a\n{SHA_B}  data/a\n", 2),
    ],
)
def test_checksum_manifest_parser_names_the_bad_line(text: str, line: int) -> None:
    with pytest.raises(IntegrityError) as caught:
        parse_checksum_manifest(text, where="bag/manifest-sha256.txt")
    assert f"bag/manifest-sha256.txt line {line}" in caught.value.message


def test_bag_info_round_trips_repeated_labels_in_order() -> None:
    fields = [
        ("Source-Organization", "National Taiwan University"),
        ("Missing-File", "data/a.pdf (not in mirror)"),
        ("Missing-File", "data/b.zip (manual download not imported)"),
    ]
    text = format_bag_info(fields)
    assert text.splitlines()[0] == "Source-Organization: National Taiwan University"
    assert parse_bag_info(text, where="bag-info.txt") == fields
    assert bag_info_values(fields, "missing-file") == [fields[1][1], fields[2][1]]


def test_bag_info_values_are_kept_on_one_line() -> None:
    assert format_bag_info([("External-Description", "two\nlines")]) == (
        "External-Description: two lines\n"
    )


@pytest.mark.parametrize("label", ["", "Has: colon", " Padded", "Two\nLines"])
def test_bag_info_refuses_invalid_labels(label: str) -> None:
    with pytest.raises(ValueError, match="label"):
        format_bag_info([(label, "x")])


def test_bag_info_parser_unfolds_continuation_lines() -> None:
    text = "External-Description: a long\n  description\n\tcontinued\nBagging-Date: 2022-07-01\n"
    assert parse_bag_info(text, where="i") == [
        ("External-Description", "a long description continued"),
        ("Bagging-Date", "2022-07-01"),
    ]


@pytest.mark.parametrize(
    ("text", "line"), [("  starts folded\n", 1), ("A: b\nno colon here\n", 2), (": x\n", 1)]
)
def test_bag_info_parser_names_the_bad_line(text: str, line: int) -> None:
    with pytest.raises(IntegrityError, match=f"bag-info.txt line {line}"):
        parse_bag_info(text, where="bag-info.txt")


def test_payload_oxum_round_trips_and_refuses_garbage() -> None:
    assert payload_oxum(1234, 5) == "1234.5"
    assert parse_payload_oxum(" 1234.5 ") == (1234, 5)
    for bad in ("1234", "12.3.4", "-1.2", "a.b", "9" * 30 + ".1"):
        with pytest.raises(IntegrityError, match="Payload-Oxum"):
            parse_payload_oxum(bad)


def test_bag_folder_name_uses_slug_year_and_version() -> None:
    manifest = manifest_from_data(
        {"schema": 1, "course": "Machine Learning", "year": 2022, "version": "3"}
    )
    assert bag_folder_name(manifest) == "machine-learning-2022-v3"
    named = replace(manifest, slug="lhy-ml", released=dt.date(2022, 7, 1))
    assert bag_folder_name(named) == "lhy-ml-2022-v3"


def test_sidecar_round_trips_and_ignores_other_names() -> None:
    text = format_sidecar("a" * 64, "lhy-ml-2022-v1.zip")
    assert text == f"{'a' * 64}  lhy-ml-2022-v1.zip\n"
    assert parse_sidecar(text, "lhy-ml-2022-v1.zip") == "a" * 64
    assert parse_sidecar(f"{'B' * 64} *dist/x.zip\n", "x.zip") == "b" * 64
    assert parse_sidecar(text, "other.zip") is None
    assert sidecar_path(Path("dist/x.zip")) == Path("dist/x.zip.sha256")
