"""BitTorrent sharing end to end, on 127.0.0.1 only: torrents, seed, fetch, sync --swarm.

Every session listens on loopback with DHT and local discovery off; peers are named with
--peer. The HTTP origin and web seeds are the real test server. Without libtorrent these tests
skip, except under CI=true, where the swarm extra must be installed and they must run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

import lhymirror
from factories import blob, sha
from httpserver import CourseServer, Fault
from lhymirror import api
from lhymirror.cli import main
from lhymirror.fetch.download import Downloader
from lhymirror.fetch.http import RetryPolicy
from lhymirror.mirror.store import MirrorStore
from lhymirror.swarm.make import TorrentFile, make_torrent

HAVE_LIBTORRENT = importlib.util.find_spec("libtorrent") is not None
if not HAVE_LIBTORRENT and os.environ.get("CI") == "true":
    raise RuntimeError("CI must run the swarm tests: install the extra, pip install '.[swarm]'")
needs_libtorrent = pytest.mark.skipif(
    not HAVE_LIBTORRENT, reason="libtorrent is not installed (pip install '.[swarm]')"
)

YEAR = 2022
LOOPBACK = ["--bind", "127.0.0.1", "--port", "0", "--no-dht", "--no-lsd"]
FAST_POLICY = RetryPolicy(attempts=2, backoff_base=0.0, connect_timeout=2.0, read_timeout=2.0)
PACKAGE_PATH = str(Path(lhymirror.__file__).resolve().parents[1])


@pytest.fixture(autouse=True)
def fast_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process CLI's HTTP downloader never sleeps and gives up fast."""

    def fast_downloader(store: MirrorStore, **options: Any) -> Any:
        return Downloader(store, policy=FAST_POLICY, sleep=lambda _: None, **options)

    monkeypatch.setattr(api, "build_downloader", fast_downloader)
    monkeypatch.delenv("LHYMIRROR_ROOT", raising=False)
    monkeypatch.delenv("LHYMIRROR_MIRROR", raising=False)


class Class:
    """A course whose origin is the test server, a TA's mirror of it, and students' roots."""

    def __init__(
        self, server: CourseServer, tmp: Path, sizes: dict[str, int], *, seed: int = 0
    ) -> None:
        self.server = server
        self.tmp = tmp
        tmp.mkdir(exist_ok=True)
        self.manifest = tmp / "course.toml"
        self.data = {name: blob(size, seed + i) for i, (name, size) in enumerate(sizes.items())}
        files = []
        for name, data in self.data.items():
            url = server.add(f"/origin/{name}.pdf", data)
            files.append({
                "id": name, "kind": "slide", "path": self.path_of(name), "urls": [url],
                "insecure_http": True, "size": len(data), "sha256": sha(data),
            })  # fmt: skip
        manifest = {
            "schema": 1, "course": "ML", "year": YEAR, "version": "3", "files": files,
            "released": __import__("datetime").date(2022, 6, 30),
        }  # fmt: skip
        self.manifest.write_text(tomli_w.dumps(manifest))
        self.ta = tmp / "ta"
        for name, data in self.data.items():
            self.place(self.ta, name, data)

    @staticmethod
    def path_of(name: str) -> str:
        return f"slides/{name} (v2) 講義.pdf"  # web seeds must get spaces and CJK right

    def place(self, root: Path, name: str, data: bytes) -> None:
        """Import *data* as the file *name* into the mirror at *root* (via `lhymirror add`)."""
        source = self.tmp / "incoming" / name
        source.parent.mkdir(exist_ok=True)
        source.write_bytes(data)
        assert main(["add", "--manifest", str(self.manifest), name, str(source),
                     "--root", str(root)]) == 0  # fmt: skip

    def serve_mirror(self, root: Path, prefix: str = "/mirror") -> str:
        """Serve *root* as a `--from`-shaped web seed base; return the base URL."""
        for name in self.data:
            path = root / str(YEAR) / self.path_of(name)
            self.server.add_file(f"{prefix}/{YEAR}/{self.path_of(name)}", path)
        return self.server.url_for(prefix + "/")

    def torrent(self, *extra: str, root: Path | None = None) -> Path:
        out = self.tmp / f"class-{len(list(self.tmp.glob('class-*')))}.torrent"
        args = ["torrent", "--manifest", str(self.manifest), "--root", str(root or self.ta)]
        assert main([*args, "--out", str(out), "--quiet", *extra]) == 0
        return out

    def sync(self, root: Path, *extra: str) -> int:
        return main(["sync", "--manifest", str(self.manifest), "--root", str(root), *extra])

    def file(self, root: Path, name: str) -> Path:
        return root / str(YEAR) / self.path_of(name)

    def origin_bytes(self) -> int:
        return sum(self.server.bytes_sent(f"/origin/{name}.pdf") for name in self.data)


