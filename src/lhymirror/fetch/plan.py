"""What ``sync`` has to do for each selected file, decided from the manifest and local state.

Planning is pure: it reads the manifest, the store's records and ``stat`` results, and never
hashes, downloads or writes. Each :class:`PlanItem` names one action:

``up-to-date``
    the file's checksum is known (pinned or recorded) and its size and mtime are those recorded
    when it was last verified: nothing to do, no network.
``verify``
    the file is present but changed on disk since it was verified (or ``--rehash``): ``sync``
    re-hashes it, and fetches it again only if the bytes no longer match.
``fetch``
    missing, partly downloaded, or present but never verified.
``manual``
    only a human can get it (``manual`` without sources); ``lhymirror add`` imports it.
``needs-network``
    ``--offline`` and no local source can provide it.
``refused``
    something other than a regular, readable file stands at its path (a symlink, a folder, a
    fifo, a file that cannot be read): lhymirror never follows, reads around or replaces it.

Sources are tried in this order: ``--from`` bases (another mirror's ``<year>/<path>``), then
``--mirror`` rewrites of each http(s) upstream URL (``BASE/HOST/PATH?QUERY``, the layout
``wget --mirror`` produces), then the manifest's own sources.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import quote, unquote, urlsplit

from lhymirror.core.errors import UsageError
from lhymirror.core.jsondata import snake_case
from lhymirror.manifest.model import FileEntry, Manifest
from lhymirror.manifest.sources import (
    is_local_source,
    local_source,
    local_source_path,
    parse_source,
    wayback_source,
)
from lhymirror.mirror.state import UNUSABLE, EntryState, Expected, FileProblem, describe
from lhymirror.mirror.store import MirrorStore, part_key

OFFLINE_HINT = "Run it without --offline to download them."
RESUME_HINT = "Run the same command again to resume."

Action = Literal["up-to-date", "verify", "fetch", "manual", "needs-network", "refused"]


@dataclass(frozen=True)
class PartPlan:
    """One piece of a split file and the sources to fetch it from, in order."""

    index: int
    key: str
    sources: tuple[str, ...]
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class PlanItem:
    """The decision for one manifest file."""

    entry: FileEntry
    action: Action
    reason: str
    expected: Expected
    sources: tuple[str, ...] = ()  # whole-file sources; for a split file only --from bases
    parts: tuple[PartPlan, ...] = ()
    accept_upstream: bool = False
    held_bytes: int = 0  # bytes of unfinished downloads already on disk
    withheld: tuple[str, ...] = ()  # network sources left out because of --offline
    capped_host: str | None = None  # see first_upstream_host
    problem: FileProblem | None = None  # what is wrong with the file on disk, seen by lstat

    @property
    def id(self) -> str:
        """The entry's id."""
        return self.entry.id

    @property
    def size(self) -> int | None:
        """The expected size when known."""
        return self.expected.size  # expected_of falls back to the manifest's size

    @property
    def offline_reason(self) -> str:
        """Why ``--offline`` leaves the file as it is: the one wording, wherever it is found."""
        return f"offline: would download from {', '.join(self.withheld) or 'a network source'}"

    @property
    def needs_transfer(self) -> bool:
        """True when the item will (or may, after re-hashing) download."""
        return self.action in ("fetch", "verify")

    def bytes_still_needed(self) -> int:
        """Disk space a fetch still needs (0 when unknown); split files are joined in place."""
        if self.action != "fetch" or self.size is None:
            return 0
        return max(self.size - self.held_bytes, 0)

    def to_json(self) -> dict[str, Any]:
        """The item as plain data, as ``sync --dry-run --json`` prints it (see docs/json.md)."""
        return {
            "id": self.id,
            "path": self.entry.path,
            "kind": self.entry.kind,
            "state": snake_case(self.action),
            "reason": self.reason,
            "size": self.size,
            "sha256": self.expected.sha256,
            "checksum_origin": self.expected.origin,
            "held_bytes": self.held_bytes,
            "sources": list(self.sources),
            "parts": [
                {"key": p.key, "size": p.size, "sha256": p.sha256, "sources": list(p.sources)}
                for p in self.parts
            ],
            "accept_upstream": self.accept_upstream,
            "needs_network": list(self.withheld),
            "problem": self.problem.to_json() if self.problem is not None else None,
        }


@dataclass(frozen=True)
class SyncPlan:
    """Every selected file of one year and what ``sync`` will do about it."""

    year: int
    root: str
    items: tuple[PlanItem, ...]
    offline: bool = False

    @property
    def counts(self) -> dict[str, int]:
        """How many items each action has."""
        return dict(Counter(item.action for item in self.items))

    def with_action(self, action: Action) -> list[PlanItem]:
        """The items whose action is *action*, in manifest order."""
        return [item for item in self.items if item.action == action]

    def bytes_still_needed(self) -> int:
        """Disk space still needed by the fetches whose size is known."""
        return sum(item.bytes_still_needed() for item in self.items)

    def bytes_to_fetch(self) -> int:
        """Known total size of the files to fetch (bytes already held included)."""
        return sum(item.size or 0 for item in self.items if item.action == "fetch")

    def to_json(self) -> dict[str, Any]:
        """The plan as plain data, as ``sync --dry-run --json`` prints it (see docs/json.md)."""
        counts = self.counts
        return {
            "year": self.year,
            "root": self.root,
            "offline": self.offline,
            "counts": {snake_case(action): counts.get(action, 0) for action in get_args(Action)},
            "bytes_to_fetch": self.bytes_to_fetch(),
            "bytes_still_needed": self.bytes_still_needed(),
            "files": [item.to_json() for item in self.items],
        }


