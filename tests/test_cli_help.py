"""Every command's --help of both CLIs shows each option's help text as written in the source:
nothing read as markup ("clip i is drawn from [seed, i]" once lost its brackets), and metavars
that say what a user types (`--clips N`), not Python types (`<int>`)."""

from __future__ import annotations

import re

import click
import pytest
import typer
from typer.testing import CliRunner

from smile_data.cli import app as data_app
from smile_train.cli import app as train_app


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The argument path of every command under `group`, subcommands of nested groups included."""
    found = []
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        found.append(path + (name,))
        if isinstance(command, click.Group):
            found += _commands(command, path + (name,))
    return found


def _command(group: click.Group, path: tuple[str, ...]) -> click.Command:
    command: click.Command = group
    for name in path:
        command = command.commands[name]
    return command


def _squashed(text: str) -> str:
    """Text without whitespace, so help re-wrapped to the terminal width still compares."""
    return "".join(text.split())


@pytest.mark.parametrize("app", [data_app, train_app], ids=["smile-data", "smile-train"])
def test_every_help_text_appears_intact(app: typer.Typer):
    group = typer.main.get_command(app)
    paths = _commands(group)
    assert len(paths) >= 5
    runner = CliRunner()
    checked = 0
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], catch_exceptions=False)
        assert result.exit_code == 0, (path, result.output)
        shown = _squashed(result.output)
        command = _command(group, path)
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params
                                        if not getattr(p, "hidden", False)]
        for text in filter(None, texts):
            assert _squashed(text.split("\f")[0]) in shown, (path, text, result.output)
            checked += 1
    assert checked > 3 * len(paths)


def test_brackets_in_render_help_survive():
    result = CliRunner().invoke(data_app, ["render", "--help"], catch_exceptions=False)
    assert "clip i is drawn from [seed, i]" in " ".join(result.output.split())


PYTHON_TYPE = re.compile(r"<(str|int|float|bool|path|list\[|tuple|dict|int range|float range)")


@pytest.mark.parametrize("app", [data_app, train_app], ids=["smile-data", "smile-train"])
def test_metavars_show_what_a_user_types(app: typer.Typer):
    group = typer.main.get_command(app)
    for path in _commands(group):
        shown = CliRunner().invoke(app, [*path, "--help"], catch_exceptions=False).output
        assert not PYTHON_TYPE.search(shown), (path, shown)


def test_render_metavars_name_the_value():
    shown = " ".join(CliRunner().invoke(data_app, ["render", "--help"]).output.split())
    for expected in ("--out DIR", "--bg KIND[:WEIGHT]", "--clips N", "--set KEY=VALUE", "--config FILE",
                     "--shard-bytes BYTES Bytes per shard at most (default: 1073741824, i.e. 1 GiB)"):
        assert expected in shown, expected
