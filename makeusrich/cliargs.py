"""Command-line pieces that several commands share: the pair file, the candle source, the store.

It sits below the component CLIs (trainer, serving, track, ui), which import it, so none of them reaches back into
makeusrich.cli. Environment variables are read when a command builds its settings, never at import.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from makeusrich.settings import CommandSettings, add_flags
from makeusrich.store import DEFAULT_STORE, STORE_ENV, STORE_HELP
from makeusrich.v2client import DEFAULT_URL, SERVING_URL_ENV, check_url

if TYPE_CHECKING:
    from makeusrich.pairs import Offload, PairSource

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
        from makeusrich.market.source import Source  # pandas: only when a command runs, not for --help

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
        DEFAULT_URL, validation_alias=SERVING_URL_ENV, description="embedded mode: the v2 model server"
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
        from makeusrich.pairs import EmbeddedSource, KubeSource, to_thread

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
