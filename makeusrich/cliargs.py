"""Command-line pieces that several commands share: the pair file, the candle source, the store.

It sits below the component CLIs (trainer, serving, ui), which import it, so none of them reaches back into
makeusrich.cli. Environment variables are read when a command builds its settings, never at import.
"""

from __future__ import annotations

import argparse

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from makeusrich.settings import CommandSettings, add_flags
from makeusrich.store import DEFAULT_STORE, STORE_ENV, STORE_HELP

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


def add_pair_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """-f and the candle source."""
    help_text = "CurrencyPair file (YAML), as for kubectl apply"
    if not required:
        help_text += "; default: the resource in $MAKEUSRICH_PAIR"
    parser.add_argument("-f", "--file", required=required, help=help_text)
    add_flags(parser, MarketSettings)
