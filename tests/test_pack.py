"""``pack``: a year's mirror as a complete, verified, reproducible, versioned BagIt archive."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import io
import os
import random
import subprocess
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import bagit
import pytest

import factories
from lhymirror.archive.bag import (
    TAG_FILES,
    bag_info_values,
    parse_bag_info,
    parse_checksum_manifest,
)
from lhymirror.archive.pack import (
    IncompleteMirrorError,
    PackResult,
    archive_name,
    bagging_epoch,
    pack_year,
)
from lhymirror.archive.write import FORMATS
from lhymirror.cli import main
from lhymirror.core.errors import IntegrityError, StorageError, UsageError
from lhymirror.core.fsutil import CHUNK_SIZE
from lhymirror.core.units import utc_now
from lhymirror.manifest.model import Manifest, dump_manifest, parse_manifest
from lhymirror.mirror.store import FileRecord, MirrorStore
from tools import require_tool

RELEASED_EPOCH = 1_656_633_600  # 2022-07-01T00:00:00Z
TOP = "lhy-ml-2022-v1"

# ---------------------------------------------------------------------------------------------
# A small mirror built without the network


@dataclass(frozen=True)
class Spec:
    id: str
    kind: str
    section: str
    path: str
    pinned: bool  # size and sha256 in the manifest; otherwise recorded as after a first sync
    manual: bool = False


SPECS = (
    Spec("l01-intro", "slide", "Lecture 1", "slides/intro (v2).pdf", pinned=True),
    Spec("hw01-slides", "hw-slide", "HW01", "hw/HW01.pdf", pinned=False),
    Spec("hw01-data", "dataset", "HW01", "datasets/hw01 資料.csv", pinned=True),
    Spec("hw01-kaggle", "dataset", "HW01", "datasets/kaggle.zip", pinned=False, manual=True),
)


def contents(seed: int = 7) -> dict[str, bytes]:
    """Seeded file contents; the first is larger than one chunk so it streams in pieces."""
    rng = random.Random(seed)
    rows = "\n".join(f"{i},{rng.random():.6f}" for i in range(500))
    return {
        "l01-intro": b"%PDF-1.5\n" + rng.randbytes(CHUNK_SIZE + 4321),
        "hw01-slides": b"%PDF-1.4\n" + rng.randbytes(3000),
        "hw01-data": f"id,value\n{rows}\n".encode(),
        "hw01-kaggle": b"PK\x03\x04" + rng.randbytes(2000),
    }


def make_manifest(data: dict[str, bytes], **top: Any) -> Manifest:
    """The manifest of SPECS, pinned where the spec says so, with *data*'s checksums."""
    files = []
    for spec in SPECS:
        entry: dict[str, Any] = {
            "id": spec.id,
            "kind": spec.kind,
            "title": spec.id.replace("-", " "),
            "section": spec.section,
            "path": spec.path,
        }
        if spec.manual:
            entry["manual"] = "Download it from Kaggle after accepting the rules."
        else:
            entry["urls"] = [f"https://example.org/{spec.id}"]
        if spec.pinned:
            entry["size"] = len(data[spec.id])
            entry["sha256"] = hashlib.sha256(data[spec.id]).hexdigest()
        files.append(entry)
    raw = {
        "course": "Machine Learning (Hung-yi Lee, NTU)",
        "slug": "lhy-ml",
        "homepage": "https://speech.ee.ntu.edu.tw/~hylee/ml/2022-spring.php",
        "released": dt.date(2022, 7, 1),
        "links": [
            {
                "kind": "video",
                "title": "Lecture 1 video",
                "section": "Lecture 1",
                "url": "https://www.youtube.com/watch?v=Ye018rCVvOo",
            }
        ],
        **top,
    }
    return factories.make_manifest(*files, **raw)


