"""``lhymirror status``: the local state of each file of a year, without any network access."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from lhymirror.cli.common import (
    add_command,
    add_manifest_arguments,
    add_root_argument,
    format_size,
    print_json,
    selected_manifest,
    selected_store,
)
from lhymirror.mirror.state import FileStatus, LocalState, local_state

LABELS: dict[FileStatus, str] = {
    "ok": "ok",
    "missing": "missing",
    "partial": "partial",
    "changed": "changed on disk",
    "unverified": "unverified",
    "manual": "manual pending",
    "symlink": "symlink",
    "not_a_file": "not a file",
    "unreadable": "unreadable",
}


def register(subparsers: Any) -> None:
    """Add the ``status`` command."""
    parser = add_command(
        subparsers,
        "status",
        description="""
            Show the local state of every file of a year's manifest: ok (present and
            verified), missing, partial (how much is held), changed on disk, unverified (no
            checksum known yet), manual pending, or symlink, not a file and unreadable for what
            lhymirror will not use in place of the file (links are never followed). Only files
            changed since they were verified are re-hashed, unless --rehash is given. Never
            uses the network.
        """,
        example="""
            lhymirror status 2022
            lhymirror status 2022 --rehash --json
        """,
    )
    add_manifest_arguments(parser)
    add_root_argument(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--rehash", action="store_true", help="re-hash every present file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print each file's local state; the exit status is 0 whatever the states are."""
    manifest, _ = selected_manifest(args)
    store = selected_store(args, manifest)
    states = [local_state(store, entry, rehash=args.rehash) for entry in manifest.files]
    paths = {entry.id: entry.path for entry in manifest.files}
    if args.json:
        print_json(
            {
                "year": manifest.year,
                "root": str(store.root),
                "counts": dict(Counter(state.status for state in states)),
                "files": [_state_json(state, paths[state.entry_id]) for state in states],
            }
        )
        return 0
    print(f"{manifest.course}, {manifest.year}: {store.year_dir}")
    id_width = max((len(state.entry_id) for state in states), default=2)
    for state in states:
        label = LABELS.get(state.status, state.status)
        detail = f"  ({state.detail})" if state.detail else ""
        print(f"  {state.entry_id:<{id_width}}  {label:<15}  {paths[state.entry_id]}{detail}")
    counts = Counter(state.status for state in states)
    total = sum(state.size or 0 for state in states if state.status == "ok")
    print(
        f"{counts['ok']} of {len(states)} files ok ({format_size(total)})"
        + "".join(
            f", {counts[status]} {LABELS[status]}"
            for status in LABELS
            if status != "ok"
            if counts[status]
        )
    )
    return 0


def _state_json(state: LocalState, path: str) -> dict[str, Any]:
    expected = state.expected
    return {
        "id": state.entry_id,
        "path": path,
        "status": state.status,
        "detail": state.detail,
        "size": state.size,
        "expected_size": expected.size if expected else None,
        "expected_sha256": expected.sha256 if expected else None,
        "checksum_origin": expected.origin if expected else None,
        "problem": state.problem.to_json() if state.problem else None,
    }
