"""Archives from ``pack`` work with tools no one here wrote.

A small mirror (a PDF, a CSV, names with spaces, parentheses, ``&`` and Chinese characters, a
nested folder) is packed once per format; then Python's ``zipfile``/``tarfile``, ``unzip``,
GNU ``tar``, ``gzip``, ``7z``, ``sha256sum`` and the Library of Congress ``bagit`` package must
all accept the archive, and the bag each of them extracts. A tool that is not installed skips
its test with the reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bagit
import pytest

from lhymirror.archive import pack
from lhymirror.archive.bag import TAG_FILES, bag_folder_name
from lhymirror.core.units import utc_now
from lhymirror.manifest.model import Manifest, manifest_from_data
from lhymirror.mirror.store import FileRecord, MirrorStore
from pagecheck import Page, assert_local_links_resolve, needs_chromium, run_chromium
from tools import require_tool

FORMATS = ("zip", "tar", "tar.gz")
TOOL_ENV = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}  # tools print UTF-8 names

# ---------------------------------------------------------------------------------------------
# A small mirror and its archives


@dataclass(frozen=True)
class MirrorFile:
    id: str
    kind: str
    section: str | None
    path: str
    content: bytes
    pinned: bool  # size and sha256 in the manifest; otherwise recorded as after a first sync


def mirror_files(rng: random.Random) -> list[MirrorFile]:
    """The test mirror's files: a PDF, a CSV, awkward names, a nested folder, an empty file."""
    pdf = b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n" + rng.randbytes(40_000) + b"\n%%EOF\n"
    csv_rows = [f"{i},{rng.randrange(50)},{rng.random():.6f}" for i in range(2000)]
    csv = ("id,state,tested_positive\n" + "\n".join(csv_rows) + "\n").encode()
    zh, raw = "深度學習\n".encode() * 300, rng.randbytes(70_000)
    return [
        MirrorFile("lecture-1", "slide", "Lecture 1", "lectures/Lecture 1 (intro).pdf", pdf, True),
        MirrorFile("hw1-data", "dataset", "HW 1", "hw1/covid.train.csv", csv, False),
        MirrorFile("notes-zh", "other", "Lecture 2", "講義/機器學習 筆記 & 補充.txt", zh, True),
        MirrorFile("hw2-feat", "dataset", "HW 2", "hw2/data/raw/features (v2).bin", raw, False),
        MirrorFile("empty", "code", None, "code/empty.py", b"", False),
    ]


@dataclass(frozen=True)
class Mirror:
    manifest: Manifest
    store: MirrorStore
    sha256: dict[str, str]  # manifest path -> sha256 of its bytes


@dataclass(frozen=True)
class Packed:
    fmt: str
    archive: Path
    result: Any  # lhymirror.archive.pack.PackResult
    mirror: Mirror

    @property
    def top(self) -> str:
        return bag_folder_name(self.mirror.manifest)

    def member_names(self) -> set[str]:
        """Every file the archive must hold: the tag files and data/<path> of each payload file."""
        names = {f"{self.top}/{tag}" for tag in TAG_FILES}
        return names | {f"{self.top}/data/{path}" for path in self.mirror.sha256}


def build_mirror(root: Path) -> Mirror:
    """A verified mirror: some files pinned in the manifest, the others recorded as after sync."""
    files = mirror_files(random.Random(8493))
    sha = {f.path: hashlib.sha256(f.content).hexdigest() for f in files}
    manifest = manifest_from_data(
        {
            "schema": 1,
            "course": "Machine Learning (Hung-yi Lee)",
            "slug": "ml",
            "year": 2022,
            "version": "1.0",
            "homepage": "https://speech.ee.ntu.edu.tw/~hylee/ml/2022-spring.php",
            "released": dt.date(2022, 7, 1),
            "files": [_entry(f, sha[f.path]) for f in files],
            "links": [
                {"kind": "video", "section": "Lecture 1", "url": "https://youtu.be/abc"},
                {"kind": "competition", "section": "HW 1", "url": "https://kaggle.com/c/x"},
            ],
        }
    )
    store = MirrorStore(root, manifest.year)
    for f in files:
        target = store.file_path(f.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.content)
        if not f.pinned:
            store.save_record(
                FileRecord(
                    id=f.id,
                    path=f.path,
                    size=len(f.content),
                    sha256=sha[f.path],
                    mtime_ns=target.stat().st_mtime_ns,
                    verified_at=utc_now(),
                )
            )
    return Mirror(manifest, store, sha)


