"""The source adapter protocol: a new kind of source is one adapter and one registry entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from factories import blob, sha
from lhymirror.core.errors import DownloadError
from lhymirror.fetch.download import Downloader
from lhymirror.fetch.sources import registry
from lhymirror.fetch.sources.base import (
    Body,
    Request,
    Resolved,
    SourceFailed,
    SourceSettings,
    TryAgain,
)
from lhymirror.fetch.transfer import Target
from lhymirror.mirror.store import MirrorStore


class MemoryBody:
    sniff = True
    accepts_ranges = False
    etag = '"m1"'
    last_modified = None

    def __init__(self, data: bytes) -> None:
        self._chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
        self.start = 0
        self.total = self.offered_size = len(data)

    def read(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""

    def close(self) -> None:
        pass


class MemoryAdapter:
    """``mem:NAME``: bytes from a dict; the first *flaky* opens fail."""

    needs_network = True

    def __init__(self, files: dict[str, bytes], flaky: int = 0) -> None:
        self.files = files
        self.flaky = flaky
        self.opened: list[int] = []

    def resolve(self, source: str, settings: SourceSettings) -> Resolved:
        name = source.partition(":")[2]
        if name not in self.files:
            raise SourceFailed(f"no file {name!r} in memory")
        return Resolved(source, source, "memory.invalid", detail=name)

    def open(self, resolved: Resolved, request: Request) -> Body:
        self.opened.append(request.offset)
        if self.flaky:
            self.flaky -= 1
            raise TryAgain("memory hiccup", delay=0, cause="connect")
        assert isinstance(resolved.detail, str)
        return MemoryBody(self.files[resolved.detail])


def test_a_registered_adapter_is_used_with_retries_and_verification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = blob(4500, 1)
    adapter = MemoryAdapter({"a": data}, flaky=1)
    monkeypatch.setitem(registry.ADAPTERS, "mem", adapter)
    store = MirrorStore(tmp_path, 2022)
    retries: list[str] = []

    class Events:
        def started(self, *args: object) -> None: ...
        def advanced(self, *args: object) -> None: ...
        def restarted(self, *args: object) -> None: ...
        def retrying(self, key: str, source: str, reason: str, delay: float) -> None:
            retries.append(f"{source}: {reason}")

    downloader = Downloader(store, sleep=lambda _: None, events=Events())
    target = Target("a", tmp_path / "a.bin", len(data), sha(data), "a.bin")
    result = downloader.fetch(target, ["mem:missing", "MEM:a"], session=None)  # type: ignore[arg-type]
    assert (result.source, result.sha256, result.etag) == ("MEM:a", sha(data), '"m1"')
    assert target.final_path.read_bytes() == data
    assert retries == ["MEM:a: memory hiccup"]
    assert adapter.opened == [0, 0]


def test_a_scheme_no_adapter_handles_fails_that_source_only(tmp_path: Path) -> None:
    store = MirrorStore(tmp_path, 2022)
    target = Target("a", tmp_path / "a.bin", 3, None, "a.bin")
    with pytest.raises(DownloadError) as caught:
        Downloader(store).fetch(target, ["ftp://example.org/a", "nocolon"], session=None)  # type: ignore[arg-type]
    detail = caught.value.detail or ""
    assert "ftp://example.org/a: not a usable source" in detail
    assert "unknown source scheme 'ftp'" in detail
    assert "nocolon: not a usable source" in detail


def test_the_registry_maps_every_manifest_scheme() -> None:
    schemes = ("https://h/a", "HTTP://h/a", "gdrive:abcdefghijk", "kaggle:c", "file:///x")
    for source in (*schemes, "wayback:2022/https://h/a"):
        assert registry.adapter_for(source) is not None
    assert registry.adapter_for("ftp:x") is None
    assert registry.adapter_for("no scheme") is None
    assert not registry.adapter_for("file:///x").needs_network  # type: ignore[union-attr]


def test_the_plan_withholds_offline_exactly_the_sources_whose_adapter_needs_the_network() -> None:
    """ "Offline" is decided in the plan (by ``is_local_source``, which loads no adapter); it
    must agree with what each adapter says of itself."""
    from lhymirror.manifest.sources import is_local_source

    examples = {
        "https": "https://h/a",
        "http": "http://h/a",
        "gdrive": "gdrive:abcdefghijk",
        "kaggle": "kaggle:c",
        "file": "file:///x",
        "wayback": "wayback:2022/https://h/a",
    }
    assert set(examples) == set(registry.ADAPTERS)
    for scheme, source in examples.items():
        assert registry.ADAPTERS[scheme].needs_network is not is_local_source(source), scheme
