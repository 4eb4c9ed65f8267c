"""The manifest model: what it accepts, what it rejects (with every problem named), the writer."""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import replace
from pathlib import Path

import pytest
import tomli_w

from lhymirror.core.errors import LhymirrorError, ManifestError
from lhymirror.manifest.model import (
    FileEntry,
    dump_manifest,
    load_manifest,
    manifest_from_data,
    manifest_warnings,
    parse_manifest,
    section_sort_key,
    shipped_manifest_path,
    shipped_years,
    write_manifest,
)

SHA_A = "a" * 64
SHA_B = "b" * 64


def base_manifest(**top: object) -> dict:
    """A small valid manifest as raw TOML data; tests mutate copies of it."""
    data = {
        "schema": 1,
        "course": "Machine Learning (Hung-yi Lee, NTU)",
        "year": 2022,
        "version": "1",
        "files": [
            {
                "id": "l01-rules",
                "kind": "slide",
                "title": "Rules",
                "section": "Lecture 1",
                "path": "slides/rule (v2).pdf",
                "urls": [
                    "https://speech.ee.ntu.edu.tw/~hylee/ml/ml2022-course-data/rule%20(v2).pdf"
                ],
                "size": 1604553,
                "sha256": SHA_A,
            },
            {
                "id": "hw04-dataset",
                "kind": "dataset",
                "section": "HW04",
                "path": "data/HW04/Dataset.tar.gz",
                "parts": [
                    "https://github.com/o/r/releases/download/v1/Dataset.tar.gz.partaa",
                    {
                        "urls": ["https://example.org/partab", "gdrive:1AbCdEfGhIjKlMnOp"],
                        "size": 123,
                        "sha256": SHA_B,
                    },
                ],
            },
        ],
        "links": [
            {
                "kind": "video",
                "title": "Lecture 1",
                "section": "Lecture 1",
                "url": "https://youtu.be/x",
            }
        ],
    }
    data.update(top)
    return data


def parse(data: dict) -> object:
    return parse_manifest(tomli_w.dumps(data), where="test.toml")


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse(data)
    return info.value.problems


def with_file(**fields: object) -> dict:
    """The base manifest with its first file entry changed (None removes a key)."""
    data = base_manifest()
    entry = data["files"][0]
    for key, value in fields.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return data


# -- accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(base_manifest(), id="base"),
        pytest.param(
            base_manifest(
                slug="lhy-ml", homepage="https://x.example/", released=dt.date(2022, 6, 30)
            ),
            id="optional-top-level",
        ),
        pytest.param(with_file(urls=None, manual="Download from Baidu pan …"), id="manual-only"),
        pytest.param(with_file(manual="Accept the rules first"), id="urls-and-manual"),
        pytest.param(
            with_file(urls=["kaggle:ml2022spring-hw1", "kaggle:x-y/train.csv"]), id="kaggle"
        ),
        pytest.param(with_file(urls=["gdrive:1awF7pZ9Dz7X1jn1_QAiKN-_v56veCEKy"]), id="gdrive"),
        pytest.param(with_file(urls=["http://plain.example/x.pdf"], insecure_http=True), id="http"),
        pytest.param(with_file(path="slides/自注意力 & BERT (v3).pdf"), id="unicode-path"),
        pytest.param(with_file(note="Bytes seen in repo X at commit Y."), id="note"),
        pytest.param(base_manifest(files=[], links=[]), id="empty"),
    ],
)
def test_valid_manifests_load(data: dict) -> None:
    manifest = parse(data)
    assert manifest.year == 2022


def test_part_shorthand_is_a_part_with_one_source() -> None:
    manifest = parse(base_manifest())
    entry = manifest.file("hw04-dataset")
    assert entry.parts is not None
    assert entry.parts[0].urls == (
        "https://github.com/o/r/releases/download/v1/Dataset.tar.gz.partaa",
    )
    assert entry.parts[1].sha256 == SHA_B
    assert entry.source_kinds == ("https", "gdrive")


def test_effective_slug_is_derived_from_course_when_absent() -> None:
    assert parse(base_manifest()).effective_slug == "machine-learning-hung-yi-lee-ntu"
    assert parse(base_manifest(slug="lhy-ml")).effective_slug == "lhy-ml"


def test_manual_only_entry_is_recognised() -> None:
    entry = parse(with_file(urls=None, manual="Baidu pan, code sv1i")).file("l01-rules")
    assert entry.is_manual_only
    assert entry.source_kinds == ("manual",)


