"""Command-line parsing: list options, typed values, one-line usage errors (exit 2)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from lhymirror.cli import build_parser, main
from lhymirror.cli.commands import COMMANDS

LIST_OPTIONS = [
    ("--only", "only", "hw01-slides"),
    ("--kind", "kind", "dataset"),
    ("--accept-upstream", "accept_upstream", "hw01-slides"),
]


def _parse(*words: str) -> argparse.Namespace:
    return build_parser().parse_args(list(words))


@pytest.mark.parametrize(("flag", "dest", "value"), LIST_OPTIONS)
def test_a_list_option_does_not_swallow_the_year_after_it(flag: str, dest: str, value: str) -> None:
    args = _parse("sync", flag, value, "2022")
    assert args.year_pos == 2022
    assert getattr(args, dest) == [value]


def test_list_options_take_commas_and_repeats() -> None:
    args = _parse("sync", "2022", "--only", "a,b", "--only", "c", "--kind", "dataset,code")
    assert args.only == ["a", "b", "c"]
    assert args.kind == ["dataset", "code"]
    assert _parse("list", "--kind", "video,slide", "2022").kind == ["video", "slide"]


def test_a_wrong_kind_in_a_list_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse("sync", "--kind", "dataset,videos", "2022")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "lhymirror sync: error: --kind: unknown value 'videos' "
        "(one of slide, hw-slide, dataset, code, other). See `lhymirror sync --help`."
    ]


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_no_option_of_any_command_takes_a_variable_number_of_values() -> None:
    """nargs '+'/'*' on an option swallows a positional after it (YEAR, ID, FILE)."""
    greedy = [
        f"{parser.prog} {action.option_strings[0]}"
        for parser in _parsers(build_parser())
        for action in parser._actions
        if action.option_strings and action.nargs in ("+", "*", argparse.REMAINDER)
    ]
    assert greedy == []


_PORT = "--port: expected a port from 0 to 65535, got "


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["sync", "--jobs", "abc", "2022"], "--jobs: expected a whole number >= 1, got 'abc'"),
        (["sync", "--jobs", "0", "2022"], "--jobs: expected a whole number >= 1, got '0'"),
        (["list", "--year", "20x2"], "--year: expected a year such as 2022, got '20x2'"),
        (["seed", "--port", "99999", "a.zip"], _PORT + "'99999'"),
        (["fetch", "--port", "http", "a.torrent"], _PORT + "'http'"),
    ],
)
def test_a_bad_option_value_is_one_clear_line(
    words: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(words)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert f"error: {message}. See `lhymirror {words[0]} --help`." in err
    assert "_positive" not in err and "invalid" not in err


@pytest.mark.parametrize("command", ["list", "sync", "status", "pack", "pin"])
def test_a_missing_manifest_file_is_a_usage_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.toml"
    root = [] if command == "list" else ["--root", str(tmp_path)]
    assert main([command, "--manifest", str(missing), *root]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"lhymirror: error: no such manifest file ({missing}). "
        "Check the path, or name a YEAR to use a shipped manifest."
    ]


def test_a_folder_as_manifest_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", "--manifest", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_every_command_is_registered_with_the_one_line_error_parser() -> None:
    parser = build_parser()
    assert {type(p).__name__ for p in _parsers(parser)} == {"Parser"}
    assert set(COMMANDS) <= {p.prog.split()[-1] for p in _parsers(parser)}


def _commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parsers that run something (have a handler), every command and sub-command."""
    for sub in _parsers(parser):
        if sub.get_default("handler") is not None:
            yield sub


def test_every_command_takes_quiet_and_verbose() -> None:
    commands = list(_commands(build_parser()))
    assert len(commands) >= len(COMMANDS)
    for parser in commands:
        words = parser.prog.split()[1:]
        extra = [
            "1"  # a value every required positional takes (a year, an id, a path)
            for action in parser._actions
            if not action.option_strings and action.nargs in (None, "+")
        ]
        quiet = build_parser().parse_args([*words, "-q", *extra])
        verbose = build_parser().parse_args([*words, "--verbose", *extra])
        assert (quiet.quiet, quiet.verbose) == (True, False), parser.prog
        assert (verbose.quiet, verbose.verbose) == (False, True), parser.prog
    before = build_parser().parse_args(["-q", "list", "2022"])
    assert before.quiet is True


def test_quiet_and_verbose_together_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["list", "2022", "-q", "-v"])
    assert exit_info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_a_hint_names_the_manifest_and_root_of_this_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "my-course.toml"
    manifest.write_text(
        'schema = 1\ncourse = "C"\nyear = 2030\nversion = "1"\n\n[[files]]\nid = "a"\n'
        'kind = "slide"\npath = "a.pdf"\nurls = ["https://example.org/a.pdf"]\n'
    )
    root = tmp_path / "m"
    assert main(["pack", "--manifest", str(manifest), "--root", str(root)]) != 0
    err = capsys.readouterr().err
    assert f"`lhymirror sync --manifest {manifest} --root {root}`" in err
    assert main(["sync", "--manifest", str(manifest), "--root", str(root), "--only", "x"]) == 2
    err = capsys.readouterr().err
    assert f"Run `lhymirror list --manifest {manifest}` to see the ids." in err
    assert "2030`" not in err


def test_the_seed_summary_counts_peers_in_words() -> None:
    from lhymirror.cli.seed_cmd import _summary
    from lhymirror.swarm.seed import SeedStatus

    one = SeedStatus("seeding", 0, 0, 3_900_000, 24.0, 1)
    assert _summary(one) == "seeded 3.9 MB to 1 peer in 0.4 min"
    assert "to 2 peers" in _summary(SeedStatus("seeding", 0, 0, 0, 6.0, 2))


@pytest.mark.parametrize(
    ("words", "command"),
    [
        (["unpack", "a.zip", "--out", "x"], "lhymirror unpack"),
        (["manifest", "check", "--manifest", "m.toml"], "lhymirror manifest check"),
        (["list", "2022", "extra"], "lhymirror list"),
        (["--bogus"], "lhymirror"),
    ],
)
def test_an_unknown_word_points_at_the_help_of_the_command_named(
    words: list[str], command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(words)
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{command}: error: unrecognized arguments: ")
    assert line.endswith(f"See `{command} --help`.")
