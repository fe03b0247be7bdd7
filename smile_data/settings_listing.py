"""`smile-data settings COMMAND` / `smile-train settings COMMAND`: every setting a command takes,
generated from its settings dataclass.

Each listed dataclass has a table of one-line meanings, field -> `Meaning` (or a plain string):
key, type and default come from the dataclass, so they cannot drift; a field missing from its
table (or a table entry that is no field) is an error here and in tests/test_settings_listing.py.
Allowed values are the choices the settings checks accept (their constants), or a range as text.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import typer

from smile_data.config import did_you_mean

TYPE_NAMES = {int: "integer", float: "number", str: "text", bool: "true/false", dict: "mapping",
              Any: "any"}
PLURALS = {"integer": "integers", "number": "numbers", "text": "texts", "mapping": "mappings",
           "true/false": "true/false values", "any": "values"}
MEANING_INDENT = "    "


@dataclass(frozen=True)
class Meaning:
    """What a setting does (one line) and, where the checks limit it, what it may be."""

    text: str
    choices: Sequence[str] = ()  # the values accepted, e.g. OVERLAY_MODES
    allowed: str = ""  # a limit in words where there is no list, e.g. "1..100"


@dataclass(frozen=True)
class Listing:
    """The settings of one command (or of one mode of it)."""

    title: str
    cls: type
    meanings: dict[str, Meaning | str]
    # field -> allowed values in words, from the settings checks (the trainer's RULES)
    allowed_by_check: Callable[[str], str] = lambda name: ""
    note: str = ""  # what the rows do not say (stage keys, another mode's extra keys)


@dataclass(frozen=True)
class SettingRow:
    key: str
    type: str
    default: str
    allowed: str
    meaning: str


def type_name(annotation: Any) -> str:
    """What a user writes for a value of this type: integer, list of numbers, 2 numbers, ..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in args if arg is not type(None))
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"{len(args)} {PLURALS[type_name(args[0])]}"
    if origin in (list, tuple):
        return f"list of {PLURALS[type_name(args[0])]}" if args else "list"
    if origin is dict:
        return "mapping"
    return TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def shown_value(value: Any) -> str:
    """A value as a config file holds it: true, [1.0, 0.875], "" for empty text."""
    if isinstance(value, str):
        return value or '""'
    return json.dumps(list(value) if isinstance(value, tuple) else value, ensure_ascii=False)


def _default(field: dataclasses.Field) -> Any:
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def missing_meanings(listing: Listing) -> tuple[list[str], list[str]]:
    """(fields without a meaning, meanings of no field) of a listing."""
    fields = [f.name for f in dataclasses.fields(listing.cls)]
    return ([name for name in fields if name not in listing.meanings],
            sorted(set(listing.meanings) - set(fields)))


def setting_rows(listing: Listing) -> list[SettingRow]:
    """One row per field of the listing's dataclass, in field order."""
    missing, unknown = missing_meanings(listing)
    if missing or unknown:
        raise ValueError(f"{listing.cls.__name__}: no meaning for {missing}, meaning of no field {unknown}")
    hints = typing.get_type_hints(listing.cls)
    rows = []
    for field in dataclasses.fields(listing.cls):
        meaning = listing.meanings[field.name]
        meaning = meaning if isinstance(meaning, Meaning) else Meaning(meaning)
        allowed = (f"one of {', '.join(meaning.choices)}" if meaning.choices else
                   meaning.allowed or listing.allowed_by_check(field.name))
        rows.append(SettingRow(field.name, type_name(hints[field.name]), shown_value(_default(field)),
                               allowed, meaning.text))
    return rows


def format_listing(listing: Listing) -> str:
    """The listing as text: per setting `key: type = default  (allowed)` and its meaning below."""
    lines = [listing.title, ""]
    for row in setting_rows(listing):
        head = f"{row.key}: {row.type} = {row.default}"
        lines.append(f"{head}    allowed: {row.allowed}" if row.allowed else head)
        lines.append(f"{MEANING_INDENT}{row.meaning}")
    if listing.note:
        lines += ["", listing.note]
    return "\n".join(lines)


JSON_OPTION = typer.Option(False, "--json", help="One JSON object per setting.")


def command_argument(program: str) -> Any:
    """The COMMAND argument of `program settings`."""
    return typer.Argument(None, metavar="COMMAND",
                          help=f"A command that takes settings (`{program} settings` lists them).")


def print_listings(program: str, listings: dict[str, list[Listing]], command: str | None,
                   as_json: bool) -> None:
    """`program settings [COMMAND]`: the commands that take settings, or one command's listings
    (`listings`: command -> its listings, from the CLI's settings_meanings module)."""
    names = ", ".join(listings)
    if command is None:
        typer.echo(f"Commands that take settings (--config FILE, --set KEY=VALUE): {names}.\n"
                   f"`{program} settings COMMAND` lists one command's settings.")
        return
    if command not in listings:
        raise ValueError(f"settings {command}: not a command that takes settings"
                         f"{did_you_mean(command, list(listings))}; one of {names}")
    for number, listing in enumerate(listings[command]):
        if as_json:
            for row in setting_rows(listing):
                typer.echo(json.dumps({"listing": listing.title, **dataclasses.asdict(row)}))
        else:
            typer.echo(("\n" if number else "") + format_listing(listing))