# -- rejected: every rule, each naming the entry and the field ------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (base_manifest(schema=2), "schema"),
        (base_manifest(colour="red"), "colour: unknown key"),
        (with_file(colour="red"), "files[0] (l01-rules).colour: unknown key"),
        (base_manifest(slug="Bad Slug"), "slug: 'Bad Slug' is not a valid slug"),
        (with_file(id="L01 Rules"), "files[0] (L01 Rules).id: 'L01 Rules' is not a valid id"),
        (with_file(kind="video"), "files[0] (l01-rules).kind"),
        (with_file(sha256="ABC"), "files[0] (l01-rules).sha256: 'ABC' is not a sha256"),
        (with_file(sha256="A" * 64), "is not a sha256"),
        (
            with_file(size=-1),
            "files[0] (l01-rules).size: must be 0 or more, not -1",
        ),
        (with_file(path="/etc/passwd"), "is absolute"),
        (with_file(path="slides/../../x.pdf"), "contains a '..' segment"),
        (with_file(path="slides//x.pdf"), "empty segment"),
        (with_file(path="slides/"), "empty segment"),
        (with_file(path="slides\\x.pdf"), "backslash"),
        (with_file(path="slides/x\x00.pdf"), "control character"),
        (with_file(path="slides/x\n.pdf"), "control character"),
        (with_file(path="C:/slides/x.pdf"), "drive letter"),
        (with_file(path="slides/what?.pdf"), "characters Windows forbids: ?"),
        (with_file(path="slides/a<b>.pdf"), "characters Windows forbids: < >"),
        (with_file(path='slides/"q".pdf'), 'characters Windows forbids: "'),
        (with_file(path="slides/a|b.pdf"), "characters Windows forbids: |"),
        (with_file(path="slides/a*.pdf"), "characters Windows forbids: *"),
        (with_file(path="CON"), "name Windows reserves"),
        (with_file(path="data/nul.txt"), "name Windows reserves"),
        (with_file(path="data/com1.tar.gz"), "name Windows reserves"),
        (with_file(path="data/LPT9"), "name Windows reserves"),
        (with_file(path="data/CONIN$"), "name Windows reserves"),
        (with_file(path="data/" + "é" * 128 + ".pdf"), "longer than 255 bytes"),
        (with_file(path="conout$.txt"), "name Windows reserves"),
        (with_file(path=".lhymirror/state/x.json"), "path: path '.lhymirror/state/x.json' uses"),
        (with_file(path=".LHYMIRROR"), "reserved for lhymirror's records"),
        (with_file(path="slides/x."), "ending in a dot or space"),
        (with_file(path="slides/100%.pdf"), "contains '%'"),
        (with_file(path="slides /x.pdf"), "ending in a dot or space"),
        (with_file(urls=["ftp://x.example/y"]), "unknown source scheme 'ftp'"),
        (with_file(urls=["gdrive:x"]), "Google Drive id"),
        (with_file(urls=["kaggle:Bad_Name"]), "kaggle:<competition>"),
        (with_file(urls=["https:///nohost"]), "URL has no host"),
        (with_file(urls=["https://x.example/a b.pdf"]), "white space"),
        (with_file(urls=[]), "urls is empty"),
        (with_file(urls=["http://plain.example/x.pdf"]), "plain http"),
        (with_file(urls=None), "has no urls, parts or manual"),
        (with_file(parts=["https://x.example/a"]), "has both urls and parts"),
        (base_manifest(links=[{"kind": "video", "url": "ftp://x"}]), "links[0].url"),
        (base_manifest(links=[{"kind": "podcast", "url": "https://x"}]), "links[0].kind"),
    ],
)
def test_invalid_manifest_is_rejected_naming_entry_and_field(data: dict, expected: str) -> None:
    problems = problems_of(data)
    assert any(expected in problem for problem in problems), problems


