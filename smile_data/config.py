"""Settings as flat dataclasses: reference defaults (docs/method.md) in code, differences in YAML, `--set key=value`.

The YAML loader is ours: yaml.safe_load bounds neither nesting nor alias expansion (a "billion laughs" file).

Every command of the project keeps its settings in one dataclass. `load_settings` starts from
the dataclass defaults, applies a YAML file (which holds only differences), then CLI overrides,
refusing unknown keys and values that do not parse as the field's type.

A config file is data from elsewhere (a shared recipe): it is read with a bounded YAML loader
(size, nesting depth and alias expansion limited), a value of the wrong type is an error rather
than being stringified, and a `pipe:` value (a shard URL that runs a command) is refused unless
the command line opts in (`--allow-commands`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

PIPE_PREFIX = "pipe:"  # webdataset's convention: the shard is the output of this shell command

MAX_CONFIG_BYTES = 1 << 20  # a settings file is a few hundred bytes; anything near 1 MiB is not one
MAX_CONFIG_DEPTH = 16  # nesting of mappings and lists (a staged config needs 4)
MAX_CONFIG_NODES = 20_000  # values after alias expansion (a config holds well under a hundred)
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # one path component, no `..`, no `/`


class SettingsError(ValueError):
    """A settings file or override that does not match the settings dataclass."""


Bounds = dict[str, tuple[float, float]]  # setting -> (lowest, highest), both allowed


def check_bounds(settings: Any, bounds: Bounds, source: str = "settings") -> None:
    """SettingsError naming the first setting outside its bounds. Every count that sizes a
    loop, a process pool or an allocation has one, checked before any work starts (a shared
    config of `objects: 100000000` must not run for minutes first)."""
    for name, (low, high) in bounds.items():
        value = getattr(settings, name)
        if not low <= value <= high:
            raise SettingsError(f"{source}: setting {name!r} must be in [{low}, {high}], got {value!r}")


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with limits on nesting depth and on alias expansion.

    Aliases are kept (a recipe may reuse a block), but a document whose values, counted with
    every alias expanded, exceed MAX_CONFIG_NODES is refused before anything is constructed:
    a few hundred bytes of nested aliases otherwise expand to gigabytes.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {MAX_CONFIG_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        _check_expanded_size(node)
        return node


def _check_expanded_size(root: yaml.Node) -> None:
    """Count the nodes of `root` with aliases expanded, stopping at the limit (handles cycles)."""
    count, pending = 0, [root]
    while pending:
        node = pending.pop()
        count += 1
        if count > MAX_CONFIG_NODES:
            raise yaml.YAMLError(f"more than {MAX_CONFIG_NODES} values once aliases are expanded")
        if isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                pending.extend((key, value))


def parse_yaml(text: str) -> Any:
    """A YAML document read with the bounded safe loader (plain data only: no tags, no objects)."""
    if len(text) > MAX_CONFIG_BYTES:
        raise yaml.YAMLError(f"{len(text)} characters, more than {MAX_CONFIG_BYTES}")
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def plain_name(value: str, what: str) -> str:
    """`value` if it is one plain path component (letters, digits, `.`, `_`, `-`), else an error.

    Names from a config that become file or folder names inside the output folder go through
    this, so a name like `../../x` cannot place output elsewhere.
    """
    if not isinstance(value, str) or not PLAIN_NAME.fullmatch(value) or value.strip(".") == "":
        raise SettingsError(f"{what} {value!r}: expected a plain name (letters, digits, '.', '_', '-'; "
                            f"no '/' or '..')")
    return value


def refuse_commands(data: Any, source: str, where: str = "") -> None:
    """Refuse any `pipe:` string in a config: a shared recipe must not run commands."""
    if isinstance(data, dict):
        for key, value in data.items():
            refuse_commands(value, source, f"{where}.{key}" if where else str(key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            refuse_commands(value, source, f"{where}[{index}]")
    elif isinstance(data, str) and PIPE_PREFIX in data:
        raise SettingsError(
            f"{source}: setting {where!r} holds a {PIPE_PREFIX} URL, which runs a command "
            f"({data[:80]!r}); a config file cannot run commands: give the URL on the command "
            f"line or pass --allow-commands"
        )


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a YAML- or CLI-provided value to the annotated field type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = _parse_text(value, f"setting {key!r}") if value.strip().startswith("[") else value.split(",")
        if isinstance(value, dict):
            raise SettingsError(f"setting {key!r}: expected a list, got a mapping")
        if not isinstance(value, (list, tuple)):
            value = [value]
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if isinstance(value, str):
            value = _parse_text(value, f"setting {key!r}")
        if not isinstance(value, dict):
            raise SettingsError(f"setting {key!r}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"setting {key!r}: expected true/false, got {value!r}")
    if annotation in (int, float, str):
        return _coerce_scalar(value, annotation, key)
    return value


def _coerce_scalar(value: Any, annotation: type, key: str) -> Any:
    """int, float or str from a YAML scalar or command-line text; anything else is an error.

    A list or mapping is never stringified, a boolean is not a number, and numbers are finite.
    """
    expected = f"setting {key!r}: expected {annotation.__name__}, got {_shorten(value)}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SettingsError(expected)
    if annotation is str:
        return str(value)
    try:
        if annotation is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        number = annotation(value)
    except (TypeError, ValueError, OverflowError):
        raise SettingsError(expected) from None
    if isinstance(number, float) and not math.isfinite(number):
        raise SettingsError(f"setting {key!r}: expected a finite number, got {value!r}")
    return number


def _shorten(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _parse_text(text: str, source: str) -> Any:
    try:
        return parse_yaml(text)
    except yaml.YAMLError as error:
        raise SettingsError(yaml_problem(error, source)) from None


def yaml_problem(error: yaml.YAMLError, source: str) -> str:
    """One line: `broken.yaml, line 3, column 4: what is wrong` (PyYAML's marks count from 0 and
    name the text "<unicode string>", which the user never saw)."""
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    if mark is None or not problem:
        return f"{source}: not valid YAML: {' '.join(str(error).split())}"
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context:
        problem += f" ({context}" + (f" from line {context_mark.line + 1}" if context_mark else "") + ")"
    return f"{source}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {problem}"


def did_you_mean(name: str, known: list[str]) -> str:
    """" (did you mean batch_size?)" for a near miss of one of `known`, else ""."""
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def apply_overrides(settings: T, overrides: dict[str, Any], source: str = "overrides") -> T:
    """Return a copy of `settings` with `overrides` applied; unknown keys are an error."""
    types_by_name = _field_types(type(settings))
    unknown = sorted(str(key) for key in set(overrides) - set(types_by_name))
    if unknown:
        named = ", ".join(key + did_you_mean(key, list(types_by_name)) for key in unknown)
        raise SettingsError(f"{source}: unknown setting {named}; known: {', '.join(sorted(types_by_name))}")
    try:
        changes = {k: _coerce(v, types_by_name[k], k) for k, v in overrides.items()}
    except SettingsError as error:
        raise SettingsError(f"{source}: {error}") from None
    return dataclasses.replace(settings, **changes)


def parse_set_options(pairs: list[str] | None) -> dict[str, Any]:
    """Parse repeated `--set key=value` options; values are read as YAML scalars."""
    overrides: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SettingsError(f"--set {pair!r}: expected key=value")
        key, raw = pair.split("=", 1)
        overrides[key.strip()] = _parse_text(raw, f"--set {key.strip()}") if raw.strip() else ""
    return overrides


def command_line_overrides(pairs: list[str] | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The settings a command line gives: `--set key=value`, then the flags given (None: not
    given), which win over a `--set` of the same setting."""
    overrides = parse_set_options(pairs)
    overrides.update({name: value for name, value in flags.items() if value is not None})
    return overrides


