"""Planning a sync: what each file needs, in which order sources are tried, filters, offline."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from factories import blob, make_manifest, sha
from lhymirror.core.errors import UsageError
from lhymirror.fetch.plan import (
    PlanItem,
    from_base_source,
    mirror_source,
    plan_sync,
)
from lhymirror.manifest.model import Manifest
from lhymirror.mirror.store import FileRecord, MirrorStore, part_key

YEAR = 2022
UPSTREAM = "https://speech.example.edu/~hylee/ml/2022/rule%20(v2).pdf?dl=1"


def entry(entry_id: str = "slides", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": entry_id,
        "kind": "slide",
        "path": f"slides/{entry_id}.pdf",
        "urls": [UPSTREAM],
    }
    data.update(fields)
    return data


def place(store: MirrorStore, path: str, data: bytes) -> Path:
    target = store.file_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def record(store: MirrorStore, entry_id: str, path: str, data: bytes) -> None:
    target = store.file_path(path)
    store.save_record(
        FileRecord(
            id=entry_id,
            path=path,
            size=len(data),
            sha256=sha(data),
            mtime_ns=target.stat().st_mtime_ns,
            verified_at="2024-01-01T00:00:00Z",
        )
    )


def only_item(manifest: Manifest, store: MirrorStore, **options: Any) -> PlanItem:
    plan = plan_sync(manifest, store, **options)
    assert len(plan.items) == 1
    return plan.items[0]


@pytest.fixture
def store(tmp_path: Path) -> MirrorStore:
    return MirrorStore(tmp_path / "mirror", YEAR)


# -- what each file needs ------------------------------------------------------------------


def test_missing_file_is_fetched_from_the_manifest_sources(store: MirrorStore) -> None:
    item = only_item(make_manifest(entry()), store)
    assert item.action == "fetch"
    assert item.reason == "missing"
    assert item.sources == (UPSTREAM,)


def test_verified_unchanged_file_is_up_to_date(store: MirrorStore) -> None:
    data = blob(1000, 1)
    manifest = make_manifest(entry(size=1000, sha256=sha(data)))
    place(store, "slides/slides.pdf", data)
    record(store, "slides", "slides/slides.pdf", data)
    item = only_item(manifest, store)
    assert item.action == "up-to-date"
    assert item.sources == ()


def test_recorded_checksum_counts_when_the_manifest_has_none(store: MirrorStore) -> None:
    data = blob(1000, 2)
    place(store, "slides/slides.pdf", data)
    record(store, "slides", "slides/slides.pdf", data)
    item = only_item(make_manifest(entry()), store)
    assert item.action == "up-to-date"
    assert item.expected.origin == "recorded"


def test_rehash_verifies_even_unchanged_files(store: MirrorStore) -> None:
    data = blob(1000, 3)
    place(store, "slides/slides.pdf", data)
    record(store, "slides", "slides/slides.pdf", data)
    item = only_item(make_manifest(entry(sha256=sha(data))), store, rehash=True)
    assert item.action == "verify"
    assert item.sources == (UPSTREAM,)


def test_file_touched_since_verified_is_verified_again(store: MirrorStore) -> None:
    data = blob(1000, 4)
    target = place(store, "slides/slides.pdf", data)
    record(store, "slides", "slides/slides.pdf", data)
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert only_item(make_manifest(entry(sha256=sha(data))), store).action == "verify"


def test_pinned_file_without_record_is_verified(store: MirrorStore) -> None:
    data = blob(1000, 5)
    place(store, "slides/slides.pdf", data)
    assert only_item(make_manifest(entry(sha256=sha(data))), store).action == "verify"


def test_record_of_an_older_pin_does_not_count(store: MirrorStore) -> None:
    old = blob(1000, 6)
    place(store, "slides/slides.pdf", old)
    record(store, "slides", "slides/slides.pdf", old)
    item = only_item(make_manifest(entry(sha256=sha(blob(1000, 7)))), store)
    assert item.action == "verify"


def test_present_file_never_verified_is_fetched(store: MirrorStore) -> None:
    place(store, "slides/slides.pdf", blob(10, 8))
    item = only_item(make_manifest(entry()), store)
    assert (item.action, item.reason) == ("fetch", "present but never verified")


def test_manual_only_file_is_a_manual_step(store: MirrorStore) -> None:
    manual = entry(manual="Download it from the course page after logging in.")
    del manual["urls"]
    item = only_item(make_manifest(manual), store)
    assert item.action == "manual"
    assert "course page" in item.reason
    place(store, "slides/slides.pdf", blob(10, 9))
    item = only_item(make_manifest(manual), store)
    assert item.action == "manual"
    assert "lhymirror add" in item.reason


def test_partial_bytes_reduce_what_is_still_needed(store: MirrorStore) -> None:
    manifest = make_manifest(entry(size=10_000))
    store.ensure_dirs()
    store.partial_path("slides").write_bytes(blob(4000, 10))
    plan = plan_sync(manifest, store)
    assert plan.items[0].held_bytes == 4000
    assert plan.bytes_still_needed() == 6000
    assert plan.bytes_to_fetch() == 10_000


# -- split files ---------------------------------------------------------------------------


def split_entry() -> dict[str, Any]:
    return {
        "id": "hw04-data",
        "kind": "dataset",
        "path": "data/hw04.tar.gz",
        "size": 3000,
        "parts": [
            "https://files.example.org/hw04.partaa",
            {"urls": ["https://files.example.org/hw04.partab", "gdrive:1AbCdEfGhIjKlMnOp"]},
        ],
    }


def test_split_file_plans_each_part_with_mirrors_first(store: MirrorStore) -> None:
    mirror = "http://127.0.0.1:9/wget"
    item = only_item(make_manifest(split_entry()), store, mirrors=[mirror])
    assert item.action == "fetch"
    assert item.sources == ()
    assert [p.key for p in item.parts] == [part_key("hw04-data", 0), part_key("hw04-data", 1)]
    assert item.parts[1].sources == (
        f"{mirror}/files.example.org/hw04.partab",
        "https://files.example.org/hw04.partab",
        "gdrive:1AbCdEfGhIjKlMnOp",
    )
    assert item.bytes_still_needed() == 3000  # parts are joined in place: no room for a copy


def test_split_file_takes_the_whole_file_from_another_mirror_first(
    store: MirrorStore, tmp_path: Path
) -> None:
    item = only_item(make_manifest(split_entry()), store, from_bases=[str(tmp_path / "other")])
    assert item.sources == ((tmp_path / "other" / "2022" / "data" / "hw04.tar.gz").as_uri(),)
    assert len(item.parts) == 2


def test_assembled_parts_count_as_held(store: MirrorStore) -> None:
    store.ensure_dirs()
    store.assembly_path("hw04-data").write_bytes(blob(2000, 11))
    item = only_item(make_manifest(split_entry()), store)
    assert item.held_bytes == 2000


# -- source order --------------------------------------------------------------------------


def test_source_order_is_from_then_mirror_then_manifest(store: MirrorStore, tmp_path: Path) -> None:
    local = tmp_path / "usb stick"
    manifest = make_manifest(
        entry(path="slides/rule (v2).pdf", urls=[UPSTREAM, "gdrive:1AbCdEfGhIjK"])
    )
    item = only_item(
        manifest,
        store,
        from_bases=["https://backup.example.net/ml/", str(local)],
        mirrors=["http://127.0.0.1:8000/m"],
    )
    assert item.sources == (
        "https://backup.example.net/ml/2022/slides/rule%20%28v2%29.pdf",
        (local / "2022" / "slides" / "rule (v2).pdf").as_uri(),
        "http://127.0.0.1:8000/m/speech.example.edu/~hylee/ml/2022/rule%20(v2).pdf?dl=1",
        UPSTREAM,
        "gdrive:1AbCdEfGhIjK",
    )


def test_mirror_rewrite_keeps_port_and_query_and_skips_drive() -> None:
    assert (
        mirror_source("https://m.example/x/", "https://host.example:8443/a/b.pdf?x=1&y=2")
        == "https://m.example/x/host.example:8443/a/b.pdf?x=1&y=2"
    )
    assert mirror_source("https://m.example", "gdrive:1AbCdEfGhIjK") is None
    assert mirror_source("https://m.example", "kaggle:ml2022spring-hw1") is None


def test_mirror_rewrite_to_a_local_wget_tree(tmp_path: Path) -> None:
    source = mirror_source(str(tmp_path), "https://h.example/a%20b/c.pdf")
    assert source == (tmp_path / "h.example" / "a b" / "c.pdf").as_uri()


def test_from_base_accepts_file_urls(tmp_path: Path) -> None:
    assert (
        from_base_source(tmp_path.as_uri(), 2021, "a/b.pdf")
        == (tmp_path / "2021" / "a" / "b.pdf").as_uri()
    )


def test_duplicate_sources_are_tried_once(store: MirrorStore) -> None:
    item = only_item(make_manifest(entry()), store, from_bases=[], mirrors=[])
    assert item.sources == (UPSTREAM,)
    item = only_item(
        make_manifest(entry(urls=[UPSTREAM])), store, mirrors=["https://a", "https://a"]
    )
    assert (
        item.sources.count("https://a/speech.example.edu/~hylee/ml/2022/rule%20(v2).pdf?dl=1") == 1
    )


@pytest.mark.parametrize(
    ("make_entry", "options", "host"),
    [
        (lambda: entry(urls=["https://Speech.Example.edu/a.pdf"]), {}, "speech.example.edu"),
        (split_entry, {}, "files.example.org"),
        (entry, {"mirrors": ["https://mirror.example/x"]}, None),
        (entry, {"from_bases": ["https://class.example/m"]}, None),
        (entry, {"from_bases": ["/srv/other"]}, None),
    ],
)
def test_per_host_cap_applies_to_manifest_hosts_only(
    store: MirrorStore, make_entry: Any, options: dict[str, Any], host: str | None
) -> None:
    item = only_item(make_manifest(make_entry()), store, **options)
    assert item.capped_host == host


# -- offline -------------------------------------------------------------------------------


def test_offline_withholds_network_sources(store: MirrorStore) -> None:
    plan = plan_sync(make_manifest(entry(), split_entry()), store, offline=True)
    assert [i.action for i in plan.items] == ["needs-network", "needs-network"]
    assert plan.items[0].withheld == (UPSTREAM,)
    assert plan.to_json()["files"][0]["needs_network"] == [UPSTREAM]


def test_offline_with_a_local_folder_can_still_fetch(store: MirrorStore, tmp_path: Path) -> None:
    item = only_item(make_manifest(entry()), store, offline=True, from_bases=[str(tmp_path)])
    assert item.action == "fetch"
    assert item.sources == ((tmp_path / "2022" / "slides" / "slides.pdf").as_uri(),)


def test_offline_up_to_date_files_need_nothing(store: MirrorStore) -> None:
    data = blob(100, 13)
    place(store, "slides/slides.pdf", data)
    record(store, "slides", "slides/slides.pdf", data)
    assert only_item(make_manifest(entry()), store, offline=True).action == "up-to-date"


# -- filters -------------------------------------------------------------------------------


def test_only_matches_ids_globs_and_paths(store: MirrorStore) -> None:
    manifest = make_manifest(entry("hw01-slides"), entry("hw02-slides"), split_entry())
    ids = lambda plan: [i.id for i in plan.items]  # noqa: E731
    assert ids(plan_sync(manifest, store, only=["hw0*-slides"])) == ["hw01-slides", "hw02-slides"]
    assert ids(plan_sync(manifest, store, only=["data/*"])) == ["hw04-data"]
    assert ids(plan_sync(manifest, store, kinds=["dataset"])) == ["hw04-data"]
    assert ids(plan_sync(manifest, store, only=["hw01-slides"], kinds=["dataset"])) == []


def test_only_matching_nothing_is_a_usage_error(store: MirrorStore) -> None:
    with pytest.raises(UsageError, match=r"no file matches --only.*hw99"):
        plan_sync(make_manifest(entry()), store, only=["hw99*"])


def test_unknown_accept_upstream_id_is_a_usage_error(store: MirrorStore) -> None:
    with pytest.raises(UsageError, match=r"accept-upstream.*nope"):
        plan_sync(make_manifest(entry()), store, accept_upstream=["nope"])


def test_accept_upstream_is_carried_by_the_item(store: MirrorStore) -> None:
    item = only_item(make_manifest(entry(sha256="a" * 64)), store, accept_upstream=["slides"])
    assert item.accept_upstream
    assert item.to_json()["accept_upstream"] is True


# -- purity and output ---------------------------------------------------------------------


def test_planning_writes_nothing(store: MirrorStore) -> None:
    manifest = make_manifest(entry(), split_entry())
    plan_sync(manifest, store, rehash=True, mirrors=["https://m.example"])
    assert not store.root.exists()


def test_plan_is_json_serialisable(store: MirrorStore) -> None:
    plan = plan_sync(make_manifest(entry(), split_entry()), store)
    data = json.loads(json.dumps(plan.to_json()))
    assert data["counts"] == {
        "up_to_date": 0, "verify": 0, "fetch": 2, "manual": 0, "needs_network": 0, "refused": 0,
    }  # fmt: skip
    assert data["files"][1]["parts"][0]["key"] == "hw04-data.part00"


# -- what stands on disk -----------------------------------------------------------------------


def test_a_short_file_is_re_verified_and_says_why(store: MirrorStore) -> None:
    data = blob(100, 31)
    place(store, "slides/slides.pdf", data[:10])
    item = only_item(make_manifest(entry(size=100, sha256=sha(data))), store)
    assert (item.action, item.reason) == (
        "verify",
        "size differs: expected 100 bytes (manifest), got 10",
    )
    assert item.to_json()["problem"]["kind"] == "size"


@pytest.mark.parametrize("odd", ["symlink", "folder"])
def test_what_is_not_a_regular_file_is_refused_not_fetched(
    store: MirrorStore, tmp_path: Path, odd: str
) -> None:
    data = blob(100, 32)
    target = store.year_dir / "slides" / "slides.pdf"
    target.parent.mkdir(parents=True)
    if odd == "symlink":
        (tmp_path / "real.pdf").write_bytes(data)
        target.symlink_to(tmp_path / "real.pdf")
    else:
        target.mkdir()
    item = only_item(make_manifest(entry(size=100, sha256=sha(data))), store, offline=True)
    assert item.action == "refused"
    assert (
        item.reason
        == {
            "symlink": "symlink inside the mirror at slides/slides.pdf (not followed)",
            "folder": "not a regular file (a directory)",
        }[odd]
    )
    assert item.to_json()["problem"]["text"] == item.reason
    assert not item.needs_transfer and item.sources == ()