def test_http_in_a_part_needs_insecure_http() -> None:
    data = base_manifest()
    data["files"][1]["parts"][0] = "http://plain.example/partaa"
    assert any("files[1] (hw04-dataset).urls" in p and "plain http" in p for p in problems_of(data))


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("slides/a.pdf", "slides/a.pdf", "the same path"),
        ("slides/A.pdf", "slides/a.pdf", "colliding"),
        ("slides/caf\u00e9.pdf", "slides/cafe\u0301.pdf", "colliding"),  # NFC vs NFD
    ],
)
def test_colliding_paths_are_rejected(first: str, second: str, expected: str) -> None:
    data = base_manifest()
    data["files"][0]["path"] = first
    data["files"][1]["path"] = second
    problems = problems_of(data)
    assert any("files[1] (hw04-dataset).path" in p and expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("first", "second", "folder"),
    [
        ("v", "v/w.pdf", "v"),
        ("data/thing", "data/thing/inner.bin", "data/thing"),
        ("data/Thing", "data/thing/a/b.bin", "data/thing"),  # case-folded, like uniqueness
        ("caf\u00e9", "cafe\u0301/x.pdf", "cafe\u0301"),  # NFC vs NFD
    ],
)
@pytest.mark.parametrize("file_first", [True, False])
def test_a_path_cannot_be_both_a_file_and_a_folder(
    first: str, second: str, folder: str, file_first: bool
) -> None:
    data = base_manifest()
    file_index, inner_index = (0, 1) if file_first else (1, 0)
    data["files"][file_index]["path"] = first
    data["files"][inner_index]["path"] = second
    problems = problems_of(data)
    inner = data["files"][inner_index]["id"]
    other = data["files"][file_index]["id"]
    expected = (
        f"files[{inner_index}] ({inner}).path: {second!r} needs {folder!r} to be a folder, "
        f"but files[{file_index}] ({other}) is a file there ({first!r})"
    )
    assert problems == [expected]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (base_manifest(year="2022"), "year: must be a whole number, not the string '2022'"),
        (base_manifest(year=2022.0), "year: must be a whole number, not 2022.0"),
        (base_manifest(schema=True), "schema: must be the whole number 1, not true"),
        (base_manifest(schema="1"), "schema: must be 1, not the string '1'"),
        (base_manifest(version=1), "version: must be a string in quotes, not 1"),
        (base_manifest(course=["ML"]), "course: must be a string in quotes, not a list"),
        (base_manifest(released="2022-06-30"), "released: must be a date like 2022-06-30"),
        (base_manifest(released=dt.datetime(2022, 6, 30, 12)), "not a date with a time"),
        (base_manifest(files={"id": "x"}), "files: must be a list in [ ], not a table"),
        (base_manifest(files=["x"]), "files[0]: must be a table, not the string 'x'"),
        (with_file(size="12"), "files[0] (l01-rules).size: must be a whole number, not the"),
        (with_file(size=True), "files[0] (l01-rules).size: must be a whole number, not true"),
        (with_file(size=1.5), "files[0] (l01-rules).size: must be a whole number, not 1.5"),
        (with_file(urls="https://x.example/a.pdf"), "files[0] (l01-rules).urls: must be a list"),
        (with_file(urls=[1]), "files[0] (l01-rules).urls[0]: must be a string in quotes, not 1"),
        (with_file(insecure_http="yes"), "insecure_http: must be true or false, not the string"),
        (with_file(insecure_http=1), "insecure_http: must be true or false, not 1"),
        (with_file(title=3), "files[0] (l01-rules).title: must be a string in quotes, not 3"),
        (with_file(kind="video"), "kind: must be 'slide', 'hw-slide', 'dataset', 'code' or"),
        (with_file(id=7), "files[0].id: must be a string in quotes, not 7"),
    ],
)
def test_types_are_strict_and_named_in_toml_terms(data: dict, expected: str) -> None:
    problems = problems_of(data)
    assert any(expected in problem for problem in problems), problems
    assert not any("Input should" in problem for problem in problems), problems


def test_parts_size_is_strict_too() -> None:
    data = base_manifest()
    data["files"][1]["parts"][1]["size"] = "123"
    assert problems_of(data) == [
        "files[1] (hw04-dataset).parts[1].size: must be a whole number, not the string '123' "
        "(write it without quotes)"
    ]


def test_toml_dates_still_parse() -> None:
    manifest = parse_manifest(
        'schema = 1\ncourse = "ML"\nyear = 2022\nversion = "1"\nreleased = 2022-06-30\n'
    )
    assert manifest.released == dt.date(2022, 6, 30)


def test_duplicate_ids_are_rejected() -> None:
    data = base_manifest()
    data["files"][1]["id"] = "l01-rules"
    assert any("same id" in p for p in problems_of(data))


def test_every_problem_is_reported_at_once() -> None:
    data = base_manifest()
    data["files"][0].update(sha256="nope", size=-5, path="../x", colour="red")
    data["files"][1]["id"] = "l01-rules"
    data["files"][1]["parts"][1]["sha256"] = "short"
    problems = problems_of(data)
    for expected in ("sha256", "size", "path", "colour", "same id", "parts[1].sha256"):
        assert any(expected in p for p in problems), (expected, problems)


