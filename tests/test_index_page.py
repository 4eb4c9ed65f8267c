"""The archive's index.html: escaping, grouping, local links, missing files, offline-only.

The page is parsed with the standard library's ``html.parser`` rather than searched as text, so the
checks hold for what a browser sees. One test renders it in a real headless Chromium (skipped when
none is installed) and follows every local link on disk.
"""

from __future__ import annotations

import datetime as dt
import random
import struct
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

import factories
from lhymirror.archive.index_page import IndexFile, local_href, render_index
from lhymirror.manifest.model import Manifest
from pagecheck import Page, assert_local_links_resolve, needs_chromium, run_chromium

# ---------------------------------------------------------------------------------------------
# Helpers


def make_manifest(
    files: Sequence[dict[str, Any]], links: Sequence[dict[str, Any]] = ()
) -> Manifest:
    """A valid manifest around the given file and link entries (urls filled in unless parts)."""
    return factories.make_manifest(
        *({"kind": "slide", **_sources(f), **f} for f in files),
        version="1.2",
        homepage="https://speech.ee.ntu.edu.tw/~hylee/ml/2022-spring.php",
        released=dt.date(2022, 7, 1),
        links=list(links),
    )


def _sources(entry: dict[str, Any]) -> dict[str, Any]:
    return {} if "parts" in entry else {"urls": [f"https://example.org/{entry['id']}"]}


def index_files(manifest: Manifest, *, missing: Sequence[str] = ()) -> list[IndexFile]:
    """Every file of the manifest, present with a size derived from its position unless missing."""
    return [
        IndexFile(entry, None if entry.id in missing else 1000 * (i + 1), entry.id not in missing)
        for i, entry in enumerate(manifest.files)
    ]


def section_headings(html: str) -> list[str]:
    """The section titles in page order."""
    return [part.split("</h2>")[0] for part in html.split("<h2>")[1:]]


SAMPLE_FILES = [
    {"id": "hw2-data", "kind": "dataset", "section": "HW 2", "path": "hw2/data.zip"},
    {"id": "l10", "section": "Lecture 10", "path": "lectures/l10.pdf"},
    {"id": "misc", "kind": "other", "path": "misc/readme.txt"},
    {"id": "l2b", "section": "Lecture 2", "title": "Part B", "path": "lectures/l2b.pdf"},
    {"id": "hw1", "kind": "hw-slide", "section": "HW 1", "path": "hw1/hw1.pdf"},
    {"id": "l2a", "section": "Lecture 2", "title": "Part A", "path": "lectures/l2a.pdf"},
]
SAMPLE_LINKS = [
    {
        "kind": "video",
        "title": "Lecture 2 video",
        "section": "Lecture 2",
        "url": "https://youtu.be/a",
    },
    {"kind": "competition", "section": "HW 1", "url": "https://www.kaggle.com/c/ml2022-hw1"},
    {
        "kind": "notebook",
        "title": "Colab",
        "section": "HW 9",
        "url": "https://colab.research.google.com/x",
    },
    {"kind": "page", "title": "Course FAQ", "url": "https://example.org/faq?a=1&b=2"},
]


@pytest.fixture
def sample() -> Manifest:
    return make_manifest(SAMPLE_FILES, SAMPLE_LINKS)


# ---------------------------------------------------------------------------------------------
# Structure and content


def test_page_is_html5_with_charset_and_viewport(sample: Manifest) -> None:
    html = render_index(sample, index_files(sample))
    page = Page(html)
    assert html.startswith("<!DOCTYPE html>\n")
    metas = [attrs for tag, attrs in page.tags if tag == "meta"]
    assert {"charset": "utf-8"} in metas
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in metas
    assert "prefers-color-scheme:dark" in html


def test_header_names_course_year_version_homepage_and_totals(sample: Manifest) -> None:
    page = Page(render_index(sample, index_files(sample, missing=["misc"])))
    assert "ML" in page.text and "2022" in page.text
    assert "manifest version 1.2" in page.text
    assert "released 2022-07-01" in page.text
    # five present files of 1000+2000+4000+5000+6000 bytes (misc, the third, is missing)
    assert "5 files here · 18.0 kB · 1 missing · 4 online links" in page.text
    assert sample.homepage in page.hrefs()


def test_sections_follow_course_order_with_unsectioned_entries_last(sample: Manifest) -> None:
    html = render_index(sample, index_files(sample))
    assert section_headings(html) == [
        "Lecture 2",
        "Lecture 10",
        "HW 1",
        "HW 2",
        "HW 9",
        "Other",
    ]


def test_entries_keep_the_given_order_within_a_section(sample: Manifest) -> None:
    html = render_index(sample, index_files(sample))
    assert html.index("Part B") < html.index("Part A")


