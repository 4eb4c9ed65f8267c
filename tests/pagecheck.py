"""Checks of an index page shared by the page and archive tests: parsed links, a real browser."""

from __future__ import annotations

import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from tools import find_tool, in_ci, require_tool


class Page(HTMLParser):
    """The parts of a page the tests look at: every tag with its attributes, and the text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text_parts: list[str] = []
        self._in_style = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if not self._in_style:
            self.text_parts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def hrefs(self) -> list[str]:
        return [attrs["href"] for tag, attrs in self.tags if tag == "a" and "href" in attrs]

    def local_hrefs(self) -> list[str]:
        return [h for h in self.hrefs() if not h.startswith(("http://", "https://", "#"))]

    def with_class(self, name: str) -> list[tuple[str, dict[str, str]]]:
        return [(t, a) for t, a in self.tags if name in a.get("class", "").split()]


def assert_local_links_resolve(index: Path, html: str | None = None) -> list[str]:
    """Check every local link of a bag's index.html names a file inside the bag; return them.

    *html* is the page as a browser saw it (its DOM); by default the file itself is parsed.
    """
    bag = index.parent.resolve()
    local = Page(html if html is not None else index.read_text(encoding="utf-8")).local_hrefs()
    for href in local:
        target = (bag / unquote(href)).resolve()
        assert target.is_relative_to(bag), f"{href} leaves the bag"
        assert target.is_file(), f"{href} does not resolve to a file in the bag"
    return local


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Locally the browser tests skip without a browser; in CI, which installs Chromium, they run and
# fail if it is missing (run_chromium -> tools.require_tool).
needs_chromium = pytest.mark.skipif(
    find_tool(*CHROMIUM_NAMES) is None and not in_ci(),
    reason="no Chromium/Chrome installed (Debian: apt-get install chromium)",
)


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with networking features off and a throw-away profile."""
    chromium = require_tool(CHROMIUM_NAMES[0], "chromium", *CHROMIUM_NAMES[1:])
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=True)
