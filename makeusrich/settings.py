"""Configuration of every command, in one place: typed settings, their flags and variables, and the pieces the
component CLIs share (the pair file, the candle source, the store, where pairs come from).

A command's settings are one pydantic-settings class. A field reads the variable its alias names when several
commands share it (MAKEUSRICH_STORE, BINANCE_API_URL, S3_ENDPOINT), else MAKEUSRICH_<COMMAND>_<FIELD> from the
class's env prefix; a flag given on the command line wins over both. `add_flags` makes one flag per field (its
--help says the default and the variable), `variables` lists what a command reads for its --help and the
README, and `from_args` builds the settings, turning a validation error into one sentence that names the flag
and the variable. Nothing is read at import: the environment is read when a command builds its settings.

The variables read outside any settings class (S3's standard names, the Kubernetes login, the pair resource, the
dashboard's secrets) are described in `VARIABLES`; a test checks that every variable the package names is
described here or by some settings, in the README and in some command's help.

This module sits below the component CLIs (trainer, serving, operator, track, ui, local), which import it, so
none of them reaches back into makeusrich.cli.
"""

from __future__ import annotations

import argparse
import functools
import textwrap
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_args, get_origin

from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from makeusrich.errors import SettingsError
from makeusrich.net import DEFAULT_URL, SERVING_URL_ENV, check_url
from makeusrich.store import DEFAULT_STORE, STORE_ENV, STORE_HELP

if TYPE_CHECKING:
    from makeusrich.pair_sources import Offload, PairSource

Add = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]
"""How makeusrich.cli adds a command: its name, its help and its handler; each component CLI adds its own."""

# --- variables read outside settings ------------------------------------------------------------------------

S3 = (
    "S3_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "S3_USE_HTTPS",
    "S3_VERIFY_TLS",
    "S3_CREATE_BUCKET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "SSL_CERT_FILE",
)
KUBERNETES = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
# The dashboard's login secrets: variables only, never flags.
UI = ("MAKEUSRICH_UI_PASSWORD_HASH", "MAKEUSRICH_UI_PASSWORD", "MAKEUSRICH_UI_STORAGE_SECRET", "NICEGUI_STORAGE_PATH")

VARIABLES: dict[str, str] = {
    "MAKEUSRICH_PAIR": "the CurrencyPair resource (YAML or JSON) when -f is not given; set on trainer Jobs",
    "BINANCE_API_URL": "Binance REST base, up to /api (default https://api.binance.com/api)",
    "S3_ENDPOINT": "S3 endpoint: http://host:port, https://host or host[:port] (default s3.amazonaws.com)",
    "AWS_ENDPOINT_URL": "S3 endpoint when S3_ENDPOINT is unset",
    "S3_USE_HTTPS": "0 or 1: TLS for an endpoint written without a scheme (default 1)",
    "S3_VERIFY_TLS": "0 skips certificate checks (a self-signed MinIO); default 1",
    "S3_CREATE_BUCKET": "0 refuses to create a missing bucket; default 1",
    "AWS_ACCESS_KEY_ID": "S3 access key (with AWS_SECRET_ACCESS_KEY; neither for anonymous access)",
    "AWS_SECRET_ACCESS_KEY": "S3 secret key",
    "AWS_SESSION_TOKEN": "S3 session token, for temporary credentials",
    "AWS_REGION": "S3 region (optional)",
    "AWS_DEFAULT_REGION": "S3 region when AWS_REGION is unset",
    "SSL_CERT_FILE": "CA bundle for TLS to S3 (default: certifi's)",
    "KUBECONFIG": "kubeconfig file (default: in-cluster service account, then ~/.kube/config)",
    "KUBERNETES_SERVICE_HOST": "set by Kubernetes in a pod: log in with the pod's service account",
    "KUBERNETES_SERVICE_PORT": "set by Kubernetes in a pod, with KUBERNETES_SERVICE_HOST",
    "MAKEUSRICH_UI_PASSWORD_HASH": "scrypt hash from `makeusrich ui --hash-password`: enables the login that "
    "creates, edits and deletes pairs (read-only without)",
    "MAKEUSRICH_UI_PASSWORD": "a plain password instead of the hash (hashed at start; prefer the hash)",
    "MAKEUSRICH_UI_STORAGE_SECRET": "key that signs session cookies (random per start when unset: logins end "
    "with a restart)",
    "NICEGUI_STORAGE_PATH": "where per-browser dashboard settings are kept (default ./.nicegui)",
}


# Set by the Kubernetes client for an exec plugin it runs, never read.
WRITTEN = ("KUBERNETES_EXEC_INFO",)