def test_table_of_contents_points_at_section_ids(sample: Manifest) -> None:
    page = Page(render_index(sample, index_files(sample)))
    section_ids = [attrs["id"] for tag, attrs in page.tags if tag == "section"]
    toc = [h.removeprefix("#") for h in page.hrefs() if h.startswith("#")]
    assert toc == section_ids
    assert len(set(section_ids)) == len(section_ids)
    assert section_ids[:2] == ["lecture-2", "lecture-10"]


def test_sections_with_colliding_ids_stay_unique() -> None:
    manifest = make_manifest(
        [
            {"id": "a", "section": "HW 1", "path": "a.pdf"},
            {"id": "b", "section": "HW-1", "path": "b.pdf"},
        ]
    )
    page = Page(render_index(manifest, index_files(manifest)))
    section_ids = [attrs["id"] for tag, attrs in page.tags if tag == "section"]
    assert len(section_ids) == 2 and len(set(section_ids)) == 2


def test_file_rows_show_kind_size_and_path(sample: Manifest) -> None:
    page = Page(render_index(sample, index_files(sample)))
    assert "dataset" in page.text and "HW slides" in page.text
    sizes = {attrs.get("title") for _, attrs in page.with_class("size")}
    assert "1000 bytes" in sizes and "6000 bytes" in sizes
    link = [a for t, a in page.tags if t == "a" and a.get("href") == "data/hw2/data.zip"]
    assert link and link[0]["title"] == "hw2/data.zip"  # the path, on hover


def test_untitled_files_are_named_by_their_file_name() -> None:
    manifest = make_manifest([{"id": "x", "path": "deep/folder/Lecture notes.pdf"}])
    html = render_index(manifest, index_files(manifest))
    assert '">Lecture notes.pdf</a>' in html


# ---------------------------------------------------------------------------------------------
# Escaping and links


def test_everything_from_the_manifest_is_escaped() -> None:
    nasty = "<script>alert(\"x\")</script> & 'quotes' 機器學習"
    manifest = replace(
        make_manifest(
            [
                {
                    "id": "a",
                    "title": nasty,
                    "section": "Lecture 1 <b>",
                    "path": "a/'b'&.pdf",
                    "note": nasty,
                }
            ],
            [
                {
                    "kind": "video",
                    "title": nasty,
                    "section": "Lecture 1 <b>",
                    "url": "https://e.org/?a=1&b=<2>",
                }
            ],
        ),
        course=nasty,
        version="1",
    )
    html = render_index(manifest, index_files(manifest), missing_note=nasty)
    page = Page(html)
    assert "<script" not in html and "<b>" not in html
    assert page.text.count(nasty) >= 4  # course, title, file, link, missing note
    assert "Lecture 1 <b>" in page.text
    assert "https://e.org/?a=1&b=<2>" in page.hrefs()
    assert any(a.get("title") == "a/'b'&.pdf" for _, a in page.tags)


@pytest.mark.parametrize(
    ("path", "href"),
    [
        ("slides/intro.pdf", "data/slides/intro.pdf"),
        ("hw 1/data set.csv", "data/hw%201/data%20set.csv"),
        ("hw1/covid (train).csv", "data/hw1/covid%20%28train%29.csv"),
        ("a&b/x&y.txt", "data/a%26b/x%26y.txt"),
        ("講義/機器學習.pdf", "data/%E8%AC%9B%E7%BE%A9/%E6%A9%9F%E5%99%A8%E5%AD%B8%E7%BF%92.pdf"),
        ("odd/#1 of 100.pdf", "data/odd/%231%20of%20100.pdf"),
    ],
)
def test_local_links_percent_encode_each_path_segment(path: str, href: str) -> None:
    manifest = make_manifest([{"id": "f", "path": path}])
    page = Page(render_index(manifest, index_files(manifest)))
    assert local_href(path) == href
    assert page.local_hrefs() == [href]
    assert unquote(href) == f"data/{path}"


def test_link_only_resources_are_marked_online_in_their_section(sample: Manifest) -> None:
    html = render_index(sample, index_files(sample))
    hw1 = html.split("<h2>HW 1</h2>")[1].split("</section>")[0]
    assert "https://www.kaggle.com/c/ml2022-hw1" in hw1
    assert "competition" in hw1
    links = Page(html).with_class("link")
    assert len(links) == len(SAMPLE_LINKS)
    assert html.count('class="badge online">online<') == len(SAMPLE_LINKS)