def put_file(store: MirrorStore, entry_id: str, path: str, data: bytes, *, record: bool) -> Path:
    """Write a mirror file, and its record as a verified download would leave it."""
    target = store.year_dir / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    if record:
        store.save_record(
            FileRecord(
                id=entry_id,
                path=path,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                mtime_ns=target.stat().st_mtime_ns,
                verified_at=utc_now(),
            )
        )
    return target


@dataclass
class Course:
    manifest: Manifest
    store: MirrorStore
    data: dict[str, bytes]
    out: Path

    def path(self, entry_id: str) -> Path:
        return self.store.year_dir / self.manifest.file(entry_id).path

    def pack(self, **kwargs: Any) -> PackResult:
        return pack_year(self.manifest, self.store, self.out, **kwargs)


def make_course(base: Path, *, skip: tuple[str, ...] = (), seed: int = 7) -> Course:
    data = contents(seed)
    manifest = make_manifest(data)
    store = MirrorStore(base / "mirror", manifest.year)
    for spec in SPECS:
        if spec.id not in skip:
            put_file(store, spec.id, spec.path, data[spec.id], record=not spec.pinned)
    return Course(manifest, store, data, base / "dist")


@pytest.fixture
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Course:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return make_course(tmp_path)


def members(archive: Path) -> dict[str, bytes]:
    """Every file member of an archive by name (folders left out)."""
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    with tarfile.open(archive) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]


def member_names(archive: Path) -> list[str]:
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            return zf.namelist()
    with tarfile.open(archive) as tf:
        return [m.name + "/" if m.isdir() else m.name for m in tf.getmembers()]


def extract(archive: Path, dest: Path) -> Path:
    """Extract with the standard library (trusted: we wrote it) and return the bag folder."""
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    return dest / TOP


def tag(archive: Path, name: str) -> str:
    return members(archive)[f"{TOP}/{name}"].decode("utf-8")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------------------------------
# The bag


@pytest.mark.parametrize("fmt", FORMATS)
def test_pack_writes_a_named_archive_with_a_sidecar(course: Course, fmt: str) -> None:
    result = course.pack(fmt=fmt)
    name = f"{TOP}{'.zip' if fmt == 'zip' else '.' + fmt}"
    assert result.archive == course.out / name
    assert archive_name(course.manifest, fmt) == name
    digest = hashlib.sha256(result.archive.read_bytes()).hexdigest()
    assert result.sha256 == digest
    assert result.checksum_file.read_text() == f"{digest}  {name}\n"
    assert (result.files, result.missing, result.unchanged) == (4, (), False)
    assert result.payload_bytes == sum(len(d) for d in course.data.values())
    assert leftovers(course.out) == sorted([name, name + ".sha256"])


def test_every_member_is_under_the_top_folder_in_sorted_order(course: Course) -> None:
    names = member_names(course.pack(fmt="tar").archive)
    assert names == sorted(names)
    assert all(name.startswith(f"{TOP}/") for name in names)
    assert {f"{TOP}/{name}" for name in TAG_FILES} <= set(names)
    assert f"{TOP}/data/datasets/" in names
    assert f"{TOP}/data/datasets/hw01 資料.csv" in names


def test_payload_is_the_mirror_bytes(course: Course) -> None:
    files = members(course.pack().archive)
    for spec in SPECS:
        assert files[f"{TOP}/data/{spec.path}"] == course.data[spec.id]


def test_checksum_manifests_cover_payload_and_tag_files(course: Course) -> None:
    files = members(course.pack().archive)
    payload = parse_checksum_manifest(files[f"{TOP}/manifest-sha256.txt"].decode(), where="m")
    assert payload == {
        f"data/{spec.path}": hashlib.sha256(course.data[spec.id]).hexdigest() for spec in SPECS
    }
    tags = parse_checksum_manifest(files[f"{TOP}/tagmanifest-sha256.txt"].decode(), where="t")
    assert sorted(tags) == sorted(set(TAG_FILES) - {"tagmanifest-sha256.txt"})
    for name, sha in tags.items():
        assert hashlib.sha256(files[f"{TOP}/{name}"]).hexdigest() == sha