def epilog(names: Iterable[str | tuple[str, str]], note: str = "") -> str:
    """The end of a command's --help: a note, then the variables it reads (for RawDescriptionHelpFormatter):
    names from the table above, or (name, meaning) pairs from a command's settings."""
    described = dict((item, VARIABLES[item]) if isinstance(item, str) else item for item in names)
    parts = [textwrap.fill(note, 100)] if note else []
    if described:
        width = max(len(name) for name in described)
        lines = [f"  {name.ljust(width)}  {text}" for name, text in described.items()]
        parts.append("environment:\n" + "\n".join(lines))
    return "\n\n".join(parts)


# --- settings, flags and variables -------------------------------------------------------------------------------

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


# --- what several commands share -------------------------------------------------------------------------------

TIMES_NOTE = (
    "Times name the moment a candle closes, in UTC: the 1h candle from 00:00 to 01:00 is the 01:00 candle, "
    "and its close is the price at 01:00."
)


class MarketSettings(CommandSettings):
    """Where a command's candles come from."""

    model_config = SettingsConfigDict(env_prefix="MAKEUSRICH_")

    source: str = Field(
        "binance",
        validation_alias="MAKEUSRICH_SOURCE",
        description="where candles come from: binance, sample (bundled BTC/USDT 1h), file:PATH (CSV), or auto "
        "(binance, else the sample where it covers the pair)",
    )
    api_url: str | None = Field(
        None, validation_alias="BINANCE_API_URL", description="Binance REST base URL, up to /api (default: Binance)"
    )
    binance_retries: int = Field(
        5,
        ge=0,
        le=20,
        validation_alias="MAKEUSRICH_BINANCE_RETRIES",
        description="retries per Binance request on rate limits, 5xx and timeouts; an unreachable host is retried once",
    )

    @field_validator("source")
    @classmethod
    def _known(cls, value: str) -> str:
        from makeusrich.market import Source  # pandas: only when a command runs, not for --help

        Source.parse(value)  # a CandleError names the forms
        return value


class StoreSettings(CommandSettings):
    """The model store a command reads or writes."""

    store: str = Field(DEFAULT_STORE, validation_alias=STORE_ENV, description=STORE_HELP)


class PairSourceSettings(CommandSettings):
    """Where a command finds its pairs: pair files on one machine (and one model server for all), or
    CurrencyPair resources and their InferenceServices in a cluster."""

    kubernetes: bool = Field(
        False, description="read CurrencyPair resources and InferenceService URLs from Kubernetes (not pair files)"
    )
    namespace: str | None = Field(
        None, description="with --kubernetes: the namespace of the pairs (default: all namespaces)"
    )
    kubeconfig: str | None = Field(None, description="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube)")
    kube_context: str | None = Field(None, description="kubeconfig context (default: its current-context)")
    pairs_dir: str = Field(
        "pairs", validation_alias="MAKEUSRICH_PAIRS_DIR", description="embedded mode: folder of pair files (*.yaml)"
    )
    pair_files: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="embedded mode: comma-separated pair files besides the folder's (as `up -f` runs)"
    )
    server_url: str = Field(
        DEFAULT_URL,
        validation_alias=SERVING_URL_ENV,
        description="embedded mode: the v2 model server (http://host:port, or grpc://host:port for gRPC)",
    )

    @field_validator("pair_files", mode="before")
    @classmethod
    def _split_files(cls, value: object) -> object:
        return tuple(p.strip() for p in value.split(",") if p.strip()) if isinstance(value, str) else value

    @field_validator("server_url")
    @classmethod
    def _checked(cls, value: str) -> str:
        return check_url(value)

    def pair_source(self, store_url: str | None, agent: str, offload: Offload | None = None) -> PairSource:
        """The pairs these settings name, read through one Kubernetes client or from the folder."""
        from makeusrich.kube import KubeClient, load_credentials
        from makeusrich.pair_sources import EmbeddedSource, KubeSource, to_thread

        if self.kubernetes:
            login = functools.partial(load_credentials, self.kubeconfig, self.kube_context)
            client = KubeClient(login, login(), agent=agent, attempts=3, timeout=10.0)
            return KubeSource(client, self.namespace, store_url)
        files = [Path(f) for f in self.pair_files]
        return EmbeddedSource(self.pairs_dir, store_url, self.server_url, offload=offload or to_thread, files=files)


def add_pair_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """-f and the candle source."""
    help_text = "CurrencyPair file (YAML), as for kubectl apply"
    if not required:
        help_text += "; default: the resource in $MAKEUSRICH_PAIR"
    parser.add_argument("-f", "--file", required=required, help=help_text)
    add_flags(parser, MarketSettings)
