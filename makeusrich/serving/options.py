"""What `makeusrich serve` and `makeusrich predict` are told: flags, then variables, then these defaults."""

from __future__ import annotations

import re
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from makeusrich.net import DEFAULT_URL, SERVING_URL_ENV, check_url
from makeusrich.pair import NAME_PATTERN
from makeusrich.settings import CommandSettings, StoreSettings


class ServeOptions(StoreSettings):
    """Everything `makeusrich serve` takes."""

    model_config = SettingsConfigDict(env_prefix="MAKEUSRICH_SERVE_")

    namespace: str = Field("default", description="store namespace whose pairs to serve")
    all_namespaces: bool = Field(
        False,
        description="serve the pairs of every namespace in the store, a pair outside `default` as "
        "`namespace.name` (what `makeusrich up` runs)",
    )
    pairs: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated pair names; default: every pair with a latest.json"
    )
    model_dir: str | None = Field(
        None,
        description="serve a Triton model repository folder instead of a store (KServe mounts one at "
        "/mnt/models); the entrypoint of the makeusrich-onnx ClusterServingRuntime",
        json_schema_extra={"metavar": "DIR"},
    )
    host: str = Field("127.0.0.1", description="address to bind (0.0.0.0 in a container)")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port (0 picks a free one)")
    grpc_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="also serve the v2 gRPC protocol on this port (0 picks a free one); off unless given, since "
        "KServe's usual 8081 is the dashboard's port on one machine (the makeusrich-onnx runtime passes 8081)",
    )
    poll_seconds: float = Field(10.0, gt=0, description="how often to look for newly promoted versions")
    max_batch: int = Field(1024, ge=1, description="most windows one request may hold; more is a 400")
    threads: int = Field(1, ge=1, description="onnxruntime intra-op threads per model")
    model_concurrency: int = Field(
        1,
        ge=1,
        description="most requests one model runs at once (each in a worker thread, never on the event loop); "
        "the rest wait their turn, so a slow model cannot take every thread from the others",
    )
    max_body_mb: float | None = Field(
        None,
        gt=0,
        description="refuse inference requests larger than this many MB with 413 (default: the largest valid "
        "request, --max-batch windows of the model's window, written out in JSON)",
    )
    access_log: bool = Field(False, description="log every request")
    check_seconds: float = Field(
        120.0,
        gt=0,
        description="seconds a new version's checks (load, graph, smoke inference) may take, in a process of "
        "their own; longer is a refusal, and the served version stays",
    )
    request_timeout: float = Field(
        30.0,
        gt=0,
        description="seconds a client has from connecting (or from a request's first byte) to send the whole "
        "request; a connection that has not is closed, so idle and half-sent requests cannot pile up",
    )
    max_connections: int | None = Field(
        None,
        ge=1,
        description="most open connections; past it the least recently active idle one is closed (default: the "
        "file descriptor limit, raised to its hard limit, less room for the store and models)",
    )

    @field_validator("pairs", mode="before")
    @classmethod
    def _split_pairs(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(p.strip() for p in value.split(",") if p.strip())
        for name in value if isinstance(value, tuple | list) else ():
            if not re.match(NAME_PATTERN, str(name)):
                raise ValueError(f"{str(name)[:60]!r} is not a pair name (like btc-usdt)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.model_dir and self.pairs:
            raise ValueError("--pairs selects pairs in a store; with --model-dir every model folder is served")
        if self.all_namespaces and (self.pairs or self.model_dir):
            raise ValueError("--all-namespaces serves every pair of a store; it takes neither --pairs nor --model-dir")
        return self

    @property
    def max_body_bytes(self) -> int | None:
        """None: the largest valid request of each model (rest.body_limit)."""
        return int(self.max_body_mb * 1024 * 1024) if self.max_body_mb else None


class PredictSettings(CommandSettings):
    """Where `makeusrich predict` asks for a forecast."""

    model_config = SettingsConfigDict(env_prefix="MAKEUSRICH_PREDICT_")

    url: str = Field(
        DEFAULT_URL,
        validation_alias=SERVING_URL_ENV,
        description="model server base URL: http(s)://host:port for REST, grpc://host:port for gRPC",
    )
    timeout: float = Field(10.0, gt=0, description="seconds to wait for each answer")

    @field_validator("url")
    @classmethod
    def _checked(cls, value: str) -> str:
        return check_url(value)
