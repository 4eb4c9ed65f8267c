"""Fuzzing as a number: manifests and archives mutated by hypothesis, thousands at a time.

Every property asserts the same contract: no traceback (only ``LhymirrorError`` subclasses or a
clean report from the library; from the CLI one of the documented exit codes), bounded time
(an alarm per example) and memory (the process's peak RSS barely moves), and for ``unpack``
nothing written outside the destination, nothing left behind on failure.

The ``ci`` profile (default) runs the 700 examples of ``EXAMPLES`` in a few seconds;
``HYPOTHESIS_PROFILE=long`` runs 10,000 per property (see the README's "Robustness" note).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import functools
import gzip
import io
import os
import re
import resource
import shutil
import signal
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from lhymirror.archive.bag import (
    format_bag_info,
    format_checksum_manifest,
    parse_bag_info,
    parse_checksum_manifest,
    parse_payload_oxum,
    parse_sidecar,
)
from lhymirror.archive.unpack import TEMP_PREFIX, unpack_archive
from lhymirror.archive.verify import verify_path
from lhymirror.cli import main
from lhymirror.core.errors import LhymirrorError, ManifestError
from lhymirror.manifest.model import Manifest, dump_manifest, parse_manifest
from test_archive_read import Spec, write_archive
from test_manifest import base_manifest
from test_verify import bag_specs

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
# Examples per property in the normal suite; the long profile runs 10,000 of each.
EXAMPLES = {
    "manifest_data": 150,
    "manifest_text": 100,
    "zip": 100,
    "tar": 80,
    "tar.gz": 80,
    "unpack": 50,
    "cli_verify": 40,
    "tag_files": 100,
}
SECONDS_PER_EXAMPLE = 20  # generous: a hang or a runaway inflation is what it catches
RSS_GROWTH_LIMIT = 200 * 1024 * 1024  # bytes the peak RSS may grow over one property


def examples(target: str) -> Any:
    """The settings of one property: its example count (10,000 with the long profile)."""
    return settings(max_examples=10_000 if LONG else EXAMPLES[target])


# ---------------------------------------------------------------------------------------------
# Bounds


@contextlib.contextmanager
def time_limit(seconds: int = SECONDS_PER_EXAMPLE) -> Iterator[None]:
    """Fail (instead of hanging) when the body takes longer than *seconds*."""

    def expired(signum: int, frame: object) -> None:
        raise AssertionError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _warm_up() -> None:
    """Let hypothesis build its Unicode tables and its index of constants in the source now
    (once per checkout they take ~200 MB), so that the memory bound below measures lhymirror,
    not the test tool."""

    @settings(max_examples=1, database=None)
    @given(st.text(), st.integers())
    def once(text: str, number: int) -> None:
        pass

    once()


_warm_up()


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


@pytest.fixture(autouse=True)
def bounded_memory() -> Iterator[None]:
    before = peak_rss()
    yield
    grown = peak_rss() - before
    assert grown < RSS_GROWTH_LIMIT, f"peak memory grew by {grown / 2**20:.0f} MiB"


def quiet_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


WORK = Path(tempfile.mkdtemp(prefix="lhymirror-fuzz-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Manifests: mutated TOML structure and values


toml_scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=40),
    st.sampled_from(["", "..", "/etc/passwd", "a/../b", "CON", "https://x.example/a", "v",
                     "v/w.pdf", ".lhymirror/x", "gdrive:1AbCdEfGhIjKlMnOpQrSt", "kaggle:x",
                     "http://plain.example/a", "slide", "dataset", "a" * 64, "0" * 64]),
    st.dates(),
    st.datetimes(),
    st.times(),
)  # fmt: skip
toml_values = st.recursive(
    toml_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(min_size=1, max_size=12), children, max_size=4),
    ),
    max_leaves=8,
)
# Keys the manifest knows, so that mutations often hit a real field with a wrong value.
KNOWN_KEYS = ["schema", "course", "slug", "year", "version", "homepage", "released", "files",
              "links", "id", "kind", "title", "section", "path", "urls", "parts", "size",
              "sha256", "manual", "insecure_http", "note", "url"]  # fmt: skip


def _containers(node: Any, found: list[Any]) -> list[Any]:
    """Every dict and list inside *node* (itself included)."""
    if isinstance(node, dict | list):
        found.append(node)
        for child in node.values() if isinstance(node, dict) else node:
            _containers(child, found)
    return found


@st.composite
def mutated_manifest_data(draw: st.DrawFn) -> dict[str, Any]:
    data = base_manifest()
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        containers = _containers(data, [])
        node = draw(st.sampled_from(containers))
        action = draw(st.sampled_from(["replace", "delete", "add", "duplicate"]))
        if isinstance(node, dict):
            key = draw(st.sampled_from(sorted(node) or KNOWN_KEYS))
            if action == "delete":
                node.pop(key, None)
            elif action == "add":
                node[draw(st.sampled_from(KNOWN_KEYS))] = draw(toml_values)
            else:
                node[key] = draw(toml_values)
        elif node:
            index = draw(st.integers(min_value=0, max_value=len(node) - 1))
            if action == "delete":
                del node[index]
            elif action == "duplicate":
                node.append(node[index])
            else:
                node[index] = draw(toml_values)
    return data


def check_manifest_text(text: str) -> None:
    """Parsing gives a manifest that round-trips, or one ManifestError of one-line problems."""
    try:
        with time_limit():
            manifest = parse_manifest(text, where="fuzz.toml")
    except ManifestError as error:
        assert error.problems
        for problem in error.problems:
            assert problem and "\n" not in problem, problem
            assert "Input should" not in problem and "For further information" not in problem
        return
    assert isinstance(manifest, Manifest)
    assert parse_manifest(dump_manifest(manifest)) == manifest


@examples("manifest_data")
@given(mutated_manifest_data())
def test_fuzz_manifest_structure_and_values(data: dict[str, Any]) -> None:
    try:
        text = tomli_w.dumps(data)
    except (TypeError, ValueError):
        return  # not expressible in TOML (tomli_w refuses it): nothing to parse
    check_manifest_text(text)


SHIPPED_LIKE = tomli_w.dumps(base_manifest(slug="lhy-ml", released=dt.date(2022, 6, 30)))


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    text = SHIPPED_LIKE
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        action = draw(st.sampled_from(["delete", "insert", "replace", "truncate"]))
        if action == "truncate":
            text = text[:at]
        elif action == "delete":
            text = text[:at] + text[at + draw(st.integers(min_value=1, max_value=20)) :]
        else:
            piece = draw(
                st.one_of(
                    st.text(max_size=10),
                    st.sampled_from(['"', "'", "[", "]]", "=", "\n", "\\", "\x00", "#", "{", "}"]),
                    st.sampled_from(["[[files]]\n", 'year = "2022"\n', "size = 1.5\n"]),
                )
            )
            skip = 1 if action == "replace" else 0
            text = text[:at] + piece + text[at + skip :]
    return text


@examples("manifest_text")
@given(mutated_text())
def test_fuzz_manifest_text_through_the_cli(text: str) -> None:
    check_manifest_text(text)
    path = WORK / "fuzz.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with time_limit():
        status, _, err = quiet_main(["manifest", "check", "--quiet", str(path)])
    assert status in (0, 3), err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# Archives: truncated, flipped, edited headers and central directories

SMALL_PAYLOAD = {
    "slides/a.pdf": b"%PDF-1.4 " + bytes(range(256)) * 3,
    "data/b.csv": b"x,y\n" + b"1,2\n" * 200,
    "data/empty.txt": b"",
}


def _seed_specs() -> list[list[Spec]]:
    valid = bag_specs(SMALL_PAYLOAD)
    hostile = [
        *valid,
        Spec("ml-2022-v1/../escaped.txt", b"out"),
        Spec("ml-2022-v1/data/link", kind="symlink", link="/etc/passwd"),
        Spec("/absolute.txt", b"abs"),
        Spec("ml-2022-v1/data/slides/a.pdf", b"duplicate"),
    ]
    return [valid, hostile]


@functools.cache
def seeds(fmt: str) -> tuple[bytes, ...]:
    """The archives mutations start from: a valid bag and a hostile one, in *fmt*."""
    found = []
    for index, specs in enumerate(_seed_specs()):
        path = WORK / f"seed-{index}.{fmt}"
        write_archive(path, fmt, specs)
        found.append(path.read_bytes())
    return tuple(found)


def _structure_offsets(data: bytes, fmt: str) -> list[int]:
    """Where headers are: zip signatures (local, central, end), tar header blocks."""
    if fmt == "zip":
        offsets = []
        for signature in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"):
            at = data.find(signature)
            while at != -1:
                offsets.append(at)
                at = data.find(signature, at + 1)
        return offsets or [0]
    blocks = range(0, len(data) - 511, 512)
    return [at for at in blocks if data[at + 257 : at + 262] == b"ustar"] or [0]


FIELD_VALUES = st.one_of(
    st.binary(min_size=1, max_size=8),
    st.integers(min_value=0, max_value=2**32 - 1).map(lambda n: struct.pack("<I", n)),
    st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"../", b"/", b"\x00",
                     b"77777777777", b"0", b"5", b"2", b"x", b"L", b"K"]),
)  # fmt: skip


def _fix_tar_checksum(data: bytearray, at: int) -> None:
    block = data[at : at + 512]
    if len(block) == 512:
        block[148:156] = b" " * 8
        data[at + 148 : at + 156] = b"%06o\x00 " % sum(block)


@st.composite
def mutated_archive(draw: st.DrawFn, fmt: str) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds(fmt))))
    inner_fmt = fmt
    if fmt == "tar.gz" and draw(st.booleans()):
        # Edit the tar inside and recompress: the gzip CRC then holds, the tar damage is seen.
        data = bytearray(gzip.decompress(bytes(data)))
        inner_fmt = "tar"
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        action = draw(st.sampled_from(["truncate", "flip", "overwrite", "field", "field"]))
        if not data:
            break
        if action == "truncate":
            del data[draw(st.integers(min_value=0, max_value=len(data) - 1)) :]
        elif action == "flip":
            at = draw(st.integers(min_value=0, max_value=len(data) - 1))
            data[at] ^= draw(st.integers(min_value=1, max_value=255))
        elif action == "overwrite":
            at = draw(st.integers(min_value=0, max_value=len(data) - 1))
            piece = draw(st.binary(min_size=1, max_size=64))
            data[at : at + len(piece)] = piece
        else:
            start = draw(st.sampled_from(_structure_offsets(bytes(data), inner_fmt)))
            at = start + draw(st.integers(min_value=0, max_value=300 if inner_fmt == "tar" else 60))
            piece = draw(FIELD_VALUES)
            data[at : at + len(piece)] = piece
            if inner_fmt == "tar" and draw(st.booleans()):
                _fix_tar_checksum(data, start)
    if inner_fmt != fmt:
        data = bytearray(gzip.compress(bytes(data), mtime=0))
    return bytes(data)


SUFFIX = {"zip": ".zip", "tar": ".tar", "tar.gz": ".tar.gz"}
PYTHON_BYTES = re.compile(r"(?<![\w\\])b['\"]")  # a bytes repr (b'…'), Python's words


def check_verify(data: bytes, fmt: str) -> None:
    """verify gives a report (problems on one line each) or an LhymirrorError; nothing else."""
    path = WORK / f"fuzzed{SUFFIX[fmt]}"
    path.write_bytes(data)
    try:
        with time_limit():
            report = verify_path(path)
    except LhymirrorError as error:
        assert "\n" not in error.message
        return
    for problem in report.problems:
        assert "\n" not in str(problem), problem
        assert not PYTHON_BYTES.search(problem.detail), problem


@examples("zip")
@given(mutated_archive("zip"))
def test_fuzz_zip(data: bytes) -> None:
    check_verify(data, "zip")


@examples("tar")
@given(mutated_archive("tar"))
def test_fuzz_tar(data: bytes) -> None:
    check_verify(data, "tar")


@examples("tar.gz")
@given(mutated_archive("tar.gz"))
def test_fuzz_tar_gz(data: bytes) -> None:
    check_verify(data, "tar.gz")


def _all_paths(root: Path) -> set[Path]:
    return {Path(folder) / name for folder, dirs, files in os.walk(root) for name in dirs + files}


@examples("unpack")
@given(st.sampled_from(["zip", "tar", "tar.gz"]).flatmap(
    lambda fmt: st.tuples(st.just(fmt), mutated_archive(fmt))
))  # fmt: skip
def test_fuzz_unpack_writes_nothing_outside_the_destination(case: tuple[str, bytes]) -> None:
    fmt, data = case
    with tempfile.TemporaryDirectory(dir=WORK) as temp:
        root = Path(temp)
        archive = root / f"a{SUFFIX[fmt]}"
        archive.write_bytes(data)
        out = root / "out"
        out.mkdir()
        dest = out / "bag"
        try:
            with time_limit():
                unpack_archive(archive, dest)
        except LhymirrorError as error:
            assert "\n" not in error.message
            assert not dest.exists()
        outside = {path for path in _all_paths(root) if dest not in (path, *path.parents)}
        assert outside == {archive, out}, sorted(map(str, outside))
        assert not any(path.name.startswith(TEMP_PREFIX) for path in _all_paths(root))


@examples("cli_verify")
@given(st.sampled_from(["zip", "tar", "tar.gz"]).flatmap(
    lambda fmt: st.tuples(st.just(fmt), mutated_archive(fmt))
))  # fmt: skip
def test_fuzz_cli_verify_exits_with_a_documented_code(case: tuple[str, bytes]) -> None:
    fmt, data = case
    path = WORK / f"cli{SUFFIX[fmt]}"
    path.write_bytes(data)
    with time_limit():
        status, _, err = quiet_main(["verify", str(path)])
    assert status in (0, 2, 5), err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 1, err


# ---------------------------------------------------------------------------------------------
# BagIt tag files: any text parses or is one IntegrityError; checksum lists round-trip

TAG_TEXT = format_checksum_manifest([("data/a b.pdf", "a" * 64), ("data/100%\nx", "b" * 64)])
TAG_TEXT += format_bag_info([("Payload-Oxum", "12.3"), ("Bag-Size", "1 kB")])


@st.composite
def tag_texts(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.text(max_size=300))
    text = TAG_TEXT
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        piece = draw(st.one_of(st.text(max_size=8), st.sampled_from(["\r", "\n", " ", ":", "%"])))
        text = text[:at] + piece + text[at + draw(st.integers(0, 3)) :]
    return text


@examples("tag_files")
@given(
    tag_texts(),
    st.dictionaries(
        st.text(min_size=1, max_size=30).map(lambda name: f"data/{name}"),
        st.text("0123456789abcdef", min_size=64, max_size=64),
        max_size=5,
    ),
)
def test_fuzz_bag_tag_files(text: str, entries: dict[str, str]) -> None:
    parsers: list[Callable[[str], object]] = [
        lambda t: parse_checksum_manifest(t, where="manifest-sha256.txt"),
        lambda t: parse_bag_info(t, where="bag-info.txt"),
        parse_payload_oxum,
        lambda t: parse_sidecar(t, "a.zip"),
    ]
    for parse in parsers:
        try:
            with time_limit():
                parse(text)
        except LhymirrorError as error:
            assert "\n" not in error.message and "\r" not in error.message, error.message
    listed = format_checksum_manifest(entries.items())
    assert parse_checksum_manifest(listed, where="manifest-sha256.txt") == entries


# ---------------------------------------------------------------------------------------------
# The harness itself


def test_the_bounds_can_fail() -> None:
    with pytest.raises(AssertionError, match="took more than"), time_limit(1):
        signal.pause()


def test_mutations_are_not_no_ops() -> None:
    """Most generated archives differ from their seeds (the fuzzing exercises something)."""
    changed = []

    @settings(max_examples=30)
    @given(mutated_archive("tar.gz"))
    def sample(data: bytes) -> None:
        changed.append(data not in seeds("tar.gz"))

    sample()
    assert sum(changed) > len(changed) // 2