def test_page_fetches_nothing_and_only_online_links_leave_the_archive(sample: Manifest) -> None:
    html = render_index(sample, index_files(sample, missing=["misc"]))
    page = Page(html)
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "img", "link", "iframe", "object", "embed", "video", "audio"}
    assert not any("src" in attrs or "srcset" in attrs for _, attrs in page.tags)
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    style = html.split("<style>")[1].split("</style>")[0]
    assert "url(" not in style and "@import" not in style and "@font-face" not in style
    for tag, attrs in page.tags:
        href = attrs.get("href", "")
        if urlsplit(href).scheme:
            assert tag == "a" and urlsplit(href).scheme in ("http", "https")
            assert attrs.get("class") == "online" and attrs.get("rel") == "noopener"
        elif href:
            assert href.startswith(("data/", "#"))
    online = [attrs["href"] for _, attrs in page.with_class("online") if "href" in attrs]
    sources = [f"https://example.org/{f['id']}" for f in SAMPLE_FILES]
    expected = [sample.homepage, *(link["url"] for link in SAMPLE_LINKS), *sources]
    assert sorted(online) == sorted(expected)


# ---------------------------------------------------------------------------------------------
# Missing files


def test_missing_files_are_marked_and_not_linked(sample: Manifest) -> None:
    html = render_index(sample, index_files(sample, missing=["hw1", "misc"]))
    page = Page(html)
    missing_rows = [a for t, a in page.with_class("missing") if t == "li"]
    assert len(missing_rows) == 2
    assert not any(h.endswith(("hw1.pdf", "readme.txt")) for h in page.hrefs())
    assert "data/hw2/data.zip" in page.hrefs()
    hw1 = html.split("<h2>HW 1</h2>")[1].split("</section>")[0]
    assert 'class="badge">missing<' in hw1
    assert "2 files missing:" in page.text
    assert "not verified in the mirror" in page.text  # the default explanation


def test_missing_note_is_shown_as_given(sample: Manifest) -> None:
    note = "packed with --partial; run `lhymirror sync 2022` to fetch hw1-data"
    page = Page(render_index(sample, index_files(sample, missing=["hw1"]), missing_note=note))
    assert f"1 file missing: {note}" in page.text
    assert [a for _, a in page.with_class("note")]


def test_missing_files_show_their_reason(sample: Manifest) -> None:
    files = index_files(sample)
    hw1_at = [f.entry.id for f in files].index("hw1")
    files[hw1_at] = IndexFile(files[hw1_at].entry, None, False, reason="checksum mismatch <sha256>")
    html = render_index(sample, files)
    hw1 = html.split("<h2>HW 1</h2>")[1].split("</section>")[0]
    assert '<span class="reason">checksum mismatch &lt;sha256&gt;</span>' in hw1


def test_complete_archive_has_no_missing_marks(sample: Manifest) -> None:
    html = render_index(sample, index_files(sample))
    assert "missing" not in Page(html).text
    assert not Page(html).with_class("missing")


# ---------------------------------------------------------------------------------------------
# Reproducibility


def test_rendering_is_deterministic(sample: Manifest) -> None:
    first = render_index(sample, index_files(sample, missing=["misc"]))
    again = render_index(
        make_manifest(SAMPLE_FILES, SAMPLE_LINKS), index_files(sample, missing=["misc"])
    )
    assert first == again
    assert "\r" not in first and first.endswith("</html>\n")
    first.encode("utf-8")  # every character encodable: the page is written as UTF-8


# ---------------------------------------------------------------------------------------------
# A real browser


