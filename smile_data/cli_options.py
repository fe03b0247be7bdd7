"""Pieces both command lines share: the app, --config / --set, and flags derived from settings.

Every command is a plain function whose signature lists its options. An option that sets a
field of a settings dataclass is one line, `setting_option(cls, field, help)`: its help shows the
field's default, its spelling is the parameter's name (`clips` -> `--clips`) unless given. The
command (taking `ctx: typer.Context` first) reads the ones given with `given_flags(ctx)`,
{field: value} ready for `command_settings`, the one resolution path of every command:

    dataclass defaults  <-  --config FILE.yaml  <-  --set key=value  <-  explicit flags

(each one overrides the ones before it).

Options that several commands share (--config, --set, --workers, ...) are added by a decorator
made with `with_shared_options`, before or after the command's own ones; the command, still a
plain function, takes them as one keyword-only value.

Both apps report a mistake the same way (`AppGroup`): an error a user can cause by a
setting or an input ends the command with one line, `error: ...`, and exit status 2;
options show plain metavars (`--clips N`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import select
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
# Options several commands share: {parameter: (its type, the typer option)}, in --help order.
SharedOptions = dict[str, tuple[Any, Any]]
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
        except BrokenPipeError as error:
            if not _stdout_is_gone():
                typer.echo(f"error: {error_message(error)}", err=True)  # another pipe: a real failure
                raise typer.Exit(EXIT_BAD_INPUT) from None
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except Exception as error:
            if not is_user_error(error):
                raise
            typer.echo(f"error: {error_message(error)}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None


def _stdout_is_gone() -> bool:
    """Whether stdout is a pipe whose reader went away (`smile-data samples photos | head -1`):
    polling its write end reports an error then."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test runner's buffer)
        return False


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


def workers_option(default: int, most: int, help: str) -> Any:
    return typer.Option(default, "--workers", "-w", min=1, max=most, help=help)


def progress_option() -> Any:
    return typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")


def command_settings(cls: type[T], config: str | Path | None, set_options: list[str] | None,
                     flags: dict[str, Any], allow_commands: bool = False) -> T:
    """Settings of a command: defaults <- config file <- --set <- the flags given."""
    return load_settings(cls, config, command_line_overrides(set_options, flags), allow_commands)


