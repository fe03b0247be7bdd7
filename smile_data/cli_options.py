"""Pieces both command lines share: the app, --config / --set, and flags derived from settings.

A command that exposes settings fields as flags lists them in a table, flag -> `SettingFlag`
(help text, and the field where it is not the flag's own name); `setting_flags` turns the table
into typer options whose types come from the settings dataclass and whose help shows the
field's default. The command receives the flags that were given as one dict, ready for
`command_settings`, the one resolution path of every command:

    dataclass defaults  <-  --config FILE.yaml  <-  --set key=value  <-  explicit flags

(each one overrides the ones before it).

Both apps report a mistake the same way (`AppGroup`): an error a user can cause by a
setting or an input ends the command with one line, `error: ...`, and exit status 2;
options show plain metavars (`--clips N`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import sys
import tarfile
import types
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

import click
import typer
from typer.core import TyperGroup

from smile_data.config import command_line_overrides, load_settings
from smile_data.shards.integrity import IntegrityError

T = TypeVar("T")
GIVEN_FLAGS = "given_flags"  # the parameter a command receives its given setting flags in
EXIT_BROKEN_PIPE = 1  # Python's advice for a closed stdout (docs: signal, "Note on SIGPIPE")
EXIT_BAD_INPUT = 2  # click's own status for a bad command line; ours for bad settings and data
# What bad settings, files and data raise (SettingsError, UnsafeFile, VideoError, ... are
# ValueErrors; a missing or unreadable file an OSError; a diverging run a FloatingPointError).
USER_ERRORS = (ValueError, OSError, tarfile.TarError, IntegrityError, FloatingPointError)
# Modules of object-store clients whose own errors say a store is unreachable, the credentials
# are missing or access is denied (botocore's NoCredentialsError, EndpointConnectionError, ...).
STORE_CLIENT_MODULES = ("botocore.", "aiobotocore.", "s3fs.", "gcsfs.", "google.auth.",
                        "google.api_core.", "huggingface_hub.")
WORKER_TRACEBACK = "Original Traceback"  # how torch re-raises an error of a DataLoader worker


class AppGroup(TyperGroup):
    """The apps' group: a user's mistake ends its command with `error: ...` and status 2, and
    every option's help shows what a user types (`--clips N`, not `--clips <int>`)."""

    def __init__(self, **attrs: Any):
        super().__init__(**attrs)
        for command in self.commands.values():
            show_plain_metavars(command)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # the reader went away (`smile-data samples photos | head -1`)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except Exception as error:
            if not is_user_error(error):
                raise
            typer.echo(f"error: {error_message(error)}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None


def is_user_error(error: Exception) -> bool:
    """Whether a setting, an input or the user's environment (a store's credentials or address)
    caused `error`, rather than a bug."""
    return isinstance(error, USER_ERRORS) or _from_a_store_client(error)


def _from_a_store_client(error: BaseException) -> bool:
    return f"{type(error).__module__}.".startswith(STORE_CLIENT_MODULES)


def error_message(error: BaseException) -> str:
    """The error's own message; for an error re-raised from a DataLoader worker, whose message
    holds the worker's traceback, the last line without the exception's name."""
    text = str(error)
    if _from_a_store_client(error):
        return f"{text} ({type(error).__name__})"
    if WORKER_TRACEBACK not in text:
        return text
    last = text.strip().splitlines()[-1]
    name, colon, message = last.partition(": ")
    return message if colon and name.rsplit(".", 1)[-1] == type(error).__name__ else last


METAVARS = {int: "N", float: "NUMBER", str: "TEXT", Path: "PATH"}  # what a user types


def metavar_for(annotation: Any) -> str | None:
    """N, NUMBER, TEXT or PATH for a value of this type (a list or an optional: its item's)."""
    if typing.get_origin(annotation) in (list, tuple, typing.Union, types.UnionType):
        items = [a for a in typing.get_args(annotation) if a not in (type(None), Ellipsis)]
        return metavar_for(items[0]) if items else None
    return METAVARS.get(annotation)


def show_plain_metavars(command: click.Command) -> None:
    """Give every option without a metavar the plain one of its type, and every argument its
    name in capitals, instead of the Python types typer shows (`<list[str]>`, `<int range>`)."""
    hints = typing.get_type_hints(command.callback) if command.callback else {}
    for param in command.params:
        if param.param_type_name == "argument":
            param.metavar = param.metavar or param.name.upper()
            param.display_type_rich = lambda ctx: None  # typer would add "<str>" after the name
        elif param.metavar is None and not getattr(param, "is_flag", False) and param.name in hints:
            param.metavar = metavar_for(hints[param.name])


def make_app(help_text: str) -> typer.Typer:
    """A typer app with plain help (rich markup would eat "[seed, i]" and "[8]") whose
    commands report mistakes as one line (AppGroup)."""
    return typer.Typer(cls=AppGroup, help=help_text, no_args_is_help=True,
                       add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def config_option(what: str = "settings", *names: str) -> Any:
    return typer.Option(None, "--config", *names, metavar="FILE",
                        help=f"YAML file of {what} (differences only).")


def set_option(what: str = "setting", program: str = "smile-data") -> Any:
    return typer.Option(None, "--set", metavar="KEY=VALUE",
                        help=f"key=value override of any {what} (repeatable; `{program} settings "
                             f"COMMAND` lists every key).")


def rank_option() -> Any:
    return typer.Option(None, "--rank", help="This process's rank (default: RANK / SLURM_PROCID / 0).")


def world_size_option() -> Any:
    return typer.Option(None, "--world-size", help="Ranks in all (default: WORLD_SIZE / SLURM_NTASKS / 1).")


def progress_option() -> Any:
    return typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")


def command_settings(cls: type[T], config: str | Path | None, set_options: list[str] | None,
                     flags: dict[str, Any], allow_commands: bool = False) -> T:
    """Settings of a command: defaults <- config file <- --set <- the flags given."""
    return load_settings(cls, config, command_line_overrides(set_options, flags), allow_commands)


@dataclasses.dataclass(frozen=True)
class SettingFlag:
    """One flag of a settings field.

    help: what the flag does; "(default: ...)" is added from the dataclass unless the text
        already says what the default is.
    field: the settings field (default: the flag's own name in the table).
    names: the flag's spellings (default: --field-name).
    default: the default as shown, where the field's value reads badly (e.g. "1 GiB").
    metavar: what a user types, where the field's type says too little (default: N, NUMBER,
        TEXT or PATH from the type).
    deprecated: an old spelling, hidden from --help; it still works and says what replaced it.
    comma_list: a list field given as one comma-separated value (`--classes a,b`), not repeated.
    """

    help: str
    field: str = ""
    names: tuple[str, ...] = ()
    default: str = ""
    metavar: str = ""
    deprecated: bool = False
    comma_list: bool = False


def setting_flags(cls: type, table: dict[str, SettingFlag | str]) -> Callable:
    """Decorate a command whose parameter `given_flags` stands for one option per table entry.

    A plain string in the table is the help text of the field of that name. The options appear
    in --help where `given_flags` stands in the signature; the command gets
    `given_flags={field: value}` with the flags that were given (two flags of one field given
    together are refused).
    """
    table = {name: flag if isinstance(flag, SettingFlag) else SettingFlag(flag)
             for name, flag in table.items()}
    field_types = typing.get_type_hints(cls)
    defaults = {f.name: _default_value(f) for f in dataclasses.fields(cls)}

    def decorate(command: Callable) -> Callable:
        own_types = typing.get_type_hints(command)
        parameters = []
        for parameter in inspect.signature(command).parameters.values():
            if parameter.name != GIVEN_FLAGS:
                parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY,
                                                    annotation=own_types[parameter.name]))
                continue
            for name, flag in table.items():
                field = flag.field or name
                parameters.append(_flag_parameter(name, flag, field_types[field], defaults[field]))

        @functools.wraps(command)
        def run(**values: Any) -> Any:
            given = _given(table, {name: values.pop(name) for name in table})
            return command(**values, **{GIVEN_FLAGS: given})

        run.__signature__ = inspect.Signature(parameters)
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate


