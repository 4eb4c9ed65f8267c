"""AssemblyDigest: the running sha256 of a split file's assembly, carried from part to part."""

from __future__ import annotations

from pathlib import Path

import pytest

from factories import sha
from lhymirror.fetch.transfer import AssemblyDigest


def append(path: Path, whole: AssemblyDigest, data: bytes) -> None:
    with path.open("ab") as stream:
        stream.write(data)
    whole.update(data)


@pytest.fixture
def assembly(tmp_path: Path) -> Path:
    path = tmp_path / "d.assembly"
    path.write_bytes(b"")
    return path


def test_bytes_fed_while_appending_give_the_whole_sha256(assembly: Path) -> None:
    whole = AssemblyDigest()
    whole.cover(assembly, 0)
    append(assembly, whole, b"part one|")
    whole.cover(assembly, 9)  # the next part starts where the first ends: nothing to read
    append(assembly, whole, b"part two")
    assert whole.hexdigest_of(17) == sha(b"part one|part two")
    assert whole.hexdigest_of(16) is None  # not what is covered: the caller reads the file


def test_bytes_held_from_an_earlier_run_are_read_once(assembly: Path) -> None:
    assembly.write_bytes(b"earlier parts|held")
    whole = AssemblyDigest()
    whole.cover(assembly, 18)
    append(assembly, whole, b"|rest")
    assert whole.hexdigest_of(23) == sha(b"earlier parts|held|rest")


def test_a_part_started_again_rewinds_to_where_it_began(assembly: Path) -> None:
    whole = AssemblyDigest()
    append(assembly, whole, b"first|")
    whole.cover(assembly, 6)
    append(assembly, whole, b"stale bytes")
    whole.cover(assembly, 10)  # a resume inside the second part: a mark at 10
    append(assembly, whole, b"more stale")
    with assembly.open("ab") as stream:  # the part starts again from zero (new content)
        stream.truncate(6)
    whole.cover(assembly, 6)
    append(assembly, whole, b"fresh bytes, longer")
    with assembly.open("ab") as stream:  # cut again, then resumed at 10
        stream.truncate(10)
    whole.cover(assembly, 10)  # must not reuse the mark at 10 taken over the stale bytes
    append(assembly, whole, b" end")
    assert whole.hexdigest_of(14) == sha(b"first|fres end")


def test_an_assembly_shorter_than_claimed_is_an_error(assembly: Path) -> None:
    assembly.write_bytes(b"short")
    with pytest.raises(OSError, match="ends at 5 bytes, expected 9"):
        AssemblyDigest().cover(assembly, 9)