# ---------------------------------------------------------------------------------------------
# Planning


def plan_sync(
    manifest: Manifest,
    store: MirrorStore,
    *,
    only: tuple[str, ...] | list[str] = (),
    kinds: tuple[str, ...] | list[str] = (),
    mirrors: tuple[str, ...] | list[str] = (),
    from_bases: tuple[str, ...] | list[str] = (),
    rehash: bool = False,
    accept_upstream: tuple[str, ...] | list[str] = (),
    offline: bool = False,
) -> SyncPlan:
    """Decide what to do for every selected file; ``UsageError`` for a filter matching nothing."""
    entries = select_entries(manifest, only=only, kinds=kinds)
    accepted = _accepted_ids(manifest, accept_upstream)
    routing = _Routing(
        manifest.year, tuple(mirrors), tuple(from_bases), offline, course_archive(manifest)
    )
    items = tuple(
        _plan_entry(entry, store, routing, rehash=rehash, accept=entry.id in accepted)
        for entry in entries
    )
    return SyncPlan(manifest.year, str(store.root), items, offline)


def select_entries(
    manifest: Manifest,
    *,
    only: tuple[str, ...] | list[str] = (),
    kinds: tuple[str, ...] | list[str] = (),
) -> list[FileEntry]:
    """The entries matching every filter: ``only`` ids or globs (on id or path), ``kinds``."""
    unmatched = [pattern for pattern in only if not _matches_any(manifest.files, pattern)]
    if unmatched:
        raise UsageError(
            "no file matches --only",
            where=", ".join(unmatched),
            hint=f"Run `lhymirror list {manifest.year}` to see the ids.",
        )
    return [
        entry
        for entry in manifest.files
        if (not only or any(_entry_matches(entry, p) for p in only))
        and (not kinds or entry.kind in kinds)
    ]


def _matches_any(entries: tuple[FileEntry, ...], pattern: str) -> bool:
    return any(_entry_matches(entry, pattern) for entry in entries)


def _entry_matches(entry: FileEntry, pattern: str) -> bool:
    return fnmatchcase(entry.id, pattern) or fnmatchcase(entry.path, pattern)


def _accepted_ids(manifest: Manifest, ids: tuple[str, ...] | list[str]) -> set[str]:
    unknown = manifest.unknown_ids(ids)
    if unknown:
        raise UsageError(
            "unknown id for --accept-upstream",
            where=", ".join(unknown),
            hint="Give the ids the failed sync named.",
        )
    return set(ids)


def _plan_entry(
    entry: FileEntry, store: MirrorStore, routing: _Routing, *, rehash: bool, accept: bool
) -> PlanItem:
    state = EntryState.read(store, entry)
    problem = state.check()
    if problem is not None and problem.kind in UNUSABLE:
        action: Action = "refused"
        reason = describe(problem)
    else:
        action, reason = _decide(state, problem, rehash=rehash)
    held = store.held_bytes(entry) if action == "fetch" else 0
    item = PlanItem(
        entry, action, reason, state.expected, accept_upstream=accept, held_bytes=held,
        problem=problem,
    )  # fmt: skip
    if action in ("up-to-date", "manual", "refused"):
        return item
    return routing.route(item)


def _decide(state: EntryState, problem: FileProblem | None, *, rehash: bool) -> tuple[Action, str]:
    """The action for a regular file or an absent one (*problem*: what ``lstat`` showed)."""
    entry = state.entry
    present = state.present
    if not present or state.expected.sha256 is None:
        if entry.is_manual_only:
            return "manual", (
                "present but never verified; import it with `lhymirror add`"
                if present
                else entry.manual or "manual step"
            )
        return "fetch", "present but never verified" if present else "missing"
    if rehash:
        return "verify", "--rehash"
    if state.unchanged_since_verified:
        return "up-to-date", f"verified ({state.expected.origin} sha256)"
    if problem is not None and problem.kind == "size":
        return "verify", describe(problem)
    return "verify", "changed on disk since verified, or not verified yet"


