"""The shipped catalogue (manifests/2021.toml, manifests/2022.toml) is complete and consistent.

These tests are offline and read only the shipped manifests. They check the invariants that
manifests/SOURCES.md promises, so a maintainer editing a manifest by hand gets told what broke.
"""

from __future__ import annotations

import csv
import functools
import re
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from lhymirror.manifest.model import load_manifest, manifest_warnings, shipped_manifest_path

FIXTURES = Path(__file__).parent / "fixtures"

YEARS = [2021, 2022]
SECTIONS = [f"Lecture {n}" for n in range(1, 16)] + [f"HW{n:02d}" for n in range(1, 16)]
NO_DATA_HOMEWORK = {"HW12", "HW14"}  # gym simulator / torchvision MNIST: nothing to download
NO_DATA_PHRASE = "No dataset to download"

# Reference counts (course-links.md, section 0): URLs under ~hylee/ml/ml20XX-course-data/.
EXPECTED_SERVER_FILES = {2021: {".pdf": 43, ".pptx": 21}, 2022: {".pdf": 30, ".pptx": 0}}

# A source may appear in two file entries only when listed here, with the reason.
SHARED_SOURCES = {
    2021: {
        "gdrive:1awF7pZ9Dz7X1jn1_QAiKN-_v56veCEKy": (
            "HW13 re-uses HW03's food-11.zip: the same Drive file is the main link of both"
            " notebooks"
        ),
    },
    2022: {},
}

ID_PATTERN = re.compile(
    r"^(?:l(?:0[1-9]|1[0-5])|hw(?:0[1-9]|1[0-5])|tlm)-[a-z0-9]+(?:-[a-z0-9]+)*$"
)
COMMIT_URL = re.compile(
    r"^https://(?:raw\.githubusercontent\.com|media\.githubusercontent\.com/media)/"
    r"[^/]+/[^/]+/(?P<ref>[^/]+)/"
)


@functools.cache
def manifest(year: int):
    return load_manifest(shipped_manifest_path(year))


def server_prefix(year: int) -> str:
    return f"https://speech.ee.ntu.edu.tw/~hylee/ml/ml{year}-course-data/"


def first_source(entry) -> str | None:
    sources = entry.all_sources
    return sources[0] if sources else None


def all_urls(year: int) -> list[str]:
    m = manifest(year)
    return [src for f in m.files for src in f.all_sources] + [link.url for link in m.links]


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("year", YEARS)
def test_shipped_manifest_validates(year):
    m = manifest(year)
    assert m.year == year
    assert m.files and m.links


@pytest.mark.parametrize("year", YEARS)
def test_every_section_has_entries(year):
    m = manifest(year)
    seen = Counter(e.section for e in (*m.files, *m.links))
    missing = [s for s in SECTIONS if not seen[s]]
    assert not missing, f"{year}: sections without any entry: {missing}"


@pytest.mark.parametrize("year", YEARS)
def test_sections_use_the_course_names(year):
    m = manifest(year)
    unknown = {e.section for e in (*m.files, *m.links)} - set(SECTIONS) - {None}
    assert not unknown, f"{year}: unknown section names {unknown} (use 'Lecture N' / 'HWNN')"


@pytest.mark.parametrize("year", YEARS)
def test_every_homework_has_its_data_or_says_why_not(year):
    m = manifest(year)
    for n in range(1, 16):
        section = f"HW{n:02d}"
        entries = [f for f in m.files if f.section == section]
        datasets = [f for f in entries if f.kind == "dataset"]
        slides = [f for f in entries if f.kind == "hw-slide"]
        assert slides, f"{year} {section}: no homework slides"
        if section in NO_DATA_HOMEWORK:
            assert not datasets, f"{year} {section}: expected no downloadable dataset"
            assert any(NO_DATA_PHRASE in (f.note or "") for f in slides), (
                f"{year} {section}: the hw-slide note must say why there is no dataset"
            )
        else:
            assert datasets, f"{year} {section}: no dataset entry"


@pytest.mark.parametrize("year", YEARS)
def test_file_sources_are_not_shared_unless_allow_listed(year):
    m = manifest(year)
    owners: dict[str, list[str]] = defaultdict(list)
    for f in m.files:
        sources = f.all_sources
        assert len(sources) == len(set(sources)), f"{year} {f.id}: a source is listed twice"
        for src in sources:
            owners[src].append(f.id)
    shared = {src: ids for src, ids in owners.items() if len(ids) > 1}
    unexpected = {src: ids for src, ids in shared.items() if src not in SHARED_SOURCES[year]}
    assert not unexpected, f"{year}: sources used by several entries: {unexpected}"
    stale = set(SHARED_SOURCES[year]) - set(shared)
    assert not stale, f"{year}: allow-listed shared sources no longer shared: {stale}"


