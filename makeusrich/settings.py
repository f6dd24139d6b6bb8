"""Typed settings for each command: every default written once, then environment variables, then flags.

A command's settings are one pydantic-settings class. A field reads the variable its alias names when several
commands share it (MAKEUSRICH_STORE, BINANCE_API_URL, S3_ENDPOINT), else MAKEUSRICH_<COMMAND>_<FIELD> from the
class's env prefix; a flag given on the command line wins over both. `add_flags` makes one flag per field (its
--help says the default and the variable), `variables` lists what a command reads for its --help and the
README, and `from_args` builds the settings, turning a validation error into one sentence that names the flag
and the variable. Nothing is read at import: the environment is read when a command builds its settings.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable
from typing import Any, TypeVar, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, SettingsConfigDict

from makeusrich.environment import VARIABLES
from makeusrich.errors import SettingsError

S = TypeVar("S", bound="CommandSettings")


class CommandSettings(BaseSettings):
    """Base of every command's settings. Empty variables count as unset; unknown fields are errors."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_by_name=True, env_ignore_empty=True)


def _extra(field: FieldInfo, key: str, default: Any = None) -> Any:
    """A command-line hint in the field's schema extras: `flag` (another flag, or None for none), `metavar`."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return extra.get(key, default)


def flag_of(name: str, field: FieldInfo) -> str | None:
    """The field's flag (`--max-batch` for max_batch), another one named in its schema extras, or None when
    it has none (secrets and structured values: a variable only)."""
    flag = _extra(field, "flag", "--" + name.replace("_", "-"))
    return str(flag) if flag else None


def variable(cls: type[CommandSettings], name: str) -> str:
    alias = cls.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else f"{cls.model_config.get('env_prefix', '')}{name}".upper()


def variables(cls: type[CommandSettings]) -> list[tuple[str, str]]:
    """(variable, meaning) of every field, for a command's --help: the shared names keep their table entry."""
    found = []
    for name, field in cls.model_fields.items():
        shown = _shown_default(field).removesuffix("; ")
        own = f"{field.description or name}{f' ({shown})' if shown else ''}"
        found.append((variable(cls, name), VARIABLES.get(variable(cls, name)) or own))
    return found


def _choices(annotation: Any) -> tuple[str, ...] | None:
    """The values of a Literal (also inside `X | None`), for argparse's choices."""
    if get_origin(annotation) is typing.Literal:
        return tuple(str(v) for v in get_args(annotation))
    if isinstance(annotation, types.UnionType) or get_origin(annotation) is typing.Union:
        for part in get_args(annotation):
            if (found := _choices(part)) is not None:
                return found
    return None


def _shown_default(field: FieldInfo) -> str:
    default = field.default
    if default is PydanticUndefined or default is None or default is False or default in ((), ""):
        return ""
    return f"default {default}; "


def add_flags(parser: argparse.ArgumentParser, cls: type[CommandSettings], skip: Iterable[str] = ()) -> None:
    """One flag per field; values stay text for pydantic to check, so a flag and its variable are read alike."""
    for name, field in cls.model_fields.items():
        flag = flag_of(name, field)
        if name in skip or flag is None:
            continue
        text = f"{field.description or name} ({_shown_default(field)}env {variable(cls, name)})".replace("%", "%%")
        if field.annotation is bool:
            parser.add_argument(flag, dest=name, action="store_true", default=None, help=text)
        else:
            metavar = str(_extra(field, "metavar") or flag.lstrip("-").replace("-", "_").upper())
            choices = _choices(field.annotation)
            parser.add_argument(
                flag, dest=name, default=None, choices=choices, metavar=None if choices else metavar, help=text
            )


def from_args(cls: type[S], args: argparse.Namespace, **given: Any) -> S:
    """The settings of a command: the flags that were given (and `given`), then variables, then defaults."""
    values = {name: getattr(args, name) for name in cls.model_fields if getattr(args, name, None) is not None}
    try:
        return cls(**{**values, **given})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        name = {variable(cls, field): field for field in cls.model_fields}.get(name, name)  # read from a variable
        message = str(first["msg"]).removeprefix("Value error, ")
        if name not in cls.model_fields:  # a rule across fields: its sentence names them
            raise SettingsError(message) from None
        flag = flag_of(name, cls.model_fields[name])
        where = f"{flag} (or {variable(cls, name)})" if flag else variable(cls, name)
        shown = f", got {first['input']!r}" if first["type"] != "value_error" else ""  # ours name the value
        raise SettingsError(f"{where}: {message}{shown}") from None