def _entry(f: MirrorFile, sha256: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": f.id,
        "kind": f.kind,
        "path": f.path,
        "urls": [f"https://example.org/{f.id}"],
    }
    if f.section:
        entry["section"] = f.section
    if f.pinned:
        entry |= {"size": len(f.content), "sha256": sha256}
    return entry


@pytest.fixture(scope="module")
def packed_as(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Packed]:
    """Pack the one test mirror in a format (each format packed once per module)."""
    mirror = build_mirror(tmp_path_factory.mktemp("mirror"))
    cache: dict[str, Packed] = {}

    def packed(fmt: str) -> Packed:
        if fmt not in cache:
            out = tmp_path_factory.mktemp(f"dist-{fmt.replace('.', '-')}")
            result = pack.pack_year(mirror.manifest, mirror.store, out, fmt=fmt)
            cache[fmt] = Packed(fmt, result.archive, result, mirror)
        return cache[fmt]

    return packed


# ---------------------------------------------------------------------------------------------
# Helpers


def run_tool(*command: str | Path, cwd: Path | None = None) -> str:
    """Run an external tool; fail with its output unless it exits 0; return its stdout."""
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=TOOL_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (
        f"{command[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
    )
    return done.stdout


def extract_with_stdlib(packed: Packed, dest: Path) -> None:
    if packed.fmt == "zip":
        with zipfile.ZipFile(packed.archive) as archive:
            archive.extractall(dest)
    else:
        with tarfile.open(packed.archive) as archive:
            archive.extractall(dest, filter="data")


def extract_with_unzip(packed: Packed, dest: Path) -> None:
    run_tool(require_tool("unzip", "unzip"), "-q", packed.archive, "-d", dest)


def extract_with_gnu_tar(packed: Packed, dest: Path) -> None:
    run_tool(require_tool("tar", "tar"), "-xf", packed.archive, "-C", dest)


def extract_with_7z(packed: Packed, dest: Path) -> None:
    run_tool(require_tool("7z", "p7zip-full"), "x", "-bd", "-y", f"-o{dest}", packed.archive)


EXTRACTORS: dict[str, Callable[[Packed, Path], None]] = {
    "stdlib": extract_with_stdlib,
    "unzip": extract_with_unzip,
    "tar": extract_with_gnu_tar,
    "7z": extract_with_7z,
}
EXTRACTIONS = [
    ("zip", "stdlib"),
    ("zip", "unzip"),
    ("zip", "7z"),
    ("tar", "stdlib"),
    ("tar", "tar"),
    ("tar", "7z"),
    ("tar.gz", "stdlib"),
    ("tar.gz", "tar"),
]  # 7z unpacks only the gzip layer of a .tar.gz in one step


def extracted_bag(packed: Packed, tool: str, dest: Path) -> Path:
    """Extract with *tool* and return the bag folder, checking it is the archive's only top."""
    dest.mkdir()
    EXTRACTORS[tool](packed, dest)
    assert [p.name for p in dest.iterdir()] == [packed.top]
    return dest / packed.top


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------------------
# Python's own readers


@pytest.mark.parametrize("fmt", FORMATS)
def test_archive_is_named_after_the_manifest_and_has_a_sidecar(
    packed_as: Callable[[str], Packed], fmt: str
) -> None:
    packed = packed_as(fmt)
    assert packed.archive.name == f"ml-2022-v1.0.{fmt}"
    assert packed.result.checksum_file == packed.archive.with_name(packed.archive.name + ".sha256")
    assert packed.result.files == len(packed.mirror.sha256) and not packed.result.missing


