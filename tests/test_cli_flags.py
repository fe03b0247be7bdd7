"""Flags derived from settings dataclasses: names, types and defaults from the dataclass, one
precedence (defaults <- --config <- --set <- flags), and the old spellings still accepted."""

from __future__ import annotations

import ast
import functools
import inspect
import json
import typing
from dataclasses import dataclass, field

import pytest
import typer
from typer.testing import CliRunner

from smile_data.cli import app as data_app
from smile_data.cli_options import command_settings, given_flags, make_app, setting_option
from smile_data.config import SettingsError, command_line_overrides
from smile_data.render.cli import render_settings
from smile_train.cli import app as train_app


@dataclass
class ToySettings:
    size: int = 224
    kinds: list[str] = field(default_factory=lambda: ["natural"])
    out_dir: str = "runs/toy"
    fast: bool = False


TOY = functools.partial(setting_option, ToySettings)


def _toy_app() -> typer.Typer:
    """An app whose one command prints the flags it was given and the settings they resolve to."""
    app = make_app("toy")

    @app.command("show")
    def show(
        ctx: typer.Context,
        size: int = TOY("size", "Clip side."),
        kind: list[str] = TOY("kinds", "A kind (repeatable)."),
        out: str = TOY("out_dir", "Folder to write."),
        old_out: str = TOY("out_dir", "Old spelling of --out.", "--old-out", deprecated=True),
        fast: bool = TOY("fast", "Go fast.", "--fast/--slow"),
        kind_list: str = TOY("kinds", "Kinds, comma-separated.", comma_list=True),
        set_options: list[str] = typer.Option(None, "--set", help="key=value"),
    ) -> None:
        """Print what the command line gave."""
        given = given_flags(ctx)
        settings = command_settings(ToySettings, None, set_options, given)
        typer.echo(json.dumps({"given": given, "settings": vars(settings)}))

    @app.command("other")
    def other() -> None:
        """Keeps `show` a subcommand."""

    return app


def _show(app: typer.Typer, *args: str) -> dict:
    result = CliRunner().invoke(app, ["show", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_flags_take_type_and_default_from_the_dataclass():
    app = _toy_app()
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
    app = _toy_app()
    assert _show(app, "--set", "size=32")["settings"]["size"] == 32
    assert _show(app, "--set", "size=32", "--size", "48")["settings"]["size"] == 48
    assert command_line_overrides(["size=32"], {"size": None}) == {"size": 32}


def test_old_spelling_works_and_says_what_replaced_it():
    app = _toy_app()
    result = CliRunner().invoke(app, ["show", "--old-out", "y"], catch_exceptions=False)
    assert json.loads(result.stdout.strip().splitlines()[-1])["settings"]["out_dir"] == "y"
    assert "--old-out is deprecated; use --out" in result.stderr
    both = CliRunner().invoke(app, ["show", "--out", "x", "--old-out", "y"])
    assert both.exit_code == 2 and "error: give either --out or --old-out, not both" in both.stderr


def test_finetune_init_is_the_old_spelling_of_init_from(monkeypatch):
    from smile_train.loop import finetune

    monkeypatch.setattr(finetune, "run_finetune", lambda config, overrides, *args, **kwargs: overrides)

    def overrides(*args: str) -> dict:
        result = CliRunner().invoke(train_app, ["finetune", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return ast.literal_eval(result.stdout.strip().splitlines()[-1])

    assert overrides("--init-from", "a.pt") == {"init_from": "a.pt"}
    assert overrides("--init", "b.pt", "--out", "run") == {"out_dir": "run", "init_from": "b.pt"}


def test_a_setting_option_of_no_field_is_refused():
    with pytest.raises(TypeError, match="ToySettings has no setting 'sise'"):
        TOY("sise", "Clip side.")


def _setting_options(app: typer.Typer):
    """(command, parameter name, its type, SettingFlag) of every setting option of an app."""
    for name, command in typer.main.get_command(app).commands.items():
        function = inspect.unwrap(command.callback)
        hints = typing.get_type_hints(function)
        for parameter in inspect.signature(function).parameters.values():
            flag = getattr(parameter.default, "setting_flag", None)
            if flag is not None:
                yield name, parameter.name, hints[parameter.name], flag


@pytest.mark.parametrize("app", [data_app, train_app], ids=["smile-data", "smile-train"])
def test_every_setting_option_has_its_field_type(app):
    """The parameter's type (what click parses) is the field's, or text for a comma list."""
    settings = {"render": "RenderSettings", "pack": "PackSettings", "build-objects": "BuildSettings",
                "import-objects": "ImportSettings", "finetune": "FinetuneSettings",
                "evaluate": "EvalSettings", "linear-probe": "ProbeSettings"}
    classes = {cls.__name__: cls for cls in _settings_classes()}
    checked = 0
    for command, parameter, annotation, flag in _setting_options(app):
        field_type = typing.get_type_hints(classes[settings[command]])[flag.field]
        assert annotation == (str if flag.comma_list else field_type), (command, parameter)
        checked += 1
    assert checked >= 10


def _settings_classes() -> list[type]:
    from smile_data.objects.settings import BuildSettings, ImportSettings
    from smile_data.render.settings import PackSettings, RenderSettings
    from smile_train.settings.finetune import EvalSettings, FinetuneSettings, ProbeSettings

    return [RenderSettings, PackSettings, BuildSettings, ImportSettings, FinetuneSettings, EvalSettings,
            ProbeSettings]


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