@pytest.fixture
def course(http_server: CourseServer, tmp_path: Path) -> Class:
    return Class(http_server, tmp_path, {"l01": 600_000, "l02": 250_000, "hw01": 1_200_000})


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": PACKAGE_PATH}


@pytest.fixture
def seeder(course: Class) -> Iterator[Any]:
    """Start `lhymirror seed` for a root in a real process; yields a starter."""
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], int]:
        process = subprocess.Popen(
            [sys.executable, "-m", "lhymirror", "seed", *args, *LOOPBACK],
            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        processes.append(process)
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "seeding" in line, line + process.stderr.read()
        return process, int(line.rsplit(":", 1)[1])

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


# -- making torrents ---------------------------------------------------------------------------


@needs_libtorrent
def test_pack_torrent_is_reproducible_hybrid_with_web_seeds(
    course: Class, capsys: pytest.CaptureFixture[str]
) -> None:
    import libtorrent as lt

    args = ["pack", "--manifest", str(course.manifest), "--root", str(course.ta), "--quiet",
            "--torrent", "--web-seed", "https://example.org/dl/", "--web-seed",
            "http://10.0.0.5:8000/ml-2022-v3.zip"]  # fmt: skip
    outs = []
    for out in ("a", "b"):
        assert main([*args, "--out", str(course.tmp / out)]) == 0
        outs.append(capsys.readouterr().out.splitlines())
    first = (course.tmp / "a" / "ml-2022-v3.zip.torrent").read_bytes()
    assert first == (course.tmp / "b" / "ml-2022-v3.zip.torrent").read_bytes()
    assert outs[0][1] == outs[1][1] and outs[0][1].startswith("magnet:?xt=urn:btih:")
    meta = lt.bdecode(first)
    assert meta[b"info"][b"meta version"] == 2 and b"pieces" in meta[b"info"]  # hybrid v1+v2
    assert meta[b"url-list"] == [b"https://example.org/dl/", b"http://10.0.0.5:8000/ml-2022-v3.zip"]
    assert meta[b"comment"].decode() == "ML, 2022, manifest version 3: archive ml-2022-v3.zip"
    assert meta[b"creation date"] == 1656547200  # the manifest's `released`, not the clock
    assert lt.torrent_info(meta).name() == "ml-2022-v3.zip"


@needs_libtorrent
def test_mirror_torrent_gives_identical_files_identical_v2_roots(course: Class) -> None:
    import libtorrent as lt

    course.place(course.ta, "l02", course.data["l02"])
    twin = course.tmp / "twin"
    for name, data in course.data.items():
        course.place(twin, name, data)
    torrent = lt.torrent_info(str(course.torrent()))
    assert torrent.name() == str(YEAR)
    layout = torrent.layout()
    paths = {layout.file_path(i): i for i in range(layout.num_files())}
    assert f"{YEAR}/{Class.path_of('hw01')}" in paths
    again = lt.torrent_info(str(course.torrent(root=twin)))
    assert str(again.info_hashes().v2) == str(torrent.info_hashes().v2)


def test_web_seed_must_be_http(course: Class, capsys: pytest.CaptureFixture[str]) -> None:
    if not HAVE_LIBTORRENT:
        pytest.skip("libtorrent is not installed")
    args = ["torrent", "--manifest", str(course.manifest), "--root", str(course.ta)]
    assert main([*args, "--web-seed", "ftp://x/"]) == 2
    assert "invalid web seed" in capsys.readouterr().err


# -- sync --swarm --------------------------------------------------------------------------


@needs_libtorrent
def test_seeder_and_leecher_take_nothing_from_the_origin(
    course: Class, seeder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    torrent = course.torrent()
    process, port = seeder("--manifest", str(course.manifest), "--root", str(course.ta))
    student = course.tmp / "student"
    started = time.monotonic()
    status = course.sync(student, "--swarm", str(torrent), "--peer", f"127.0.0.1:{port}",
                         *LOOPBACK[:4], "--no-dht", "--no-lsd", "--swarm-wait", "10")  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    assert time.monotonic() - started < 10
    assert course.origin_bytes() == 0
    assert "3 downloaded" in out
    for name, data in course.data.items():
        assert course.file(student, name).read_bytes() == data
    record = MirrorStore(student, YEAR).record("hw01")
    assert record is not None and record.source is not None and record.source.startswith("swarm:")
    assert not list((student / str(YEAR) / ".lhymirror" / "swarm").glob("*/*"))
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "seeded 2.1 MB to" in err  # the summary on exit


@needs_libtorrent
def test_web_seed_alone_delivers_the_torrent(
    course: Class, capsys: pytest.CaptureFixture[str]
) -> None:
    base = course.serve_mirror(course.ta)
    torrent = course.torrent("--web-seed", base)
    student = course.tmp / "student"
    assert course.sync(student, "--swarm", str(torrent), *LOOPBACK, "--swarm-wait", "10") == 0
    assert course.origin_bytes() == 0
    assert course.server.bytes_sent() >= sum(len(d) for d in course.data.values())
    for name, data in course.data.items():
        assert course.file(student, name).read_bytes() == data
    assert "3 downloaded" in capsys.readouterr().out


@needs_libtorrent
def test_a_torrent_of_other_bytes_is_refused_and_nothing_placed(
    course: Class, capsys: pytest.CaptureFixture[str]
) -> None:
    other = Class(course.server, course.tmp / "other", {"l01": 600_000, "l02": 250_000}, seed=7)
    base = other.serve_mirror(other.ta, prefix="/other")
    torrent = other.torrent("--web-seed", base)
    student = course.tmp / "student"
    status = course.sync(student, "--swarm", str(torrent), *LOOPBACK, "--swarm-wait", "10")
    err = capsys.readouterr().err
    assert status == 5
    assert "the torrent does not match the manifest" in err
    assert "Nothing from it was placed" in err
    assert course.origin_bytes() == 0
    assert not any(course.file(student, name).exists() for name in course.data)


@needs_libtorrent
def test_a_torrent_of_other_sizes_is_refused_before_downloading(
    course: Class, capsys: pytest.CaptureFixture[str]
) -> None:
    other = Class(course.server, course.tmp / "other", {"l01": 1000})
    torrent = other.torrent("--web-seed", other.serve_mirror(other.ta, prefix="/other"))
    course.server.reset_log()
    status = course.sync(course.tmp / "student", "--swarm", str(torrent), *LOOPBACK)
    assert status == 5
    err = capsys.readouterr().err
    assert "in the torrent: size differs: expected 600000 bytes (manifest), got 1000" in err
    assert course.server.count() == 0


@needs_libtorrent
def test_files_the_swarm_does_not_deliver_come_from_their_sources(
    course: Class, capsys: pytest.CaptureFixture[str]
) -> None:
    torrent = course.torrent("--web-seed", "http://127.0.0.1:9/")  # nobody there
    student = course.tmp / "student"
    started = time.monotonic()
    assert course.sync(student, "--swarm", str(torrent), *LOOPBACK, "--swarm-wait", "0.5") == 0
    assert time.monotonic() - started < 8
    assert course.origin_bytes() == sum(len(d) for d in course.data.values())
    assert "3 downloaded" in capsys.readouterr().out


@needs_libtorrent
def test_what_the_swarm_lacks_comes_from_the_origin_and_a_rerun_finishes_from_the_swarm(
    course: Class, seeder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    torrent = course.torrent()
    partial = course.tmp / "partial"  # a classmate with two of the three files seeds them
    for name in ("l01", "l02"):
        course.place(partial, name, course.data[name])
    capsys.readouterr()
    first, port = seeder("--manifest", str(course.manifest), "--root", str(partial),
                         "--torrent", str(torrent))  # fmt: skip
    course.server.set_faults("/origin/hw01.pdf", Fault(statuses=[503] * 20))
    student = course.tmp / "student"
    status = course.sync(student, "--swarm", str(torrent), *LOOPBACK, "--swarm-wait", "1",
                         "--peer", f"127.0.0.1:{port}")  # fmt: skip
    assert status == 4
    out, err = capsys.readouterr()
    assert "2 downloaded" in out
    assert "swarm: 2 of 3 files (850.0 kB); 1 file from their usual sources" in err
    assert course.server.bytes_sent("/origin/l01.pdf") == 0
    assert not course.file(student, "hw01").exists()
    first.kill()
    _, port = seeder("--manifest", str(course.manifest), "--root", str(course.ta))
    course.server.reset_log()  # the origin still fails; now a seed has the file
    status = course.sync(student, "--swarm", str(torrent), *LOOPBACK, "--swarm-wait", "5",
                         "--peer", f"127.0.0.1:{port}")  # fmt: skip
    assert status == 0
    assert "1 downloaded" in capsys.readouterr().out
    assert course.file(student, "hw01").read_bytes() == course.data["hw01"]
    assert course.server.count() == 0


@needs_libtorrent
def test_a_magnet_link_gets_its_metadata_from_the_peer(
    course: Class, seeder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    process, port = seeder("--manifest", str(course.manifest), "--root", str(course.ta))
    magnet = process.stdout.readline().strip()
    assert magnet.startswith("magnet:?")
    student = course.tmp / "student"
    status = course.sync(student, "--swarm", magnet, "--peer", f"127.0.0.1:{port}",
                         *LOOPBACK, "--swarm-wait", "10")  # fmt: skip
    assert status == 0, capsys.readouterr()
    assert course.origin_bytes() == 0
    for name, data in course.data.items():
        assert course.file(student, name).read_bytes() == data


@needs_libtorrent
def test_swarm_bytes_reach_the_sync_progress_events(course: Class) -> None:
    from lhymirror.fetch.plan import plan_sync
    from lhymirror.manifest.model import load_manifest
    from lhymirror.swarm.engine import SessionOptions
    from lhymirror.swarm.leech import sync_from_swarm

    torrent = course.torrent("--web-seed", course.serve_mirror(course.ta))
    manifest = load_manifest(course.manifest)
    store = MirrorStore(course.tmp / "student", YEAR)
    held: dict[str, int] = {}
    totals: dict[str, int] = {}

    class Events:
        def started(self, key: str, total: int | None, offset: int) -> None:
            totals[key], held[key] = total or 0, offset

        def advanced(self, key: str, nbytes: int) -> None:
            held[key] += nbytes

        def restarted(self, key: str, offset: int) -> None:
            held[key] = offset

        def retrying(self, key: str, source: str, reason: str, delay: float) -> None:
            pass

    result = sync_from_swarm(
        plan_sync(manifest, store), store, str(torrent), events=Events(), wait=10,
        options=SessionOptions(bind="127.0.0.1", port=0, dht=False, lsd=False),
    )  # fmt: skip
    assert sorted(result.placed) == sorted(course.data)
    assert held == totals == {name: len(data) for name, data in course.data.items()}


def test_offline_never_starts_the_swarm(
    course: Class, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lhymirror.swarm import leech

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the swarm was started")

    monkeypatch.setattr(leech, "sync_from_swarm", refuse)
    monkeypatch.setitem(sys.modules, "libtorrent", None)  # not even needed
    assert course.sync(course.tmp / "student", "--swarm", "x.torrent", "--offline") == 4
    assert "offline" in capsys.readouterr().err
    assert course.server.count() == 0


@needs_libtorrent
def test_kill_9_midway_then_rerun_continues(course: Class) -> None:
    big = Class(course.server, course.tmp / "big", {"data": 3 * 1024 * 1024})
    path = big.file(big.ta, "data")
    route = f"/slow/{YEAR}/{Class.path_of('data')}"
    course.server.add_file(route, path, faults=Fault(trickle=(64 * 1024, 0.05)))
    torrent = big.torrent("--web-seed", course.server.url_for("/slow/"))
    student = course.tmp / "student"
    args = [sys.executable, "-m", "lhymirror", "sync", "--manifest", str(big.manifest),
            "--root", str(student), "--swarm", str(torrent), *LOOPBACK, "--quiet"]  # fmt: skip
    process = subprocess.Popen(args, env=cli_env())
    course.server.wait_for_bytes(route, 1_500_000, timeout=20)
    time.sleep(RESUME_SAVE_MARGIN)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first_run = course.server.bytes_sent(route)
    assert first_run < len(big.data["data"])
    course.server.reset_log()
    course.server.set_faults(route, None)
    assert subprocess.run(args, check=False, env=cli_env(), timeout=60).returncode == 0
    assert big.file(student, "data").read_bytes() == big.data["data"]
    assert course.server.bytes_sent(route) <= len(big.data["data"]) - first_run // 2
    assert big.origin_bytes() == 0


RESUME_SAVE_MARGIN = 0.3


# -- fetch and seed an archive -------------------------------------------------------------------


def pack(course: Class, *extra: str) -> Path:
    out = course.tmp / "dist"
    args = ["pack", "--manifest", str(course.manifest), "--root", str(course.ta), "--quiet"]
    assert main([*args, "--out", str(out), "--torrent", *extra]) == 0
    return out / "ml-2022-v3.zip"


@needs_libtorrent
def test_fetch_an_archive_from_its_web_seed(
    course: Class, capsys: pytest.CaptureFixture[str]
) -> None:
    archive_url = course.server.url_for("/dl/ml-2022-v3.zip")
    archive = pack(course, "--web-seed", archive_url)
    course.server.add_file("/dl/ml-2022-v3.zip", archive)
    capsys.readouterr()
    out = course.tmp / "downloads"
    torrent = archive.with_name(archive.name + ".torrent")
    assert main(["fetch", str(torrent), "--out", str(out), *LOOPBACK, "--wait", "10"]) == 0
    assert capsys.readouterr().out.strip() == str(out / archive.name)
    assert (out / archive.name).read_bytes() == archive.read_bytes()
    assert (out / (archive.name + ".torrent")).read_bytes() == torrent.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == [archive.name, archive.name + ".torrent"]
    assert main(["verify", str(out / archive.name)]) == 0
    course.server.reset_log()  # fetching again: the archive is there, nothing is downloaded
    assert main(["fetch", str(torrent), "--out", str(out), *LOOPBACK, "--wait", "10"]) == 0
    assert course.server.count() == 0
    damaged = bytearray(archive.read_bytes())
    damaged[-100] ^= 0xFF
    (out / archive.name).write_bytes(bytes(damaged))  # other bytes there: downloaded anew
    assert main(["fetch", str(torrent), "--out", str(out), *LOOPBACK, "--wait", "10"]) == 0
    assert (out / archive.name).read_bytes() == archive.read_bytes()


def lying_seeder(torrent: Path, good: Path) -> tuple[Any, Any]:
    """A libtorrent seed that serves damaged bytes: it checked good files and saved resume
    data, then the files were damaged behind its back (same sizes and times), so the resumed
    seed claims pieces it no longer has right. Returns (session, handle)."""
    import libtorrent as lt

    settings = {"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
                "enable_upnp": False, "enable_natpmp": False}  # fmt: skip
    session = lt.session(settings)
    params = lt.load_torrent_file(str(torrent))
    params.url_seeds, params.save_path = [], str(good)
    handle = session.add_torrent(params)
    deadline = time.monotonic() + 10
    while not handle.status().is_seeding and time.monotonic() < deadline:
        time.sleep(0.02)
    handle.save_resume_data(lt.save_resume_flags_t.save_info_dict)
    resume = None
    while resume is None and time.monotonic() < deadline:
        resume = next(  # serialised at once: an alert lives only until the next pop
            (lt.write_resume_data_buf(a.params) for a in session.pop_alerts()
             if isinstance(a, lt.save_resume_data_alert)), None)  # fmt: skip
        time.sleep(0.02)
    session.remove_torrent(handle)
    for path in good.rglob("*"):
        if path.is_file():
            stat = path.stat()
            damaged = bytearray(path.read_bytes())
            for offset in range(100, len(damaged), 4 * 1024):
                damaged[offset] ^= 0xFF  # a flipped byte in every block
            path.write_bytes(bytes(damaged))
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    session = lt.session(settings)
    params = lt.read_resume_data(resume)
    params.save_path = str(good)
    return session, session.add_torrent(params)


@needs_libtorrent
def test_a_classmates_python_http_server_is_a_web_seed_as_it_is(
    course: Class, capsys: pytest.CaptureFixture[str]
) -> None:
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "-d", str(course.ta),
         "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split(" port ")[1].split()[0])
        torrent = course.torrent("--web-seed", f"http://127.0.0.1:{port}")  # no trailing /
        student = course.tmp / "student"
        status = course.sync(student, "--swarm", str(torrent), *LOOPBACK, "--swarm-wait", "10")
    finally:
        server.terminate()
        server.wait()
    assert status == 0, capsys.readouterr()
    assert course.origin_bytes() == 0
    for name, data in course.data.items():
        assert course.file(student, name).read_bytes() == data


@needs_libtorrent
def test_a_corrupt_peer_is_rejected_by_piece_hashes(
    course: Class, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    # The honest source is a slow web seed, so the fast lying peer gets asked for pieces.
    for name in course.data:
        path = course.file(course.ta, name)
        route = f"/slow/{YEAR}/{course.path_of(name)}"
        course.server.add_file(route, path, faults=Fault(trickle=(64 * 1024, 0.01)))
    torrent = course.torrent("--web-seed", course.server.url_for("/slow/"))
    liar_root = course.tmp / "liar"
    shutil.copytree(
        course.ta / str(YEAR), liar_root / str(YEAR), ignore=shutil.ignore_patterns(".lhymirror")
    )
    session, handle = lying_seeder(torrent, liar_root)
    student = course.tmp / "student"
    status = course.sync(student, "--swarm", str(torrent), *LOOPBACK, "--swarm-wait", "10",
                         "--peer", f"127.0.0.1:{session.listen_port()}")  # fmt: skip
    assert status == 0, capsys.readouterr()
    assert handle.status().total_payload_upload > 0  # damaged bytes were sent, and thrown away
    assert course.origin_bytes() == 0
    for name, data in course.data.items():
        assert course.file(student, name).read_bytes() == data


@needs_libtorrent
def test_fetch_refuses_a_damaged_archive(course: Class, capsys: pytest.CaptureFixture[str]) -> None:
    archive = pack(course)
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0xFF  # the torrent is made for these damaged bytes
    archive.write_bytes(bytes(data))
    (archive.parent / (archive.name + ".sha256")).unlink()
    url = course.server.url_for("/dl/ml-2022-v3.zip")
    course.server.add_file("/dl/ml-2022-v3.zip", archive)
    torrent = course.tmp / "damaged.torrent"  # an archive torrent of the damaged bytes
    made = make_torrent([TorrentFile(archive.name, archive, len(data))], comment="x",
                        web_seeds=[url])  # fmt: skip
    torrent.write_bytes(made.data)
    out = course.tmp / "downloads"
    assert main(["fetch", str(torrent), "--out", str(out), *LOOPBACK, "--wait", "10"]) == 5
    assert "the downloaded archive is damaged" in capsys.readouterr().err
    assert not (out / archive.name).exists()


@needs_libtorrent
def test_seed_refuses_a_damaged_archive(course: Class, capsys: pytest.CaptureFixture[str]) -> None:
    archive = pack(course)
    data = bytearray(archive.read_bytes())
    data[100] ^= 0xFF
    archive.write_bytes(bytes(data))
    assert main(["seed", str(archive), *LOOPBACK]) == 5
    assert "the archive is damaged; not seeding it" in capsys.readouterr().err


@needs_libtorrent
def test_seed_an_archive_and_fetch_it_from_the_peer(
    course: Class, seeder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = pack(course)
    process, port = seeder(str(archive), "--upload-limit", "20M")
    out = course.tmp / "downloads"
    torrent = archive.with_name(archive.name + ".torrent")
    status = main(["fetch", str(torrent), "--out", str(out), *LOOPBACK,
                   "--peer", f"127.0.0.1:{port}", "--wait", "10"])  # fmt: skip
    assert status == 0, capsys.readouterr()
    assert (out / archive.name).read_bytes() == archive.read_bytes()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=10)
    assert process.returncode == 0 and "seeded" in err


# -- without the extra ----------------------------------------------------------------------

HIDDEN = "import sys; sys.modules['libtorrent'] = None\nfrom lhymirror.cli import main\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["torrent", "2022"],
        ["seed", "--year", "2022"],
        ["fetch", "x.torrent"],
        ["sync", "2022", "--swarm", "x.torrent"],
        ["pack", "2022", "--torrent"],
    ],
    ids=lambda argv: argv[0],
)
def test_without_libtorrent_a_one_line_hint_and_exit_2(argv: list[str], tmp_path: Path) -> None:
    root = [] if argv[0] == "fetch" else ["--root", str(tmp_path)]
    code = HIDDEN + f"sys.exit(main({[*argv, *root]!r}))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "lhymirror: error: BitTorrent support is not installed. "
        "Install it with `pip install 'lhymirror[swarm]'`."
    ]
    assert result.stdout == ""


def test_only_the_swarm_package_loads_libtorrent_and_only_lazily() -> None:
    src = Path(lhymirror.__file__).resolve().parent
    loads = re.compile(r"^\s*(import|from) libtorrent\b|import_module\(\"libtorrent\"\)", re.M)
    mentions = [
        path.relative_to(src).as_posix()
        for path in sorted(src.rglob("*.py"))
        if loads.search(path.read_text())
    ]
    assert mentions == ["swarm/engine.py"]
    code = (
        "import sys; from lhymirror.cli import main; import lhymirror.swarm.seed, "
        "lhymirror.swarm.leech, lhymirror.cli.sync_cmd; print('libtorrent' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], check=True, env=cli_env(),
                            capture_output=True, text=True)  # fmt: skip
    assert result.stdout.strip() == "False"


def test_piece_size_grows_with_the_payload_within_bep_52_limits() -> None:
    from lhymirror.swarm.make import piece_size_for

    assert piece_size_for(0) == piece_size_for(1_000_000) == 16 * 1024
    assert piece_size_for(1_200_000_000) == 1024 * 1024  # the whole course: ~1150 pieces
    assert piece_size_for(10**13) == 16 * 1024 * 1024
    for total in (10**5, 10**7, 10**9, 10**11):
        size = piece_size_for(total)
        assert size & (size - 1) == 0 and (total // size <= 1500 or size == 16 * 1024 * 1024)


@pytest.mark.parametrize(
    ("text", "value"),
    [("500K", 512_000), ("2M", 2 * 1024**2), ("1.5MiB/s", 1_572_864), ("800", 800)],
)
def test_upload_limit_rates(text: str, value: int) -> None:
    from lhymirror.cli.swarm_options import rate

    assert rate(text) == value


def test_bad_rates_and_peers_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in [
        (["seed", "x.zip", "--upload-limit", "fast"], "is not a rate such as 500K or 2M"),
        (["fetch", "x.torrent", "--peer", "nowhere"], "is not HOST:PORT"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


@needs_libtorrent
def test_a_seed_that_cannot_listen_is_one_line_not_a_silent_wait(
    course: Class, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lhymirror.cli import seed_cmd

    archive = pack(course)
    capsys.readouterr()
    monkeypatch.setattr(seed_cmd, "LISTEN_WAIT", 0.2)
    words = ["seed", str(archive), "--bind", "999.1.1.1", "--port", "6999", "--no-dht", "--no-lsd"]
    assert main(words) == 2
    assert capsys.readouterr().err.splitlines() == [
        "lhymirror: error: cannot listen for peers (999.1.1.1:6999). "
        "Give --bind an address of this machine and --port a free port (0: any)."
    ]