def test_zipfile_reads_every_member_with_portable_methods(
    packed_as: Callable[[str], Packed],
) -> None:
    packed = packed_as("zip")
    with zipfile.ZipFile(packed.archive) as archive:
        assert archive.testzip() is None  # every member's CRC checks out
        infos = [info for info in archive.infolist() if not info.is_dir()]
        assert {info.filename for info in infos} == packed.member_names()
        for info in infos:
            # stored: what every unzipper since the 1990s reads, in the same bytes everywhere
            assert info.compress_type == zipfile.ZIP_STORED, info.filename
            if "/data/" in info.filename:
                path = info.filename.split("/data/", 1)[1]
                digest = hashlib.sha256(archive.read(info)).hexdigest()
                assert digest == packed.mirror.sha256[path], info.filename


@pytest.mark.parametrize("fmt", ["tar", "tar.gz"])
def test_tarfile_reads_every_member_as_plain_files_and_folders(
    packed_as: Callable[[str], Packed], fmt: str
) -> None:
    packed = packed_as(fmt)
    seen = set()
    with tarfile.open(packed.archive) as archive:
        for member in archive:
            assert member.isreg() or member.isdir(), f"{member.name}: type {member.type!r}"
            assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
            if not member.isreg():
                continue
            seen.add(member.name)
            if "/data/" in member.name:
                handle = archive.extractfile(member)
                assert handle is not None
                digest = hashlib.sha256(handle.read()).hexdigest()
                assert digest == packed.mirror.sha256[member.name.split("/data/", 1)[1]]
    assert seen == packed.member_names()


# ---------------------------------------------------------------------------------------------
# Other people's tools, on the archive itself


def test_unzip_tests_the_zip_without_errors(packed_as: Callable[[str], Packed]) -> None:
    unzip = require_tool("unzip", "unzip")
    output = run_tool(unzip, "-t", packed_as("zip").archive)
    assert "No errors detected" in output


@pytest.mark.parametrize(("fmt", "flags"), [("tar", "-tf"), ("tar.gz", "-tzf")])
def test_gnu_tar_lists_every_member(
    packed_as: Callable[[str], Packed], fmt: str, flags: str
) -> None:
    tar = require_tool("tar", "tar")
    packed = packed_as(fmt)
    listed = run_tool(tar, "--quoting-style=literal", flags, packed.archive).splitlines()
    assert {name for name in listed if not name.endswith("/")} == packed.member_names()


def test_gzip_tests_the_tar_gz(packed_as: Callable[[str], Packed]) -> None:
    gzip_tool = require_tool("gzip", "gzip")
    run_tool(gzip_tool, "-t", packed_as("tar.gz").archive)


@pytest.mark.parametrize("fmt", FORMATS)
def test_7z_tests_the_archive(packed_as: Callable[[str], Packed], fmt: str) -> None:
    seven = require_tool("7z", "p7zip-full")
    output = run_tool(seven, "t", "-bd", packed_as(fmt).archive)
    assert "Everything is Ok" in output


@pytest.mark.parametrize("fmt", FORMATS)
def test_sha256sum_checks_the_archive_against_its_sidecar(
    packed_as: Callable[[str], Packed], fmt: str
) -> None:
    sha256sum = require_tool("sha256sum", "coreutils")
    packed = packed_as(fmt)
    output = run_tool(sha256sum, "-c", packed.result.checksum_file.name, cwd=packed.archive.parent)
    assert output.strip() == f"{packed.archive.name}: OK"
    assert hashlib.sha256(packed.archive.read_bytes()).hexdigest() == packed.result.sha256


# ---------------------------------------------------------------------------------------------
# The extracted bag


