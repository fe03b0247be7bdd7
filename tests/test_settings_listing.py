"""`smile-data settings COMMAND` / `smile-train settings COMMAND`: every command that takes
settings has a listing, generated from its dataclass, with a meaning for every field; the
allowed values it shows are the ones the settings checks accept."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Callable

import click
import pytest
import typer
from typer.testing import CliRunner

from smile_data import settings_meanings as data_meanings
from smile_data.cli import app as data_app
from smile_data.objects.settings import BuildSettings
from smile_data.render.settings import PackSettings, RenderSettings
from smile_data.settings_listing import Listing, missing_meanings, setting_rows, type_name
from smile_train.cli import app as train_app
from smile_train.settings import meanings as train_meanings
from tests.hostile.test_hostile_counts import CHECKS

README = Path(__file__).resolve().parents[1] / "README.md"
APPS = [(data_app, data_meanings), (train_app, train_meanings)]


def _commands_with_set(app: typer.Typer) -> set[str]:
    group = typer.main.get_command(app)
    return {name for name, command in group.commands.items()
            if any("--set" in getattr(p, "opts", ()) for p in command.params)}


@pytest.mark.parametrize("app, meanings", APPS, ids=["smile-data", "smile-train"])
def test_every_command_that_takes_settings_has_a_complete_listing(app, meanings):
    listings = meanings.listings()
    assert set(listings) == _commands_with_set(app)
    for command, command_listings in listings.items():
        for listing in command_listings:
            assert missing_meanings(listing) == ([], []), (command, listing.title)
        result = CliRunner().invoke(app, ["settings", command, "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        fields = [f.name for listing in command_listings for f in dataclasses.fields(listing.cls)]
        assert [row["key"] for row in rows] == fields
        assert all(row["meaning"] and row["type"] and row["default"] for row in rows)


def test_the_text_listing_shows_key_type_default_allowed_and_meaning():
    shown = CliRunner().invoke(train_app, ["settings", "pretrain"], catch_exceptions=False).stdout
    assert "batch_size: integer = 256    allowed: in [1, 65536]\n    masked samples per optimiser step" in shown
    assert "mask: text = trajectory    allowed: one of tube, trajectory" in shown
    assert "betas: 2 numbers = [0.9, 0.95]    allowed: two numbers in [0, 1)" in shown
    assert "`--set STAGE.KEY=VALUE` in one" in " ".join(shown.split())  # stage keys
    shown = CliRunner().invoke(data_app, ["settings", "render"], catch_exceptions=False).stdout
    assert 'bank: text = ""\n    object bank folder (overlay objects)' in shown
    assert "overlay: text = objects    allowed: one of objects, patches, none" in shown
    listed = CliRunner().invoke(data_app, ["settings"], catch_exceptions=False).stdout
    assert "build-objects, import-objects, render, pack, preview" in listed


def test_an_unknown_command_is_refused_with_a_suggestion():
    result = CliRunner().invoke(data_app, ["settings", "rendr"])
    assert result.exit_code == 2 and "did you mean render?" in result.stderr


def test_type_names_say_what_a_user_writes():
    assert type_name(int) == "integer" and type_name(bool) == "true/false"
    assert type_name(tuple[float, float]) == "2 numbers"
    assert type_name(tuple[float, ...]) == "list of numbers" and type_name(list[str]) == "list of texts"
    assert type_name(list[dict[str, Any]]) == "list of mappings"


def test_a_meaning_for_no_field_is_refused():
    @dataclasses.dataclass
    class Toy:
        size: int = 1

    with pytest.raises(ValueError, match=r"no meaning for \['size'\], meaning of no field \['sise'\]"):
        setting_rows(Listing("toy", Toy, {"sise": "typo"}))


# Settings of data commands whose other values pass their checks (a value may be checked only in
# one mode: the codec for packed clips, the x264 preset for packed videos).
PASSING: dict[type, list[Any]] = {
    RenderSettings: [RenderSettings(label="motion-direction", objects=1)],
    PackSettings: [PackSettings(), PackSettings(store="video")],
    BuildSettings: [BuildSettings()],
}


def _refused(check: Callable[[Any], Any], settings: Any) -> bool:
    try:
        check(settings)
    except ValueError:
        return True
    return False


@pytest.mark.parametrize("cls", list(PASSING), ids=lambda cls: cls.__name__)
def test_shown_choices_are_what_the_checks_accept(cls: type):
    listing = next(listing for command_listings in data_meanings.listings().values()
                   for listing in command_listings if listing.cls is cls)
    check, bases = dict(CHECKS)[cls], PASSING[cls]
    assert all(not _refused(check, base) for base in bases)
    checked = 0
    for row in setting_rows(listing):
        if not row.allowed.startswith("one of ") or "cuda:N" in row.allowed:
            continue
        choices = row.allowed.removeprefix("one of ").split(", ")
        default = getattr(cls(), row.key)
        assert all(str(item) in choices for item in (default if isinstance(default, list) else [default]))
        outside = {str: "no-such-value", int: 999, list: ["no-such-value"]}[type(default)]
        assert any(_refused(check, dataclasses.replace(base, **{row.key: outside})) for base in bases), row
        checked += 1
    assert checked >= 2


def test_readme_names_exactly_the_commands_that_take_settings():
    text = " ".join(README.read_text().split())
    match = re.search(r"The commands that take settings \(([^)]*)\)", text)
    assert match, "README: the sentence on --config / --set is missing"
    named = {name.strip(" `") for name in re.split(r",| and ", match[1]) if name.strip(" `")}
    assert named == _commands_with_set(data_app) | _commands_with_set(train_app)
    assert "smile-data settings COMMAND" in text and "smile-train settings COMMAND" in text
