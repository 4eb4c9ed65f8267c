"""``lhymirror manifest check``: validate manifests and report every problem."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lhymirror.cli.common import add_command
from lhymirror.core.errors import ManifestError, UsageError
from lhymirror.core.units import count_of
from lhymirror.manifest.listing import check_manifest_path
from lhymirror.manifest.model import load_manifest, manifest_warnings, shipped_manifest_dir


def register(subparsers: Any) -> None:
    """Add the ``manifest`` command group."""
    parser = add_command(
        subparsers,
        "manifest",
        description="Work with manifest files.",
        example="lhymirror manifest check manifests/2022.toml",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = add_command(
        actions,
        "check",
        summary="validate manifests and report every problem",
        description="""
            Validate manifest files and print every problem found, each with the file, the
            entry and the field. Without FILE, checks the manifests shipped with lhymirror.
            Warnings (no sha256, a dataset with one source, a source on a moving branch or
            'latest' release, a link with no section) do not fail the check unless --strict
            is given (then exit status 3, as for an invalid manifest).
        """,
        example="""
            lhymirror manifest check
            lhymirror manifest check --strict my-course.toml
        """,
    )
    check.add_argument("files", nargs="*", type=Path, metavar="FILE", help="manifests to check")
    check.add_argument("--strict", action="store_true", help="treat warnings as failures")
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Check each manifest; raise ``ManifestError`` summarising the failures."""
    files = args.files or sorted(shipped_manifest_dir().glob("*.toml"))
    if not files:
        raise UsageError("no manifests to check", hint="Name the manifest files to check.")
    for path in files:  # a missing file is a wrong argument, not an invalid manifest
        check_manifest_path(path, named_by="FILE")
    failed: list[str] = []
    for path in files:
        if not _check_one(path, strict=args.strict, quiet=args.quiet):
            failed.append(str(path))
    if failed:
        raise ManifestError(
            ", ".join(failed), [f"{len(failed)} of {count_of(len(files), 'manifest')} failed"]
        )
    return 0


def _check_one(path: Path, *, strict: bool, quiet: bool) -> bool:
    try:
        manifest = load_manifest(path)
    except ManifestError as error:
        for problem in error.problems:
            print(f"{path}: error: {problem}", file=sys.stderr)
        return False
    warnings = manifest_warnings(manifest)
    for warning in warnings:
        print(f"{path}: warning: {warning}", file=sys.stderr)
    ok = not (strict and warnings)
    if not quiet:
        verdict = "ok" if ok else "failed (--strict)"
        print(
            f"{path}: {verdict}: {count_of(len(manifest.files), 'file')}, "
            f"{count_of(len(manifest.links), 'link')}, {count_of(len(warnings), 'warning')}"
        )
    return ok
