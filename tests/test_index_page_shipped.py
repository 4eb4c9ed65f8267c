"""The students' page of each shipped year, as headless Chromium renders it (structure, not pixels).

A bag-shaped folder is built from the shipped manifest with a one-byte stand-in for every file (a
few left out, as in a ``--partial`` archive), so the page is the one ``lhymirror pack`` would write.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from lhymirror.archive.index_page import IndexFile, render_index
from lhymirror.manifest.model import Manifest, load_manifest, shipped_manifest_path
from pagecheck import Page, assert_local_links_resolve, needs_chromium, run_chromium

YEARS = [2021, 2022]
MISSING_EVERY = 17  # every 17th file is left out, so missing rows are rendered too


def _bag(tmp_path: Path, manifest: Manifest) -> tuple[Path, list[IndexFile]]:
    bag = tmp_path / f"lhy-ml-{manifest.year}"
    files = []
    for index, entry in enumerate(manifest.files):
        present = index % MISSING_EVERY != 5
        if present:
            target = bag.joinpath("data", *entry.path.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"x")
        files.append(IndexFile(entry, entry.size if present else None, present))
    (bag / "index.html").write_text(render_index(manifest, files), encoding="utf-8")
    return bag, files


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize("year", YEARS)
def test_students_page_of_the_shipped_year(tmp_path: Path, year: int) -> None:
    manifest = load_manifest(shipped_manifest_path(year))
    bag, files = _bag(tmp_path, manifest)
    index = bag / "index.html"
    dom = run_chromium(tmp_path, "--dump-dom", index.as_uri()).stdout
    page = Page(dom)

    # Every present file is linked locally, and every local link opens a file of the bag.
    local = set(assert_local_links_resolve(index, dom))
    assert len(local) == sum(f.present for f in files)

    # One section per lecture and homework, in course order, then the course-wide links.
    headings = [part.split("</h2>")[0] for part in dom.split("<h2>")[1:]]
    expected = [f"Lecture {n}" for n in range(1, 16)] + [f"HW{n:02d}" for n in range(1, 16)]
    assert headings == [*expected, "Other"]

    # Each homework's sample code is linked under its heading.
    for n in range(1, 16):
        section = dom.split(f"<h2>HW{n:02d}</h2>")[1].split("</section>")[0]
        quick = section.split('class="code-links"')
        code = [f for f in files if f.entry.section == f"HW{n:02d}" and f.entry.kind == "code"]
        if any(f.present for f in code):
            assert len(quick) == 2, f"HW{n:02d}: no sample-code line"

    # What a student needs: titles, kinds, sizes, online links; no maintainers' notes.
    assert len(page.with_class("file")) == len(manifest.files)
    assert len(page.with_class("link")) == len(manifest.links)
    assert len(page.with_class("where")) == len(manifest.files)
    for entry in manifest.files:
        assert entry.note is None or entry.note not in page.text, entry.id
    assert "[V]" not in page.text and "Seen in:" not in page.text

    shot = tmp_path / "page.png"
    run_chromium(tmp_path, "--window-size=1280,2000", f"--screenshot={shot}", index.as_uri())
    assert _png_size(shot) == (1280, 2000)
    assert shot.stat().st_size > 20_000  # text was drawn, not a blank page