@pytest.mark.parametrize(("fmt", "tool"), EXTRACTIONS)
def test_extracted_bag_validates_with_the_bagit_package(
    packed_as: Callable[[str], Packed], fmt: str, tool: str, tmp_path: Path
) -> None:
    packed = packed_as(fmt)
    folder = extracted_bag(packed, tool, tmp_path / "x")
    assert files_under(folder) == {name.split("/", 1)[1] for name in packed.member_names()}
    bag = bagit.Bag(str(folder))
    bag.validate(processes=1)  # raises BagValidationError naming what is wrong
    assert set(bag.payload_entries()) == {f"data/{path}" for path in packed.mirror.sha256}
    total = sum((folder / "data" / path).stat().st_size for path in packed.mirror.sha256)
    assert bag.info["Payload-Oxum"] == f"{total}.{len(packed.mirror.sha256)}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_sha256sum_checks_the_extracted_bag(
    packed_as: Callable[[str], Packed], fmt: str, tmp_path: Path
) -> None:
    sha256sum = require_tool("sha256sum", "coreutils")
    packed = packed_as(fmt)
    folder = extracted_bag(packed, "stdlib", tmp_path / "x")
    payload = run_tool(sha256sum, "--strict", "-c", "manifest-sha256.txt", cwd=folder)
    assert payload.count(": OK") == len(packed.mirror.sha256)
    tags = run_tool(sha256sum, "--strict", "-c", "tagmanifest-sha256.txt", cwd=folder)
    checked = {line.rsplit(": ", 1)[0] for line in tags.splitlines()}
    assert {"bagit.txt", "bag-info.txt", "manifest-sha256.txt"} <= checked


@pytest.mark.parametrize("fmt", FORMATS)
def test_extracted_index_page_links_resolve_inside_the_bag(
    packed_as: Callable[[str], Packed], fmt: str, tmp_path: Path
) -> None:
    packed = packed_as(fmt)
    folder = extracted_bag(packed, "stdlib", tmp_path / "x")
    local = assert_local_links_resolve(folder / "index.html")
    assert len(set(local)) == len(packed.mirror.sha256)


@pytest.mark.slow
@needs_chromium
def test_chromium_opens_the_packed_index_page_and_its_links_resolve(
    packed_as: Callable[[str], Packed], tmp_path: Path
) -> None:
    packed = packed_as("zip")
    folder = extracted_bag(packed, "unzip" if shutil.which("unzip") else "stdlib", tmp_path / "x")
    index = folder / "index.html"
    dom = run_chromium(tmp_path, "--dump-dom", index.as_uri()).stdout
    local = assert_local_links_resolve(index, dom)
    assert len(set(local)) == len(packed.mirror.sha256)
    assert "講義/機器學習 筆記 &amp; 補充.txt" in dom  # the browser decoded the UTF-8 page


# ---------------------------------------------------------------------------------------------
# A partial archive


def test_partial_archive_is_still_a_valid_bag_and_its_page_marks_the_gap(tmp_path: Path) -> None:
    mirror = build_mirror(tmp_path / "mirror")
    gone = mirror.manifest.file("hw1-data")
    mirror.store.file_path(gone.path).unlink()
    result = pack.pack_year(mirror.manifest, mirror.store, tmp_path / "dist", partial=True)
    assert [m.id for m in result.missing] == ["hw1-data"]
    dest = tmp_path / "x"
    with zipfile.ZipFile(result.archive) as archive:
        archive.extractall(dest)
    folder = dest / bag_folder_name(mirror.manifest)
    bagit.Bag(str(folder)).validate(processes=1)
    local = assert_local_links_resolve(folder / "index.html")
    assert len(set(local)) == len(mirror.sha256) - 1
    page = Page((folder / "index.html").read_text(encoding="utf-8"))
    missing_rows = [attrs for tag, attrs in page.with_class("missing") if tag == "li"]
    assert len(missing_rows) == 1
    assert gone.path in page.text