# ---------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class _Routing:
    """Builds each item's source list from --from bases, --mirror bases and the manifest."""

    year: int
    mirrors: tuple[str, ...]
    from_bases: tuple[str, ...]
    offline: bool
    archive: CourseArchive | None = None

    def route(self, item: PlanItem) -> PlanItem:
        """The item with its sources in try order (and, offline, what needs the network)."""
        entry = item.entry
        whole = [from_base_source(base, self.year, entry.path) for base in self.from_bases]
        withheld: list[str] = []
        if entry.parts:
            parts = tuple(
                PartPlan(
                    i,
                    part_key(entry.id, i),
                    self._kept(self._with_mirrors(part.urls), withheld),
                    part.size,
                    part.sha256,
                )
                for i, part in enumerate(entry.parts)
            )
            sources = self._kept(whole, withheld)
        else:
            parts = ()
            upstream = [*self._with_mirrors(entry.urls or ()), *self._last_resort(entry)]
            sources = self._kept([*whole, *upstream], withheld)
        action = item.action
        if action == "fetch" and not _can_fetch(sources, parts):
            action = "needs-network"
        return replace(
            item,
            action=action,
            sources=sources,
            parts=parts,
            withheld=tuple(dict.fromkeys(withheld)),
            capped_host=first_upstream_host(entry, sources, parts),
        )

    def _last_resort(self, entry: FileEntry) -> list[str]:
        """The Wayback capture of the entry's course-server URL, when a sha256 can prove it."""
        if self.archive is None or self.offline or entry.sha256 is None:
            return []
        return self.archive.captures(entry.urls or ())[:1]

    def _with_mirrors(self, urls: tuple[str, ...]) -> list[str]:
        rewritten = [
            mirrored
            for url in urls
            for base in self.mirrors
            if (mirrored := mirror_source(base, url)) is not None
        ]
        return [*rewritten, *urls]

    def _kept(self, sources: list[str], withheld: list[str]) -> tuple[str, ...]:
        """The sources usable now, without duplicates; network ones go to *withheld* offline."""
        kept = []
        for source in dict.fromkeys(sources):
            if self.offline and not is_local_source(source):
                withheld.append(source)
            else:
                kept.append(source)
        return tuple(kept)


@dataclass(frozen=True)
class CourseArchive:
    """Where the Internet Archive may hold the course server's files: the last resort source.

    The course server is the host of the manifest's ``homepage``; captures are asked for nearest
    to the manifest's ``released`` date (else its year), i.e. as the course left them.
    """

    host: str
    timestamp: str

    def captures(self, urls: tuple[str, ...] | list[str]) -> list[str]:
        """``wayback:`` sources for the course-server URLs among *urls*, in order."""
        return [
            wayback_source(url, self.timestamp)
            for url in urls
            if url.lower().startswith(("https://", "http://"))
            and urlsplit(url).hostname == self.host
        ]


def course_archive(manifest: Manifest) -> CourseArchive | None:
    """The manifest's course server and capture date; None without a homepage."""
    host = urlsplit(manifest.homepage).hostname if manifest.homepage else None
    if not host:
        return None
    released = manifest.released
    return CourseArchive(host, released.strftime("%Y%m%d") if released else str(manifest.year))


def _can_fetch(sources: tuple[str, ...], parts: tuple[PartPlan, ...]) -> bool:
    """True when the whole file, or else every part, has at least one usable source."""
    return bool(sources) or (bool(parts) and all(part.sources for part in parts))


def _is_http_base(base: str) -> bool:
    return base.lower().startswith(("http://", "https://"))


def _local_base(base: str) -> Path:
    """A local folder given as a path or a ``file://`` URL, made absolute."""
    if is_local_source(base):
        return local_source_path(base).absolute()
    return Path(base).expanduser().absolute()


def from_base_source(base: str, year: int, path: str) -> str:
    """Where another mirror (``--from BASE``) keeps a file: ``BASE/<year>/<path>``."""
    if _is_http_base(base):
        return f"{base.rstrip('/')}/{year}/{quote(path)}"
    return local_source(_local_base(base).joinpath(str(year), *path.split("/")))


def mirror_source(base: str, url: str) -> str | None:
    """The ``--mirror BASE`` copy of an http(s) URL (``BASE/HOST/PATH?QUERY``), else None."""
    try:
        source = parse_source(url)
    except ValueError:
        return None
    if source.kind not in ("http", "https"):
        return None  # gdrive and kaggle sources are not mirrored this way
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    query = f"?{parts.query}" if parts.query else ""
    if _is_http_base(base):
        return f"{base.rstrip('/')}/{host}{parts.path or '/'}{query}"
    relative = unquote(parts.path).lstrip("/") + query
    return _local_base(base).joinpath(host, *relative.split("/")).as_uri()


def first_upstream_host(
    entry: FileEntry, sources: tuple[str, ...], parts: tuple[PartPlan, ...]
) -> str | None:
    """The manifest host the first transfer goes to, which the per-host cap applies to.

    None when that transfer goes to a base the user named (``--mirror``, ``--from``) or to a
    local folder: the cap protects course servers, while a mirror the user runs gets every
    ``--jobs`` connection they asked for.
    """
    first = sources[0] if sources else next((p.sources[0] for p in parts if p.sources), "")
    upstream = {*(entry.urls or ()), *(url for part in entry.parts or () for url in part.urls)}
    if first not in upstream or is_local_source(first):
        return None
    try:
        source = parse_source(first)
    except ValueError:
        return "?"
    if source.kind in ("http", "https"):
        return (urlsplit(first).hostname or "?").lower()
    return source.kind
