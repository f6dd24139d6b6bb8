"""What `makeusrich track` is told: flags, then MAKEUSRICH_TRACK_* variables, then these defaults."""

from __future__ import annotations

import re
import socket

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from makeusrich.errors import MakeUsRichError
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
    replicas: int = Field(
        1,
        ge=1,
        le=1024,
        description="trackers sharing out the pairs, each on its own machine (a StatefulSet's replicas): each "
        "tracks only the pairs whose key hashes to its ordinal",
    )
    replica: int | None = Field(
        None,
        ge=0,
        description="this tracker's ordinal among --replicas (default: the number that ends the host name, as a "
        "StatefulSet names its pods)",
    )

    def ordinal(self, hostname: str | None = None) -> int:
        """This replica's ordinal: given, or read off the host name (`makeusrich-tracker-2` is 2)."""
        if self.replicas == 1:
            return 0
        if self.replica is None:
            host = hostname if hostname is not None else socket.gethostname()
            found = re.search(r"-(\d+)$", host)
            if found is None:
                raise MakeUsRichError(
                    f"--replicas {self.replicas}: give --replica (this tracker's ordinal), or run it in a "
                    f"StatefulSet, whose pod names end in theirs (this host is {host!r})"
                )
            index = int(found[1])
        else:
            index = self.replica
        if index >= self.replicas:
            raise MakeUsRichError(
                f"replica {index} of --replicas {self.replicas}: ordinals run from 0 to {self.replicas - 1}; "
                "set --replicas to the StatefulSet's replicas"
            )
        return index
