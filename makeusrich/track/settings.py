"""What `makeusrich track` is told: flags, then MAKEUSRICH_TRACK_* variables, then these defaults."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from makeusrich.settings import MarketSettings, PairSourceSettings, StoreSettings

TRACK_PORT = 8082


class TrackSettings(PairSourceSettings, StoreSettings, MarketSettings):
    model_config = SettingsConfigDict(env_prefix="MAKEUSRICH_TRACK_")

    host: str = Field("127.0.0.1", description="address of /metrics and /healthz (0.0.0.0 in a container)")
    port: int = Field(TRACK_PORT, ge=0, le=65535, description="HTTP port of /metrics and /healthz")
    serving_timeout: float = Field(5.0, gt=0, description="seconds to wait for each answer of a model server")
    retry_seconds: float = Field(
        30.0, gt=0, description="while a candle or a model is late, ask again this often (until the origin's deadline)"
    )
    concurrency: int = Field(16, ge=1, le=1024, description="pairs tracked at once within a round (in each worker)")
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="worker processes sharing out the pairs, one core each (1: all in this process); "
        "two for 1,000 hourly pairs in under 30 s a round, each extra one some 130 MB more memory",
    )
    once: bool = Field(False, description="one round over every pair, then exit (for a CronJob or a check)")
