"""The archive's ``index.html``: an offline, self-contained page listing what the bag holds.

The page sits at the top of the bag, next to ``data/``. It is for students: grouped by section in
course order (lectures, then homework, then the rest, like the course page), every file shows its
title, kind and size, links to its local copy under ``data/`` and to where it can be found online;
a homework's sample code is linked under its heading and listed right after its slides; videos,
notebooks and competition pages are listed as online links, marked as such; files left out of a
``--partial`` archive are marked missing. Maintainers' provenance notes stay in ``lhymirror.toml``.

The page fetches nothing: inline CSS only, no scripts, images or fonts, so it opens from a USB
stick on a phone or a laptop. Its text depends only on its inputs (no clock), because it is part of
an archive that must be byte-identical when packed twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html import escape
from typing import TypeVar
from urllib.parse import quote, urlsplit

from lhymirror.core.units import count_of, format_size, slugify
from lhymirror.manifest.listing import group_by_section
from lhymirror.manifest.model import FileEntry, Link, Manifest, section_sort_key
from lhymirror.manifest.sources import (
    GDriveSource,
    HttpSource,
    KaggleSource,
    WaybackSource,
    parse_source,
)

OTHER_SECTION = "Other"
_DEFAULT_MISSING_NOTE = (
    "left out, not verified in the mirror when this archive was made. "
    "Get them from the course page or with lhymirror sync."
)

_FILE_KIND_LABELS = {
    "slide": "slides",
    "hw-slide": "HW slides",
    "dataset": "dataset",
    "code": "code",
    "other": "file",
}
# Within a section: the homework's slides, then its sample code, then its data.
_KIND_ORDER = {"hw-slide": 0, "slide": 0, "code": 1, "dataset": 2, "other": 3}
_HOST_LABELS = {
    "speech.ee.ntu.edu.tw": "course server",
    "github.com": "GitHub",
    "raw.githubusercontent.com": "GitHub",
    "media.githubusercontent.com": "GitHub",
    "www.dropbox.com": "Dropbox",
    "onedrive.live.com": "OneDrive",
    "drive.google.com": "Google Drive",
}
_LINK_KIND_LABELS = {
    "video": "video",
    "notebook": "notebook",
    "competition": "competition",
    "page": "web page",
}


@dataclass(frozen=True)
class IndexFile:
    """One file entry as the page shows it: its size in the archive and whether it is there.

    ``reason`` says why a missing file is not there (``"checksum mismatch"``); it is shown next
    to the file.
    """

    entry: FileEntry
    size: int | None
    present: bool
    reason: str | None = None


def local_href(path: str) -> str:
    """Relative link from the bag's top folder to a payload file: ``data/<encoded path>``.

    Each segment is percent-encoded (spaces, ``(``, ``&``, ``#``, non-ASCII…) and ``/`` kept, so
    the link resolves to the file on every browser and file system.
    """
    return "data/" + "/".join(quote(segment, safe="") for segment in path.split("/"))


def render_index(
    manifest: Manifest, files: Sequence[IndexFile], *, missing_note: str | None = None
) -> str:
    """The whole ``index.html`` of a bag, as text to be written UTF-8 encoded.

    *files* are shown in the order given within each section; *missing_note* explains why the
    entries marked missing are absent (a default note is used when there are some and no note).
    """
    missing = sum(1 for f in files if not f.present)
    if missing and missing_note is None:
        missing_note = _DEFAULT_MISSING_NOTE
    title = f"{manifest.course} {manifest.year}"
    body = [
        *_header_lines(manifest, files),
        *_missing_note_lines(missing, missing_note),
        *_sections_lines(files, manifest.links),
        *_footer_lines(),
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="color-scheme" content="light dark">',
            '<meta name="generator" content="lhymirror">',
            f"<title>{escape(title)} (offline copy, v{escape(manifest.version)})</title>",
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


# ---------------------------------------------------------------------------------------------
# Page parts


def _header_lines(manifest: Manifest, files: Sequence[IndexFile]) -> Iterator[str]:
    present = [f for f in files if f.present]
    total = sum(f.size or 0 for f in present)
    facts = [f"{manifest.year}", f"manifest version {escape(manifest.version)}"]
    if manifest.released is not None:
        facts.append(f"released {manifest.released.isoformat()}")
    counts = [f"{count_of(len(present), 'file')} here", format_size(total)]
    if len(present) < len(files):
        counts.append(f'<strong class="missing">{len(files) - len(present)} missing</strong>')
    counts.append(count_of(len(manifest.links), "online link"))
    yield "<header>"
    yield f"<h1>{escape(manifest.course)}</h1>"
    yield f'<p class="facts">{_joined_phrases(facts)}</p>'
    yield f'<p class="counts">{_joined_phrases(counts)}</p>'
    if manifest.homepage:
        yield f"<p>Course homepage: {_online_link(manifest.homepage, manifest.homepage)}</p>"
    yield "</header>"


def _missing_note_lines(missing: int, note: str | None) -> Iterator[str]:
    if not note:
        return
    label = f"{count_of(missing, 'file')} missing" if missing else "Note"
    yield f'<p class="note" role="note"><strong>{label}:</strong> {escape(note)}</p>'


def _sections_lines(files: Sequence[IndexFile], links: Sequence[Link]) -> Iterator[str]:
    sections = _grouped_by_section(files, links)
    ids = _section_ids([name for name, _, _ in sections])
    if len(sections) > 1:
        yield '<nav aria-label="Sections"><ul class="toc">'
        for (name, _, _), anchor in zip(sections, ids, strict=True):
            yield f'<li><a href="#{anchor}">{escape(name)}</a></li>'
        yield "</ul></nav>"
    yield "<main>"
    for (name, section_files, section_links), anchor in zip(sections, ids, strict=True):
        yield f'<section id="{anchor}">'
        yield f"<h2>{escape(name)}</h2>"
        yield from _code_links_lines(section_files)
        if section_files:
            yield '<ul class="files">'
            yield from (_file_item(f) for f in section_files)
            yield "</ul>"
        if section_links:
            yield '<ul class="links">'
            yield from (_link_item(link) for link in section_links)
            yield "</ul>"
        yield "</section>"
    yield "</main>"


def _footer_lines() -> Iterator[str]:
    yield "<footer>"
    yield (
        "<p>Offline copy made with lhymirror. The files are in the <code>data</code> folder; "
        "check them with <code>lhymirror verify</code> or, inside this folder, "
        "<code>sha256sum -c manifest-sha256.txt</code>. "
        "Links marked <em>online</em> need an internet connection.</p>"
    )
    yield "</footer>"


def _code_links_lines(files: Sequence[IndexFile]) -> Iterator[str]:
    """A homework's sample code, linked right under its heading."""
    code = [f for f in files if f.entry.kind == "code" and f.present]
    if code:
        links = (
            f'<a href="{escape(local_href(f.entry.path))}">'
            f"{escape(f.entry.path.rsplit('/', 1)[-1])}</a>"
            for f in code
        )
        yield f'<p class="code-links">Sample code: {" · ".join(links)}</p>'


def _file_item(item: IndexFile) -> str:
    entry = item.entry
    title = escape(entry.title or entry.path.rsplit("/", 1)[-1])
    kind = escape(_FILE_KIND_LABELS.get(entry.kind, entry.kind))
    where = _online_sources(entry)
    path = escape(entry.path)
    if item.present:
        href = escape(local_href(entry.path))
        exact = "" if item.size is None else f' title="{item.size} bytes"'
        size = f'<span class="size"{exact}>{format_size(item.size)}</span>'
        return (
            f'<li class="file"><a href="{href}" title="{path}">{title}</a> '
            f'<span class="kind">{kind}</span> {size}{where}</li>'
        )
    reason = f'<span class="reason">{escape(item.reason)}</span>' if item.reason else ""
    return (
        f'<li class="file missing"><span class="title">{title}</span> '
        f'<span class="kind">{kind}</span> <span class="badge">missing</span>'
        f'<span class="path">belongs at {path}</span>{reason}{where}</li>'
    )


def _online_sources(entry: FileEntry) -> str:
    """One online link per kind of place the file comes from (the first of each), or the manual
    step; the full, ordered source list stays in ``lhymirror.toml``."""
    first_part = entry.parts[0].urls if entry.parts else entry.urls or ()
    seen: dict[str, str] = {}
    for text in first_part:
        label, url = _source_link(text)
        seen.setdefault(label, url)
    links = [_online_link(url, label) for label, url in seen.items()]
    if entry.parts:
        links = [f"{link} (part 1 of {len(entry.parts)})" for link in links]
    if entry.manual:
        links.append(f"by hand: {_linked_text(entry.manual)}")
    if not links:
        return ""
    return f'<span class="where">online: {" · ".join(links)}</span>'


_URL_IN_TEXT = re.compile(r"https://[^\s<>\"']+")


def _linked_text(text: str) -> str:
    """*text* escaped, with the https URLs in it as online links."""
    out, at = [], 0
    for match in _URL_IN_TEXT.finditer(text):
        url = match.group().rstrip(".,;:)")
        out += [escape(text[at : match.start()]), _online_link(url, url)]
        at = match.start() + len(url)
    return "".join([*out, escape(text[at:])])


def _source_link(text: str) -> tuple[str, str]:
    """A student-readable label and a browser URL for one source."""
    source = parse_source(text)
    if isinstance(source, GDriveSource):
        return "Google Drive", f"https://drive.google.com/file/d/{source.file_id}/view"
    if isinstance(source, KaggleSource):
        return "Kaggle", source.page_url
    if isinstance(source, WaybackSource):
        return "Internet Archive", source.page_url
    assert isinstance(source, HttpSource)
    host = urlsplit(source.url).hostname or source.url
    return _HOST_LABELS.get(host, host), source.url


def _link_item(link: Link) -> str:
    kind = escape(_LINK_KIND_LABELS.get(link.kind, link.kind))
    return (
        f'<li class="link">{_online_link(link.url, link.title or link.url)} '
        f'<span class="kind">{kind}</span> <span class="badge online">online</span></li>'
    )


def _online_link(url: str, text: str) -> str:
    return f'<a class="online" href="{escape(url)}" rel="noopener">{escape(text)}</a>'


# ---------------------------------------------------------------------------------------------
# Grouping


Section = tuple[str, list[IndexFile], list[Link]]
_T = TypeVar("_T")


def _grouped_by_section(files: Sequence[IndexFile], links: Sequence[Link]) -> list[Section]:
    """Sections in course order; within one, slides, code, data, others, each in the order
    given; entries without a section go last as Other."""
    sections: dict[str | None, Section] = {}
    for key, group in group_by_section(list(files), lambda f: f.entry.section):
        ordered = sorted(group, key=lambda f: _KIND_ORDER.get(f.entry.kind, 3))  # stable
        sections[key] = (key or OTHER_SECTION, ordered, [])
    for key, link_group in group_by_section(list(links), lambda link: link.section):
        sections.setdefault(key, (key or OTHER_SECTION, [], []))[2].extend(link_group)
    return [sections[key] for key in sorted(sections, key=section_sort_key)]


def _section_ids(names: Sequence[str]) -> list[str]:
    """Unique, readable fragment ids (``lecture-1``) for the table of contents."""
    ids: list[str] = []
    for index, name in enumerate(names):
        anchor = slugify(name, default="section")
        if anchor in ids:
            anchor = f"{anchor}-{index}"
        ids.append(anchor)
    return ids


def _joined_phrases(phrases: Sequence[str]) -> str:
    """Phrases separated by dots; each kept on one line when a narrow screen wraps the text."""
    return " · ".join(f"<span>{phrase}</span>" for phrase in phrases)


# ---------------------------------------------------------------------------------------------
# Style: system fonts, one readable column, wraps on narrow screens, follows the dark setting.

_STYLE = """
:root{--fg:#1d1d1f;--muted:#5f6368;--bg:#fff;--card:#f4f5f7;--link:#0b57d0;--bad:#b3261e;
--line:#dadce0}
@media (prefers-color-scheme:dark){:root{--fg:#e8eaed;--muted:#9aa0a6;--bg:#17181a;
--card:#222427;--link:#8ab4f8;--bad:#f28b82;--line:#3c4043}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:52rem;padding:1rem;font:16px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK TC","PingFang TC","Microsoft JhengHei",sans-serif;
color:var(--fg);background:var(--bg);overflow-wrap:anywhere}
h1{font-size:1.5rem;margin:.5rem 0}
h2{font-size:1.15rem;margin:1.5rem 0 .5rem;padding-bottom:.25rem;border-bottom:1px solid
var(--line)}
a{color:var(--link)}
.facts,.counts,footer{color:var(--muted)}
.facts,.counts{margin:.25rem 0}
.facts span,.counts span{white-space:nowrap}
.note{background:var(--card);border-left:4px solid var(--bad);padding:.5rem .75rem}
.toc{display:flex;flex-wrap:wrap;gap:.25rem .75rem;list-style:none;padding:0}
ul.files,ul.links{list-style:none;padding:0;margin:0}
li.file{background:var(--card);border-radius:8px;margin:.4rem 0;padding:.5rem .75rem}
li.link{padding:.15rem .75rem}
li.file>a,li.link>a,li .title{font-weight:600}
.kind,.size,.badge{display:inline-block;font-size:.8rem;color:var(--muted);margin-left:.4rem}
.badge{border:1px solid currentColor;border-radius:4px;padding:0 .3rem}
.missing,.missing .badge{color:var(--bad)}
li.missing .title{text-decoration:line-through}
.where,.reason,.path{display:block;font-size:.8rem;color:var(--muted)}
.where a{color:var(--muted)}
.reason{color:var(--bad)}
.code-links{margin:.25rem 0 .5rem}
footer{margin-top:2rem;font-size:.85rem}
""".strip()