def _bag_folder(tmp_path: Path, manifest: Manifest, *, missing: Sequence[str] = ()) -> Path:
    """A bag-shaped folder: index.html next to data/<path> for every present file."""
    bag = tmp_path / "ml-2022-v1.2"
    rng = random.Random(2022)
    files = []
    for entry in manifest.files:
        if entry.id in missing:
            files.append(IndexFile(entry, None, present=False))
            continue
        target = bag.joinpath("data", *entry.path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(rng.randbytes(100 + rng.randrange(900)))
        files.append(IndexFile(entry, target.stat().st_size, present=True))
    (bag / "index.html").write_text(render_index(manifest, files), encoding="utf-8")
    return bag


BROWSER_FILES = [
    *SAMPLE_FILES,
    {
        "id": "cn",
        "section": "Lecture 1",
        "title": "機器學習 & <深度>",
        "path": "講義/機器學習 (2022).pdf",
    },
    {"id": "odd", "kind": "dataset", "section": "HW 1", "path": "hw1/#covid 100 & more.csv"},
]


@pytest.mark.slow
@needs_chromium
def test_chromium_renders_the_page_and_every_local_link_resolves_in_the_bag(
    tmp_path: Path,
) -> None:
    manifest = make_manifest(BROWSER_FILES, SAMPLE_LINKS)
    bag = _bag_folder(tmp_path, manifest, missing=["misc"])
    index = bag / "index.html"
    dom = run_chromium(tmp_path, "--dump-dom", index.as_uri()).stdout
    page = Page(dom)
    local = assert_local_links_resolve(index, dom)
    assert len(local) == len(BROWSER_FILES) - 1  # every present file, nothing for the missing one
    assert "機器學習 & <深度>" in page.text  # the browser decoded UTF-8 and the escapes
    assert [a for t, a in page.with_class("missing") if t == "li"]
    assert not any(tag == "script" for tag, _ in page.tags)


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


@pytest.mark.slow
@needs_chromium
def test_chromium_renders_the_page_at_phone_width(tmp_path: Path) -> None:
    manifest = make_manifest(BROWSER_FILES, SAMPLE_LINKS)
    bag = _bag_folder(tmp_path, manifest)
    shot = tmp_path / "phone.png"
    run_chromium(
        tmp_path, "--window-size=390,844", f"--screenshot={shot}", (bag / "index.html").as_uri()
    )
    assert _png_size(shot) == (390, 844)
    assert shot.stat().st_size > 5000  # something was drawn, not a blank page


# ---------------------------------------------------------------------------------------------
# What a student needs (and not the maintainers' notes)


def test_maintainers_notes_stay_off_the_page() -> None:
    note = "Seen in: some/repo@abc (provenance for maintainers)"
    manifest = make_manifest(
        [{"id": "a", "path": "a.pdf", "note": note}],
        [{"kind": "video", "url": "https://v.example/1", "note": note}],
    )
    html = render_index(manifest, index_files(manifest))
    assert "provenance" not in html and "some/repo" not in html


def test_every_file_names_where_it_can_be_found_online() -> None:
    manifest = make_manifest(
        [
            {
                "id": "hw1-data",
                "kind": "dataset",
                "section": "HW 1",
                "path": "hw1/data.zip",
                "urls": [
                    "https://speech.ee.ntu.edu.tw/~hylee/ml/data.zip",
                    "https://raw.githubusercontent.com/o/r/" + "a" * 40 + "/data.zip",
                    "https://github.com/o/r/raw/" + "b" * 40 + "/data.zip",
                    "gdrive:1AbCdEfGhIjKlMn",
                    "kaggle:ml2022spring-hw1/data.zip",
                ],
            },
            {
                "id": "hw6",
                "kind": "dataset",
                "section": "HW 6",
                "path": "hw6/faces.zip",
                "manual": "git lfs clone https://huggingface.co/datasets/x/faces",
            },
            {
                "id": "hw4",
                "kind": "dataset",
                "section": "HW 4",
                "path": "hw4/d.tar.gz",
                "parts": [
                    "https://github.com/o/r/raw/0.0.1/d.aa",
                    "https://github.com/o/r/raw/0.0.1/d.ab",
                ],
            },
        ]
    )
    html = render_index(manifest, index_files(manifest, missing=["hw6"]))
    page = Page(html)
    where = html.split('<span class="where">')[1].split("</span>")[0]
    labels = [part.split(">")[1].split("<")[0] for part in where.split("<a ")[1:]]
    assert labels == ["course server", "GitHub", "Google Drive", "Kaggle"]  # one per kind
    assert "https://drive.google.com/file/d/1AbCdEfGhIjKlMn/view" in page.hrefs()
    assert "https://www.kaggle.com/c/ml2022spring-hw1/data" in page.hrefs()
    assert "by hand: git lfs clone https://huggingface.co/datasets/x/faces" in page.text
    assert "https://huggingface.co/datasets/x/faces" in page.hrefs()  # the URL is a link
    assert "belongs at hw6/faces.zip" in page.text
    assert "(part 1 of 2)" in page.text


def test_sample_code_is_linked_beside_its_homework() -> None:
    manifest = make_manifest(
        [
            {"id": "hw2-data", "kind": "dataset", "section": "HW 2", "path": "hw2/data.zip"},
            {"id": "hw2-code", "kind": "code", "section": "HW 2", "path": "code/HW2/HW02.ipynb"},
            {"id": "hw2-slides", "kind": "hw-slide", "section": "HW 2", "path": "hw2/hw2.pdf"},
        ]
    )
    html = render_index(manifest, index_files(manifest))
    hw2 = html.split("<h2>HW 2</h2>")[1].split("</section>")[0]
    assert hw2.index("Sample code:") < hw2.index("hw2/hw2.pdf")  # right under the heading
    rows = hw2.split('<ul class="files">')[1]
    assert (
        rows.index("hw2/hw2.pdf") < rows.index("code/HW2/HW02.ipynb") < rows.index("hw2/data.zip")
    )  # slides, then code, then data
    quick = Page(hw2).with_class("code-links")
    assert quick and 'href="data/code/HW2/HW02.ipynb"' in hw2
