"""What `makeusrich serve` is told: read by the model server and by its HTTP side."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeOptions:
    """Everything `makeusrich serve` takes."""

    store: str | None = None
    namespace: str = "default"
    pairs: tuple[str, ...] = ()
    model_dir: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    poll_seconds: float = 10.0
    max_batch: int = 1024
    threads: int = 1
    inline_batch: int = 16
    access_log: bool = False
    max_body_bytes: int | None = None  # None: the largest valid request of each model (rest.body_limit)
