"""What `makeusrich ui` is told: flags, then variables, then these defaults. No NiceGUI here, so that
`makeusrich --help` stays fast."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from makeusrich.settings import MarketSettings, PairSourceSettings
from makeusrich.store import STORE_ENV


@dataclass(frozen=True)
class Options:
    """How the shared refresh loop works; the first three are `makeusrich ui` settings."""

    refresh_seconds: float = 15.0
    chart_candles: int = 200
    serving_timeout: float = 5.0
    spark_candles: int = 48
    concurrency: int = 8
    history_versions: int = 30


# The dashboard refreshes every few seconds anyway: a page never waits on a long retry.
DASHBOARD_RETRIES = 2


class UIConfig(PairSourceSettings, MarketSettings):
    """Everything `makeusrich ui` takes; the login's secrets come from the environment only (ui.auth)."""

    model_config = SettingsConfigDict(env_prefix="MAKEUSRICH_UI_")

    store_url: str | None = Field(
        None,
        validation_alias=STORE_ENV,
        description="model store for versions, metrics and backtests: a folder or s3://bucket[/prefix] (default "
        ".makeusrich/store; optional with --kubernetes)",
        json_schema_extra={"flag": "--store"},
    )
    binance_retries: int = Field(
        DASHBOARD_RETRIES,
        ge=0,
        le=20,
        validation_alias="MAKEUSRICH_BINANCE_RETRIES",
        description="retries per Binance request on rate limits, 5xx and timeouts",
    )
    host: str = Field("127.0.0.1", description="address to bind (0.0.0.0 in a container)")
    port: int = Field(8081, ge=0, le=65535, description="HTTP port")
    title: str = Field("Make Us Rich", description="the name in the header and the browser tab")
    refresh_seconds: float = Field(
        Options.refresh_seconds, gt=0, description="how often to look for new candles, model versions and pair changes"
    )
    chart_candles: int = Field(Options.chart_candles, ge=2, description="candles drawn on a pair's chart")
    serving_timeout: float = Field(
        Options.serving_timeout, gt=0, description="seconds to wait for each answer of a model server"
    )
    secure_cookies: bool = Field(
        False,
        description="mark session cookies Secure whatever the scheme; without it they are Secure when the request "
        "came over TLS",
    )
    trusted_proxies: str = Field(
        "",
        description="comma-separated addresses (or *) whose X-Forwarded-For and X-Forwarded-Proto are believed, as "
        "an ingress sets them; none by default (loopback is anyone on the machine, and kubectl port-forward)",
        json_schema_extra={"metavar": "IPS"},
    )
    log_level: str = Field("warning", description="log level of the dashboard's web server")

    @property
    def options(self) -> Options:
        return Options(
            refresh_seconds=self.refresh_seconds, chart_candles=self.chart_candles, serving_timeout=self.serving_timeout
        )