def with_shared_options(bundle: type, before: SharedOptions | None = None,
                        after: SharedOptions | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator: add the options several commands share, `before` and `after` the command's own
    ones (in that order in --help). The command takes them as its one keyword-only parameter, an
    instance of the dataclass `bundle` whose fields are named as the options' parameters (a field
    no option sets keeps its default); a shared setting option that is no field of `bundle`
    reaches the command through `given_flags(ctx)` like its own."""

    def decorate(command: Callable[..., T]) -> Callable[..., T]:
        hints = typing.get_type_hints(command)
        declared = inspect.signature(command).parameters.values()
        own = [_keyword(p.name, p.default, hints[p.name]) for p in declared if p.kind is not p.KEYWORD_ONLY]
        (bundle_parameter,) = [p.name for p in declared if p.kind is p.KEYWORD_ONLY]
        parameters = [*_shared_parameters(before), *own, *_shared_parameters(after)]

        @functools.wraps(command)
        def with_shared(**values: Any) -> T:
            shared = {f.name: values[f.name] for f in dataclasses.fields(bundle) if f.name in values}
            return command(**{p.name: values[p.name] for p in own}, **{bundle_parameter: bundle(**shared)})

        with_shared.__signature__ = inspect.Signature(parameters)  # what typer reads
        with_shared.__annotations__ = {p.name: p.annotation for p in parameters}
        return with_shared

    return decorate


def _shared_parameters(options: SharedOptions | None) -> list[inspect.Parameter]:
    return [_keyword(name, option, annotation) for name, (annotation, option) in (options or {}).items()]


def _keyword(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    # Keyword-only, as typer passes every value: `ctx` (no default) may follow shared options.
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


@dataclasses.dataclass(frozen=True)
class SettingFlag:
    """What an option made by `setting_option` sets, kept on the option for `given_flags`.

    field: the settings field.
    names: the flag's spellings (default: --parameter-name).
    deprecated: an old spelling, hidden from --help; it still works and says what replaced it.
    comma_list: a list field given as one comma-separated value (`--classes a,b`), not repeated.
    """

    field: str
    names: tuple[str, ...] = ()
    deprecated: bool = False
    comma_list: bool = False


def setting_option(cls: type, field: str, help: str, *names: str, shown_default: str = "",
                   metavar: str = "", deprecated: bool = False, comma_list: bool = False) -> Any:
    """A typer option that sets `field` of the settings dataclass `cls` (see the module docstring).

    help: what the flag does; "(default: ...)" is added from the dataclass unless the text
        already says what the default is (`shown_default`: the default as shown, where the
        field's value reads badly, e.g. "1 GiB").
    names: the flag's spellings (default: --parameter-name).
    metavar: what a user types, where the parameter's type says too little (default: N,
        NUMBER, TEXT or PATH from the type).
    deprecated, comma_list: as in SettingFlag.
    """
    defaults = {f.name: _default_value(f) for f in dataclasses.fields(cls)}
    if field not in defaults:
        raise TypeError(f"{cls.__name__} has no setting {field!r}")
    text = help if deprecated else _help_text(help, shown_default or _shown(defaults[field]))
    option = typer.Option(None, *names, help=text, hidden=deprecated, metavar=metavar or None)
    option.setting_flag = SettingFlag(field, names, deprecated, comma_list)  # read by given_flags
    return option


def given_flags(ctx: typer.Context) -> dict[str, Any]:
    """{field: value} of the setting options given to the command of `ctx`, in the order its
    signature lists them (two options of one field given together are refused)."""
    return _given(*_setting_options(ctx), warn=True)[0]


def given_flag_spellings(ctx: typer.Context) -> dict[str, str]:
    """{field: the flag that set it} of the setting options given to the command of `ctx`."""
    return _given(*_setting_options(ctx), warn=False)[1]


def _setting_options(ctx: typer.Context) -> tuple[dict[str, SettingFlag], dict[str, Any]]:
    """(parameter -> SettingFlag, parameter -> value) of the setting options of ctx's command."""
    parameters = inspect.signature(ctx.command.callback).parameters
    table = {name: parameter.default.setting_flag for name, parameter in parameters.items()
             if isinstance(getattr(parameter.default, "setting_flag", None), SettingFlag)}
    return table, {name: ctx.params.get(name) for name in table}


def _default_value(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _first_spelling(name: str, flag: SettingFlag) -> str:
    """How messages name the flag: its first spelling, "--reencode" of "--reencode/--copy"."""
    return (flag.names or (_spelling(name),))[0].split("/")[0]


def _spelling(name: str) -> str:
    return "--" + name.replace("_", "-")


def _help_text(help: str, shown: str) -> str:
    if "default" in help or not shown:
        return help
    body, stop = (help[:-1], ".") if help.endswith(".") else (help, "")
    return f"{body} (default: {shown}){stop}"


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return "" if value == "" else str(value)


def _given(table: dict[str, SettingFlag], values: dict[str, Any],
           warn: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """({field: value}, {field: spelling}) of the flags given; empty repeatable flags count as
    not given; `warn`: say what replaced an old spelling that was given."""
    given: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for name, value in values.items():
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        flag = table[name]
        field, spelling = flag.field, _first_spelling(name, flag)
        if field in given:
            raise ValueError(f"give either {spelled[field]} or {spelling}, not both")
        if flag.deprecated and warn:
            _warn_deprecated(table, field, spelling)
        if flag.comma_list:
            value = [part.strip() for part in value.split(",") if part.strip()]
        given[field], spelled[field] = list(value) if isinstance(value, tuple) else value, spelling
    return given, spelled


def _warn_deprecated(table: dict[str, SettingFlag], field: str, spelling: str) -> None:
    current = [_first_spelling(name, flag) for name, flag in table.items()
               if flag.field == field and not flag.deprecated]
    typer.echo(f"warning: {spelling} is deprecated; use {current[0] if current else '--set ' + field}",
               err=True)
