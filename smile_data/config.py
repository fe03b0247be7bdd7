"""Settings as flat dataclasses: SPEC defaults in code, differences in YAML, `--set key=value`.

Every command of the project keeps its settings in one dataclass. `load_settings` starts from
the dataclass defaults, applies a YAML file (which holds only differences), then CLI overrides,
refusing unknown keys and values that do not parse as the field's type.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class SettingsError(ValueError):
    """A settings file or override that does not match the settings dataclass."""


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
            value = yaml.safe_load(value) if value.strip().startswith("[") else value.split(",")
        if not isinstance(value, (list, tuple)):
            value = [value]
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
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
        try:
            if annotation is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return annotation(value)
        except (TypeError, ValueError):
            raise SettingsError(
                f"setting {key!r}: expected {annotation.__name__}, got {value!r}"
            ) from None
    return value


def apply_overrides(settings: T, overrides: dict[str, Any], source: str = "overrides") -> T:
    """Return a copy of `settings` with `overrides` applied; unknown keys are an error."""
    types_by_name = _field_types(type(settings))
    unknown = sorted(set(overrides) - set(types_by_name))
    if unknown:
        raise SettingsError(
            f"{source}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(types_by_name))}"
        )
    changes = {k: _coerce(v, types_by_name[k], k) for k, v in overrides.items()}
    return dataclasses.replace(settings, **changes)


def parse_set_options(pairs: list[str] | None) -> dict[str, Any]:
    """Parse repeated `--set key=value` options; values are read as YAML scalars."""
    overrides: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SettingsError(f"--set {pair!r}: expected key=value")
        key, raw = pair.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return overrides


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"{path}: settings file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as error:
        raise SettingsError(f"{path}: not UTF-8 text ({error})") from None
    except yaml.YAMLError as error:
        raise SettingsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of setting: value at the top level")
    return data


def load_settings(
    cls: type[T],
    config: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> T:
    """Defaults of `cls`, then the YAML file `config`, then `overrides`."""
    settings = cls()
    if config is not None:
        settings = apply_overrides(settings, read_yaml(config), source=str(config))
    if overrides:
        settings = apply_overrides(settings, overrides, source="--set")
    return settings


def settings_to_dict(settings: Any) -> dict[str, Any]:
    """JSON-ready dict of a settings dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(settings), default=str))
