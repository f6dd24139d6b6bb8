"""Every error the package raises on purpose, under one base: each says what was wrong and what to do.

    MakeUsRichError                 a failure the user can act on; the CLI prints it and exits 1
    ├── PairError                   a CurrencyPair file or resource is malformed
    ├── CandleError                 candles are missing, malformed or cannot be fetched
    │   └── OfflineError            Binance cannot be reached at all (no network): the sample may stand in
    ├── StoreError                  the model store refused an operation or holds inconsistent data
    │   └── NotFoundError           an object is not in the store
    ├── SettingsError               a component's configuration (flags or environment) is unusable
    ├── AuthError                   the dashboard's password configuration is unusable
    ├── ServingError                a v2 request failed (`status`: the HTTP status when the server answered)
    │   ├── ModelNotFoundError      the server has no model of that name (404)
    │   └── ModelNotReadyError      the model has no servable version yet (503)
    ├── LoadRefused                 a model version must not be served; the message says why
    │   └── ConfigError             its config.pbtxt cannot be read or does not match the model
    ├── BadRequest                  a v2 request the server cannot answer: HTTP 400
    ├── PayloadTooLarge             a request body larger than any valid request: HTTP 413
    ├── KubeError                   a Kubernetes API request failed or no login worked (`status`: 0 when no answer)
    │   ├── KubeNotFound            the object or its resource type does not exist (404)
    │   ├── KubeConflict            an update conflicts with a change made meanwhile (409)
    │   │   └── KubeAlreadyExists   a create found an object of that name (409)
    │   └── KubeGone                a watch's resourceVersion is too old (410): list again
    ├── RetryLater                  part of a reconcile failed for a reason that may pass
    └── WorkerExited                a tracker worker process died: the tracker stops (and is restarted)

Exit codes are mapped in makeusrich.cli only; HTTP statuses and gRPC codes in the model server's one table
(makeusrich.serving.statuses); Kubernetes API answers in makeusrich.kube.api_error, and whether one may pass by
waiting in kube.transient. A test checks that the drawing above matches the classes.
"""

from typing import Any


def excerpt(value: Any, limit: int = 60) -> str:
    """A value as an error message may echo it: its repr, cut short (a bad value can be megabytes long)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class MakeUsRichError(Exception):
    """A failure the user can act on: the message says what was wrong and what to do."""


class PairError(MakeUsRichError):
    """A CurrencyPair file or resource is malformed."""


class CandleError(MakeUsRichError):
    """Candles are missing, malformed or cannot be fetched."""


class OfflineError(CandleError):
    """Binance cannot be reached at all (its name does not resolve, or nothing listens): no network.

    `reason` is the sentence without advice ("cannot reach Binance at HOST: WHY"), for a caller that has some."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StoreError(MakeUsRichError):
    """The model store refused an operation or holds inconsistent data."""


class NotFoundError(StoreError):
    """An object is not in the store."""


class SettingsError(MakeUsRichError):
    """A component's own configuration (flags or environment) is unusable."""


class AuthError(MakeUsRichError):
    """The dashboard's password configuration is unusable."""


class ServingError(MakeUsRichError):
    """A v2 request failed; `status` is the HTTP status when the server answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ModelNotFoundError(ServingError):
    """The server has no model of that name (404)."""


class ModelNotReadyError(ServingError):
    """The model exists but has no servable version yet (503)."""


class LoadRefused(MakeUsRichError):
    """A version that must not be served; the message says why."""


class ConfigError(LoadRefused):
    """A config.pbtxt that cannot be read or does not match its model."""


class BadRequest(MakeUsRichError):
    """A request the server cannot answer because of what the client sent (HTTP 400)."""


class PayloadTooLarge(MakeUsRichError):
    """The request body is larger than any valid request to this model (HTTP 413)."""


class KubeError(MakeUsRichError):
    """A Kubernetes API request failed, or no login worked: `status` is the HTTP status (0: no answer),
    `method` the request's verb."""

    def __init__(self, message: str, status: int = 0, method: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.method = method


class KubeNotFound(KubeError):
    """The object, its namespace or its resource type does not exist (404)."""


class KubeConflict(KubeError):
    """An update conflicts with a change made meanwhile (409)."""


class KubeAlreadyExists(KubeConflict):
    """A create found an object of that name already there (409 to a POST)."""


class KubeGone(KubeError):
    """A watch's resourceVersion is older than the server keeps (410): list again, then watch from there."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 410, "GET")


class RetryLater(MakeUsRichError):
    """Part of a reconcile failed for a reason that may pass (API or store outage); the status says which."""


class WorkerExited(MakeUsRichError):
    """A tracker worker process died: its pairs go untracked, so the tracker stops (and is restarted)."""