def _default_value(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _flag_parameter(name: str, flag: SettingFlag, annotation: Any, default: Any) -> inspect.Parameter:
    names = flag.names or (_spelling(name),)
    option = typer.Option(None, *names, help=_help_text(flag, default), hidden=flag.deprecated,
                          metavar=flag.metavar or None)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=str if flag.comma_list else annotation)


def _first_spelling(name: str, flag: SettingFlag) -> str:
    """How messages name the flag: its first spelling, "--reencode" of "--reencode/--copy"."""
    return (flag.names or (_spelling(name),))[0].split("/")[0]


def _spelling(name: str) -> str:
    return "--" + name.replace("_", "-")


def _help_text(flag: SettingFlag, default: Any) -> str:
    if flag.deprecated or "default" in flag.help:
        return flag.help
    shown = flag.default or _shown(default)
    if not shown:
        return flag.help
    body, stop = (flag.help[:-1], ".") if flag.help.endswith(".") else (flag.help, "")
    return f"{body} (default: {shown}){stop}"


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return "" if value == "" else str(value)


def _given(table: dict[str, SettingFlag], values: dict[str, Any]) -> dict[str, Any]:
    """{field: value} of the flags given; empty repeatable flags count as not given."""
    given: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for name, value in values.items():
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        flag = table[name]
        field, spelling = flag.field or name, _first_spelling(name, flag)
        if field in given:
            raise ValueError(f"give either {spelled[field]} or {spelling}, not both")
        if flag.deprecated:
            _warn_deprecated(table, field, spelling)
        if flag.comma_list:
            value = [part.strip() for part in value.split(",") if part.strip()]
        given[field], spelled[field] = list(value) if isinstance(value, tuple) else value, spelling
    return given


def _warn_deprecated(table: dict[str, SettingFlag], field: str, spelling: str) -> None:
    current = [_first_spelling(name, flag) for name, flag in table.items()
               if (flag.field or name) == field and not flag.deprecated]
    typer.echo(f"warning: {spelling} is deprecated; use {current[0] if current else '--set ' + field}",
               err=True)