@pytest.mark.parametrize("year", YEARS)
def test_link_urls_are_unique(year):
    counts = Counter(link.url for link in manifest(year).links)
    dupes = [url for url, n in counts.items() if n > 1]
    assert not dupes, f"{year}: duplicate link URLs {dupes}"


@pytest.mark.parametrize("year", YEARS)
def test_ids_follow_the_naming_scheme(year):
    for f in manifest(year).files:
        assert ID_PATTERN.match(f.id), f"{year}: id {f.id!r} does not follow the scheme"
        prefix = f.id.split("-", 1)[0]
        if prefix == "tlm":
            assert f.section and f.section.startswith("Lecture "), (
                f"{year} {f.id}: tlm-* under a lecture"
            )
            assert f.path.startswith("slides/to-learn-more/"), f"{year} {f.id}: {f.path}"
        elif prefix.startswith("hw"):
            assert f.section == f"HW{prefix[2:]}", f"{year} {f.id}: section {f.section!r}"
        else:
            assert f.section == f"Lecture {int(prefix[1:])}", (
                f"{year} {f.id}: section {f.section!r}"
            )


@pytest.mark.parametrize("year", YEARS)
def test_paths_are_organised_for_a_student(year):
    for f in manifest(year).files:
        top = f.path.split("/", 1)[0]
        assert top in ("slides", "homework", "data", "code"), f"{year} {f.id}: {f.path}"
        assert (top == "code") == (f.kind == "code"), f"{year} {f.id}: code lives under code/"
        if top == "homework" or (
            top in ("data", "code") and f.section and f.section.startswith("HW")
        ):
            assert f.path.startswith(f"{top}/{f.section}/"), (
                f"{year} {f.id}: {f.path} vs {f.section}"
            )
        assert unicodedata.is_normalized("NFC", f.path), f"{year} {f.id}: path not NFC"


@pytest.mark.parametrize("year", YEARS)
def test_every_file_has_a_source_note(year):
    missing = [f.id for f in manifest(year).files if not f.note]
    assert not missing, f"{year}: file entries without a source note: {missing}"


@pytest.mark.parametrize("year", YEARS)
def test_pinned_files_can_always_fetch_the_pinned_bytes(year):
    """A pinned checksum comes from a repository copy, and that copy is one of the sources."""
    for f in manifest(year).files:
        if f.sha256 is None:
            continue
        assert f.size is not None, f"{year} {f.id}: sha256 without size"
        assert any(COMMIT_URL.match(src) for src in f.all_sources), (
            f"{year} {f.id}: pinned, but no fixed-commit GitHub copy among its sources"
        )


@pytest.mark.parametrize("year", YEARS)
def test_github_copies_are_pinned_to_a_full_commit(year):
    for src in all_urls(year):
        match = COMMIT_URL.match(src)
        if match:
            assert re.fullmatch(r"[0-9a-f]{40}", match["ref"]), (
                f"{year}: {src} not at a full commit"
            )


@pytest.mark.parametrize("year", YEARS)
def test_urls_are_percent_encoded(year):
    for url in all_urls(year):
        assert url.isascii() and not any(ch.isspace() for ch in url), f"{year}: {url!r}"


@pytest.mark.parametrize("year", YEARS)
def test_kaggle_sources_come_after_direct_sources(year):
    for f in manifest(year).files:
        kinds = ["kaggle" if s.startswith("kaggle:") else "direct" for s in (f.urls or ())]
        assert kinds == sorted(kinds, key=lambda k: k == "kaggle"), f"{year} {f.id}: {f.urls}"


@pytest.mark.parametrize("year", YEARS)
def test_counts_match_the_reference(year):
    prefix = server_prefix(year)
    counts = Counter()
    for f in manifest(year).files:
        src = first_source(f)
        if src and src.startswith(prefix):
            counts[src[src.rfind(".") :]] += 1
    for suffix, expected in EXPECTED_SERVER_FILES[year].items():
        assert counts[suffix] == expected, f"{year}: {counts[suffix]} course-server {suffix} files"


@pytest.mark.parametrize("year", YEARS)
def test_split_dataset_is_a_parts_entry(year):
    entry = manifest(year).file("hw04-dataset")
    assert entry.parts, f"{year}: hw04-dataset should be split into parts"
    assert len(entry.parts) == {2021: 5, 2022: 4}[year]


# ---------------------------------------------------------------------------------------------
# Second wave: homework code, fallbacks, moving branches


