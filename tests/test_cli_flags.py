"""Flags derived from settings dataclasses: names, types and defaults from the dataclass, one
precedence (defaults <- --config <- --set <- flags), and the old spellings still accepted."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import typer
from typer.testing import CliRunner

from smile_data.cli_options import SettingFlag, command_settings, make_app, setting_flags
from smile_data.config import SettingsError, command_line_overrides
from smile_data.render.cli import render_settings
from smile_train.cli import FINETUNE_FLAGS
from smile_train.finetune_settings import FinetuneSettings


@dataclass
class ToySettings:
    size: int = 224
    kinds: list[str] = field(default_factory=lambda: ["natural"])
    out_dir: str = "runs/toy"
    fast: bool = False


TOY_FLAGS = {
    "size": "Clip side.",
    "kind": SettingFlag("A kind (repeatable).", field="kinds"),
    "out": SettingFlag("Folder to write.", field="out_dir"),
    "old_out": SettingFlag("Old spelling of --out.", field="out_dir", names=("--old-out",),
                           deprecated=True),
    "fast": SettingFlag("Go fast.", names=("--fast/--slow",)),
    "kind_list": SettingFlag("Kinds, comma-separated.", field="kinds", comma_list=True),
}


def _toy_app(settings_class: type, table: dict) -> typer.Typer:
    """An app whose one command prints the flags it was given and the settings they resolve to."""
    app = make_app("toy")

    @app.command("show")
    @setting_flags(settings_class, table)
    def show(given_flags: dict = None,
             set_options: list[str] = typer.Option(None, "--set", help="key=value")) -> None:
        """Print what the command line gave."""
        settings = command_settings(settings_class, None, set_options, given_flags)
        typer.echo(json.dumps({"given": given_flags, "settings": vars(settings)}))

    @app.command("other")
    def other() -> None:
        """Keeps `show` a subcommand."""

    return app


def _show(app: typer.Typer, *args: str) -> dict:
    result = CliRunner().invoke(app, ["show", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_flags_take_type_and_default_from_the_dataclass():
    app = _toy_app(ToySettings, TOY_FLAGS)
    shown = " ".join(CliRunner().invoke(app, ["show", "--help"]).output.split())
    assert "Clip side (default: 224)." in shown
    assert "A kind (repeatable) (default: natural)." in shown
    assert "--old-out" not in shown  # the old spelling is hidden
    assert _show(app) == {"given": {}, "settings": vars(ToySettings())}
    got = _show(app, "--size", "64", "--kind", "noise", "--kind", "black", "--out", "x", "--fast")
    assert got["given"] == {"size": 64, "kinds": ["noise", "black"], "out_dir": "x", "fast": True}
    assert CliRunner().invoke(app, ["show", "--size", "big"]).exit_code == 2  # not an int
    assert _show(app, "--kind-list", " noise, black,")["given"] == {"kinds": ["noise", "black"]}


def test_flag_wins_over_set_and_set_over_defaults():
    app = _toy_app(ToySettings, TOY_FLAGS)
    assert _show(app, "--set", "size=32")["settings"]["size"] == 32
    assert _show(app, "--set", "size=32", "--size", "48")["settings"]["size"] == 48
    assert command_line_overrides(["size=32"], {"size": None}) == {"size": 32}


def test_old_spelling_works_and_says_what_replaced_it():
    app = _toy_app(ToySettings, TOY_FLAGS)
    result = CliRunner().invoke(app, ["show", "--old-out", "y"], catch_exceptions=False)
    assert json.loads(result.stdout.strip().splitlines()[-1])["settings"]["out_dir"] == "y"
    assert "--old-out is deprecated; use --out" in result.stderr
    both = CliRunner().invoke(app, ["show", "--out", "x", "--old-out", "y"])
    assert both.exit_code == 2 and "error: give either --out or --old-out, not both" in both.stderr


def test_finetune_init_is_the_old_spelling_of_init_from():
    app = _toy_app(FinetuneSettings, FINETUNE_FLAGS)
    assert _show(app, "--init-from", "a.pt")["settings"]["init_from"] == "a.pt"
    assert _show(app, "--init", "b.pt")["settings"]["init_from"] == "b.pt"
    assert _show(app, "--out", "run")["settings"]["out_dir"] == "run"


def test_render_precedence_and_label_defaults(tmp_path):
    config = tmp_path / "render.yaml"
    config.write_text("clips: 10\nsize: 96\nlabel: motion-direction\n")
    overrides = command_line_overrides(["size=80", "clips=12"], {"clips": 14, "seed": None})
    settings = render_settings(config, overrides)
    assert (settings.clips, settings.size, settings.seed) == (14, 80, 0)
    assert settings.objects == 1  # the label mode's default, from the file's label
    assert render_settings(None, {"label": "motion-direction", "objects": 3}).objects == 3
    assert render_settings(None, {}).objects == 2
    with pytest.raises(SettingsError, match="unknown setting"):
        render_settings(None, {"no_such_field": 1})