def test_error_message_names_the_file_and_counts_problems() -> None:
    data = base_manifest()
    data["files"][0].update(sha256="nope", size=-5)
    with pytest.raises(ManifestError) as info:
        parse(data)
    assert info.value.message.startswith("invalid manifest (test.toml): 2 problems")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("schema = 1\ncourse = \n", "not valid TOML"), ("[[files]\n", "not valid TOML")],
)
def test_broken_toml_is_one_problem(text: str, expected: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, where="x.toml")
    assert expected in info.value.problems[0]


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="file not found"):
        load_manifest(tmp_path / "nope.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(binary)


# -- writer -----------------------------------------------------------------------------------


def test_round_trip_gives_an_equal_model(tmp_path: Path) -> None:
    manifest = parse(base_manifest(slug="lhy-ml", released=dt.date(2022, 6, 30)))
    path = tmp_path / "m.toml"
    write_manifest(manifest, path)
    again = load_manifest(path)
    assert again == manifest
    assert dump_manifest(again) == path.read_text(encoding="utf-8")


def test_writer_is_canonical_and_keeps_entry_order() -> None:
    manifest = parse(base_manifest())
    text = dump_manifest(manifest)
    assert text.index('id = "l01-rules"') < text.index('id = "hw04-dataset"')
    assert text.splitlines()[0] == "schema = 1"
    # shorthand parts stay shorthand; defaults are not written
    assert '"https://github.com/o/r/releases/download/v1/Dataset.tar.gz.partaa"' in text
    assert "insecure_http" not in text


def test_updating_a_checksum_in_place_changes_only_that_entry() -> None:
    manifest = parse(base_manifest())
    entry = manifest.file("hw04-dataset")
    sha = "c" * 64
    updated = manifest.with_file(replace(entry, size=99, sha256=sha))
    before, after = dump_manifest(manifest).splitlines(), dump_manifest(updated).splitlines()
    added = [line for line in difflib.ndiff(before, after) if line.startswith(("+", "-"))]
    assert added == ["+ size = 99", f'+ sha256 = "{sha}"']
    assert [f.id for f in updated.files] == [f.id for f in manifest.files]


def test_file_lookup_by_unknown_id_raises_key_error() -> None:
    with pytest.raises(KeyError):
        parse(base_manifest()).file("nope")


# -- warnings and ordering ----------------------------------------------------------------------


def test_warnings_name_weak_entries() -> None:
    data = base_manifest()
    data["files"].append(
        {
            "id": "hw01-data",
            "kind": "dataset",
            "path": "data/x.csv",
            "urls": ["gdrive:1AbCdEfGhIjK"],
        }
    )
    data["links"].append({"kind": "page", "url": "https://kaggle.com/c/x"})
    warnings = manifest_warnings(parse(data))
    assert any("hw04-dataset" in w and "no sha256" in w for w in warnings)
    assert any("hw01-data" in w and "single source" in w for w in warnings)
    assert any("links[1]" in w and "no section" in w for w in warnings)
    assert not any("l01-rules" in w for w in warnings)


@pytest.mark.parametrize(
    ("url", "moving"),
    [
        ("https://github.com/o/r/releases/latest/download/a.zip", True),
        ("https://github.com/o/r/releases/download/Latest/a.zip", True),
        ("https://github.com/o/r/raw/main/a.zip", True),
        ("https://github.com/o/r/blob/master/a.zip", True),
        ("https://raw.githubusercontent.com/o/r/HEAD/a.zip", True),
        ("https://github.com/o/r/releases/download/v1.0.2/a.zip", False),
        ("https://github.com/o/r/raw/0.0.1/a.zip", False),
        ("https://raw.githubusercontent.com/o/r/" + "a" * 40 + "/main/a.zip", False),
        ("https://example.org/latest/a.zip", False),
    ],
)
def test_warnings_flag_sources_on_moving_branches(url: str, moving: bool) -> None:
    data = base_manifest()
    data["files"].append(
        {"id": "x", "kind": "other", "path": "x.zip", "urls": [url], "sha256": "a" * 64}
    )
    warned = [w for w in manifest_warnings(parse(data)) if "moving branch" in w]
    assert bool(warned) == moving
    if moving:
        assert warned == [
            f"files[2] (x): {url} follows a moving branch or release (its bytes "
            "can change; use a commit or tag)"
        ]


def test_sections_sort_like_the_course_page() -> None:
    sections = ["HW10", None, "Lecture 10", "HW02", "Lecture 2", "Extra", "Lecture 1"]
    ordered = sorted(sections, key=section_sort_key)
    assert ordered == ["Lecture 1", "Lecture 2", "Lecture 10", "HW02", "HW10", "Extra", None]


# -- shipped manifests ---------------------------------------------------------------------------


def test_shipped_manifests_exist_and_validate() -> None:
    assert {2021, 2022} <= set(shipped_years())
    for year in (2021, 2022):
        manifest = load_manifest(shipped_manifest_path(year))
        assert manifest.year == year
        assert isinstance(manifest.files[0], FileEntry)


def test_unknown_year_names_the_shipped_years() -> None:
    with pytest.raises(LhymirrorError, match="ships manifests for 2021, 2022"):
        shipped_manifest_path(1999)


@pytest.mark.parametrize("year", [2021, 2022])
def test_shipped_manifests_are_in_canonical_form(year: int) -> None:
    """So that `lhymirror pin` rewrites only the lines it fills in."""
    path = shipped_manifest_path(year)
    assert dump_manifest(load_manifest(path)) == path.read_text(encoding="utf-8")


# -- what sync would refuse is refused by `manifest check`, before any request ---------------

SYNC_REFUSES = """\
schema = 1
course = "ML"
year = "2022"
version = "1"

[[files]]
id = "state"
kind = "other"
path = ".lhymirror/state/x.json"
urls = ["https://example.org/x"]

[[files]]
id = "v"
kind = "slide"
path = "v"
urls = ["https://example.org/v"]

[[files]]
id = "w"
kind = "slide"
path = "v/w.pdf"
urls = ["https://example.org/w"]

[[files]]
id = "console"
kind = "slide"
path = "slides/CONIN$.pdf"
urls = ["https://example.org/c"]
"""


def test_manifest_check_and_sync_refuse_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import responses

    from lhymirror.cli import main

    manifest = tmp_path / "course.toml"
    manifest.write_text(SYNC_REFUSES, encoding="utf-8")
    assert main(["manifest", "check", str(manifest)]) == 3
    err = capsys.readouterr().err
    for expected in (
        "year: must be a whole number, not the string '2022'",
        "files[0] (state).path: path '.lhymirror/state/x.json' uses the name '.lhymirror'",
        "files[2] (w).path: 'v/w.pdf' needs 'v' to be a folder, but files[1] (v) is a file",
        "files[3] (console).path: path 'slides/CONIN$.pdf' uses a name Windows reserves",
    ):
        assert expected in err, err
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        status = main(["sync", "--manifest", str(manifest), "--root", str(tmp_path / "m")])
        assert len(mocked.calls) == 0  # nothing was requested
    assert status == 3
    assert not (tmp_path / "m").exists()


def test_hostile_keys_and_ids_are_named_on_one_line() -> None:
    data = base_manifest()
    data["files"][0] = {"\n": 0}
    data["files"][1]["id"] = "x\x1b[31m\ny"
    problems = problems_of(data)
    assert 'files[0]."\\n": unknown key (check its spelling' in "\n".join(problems), problems
    assert all("\n" not in problem and "\x1b" not in problem for problem in problems), problems


def test_python_data_may_use_tuples_and_none() -> None:
    entry = {"id": "a", "kind": "slide", "path": "a.pdf", "urls": ("https://e.org/a",)}
    entry["parts"] = None  # absent
    data = {"schema": 1, "course": "ML", "year": 2022, "version": "1"}
    manifest = manifest_from_data({**data, "files": (entry,)})
    assert manifest.files[0].urls == ("https://e.org/a",) and manifest.files[0].parts is None
    with pytest.raises(ManifestError) as caught:  # the checks across entries see tuples too
        manifest_from_data({**data, "files": (entry, {**entry, "path": "b.pdf"})})
    assert caught.value.problems == ["files[1] (a).id: 'a' is the same id as files[0] ('a')"]


def test_python_data_that_is_no_table_is_one_problem() -> None:
    with pytest.raises(ManifestError, match="must be a table, not list"):
        manifest_from_data([])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ids", "flagged"),
    [
        (["a", "a.part00"], "a.part00"),  # the first part of a split `a`
        (["a.race", "a"], "a.race"),  # a second download of `a`
        (["hw1.data", "hw1.data.v2"], "hw1.data.v2"),
        (["a", "ab.c", "a-b"], None),
    ],
)
def test_an_id_may_not_be_another_id_and_a_dot(ids: list[str], flagged: str | None) -> None:
    data = base_manifest()
    data["files"] = [
        {"id": i, "kind": "slide", "path": f"{i}.pdf", "urls": [f"https://e.org/{i}.pdf"]}
        for i in ids
    ]
    if flagged is None:
        assert [entry.id for entry in parse_manifest(tomli_w.dumps(data)).files] == ids
        return
    with pytest.raises(ManifestError) as caught:
        parse_manifest(tomli_w.dumps(data))
    (problem,) = caught.value.problems
    assert problem.startswith(f"files[{ids.index(flagged)}] ({flagged}).id: {flagged!r} starts")
    assert "choose another id" in problem