def read_yaml(path: str | Path, allow_commands: bool = False) -> dict[str, Any]:
    """The mapping of a settings file, read as untrusted data (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"{path}: settings file not found (or not a regular file)")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise SettingsError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a settings file")
        data = parse_yaml(raw.decode("utf-8")) or {}
    except UnicodeDecodeError as error:
        raise SettingsError(f"{path}: not UTF-8 text ({error})") from None
    except yaml.YAMLError as error:
        raise SettingsError(yaml_problem(error, str(path))) from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of setting: value at the top level")
    if not allow_commands:
        refuse_commands(data, str(path))
    return data


def settings_sources(
    config: str | Path | None, overrides: dict[str, Any] | None, allow_commands: bool = False,
) -> list[tuple[str, dict[str, Any]]]:
    """(source, values) of the YAML file `config` and of the command line's `overrides`, in the
    order they apply: the command line wins."""
    sources = []
    if config is not None:
        sources.append((str(config), read_yaml(config, allow_commands)))
    if overrides:
        sources.append(("--set", overrides))
    return sources


def apply_sources(settings: T, sources: list[tuple[str, dict[str, Any]]]) -> T:
    """`settings` with every source of `settings_sources` applied, in order."""
    for source, values in sources:
        settings = apply_overrides(settings, values, source=source)
    return settings


def load_settings(
    cls: type[T],
    config: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    allow_commands: bool = False,
) -> T:
    """Defaults of `cls`, then the YAML file `config`, then `overrides` (the command line's own,
    so a `pipe:` URL there is the user's choice; one in the file needs `allow_commands`)."""
    return apply_sources(cls(), settings_sources(config, overrides, allow_commands))


def inherited_values(settings: Any, part: type) -> dict[str, Any]:
    """{field: value} of the fields `settings` inherits from the settings dataclass `part`: one
    command's settings handed to another's by `part`'s own field list, never by guessed names."""
    if not isinstance(settings, part):
        raise TypeError(f"{type(settings).__name__} does not derive from {part.__name__}")
    return {field.name: getattr(settings, field.name) for field in dataclasses.fields(part)}


def settings_to_dict(settings: Any) -> dict[str, Any]:
    """JSON-ready dict of a settings dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(settings), default=str))
