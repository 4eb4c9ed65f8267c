"""The commands of ``lhymirror``: name, module and one-line summary.

Only the module of the command being run is imported (its dependencies, such as the HTTP stack
for ``sync``, cost start-up time); ``lhymirror --help`` lists the summaries from here.
"""

from __future__ import annotations

from typing import NamedTuple


class Command(NamedTuple):
    """A sub-command: the module under ``lhymirror.cli`` that registers it, and its summary."""

    module: str
    summary: str


# In the order `lhymirror --help` lists them.
COMMANDS: dict[str, Command] = {
    "list": Command("list_cmd", "show the files and links of a year's manifest"),
    "manifest": Command("manifest_cmd", "check manifests"),
    "sync": Command(
        "sync_cmd", "download a year's files into the local mirror (resumable, verified)"
    ),
    "check": Command(
        "check_cmd", "ask every source of a year if it is still there and unchanged (maintainers)"
    ),
    "status": Command(
        "status_cmd", "show which files of a year are present and verified (no network)"
    ),
    "add": Command("add_cmd", "import a file you downloaded by hand (checked, then recorded)"),
    "pin": Command(
        "pin_cmd", "write recorded sizes and checksums into the manifest (for maintainers)"
    ),
    "pack": Command("pack_cmd", "pack a year's mirror into a verified, reproducible archive"),
    "verify": Command("verify_cmd", "check an archive, a bag folder or the mirror, offline"),
    "unpack": Command("unpack_cmd", "extract an archive safely, verifying it on the way"),
    "torrent": Command("torrent_cmd", "make a torrent of a year's mirror to share it with a class"),
    "seed": Command("seed_cmd", "share an archive or a year's mirror over BitTorrent until Ctrl-C"),
    "fetch": Command(
        "fetch_cmd", "download an archive from a torrent (peers and web seeds), verified"
    ),
}