@functools.cache
def notebook_facts() -> dict[int, dict[str, dict[str, str]]]:
    """tests/fixtures/notebooks.tsv: the facts of reference/notebooks.tsv (+2 snapshot rows)."""
    facts: dict[int, dict[str, dict[str, str]]] = defaultdict(dict)
    with (FIXTURES / "notebooks.tsv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            facts[int(row["year"])][row["raw_url"]] = row
    return facts


@pytest.mark.parametrize("year", YEARS)
def test_code_entries_match_the_notebook_reference(year):
    """Every code entry is a reference notebook: raw URL first, its exact size and sha256."""
    facts = notebook_facts()[year]
    code = [f for f in manifest(year).files if f.kind == "code"]
    seen = set()
    for f in code:
        url = f.urls[0]
        assert url in facts, f"{year} {f.id}: first source {url} is not a reference notebook"
        row = facts[url]
        seen.add(url)
        if row["sha256"]:
            assert (f.size, f.sha256) == (int(row["size_bytes"]), row["sha256"]), f.id
        else:
            assert f.size is None and f.sha256 is None, f"{year} {f.id}: nothing to pin it with"
        assert all(s.startswith("gdrive:") for s in f.urls[1:]), f"{year} {f.id}: {f.urls}"
        assert f.path == f"code/{f.section}/{url.rsplit('/', 1)[1]}" or (
            f.section == "Lecture 1" and f.path.startswith("code/tutorials/")
        ), f"{year} {f.id}: {f.path}"
    assert seen == set(facts), f"{year}: notebooks without a code entry: {set(facts) - seen}"


@pytest.mark.parametrize("year", YEARS)
def test_every_homework_has_its_sample_code(year):
    sections = {f.section for f in manifest(year).files if f.kind == "code"}
    missing = [f"HW{n:02d}" for n in range(1, 16) if f"HW{n:02d}" not in sections]
    assert not missing, f"{year}: homework without sample code: {missing}"


@pytest.mark.parametrize("year", YEARS)
def test_dropbox_sources_download_the_file(year):
    for f in manifest(year).files:
        for src in f.all_sources:
            if "dropbox.com" in src:
                assert src.endswith("dl=1"), f"{year} {f.id}: {src} opens a preview page"


# Sources on a moving branch or "latest" release that the reference gives no fixed commit for;
# SOURCES.md lists them. Anything else must be pinned to a commit or tag.
MOVING_SOURCES = {
    2021: set(),
    2022: {
        *(
            f"https://github.com/MachineLearningHW/ML_HW4_Dataset/releases/latest/download/"
            f"Dataset.tar.gz.part{p}"
            for p in ("aa", "ab", "ac", "ad")
        ),
        "https://github.com/andybi7676/ml2022spring-hw13/raw/main/food11-hw13.tar.gz",
        "https://github.com/xraychen/shiny-disco/releases/download/Latest/omniglot.tar.gz",
        "https://github.com/xraychen/shiny-disco/releases/download/Latest/omniglot-test.tar.gz",
    },
}


@pytest.mark.parametrize("year", YEARS)
def test_moving_sources_are_the_documented_ones(year):
    warned = {
        w.split(": ", 1)[1].split(" ", 1)[0]
        for w in manifest_warnings(manifest(year))
        if "moving branch" in w
    }
    assert warned == MOVING_SOURCES[year]


@pytest.mark.parametrize("year", YEARS)
def test_no_link_typos(year):
    for url in all_urls(year):
        assert "usp=sharingg" not in url, url


def test_2021_bilibili_part_numbers_are_marked_unverified():
    for link in manifest(2021).links:
        if "bilibili.com" in link.url and "?p=" in link.url:
            assert link.title and "part number" in link.title, link.url


def test_2022_hw04_variants_say_which_to_use():
    titles = [f.title or "" for f in manifest(2022).files if f.id.startswith("hw04-dataset")]
    assert len(titles) == 3
    assert sum("sample code uses" in t for t in titles) == 1, titles


# manifests/SOURCES.md section 8 lists these; a change here must change that table too.
REMAINING_WARNINGS = {
    2021: {"no sha256": 52, "single source": 7, "moving branch": 0, "no section": 8},
    2022: {"no sha256": 28, "single source": 8, "moving branch": 7, "no section": 6},
}


@pytest.mark.parametrize("year", YEARS)
def test_remaining_warnings_are_the_documented_ones(year):
    warnings = manifest_warnings(manifest(year))
    counts = {kind: sum(kind in w for w in warnings) for kind in REMAINING_WARNINGS[year]}
    assert counts == REMAINING_WARNINGS[year]
    assert sum(counts.values()) == len(warnings), "a new kind of warning: document it"