def test_bag_info_describes_the_bag(course: Course) -> None:
    fields = parse_bag_info(tag(course.pack().archive, "bag-info.txt"), where="bag-info.txt")
    values = dict(fields)
    total = sum(len(d) for d in course.data.values())
    assert values["Payload-Oxum"] == f"{total}.4"
    assert values["Bagging-Date"] == "2022-07-01"
    assert values["External-Identifier"] == TOP
    assert values["Manifest-Version"] == "1"
    assert values["Bag-Software-Agent"].startswith("lhymirror ")
    assert "National Taiwan University" in values["Source-Organization"]
    assert "Machine Learning" in values["External-Description"]
    assert bag_info_values(fields, "Missing-File") == []


def test_bagged_manifest_has_every_size_and_sha256(course: Course) -> None:
    text = tag(course.pack().archive, "lhymirror.toml")
    bagged = parse_manifest(text, where="lhymirror.toml")
    for entry in bagged.files:
        data = course.data[entry.id]
        assert (entry.size, entry.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert bagged.links == course.manifest.links
    assert tomllib.loads(text)["version"] == "1"


def test_index_page_links_every_packed_file_inside_the_archive(course: Course) -> None:
    archive = course.pack().archive
    page = tag(archive, "index.html")
    names = set(members(archive))
    hrefs = [part.split('"', 1)[0] for part in page.split('href="')[1:]]
    local = [unquote(href) for href in hrefs if href.startswith("data/")]
    assert sorted(local) == sorted(f"data/{spec.path}" for spec in SPECS)
    assert all(f"{TOP}/{href}" in names for href in local)
    assert "https://www.youtube.com/watch?v=Ye018rCVvOo" in page


@pytest.mark.parametrize("fmt", FORMATS)
def test_extracted_bag_validates_with_the_bagit_package(
    course: Course, tmp_path: Path, fmt: str
) -> None:
    bag = bagit.Bag(str(extract(course.pack(fmt=fmt).archive, tmp_path / "x")))
    bag.validate()
    assert bag.info["Payload-Oxum"].endswith(".4")


def test_manifest_sha256_is_valid_sha256sum_input_inside_the_bag(
    course: Course, tmp_path: Path
) -> None:
    require_tool("sha256sum", "coreutils")
    bag = extract(course.pack().archive, tmp_path / "x")
    for listing in ("manifest-sha256.txt", "tagmanifest-sha256.txt"):
        done = subprocess.run(
            ["sha256sum", "--strict", "-c", listing], cwd=bag, capture_output=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
    sidecar = course.out / f"{TOP}.zip.sha256"
    done = subprocess.run(["sha256sum", "-c", sidecar.name], cwd=course.out, check=False)
    assert done.returncode == 0


def test_pack_works_with_networking_disabled(
    course: Course, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    def no_network(*_: Any, **__: Any) -> None:
        raise AssertionError("pack tried to use the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    assert course.pack(fmt="tar.gz").files == 4


# ---------------------------------------------------------------------------------------------
# Reproducibility


@pytest.mark.parametrize("fmt", FORMATS)
def test_packing_twice_gives_identical_bytes(course: Course, tmp_path: Path, fmt: str) -> None:
    first = course.pack(fmt=fmt).archive.read_bytes()
    again = pack_year(course.manifest, course.store, tmp_path / "again", fmt=fmt)
    assert again.archive.read_bytes() == first


@pytest.mark.parametrize("fmt", FORMATS)
def test_packing_on_another_machine_gives_identical_bytes(tmp_path: Path, fmt: str) -> None:
    here = make_course(tmp_path / "here")
    there = make_course(tmp_path / "elsewhere" / "deeper")
    old_umask = os.umask(0o077)
    try:
        for index, spec in enumerate(SPECS):
            path = there.path(spec.id)
            os.utime(path, ns=(10**18 + index, 10**18 + index * 7))
            path.chmod(0o600 if index % 2 else 0o755)
        (there.store.year_dir / "slides").chmod(0o700)
        first = here.pack(fmt=fmt).archive.read_bytes()
        second = there.pack(fmt=fmt).archive.read_bytes()
    finally:
        os.umask(old_umask)
    assert first == second


def test_the_bagging_date_comes_from_source_date_epoch_then_released(
    course: Course, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = course.manifest
    assert bagging_epoch(manifest, environ={}) == RELEASED_EPOCH
    assert bagging_epoch(manifest, environ={"SOURCE_DATE_EPOCH": "1700000000"}) == 1700000000
    assert bagging_epoch(manifest, 42, environ={"SOURCE_DATE_EPOCH": "1700000000"}) == 42
    unreleased = replace(manifest, released=None)
    assert bagging_epoch(unreleased, environ={}) == 315532800  # 1980-01-01
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        bagging_epoch(manifest, environ={"SOURCE_DATE_EPOCH": "yesterday"})
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # 2023-11-14
    archive = course.pack(fmt="tar").archive
    assert "Bagging-Date: 2023-11-14" in tag(archive, "bag-info.txt")
    with tarfile.open(archive) as tf:
        assert {m.mtime for m in tf.getmembers()} == {1700000000}


# ---------------------------------------------------------------------------------------------
# Complete by default


def assert_refused(course: Course, expected: dict[str, str]) -> IncompleteMirrorError:
    """Packing refuses, names exactly *expected* (path → reason fragment), leaves nothing."""
    with pytest.raises(IncompleteMirrorError) as caught:
        course.pack()
    error = caught.value
    assert isinstance(error, IntegrityError)
    found = {item.path: item.reason for item in error.missing}
    assert sorted(found) == sorted(expected)
    for path, fragment in expected.items():
        assert fragment in found[path], (path, found[path])
    assert f"{len(expected)} of 4 files" in error.message
    assert "--partial" in error.message
    assert leftovers(course.out) == []
    return error


def test_missing_and_damaged_files_are_all_listed_and_nothing_is_written(course: Course) -> None:
    course.path("hw01-slides").unlink()
    data = bytearray(course.data["l01-intro"])
    data[CHUNK_SIZE + 10] ^= 0xFF  # same size, one byte flipped past the first chunk
    course.path("l01-intro").write_bytes(bytes(data))
    course.path("hw01-data").write_bytes(b"short")
    size = len(course.data["hw01-data"])
    assert_refused(
        course,
        {
            "hw/HW01.pdf": "not in the mirror",
            "slides/intro (v2).pdf": "sha256 differs",
            "datasets/hw01 資料.csv": f"size differs: expected {size} bytes (manifest), got 5",
        },
    )


def test_every_damaged_file_is_listed_when_found_while_packing(course: Course) -> None:
    for entry_id in ("l01-intro", "hw01-kaggle"):
        data = bytearray(course.data[entry_id])
        data[-1] ^= 0x01
        course.path(entry_id).write_bytes(bytes(data))
    assert_refused(
        course,
        {"slides/intro (v2).pdf": "sha256 differs", "datasets/kaggle.zip": "(recorded), got"},
    )


def test_a_manual_only_file_not_yet_imported_counts_as_missing(tmp_path: Path) -> None:
    course = make_course(tmp_path, skip=("hw01-kaggle",))
    assert_refused(
        course, {"datasets/kaggle.zip": "not in the mirror (manual download: import it with"}
    )


def test_a_file_never_verified_counts_as_missing(course: Course) -> None:
    course.store.record_path("hw01-slides").unlink()  # present, but no pin and no record
    assert_refused(course, {"hw/HW01.pdf": "no checksum known yet"})


def test_a_file_that_grows_while_being_packed_is_refused(
    course: Course, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = Path.open
    target = course.path("hw01-data")

    def growing_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == target:
            return io.BytesIO(course.data["hw01-data"] + b"more")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", growing_open)
    size = len(course.data["hw01-data"])
    grown = f"size differs: expected {size} bytes (manifest), got more"
    assert_refused(course, {"datasets/hw01 資料.csv": grown})


# ---------------------------------------------------------------------------------------------
# --partial


def test_partial_packs_what_is_verified_and_records_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    course = make_course(tmp_path, skip=("hw01-kaggle",))
    course.path("hw01-slides").write_bytes(b"%PDF- damaged")
    result = course.pack(partial=True)
    assert [(m.path, m.kind) for m in result.missing] == [
        ("datasets/kaggle.zip", "missing"),
        ("hw/HW01.pdf", "size"),
    ]
    assert result.files == 2
    files = members(result.archive)
    assert f"{TOP}/data/hw/HW01.pdf" not in files
    fields = parse_bag_info(tag(result.archive, "bag-info.txt"), where="bag-info.txt")
    missing = bag_info_values(fields, "Missing-File")
    assert missing[0].startswith("data/datasets/kaggle.zip (not in the mirror (manual download")
    assert missing[1].startswith("data/hw/HW01.pdf (size differs: ")
    oxum = len(course.data["l01-intro"]) + len(course.data["hw01-data"])
    assert dict(fields)["Payload-Oxum"] == f"{oxum}.2"
    page = tag(result.archive, "index.html")
    assert "missing" in page.lower()
    bagit.Bag(str(extract(result.archive, tmp_path / "x"))).validate()


def test_partial_leaves_out_a_file_found_damaged_while_packing(
    course: Course, tmp_path: Path
) -> None:
    data = bytearray(course.data["l01-intro"])
    data[0] ^= 0x01  # same size: only hashing finds it
    course.path("l01-intro").write_bytes(bytes(data))
    result = course.pack(partial=True)
    assert [m.path for m in result.missing] == ["slides/intro (v2).pdf"]
    assert "sha256" in result.missing[0].reason
    assert f"{TOP}/data/slides/intro (v2).pdf" not in members(result.archive)
    assert leftovers(course.out) == sorted([result.archive.name, result.checksum_file.name])
    bagit.Bag(str(extract(result.archive, tmp_path / "x"))).validate()


def test_partial_refuses_when_nothing_at_all_is_verified(tmp_path: Path) -> None:
    course = make_course(tmp_path, skip=tuple(spec.id for spec in SPECS))
    course.store.year_dir.mkdir(parents=True)
    with pytest.raises(IncompleteMirrorError, match="4 of 4"):
        course.pack(partial=True)


def test_a_partial_archive_has_its_own_name_so_the_complete_one_can_follow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    course = make_course(tmp_path, skip=("hw01-data",))
    partial = course.pack(partial=True)
    assert partial.archive.name == "lhy-ml-2022-v1-partial.zip"
    assert partial.checksum_file.read_text().endswith("  lhy-ml-2022-v1-partial.zip\n")
    put_file(course.store, "hw01-data", course.manifest.file("hw01-data").path,
             course.data["hw01-data"], record=True)  # fmt: skip
    complete = course.pack()  # neither refused nor told to bump `version`
    assert complete.archive.name == "lhy-ml-2022-v1.zip" and not complete.missing
    assert partial.archive.exists()
    again = course.pack(partial=True)  # nothing missing now: the complete archive, unchanged
    assert again.archive == complete.archive and again.unchanged


def test_a_later_partial_pack_replaces_the_earlier_partial_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    course = make_course(tmp_path, skip=("hw01-data", "l01-intro"))
    first = course.pack(partial=True)
    put_file(course.store, "l01-intro", course.manifest.file("l01-intro").path,
             course.data["l01-intro"], record=True)  # fmt: skip
    second = course.pack(partial=True)
    assert second.archive == first.archive and second.sha256 != first.sha256
    assert [m.path for m in second.missing] == [course.manifest.file("hw01-data").path]


# ---------------------------------------------------------------------------------------------
# Versioned


def test_packing_an_identical_archive_again_reports_it_unchanged(course: Course) -> None:
    first = course.pack()
    mtime = first.archive.stat().st_mtime_ns
    again = course.pack()
    assert again.unchanged
    assert again.sha256 == first.sha256
    assert first.archive.stat().st_mtime_ns == mtime  # not rewritten
    assert leftovers(course.out) == sorted([first.archive.name, first.checksum_file.name])


def test_different_content_under_the_same_version_is_refused_unless_forced(
    course: Course,
) -> None:
    first = course.pack()
    changed = course.data["hw01-slides"] + b"\n% v2"
    put_file(course.store, "hw01-slides", "hw/HW01.pdf", changed, record=True)
    with pytest.raises(IntegrityError, match="Bump `version`") as caught:
        course.pack()
    assert "already exists with different content" in caught.value.message
    assert hashlib.sha256(first.archive.read_bytes()).hexdigest() == first.sha256
    assert leftovers(course.out) == sorted([first.archive.name, first.checksum_file.name])
    forced = course.pack(force=True)
    assert forced.sha256 != first.sha256
    assert forced.checksum_file.read_text().startswith(forced.sha256)
    bumped = replace(course.manifest, version="2")
    result = pack_year(bumped, course.store, course.out)
    assert result.archive.name == "lhy-ml-2022-v2.zip"


def test_the_leftover_of_a_killed_pack_is_removed_but_not_that_of_a_running_one(
    course: Course,
) -> None:
    fcntl = pytest.importorskip("fcntl", reason="the test holds a POSIX lock like a live pack")
    name = archive_name(course.manifest, "zip")
    course.out.mkdir()
    killed = course.out / f".{name}.packing-k1ll3d00.tmp"
    killed.write_bytes(b"PK\x03\x04 half an archive")
    running = course.out / f".{name}.packing-runn1ng0.tmp"
    running.write_bytes(b"PK\x03\x04 being written")
    other = course.out / f".{name}.sha256.abcd1234.tmp"  # not a pack's: left alone
    other.write_text("x")
    with running.open("rb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = course.pack()
    assert leftovers(course.out) == sorted(
        [result.archive.name, result.checksum_file.name, running.name, other.name]
    )


def test_a_root_without_the_year_is_a_usage_error(course: Course, tmp_path: Path) -> None:
    elsewhere = MirrorStore(tmp_path / "empty", 2022)
    with pytest.raises(UsageError, match="no mirror of this year"):
        pack_year(course.manifest, elsewhere, course.out)
    assert leftovers(course.out) == []


def test_unknown_format_is_a_usage_error(course: Course) -> None:
    with pytest.raises(UsageError, match="unknown archive format"):
        course.pack(fmt="rar")


# ---------------------------------------------------------------------------------------------
# Streaming: constant memory, every file read once


class GuardedReader(io.FileIO):
    """A mirror file that refuses unbounded or larger-than-a-chunk reads."""

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        assert size is not None and 0 <= size <= CHUNK_SIZE, f"read({size}) is not chunked"
        return super().read(size)

    def readall(self) -> bytes:
        raise AssertionError("a payload file was read whole")


@pytest.fixture
def guarded_mirror(course: Course, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    real_open = Path.open
    opened: list[str] = []

    def guarded_open(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode == "rb" and course.store.year_dir in self.parents:
            opened.append(self.name)
            return GuardedReader(self, "rb")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", guarded_open)
    yield opened


@pytest.mark.parametrize("fmt", FORMATS)
def test_payload_is_streamed_in_chunks_and_read_once(
    course: Course, guarded_mirror: list[str], fmt: str
) -> None:
    seen: list[int] = []
    result = course.pack(fmt=fmt, progress=seen.append)
    assert sorted(guarded_mirror) == sorted(Path(spec.path).name for spec in SPECS)
    assert sum(seen) == result.payload_bytes
    assert max(seen) <= CHUNK_SIZE


# ---------------------------------------------------------------------------------------------
# CLI


def write_manifest_file(course: Course, folder: Path) -> Path:
    path = folder / "course.toml"
    path.write_text(dump_manifest(course.manifest), encoding="utf-8")
    return path


def run_cli(course: Course, tmp_path: Path, *extra: str) -> int:
    manifest = write_manifest_file(course, tmp_path)
    args = ["pack", "--manifest", str(manifest), "--root", str(course.store.root)]
    return main([*args, "--out", str(course.out), "--quiet", *extra])


def test_cli_prints_only_the_archive_path_on_stdout(
    course: Course, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(course, tmp_path, "--format", "tar.gz") == 0
    out, err = capsys.readouterr()
    assert out == f"{course.out / (TOP + '.tar.gz')}\n"
    assert err == ""


def test_cli_summarises_on_stderr_without_quiet(
    course: Course, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest_file(course, tmp_path)
    args = ["pack", "2022", "--manifest", str(manifest), "--root", str(course.store.root)]
    assert main([*args, "--out", str(course.out)]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith(".zip")
    assert "4 files" in err
    assert "sha256" in err


def test_cli_lists_missing_files_then_one_error_line_and_exits_5(
    course: Course, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    course.path("hw01-slides").unlink()
    course.path("l01-intro").write_bytes(b"%PDF- truncated")
    assert run_cli(course, tmp_path) == 5
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.rstrip().splitlines()
    assert lines[0] == "  missing: hw/HW01.pdf (not in the mirror)"
    assert lines[1].startswith("  size: slides/intro (v2).pdf (size differs: expected ")
    assert lines[2].startswith("lhymirror: error: cannot pack an incomplete mirror")
    assert len(lines) == 3


def test_cli_partial_packs_and_warns(
    course: Course, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    course.path("hw01-slides").unlink()
    manifest = write_manifest_file(course, tmp_path)
    args = ["pack", "--manifest", str(manifest), "--root", str(course.store.root)]
    assert main([*args, "--out", str(course.out), "--partial"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith(".zip")
    assert "missing: hw/HW01.pdf (not in the mirror)" in err
    assert "1 missing" in err


def test_cli_version_clash_exits_5_and_force_replaces(
    course: Course, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(course, tmp_path) == 0
    put_file(course.store, "hw01-slides", "hw/HW01.pdf", b"%PDF- new", record=True)
    assert run_cli(course, tmp_path) == 5
    err = capsys.readouterr().err
    assert "Bump `version`" in err
    assert len(err.strip().splitlines()) == 1
    assert run_cli(course, tmp_path, "--force") == 0


def test_cli_root_defaults_to_the_environment(
    course: Course, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LHYMIRROR_ROOT", str(course.store.root))
    manifest = write_manifest_file(course, tmp_path)
    args = ["pack", "--manifest", str(manifest), "--out", str(course.out), "--quiet"]
    assert main(args) == 0
    assert (course.out / f"{TOP}.zip").is_file()


def test_cli_help_ends_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["pack", "--help"])
    out = capsys.readouterr().out
    assert "--partial" in out
    assert "--format" in out
    assert out.rstrip().splitlines()[-2].strip().startswith("lhymirror pack")


class _FullDisk:
    """An archive stream whose disk is full once *room* bytes are written (freed right after)."""

    def __init__(self, stream: Any, room: int) -> None:
        self._stream = stream
        self._room = room

    def write(self, data: bytes) -> int:
        self._room -= len(data)
        if self._room < 0:
            self._room = 1 << 62
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._stream.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()


def test_a_full_disk_is_a_storage_error_not_a_damaged_mirror_file(
    course: Course, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fdopen = os.fdopen
    monkeypatch.setattr(
        "lhymirror.archive.bagwrite.os.fdopen",
        lambda fd, mode: _FullDisk(real_fdopen(fd, mode), 200_000),
    )
    with pytest.raises(StorageError, match="No space left"):
        course.pack()
    assert leftovers(course.out) == []
