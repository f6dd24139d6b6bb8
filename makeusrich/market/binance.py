"""Closed candles from Binance's REST API through python-binance, paged and retried by us.

We page `GET /api/v3/klines` ourselves instead of using `Client.get_historical_klines`, which sleeps 1 s after
every third page and spends an extra request looking up the symbol's earliest timestamp. Transient failures
(HTTP 429, 418, 5xx, timeouts, dropped connections) are retried with exponential backoff and jitter, honouring
Binance's `Retry-After`. A host that cannot be reached at all (its name does not resolve, or it refuses the
connection: typically no network) is retried once only, so an offline run fails within a second. Everything
else becomes one `CandleError` sentence that says what to do.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import requests
import urllib3.exceptions
from binance.client import Client as Client  # named for the annotations of makeusrich.market.feed
from binance.exceptions import BinanceAPIException, BinanceRequestException

from makeusrich.errors import CandleError, OfflineError
from makeusrich.market.candles import candles_from_klines, interval_ms
from makeusrich.market.exchange import (
    API_URL_ENV,
    CLOCK_SKEW_MS,
    DEFAULT_API_URL,
    DEFAULT_RETRIES,
    PAGE_LIMIT,
    UNREACHABLE_RETRIES,
)
from makeusrich.net import backoff_delay_s, retry_after_s

log = logging.getLogger(__name__)

OFFLINE_ADVICE = (
    "use --source sample for the bundled BTC/USDT 1h candles, or --source file:PATH for a CSV in the kline layout"
)
INVALID_SYMBOL = -1121
# Retried statuses: rate limit, IP ban (Binance bans for a while after ignored 429s), and any 5xx.
RATE_LIMITED, BANNED = 429, 418
# Binance's answer to addresses in the places it does not serve: no retry helps, like having no network.
RESTRICTED = 451
# Transport failures worth retrying. BinanceRequestException: a 2xx whose body is not JSON (a cut-off body).
_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    BinanceRequestException,
)


@dataclass(frozen=True)
class FetchProgress:
    """Where a fetch stands after a page: what a progress bar or a benchmark reports."""

    symbol: str
    interval: str
    pages: int  # pages received
    requests: int  # HTTP requests sent, retries included
    retries: int  # requests that failed and were retried
    rows: int  # rows received so far (the still-open candle included)
    slept_s: float  # total time spent waiting between retries
    last_open_ms: int | None  # open time of the newest row received


@dataclass(frozen=True)
class KlineFetch:
    """The closed candles of one fetch, and what it cost (for logs, the candle cache and benchmarks)."""

    frame: pd.DataFrame
    requests: int  # HTTP requests sent, retries included
    pages: int
    retries: int
    slept_s: float


def resolve_api_url(api_url: str | None = None) -> str:
    """The REST base (up to and including `/api`): the argument, else $BINANCE_API_URL, else Binance's own."""
    url = api_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL
    return url.rstrip("/")


def _new_client(timeout: float) -> Client:
    client = Client(ping=False, requests_params={"timeout": timeout})
    client.loop.close()  # made for this thread by python-binance; only its websocket calls would run it
    return client


def make_client(api_url: str | None = None, timeout: float = 10.0) -> Client:
    """A python-binance client for public data: no key, no ping (no I/O here), a timeout on every request.

    The client is built in a short-lived thread of its own: python-binance gives the thread that builds a Client
    a new event loop when it has none, and nothing closes it (a leaked loop, or one replacing the caller's)."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="binance-client") as pool:
        client = pool.submit(_new_client, timeout).result()
    client.API_URL = resolve_api_url(api_url)
    return client


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (requests -> urllib3 -> socket), outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        reason = getattr(current, "reason", None)
        nested = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = reason if isinstance(reason, BaseException) else nested or current.__cause__ or current.__context__
    return chain


def unreachable(exc: BaseException) -> str | None:
    """Why no connection could be made at all ('the name does not resolve', 'the connection was refused'), or
    None when the failure is something retrying may fix."""
    for cause in _causes(exc):
        if isinstance(cause, urllib3.exceptions.NameResolutionError | socket.gaierror):
            return "its name does not resolve (no network, or no DNS)"
        if isinstance(cause, ConnectionRefusedError):
            return "it refused the connection (nothing listens there)"
    return None


def _describe(exc: Exception) -> str:
    """One short line naming a failure, for logs and for the final error."""
    if isinstance(exc, BinanceAPIException):
        return f"HTTP {exc.status_code} (code {exc.code}: {exc.message})"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"timeout ({type(exc).__name__})"
    why = unreachable(exc)
    if why:
        return f"the host is unreachable: {why}"
    innermost = _causes(exc)[-1]
    return f"{type(exc).__name__}: {str(innermost)[:200]}"


def _when(seconds: float) -> str:
    """The wall-clock time `seconds` from now, for messages that tell a user when to try again."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fail_fast(exc: BinanceAPIException, symbol: str, interval: str, wait_s: float | None, max_wait_s: float) -> None:
    """Raise the CandleError for answers that retrying cannot fix (or should not wait for)."""
    status = int(exc.status_code)
    if status == RESTRICTED:
        reason = f"Binance does not serve this location (HTTP 451: {exc.message})"
        raise OfflineError(
            f"{reason}; {OFFLINE_ADVICE}, or point BINANCE_API_URL at an API you may use", reason
        ) from exc
    if wait_s is not None and wait_s > max_wait_s and status == BANNED:
        raise CandleError(
            f"Binance has banned this IP address for {wait_s:.0f} s (HTTP 418) after too many requests; "
            f"wait until {_when(wait_s)} before fetching again, and fetch less often"
        ) from exc
    if wait_s is not None and wait_s > max_wait_s and status == RATE_LIMITED:
        raise CandleError(
            f"Binance rate-limits this IP address (HTTP 429) and asks to wait {wait_s:.0f} s, longer "
            f"than the {max_wait_s:.0f} s we wait; try again after {_when(wait_s)}"
        ) from exc
    if status in (RATE_LIMITED, BANNED) or status >= 500:
        return
    if exc.code == INVALID_SYMBOL:
        raise CandleError(
            f"Binance does not know the symbol {symbol!r} (HTTP {status}, code {exc.code}: {exc.message}); "
            "check the pair's currency and compare fields, which together must spell a Binance spot symbol "
            "such as BTCUSDT"
        ) from exc
    raise CandleError(
        f"Binance refused the klines request for {symbol} {interval} with HTTP {status} (code {exc.code}: "
        f"{exc.message}); check the symbol, the interval and the time range"
    ) from exc


@dataclass
class _Fetch:
    """One fetch: how hard to try (retries per request, backoff, the longest Retry-After worth waiting for),
    and what it has cost so far."""

    api: Client
    max_retries: int
    backoff_s: float
    max_backoff_s: float
    max_wait_s: float
    sleep: Callable[[float], None]
    requests: int = 0
    retries: int = 0
    slept_s: float = 0.0

    def get_page(self, params: dict[str, Any]) -> Any:
        """One klines request, retried on transient failures; a CandleError for everything else."""
        symbol, interval, url = params["symbol"], params["interval"], self.api.API_URL
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            try:
                return self.api.get_klines(**params)
            except (BinanceAPIException, *_TRANSIENT_ERRORS) as exc:
                wait_s = None
                if isinstance(exc, BinanceAPIException):
                    headers = getattr(exc.response, "headers", None)
                    wait_s = retry_after_s(headers.get("Retry-After") if headers is not None else None)
                    _fail_fast(exc, symbol, interval, wait_s, self.max_wait_s)
                why = unreachable(exc)
                budget = min(self.max_retries, UNREACHABLE_RETRIES) if why else self.max_retries
                if why and attempt > budget:
                    reason = f"cannot reach Binance at {urlparse(url).netloc or url}: {why}"
                    raise OfflineError(f"{reason}; {OFFLINE_ADVICE}, or try again online", reason) from exc
                if attempt > budget:
                    ban = isinstance(exc, BinanceAPIException) and int(exc.status_code) == BANNED
                    advice = (
                        "Binance has banned this IP address for sending too many requests: wait before fetching again"
                        if ban
                        else "Binance may be down or rate-limiting: try again later, or allow more retries with "
                        "--binance-retries or MAKEUSRICH_BINANCE_RETRIES"
                    )
                    raise CandleError(
                        f"fetching {symbol} {interval} klines from {url} failed after {attempt} "
                        f"attempt(s) (last error: {_describe(exc)}); {advice}"
                    ) from exc
                backoff = backoff_delay_s(attempt - 1, self.backoff_s, self.max_backoff_s)
                delay = wait_s if wait_s is not None else backoff
                log.warning(
                    "binance klines %s %s startTime=%s: %s; retry %d/%d in %.2f s",
                    *(symbol, interval, params["startTime"], _describe(exc)),
                    *(attempt, budget, delay),
                )
                self.retries += 1
                self.slept_s += delay
                self.sleep(delay)
            except requests.exceptions.RequestException as exc:  # a malformed URL, a refused TLS handshake...
                raise CandleError(
                    f"cannot request {symbol} {interval} klines from {url}: {_describe(exc)}; check "
                    f"the API URL (argument api_url or ${API_URL_ENV}, e.g. {DEFAULT_API_URL})"
                ) from exc


def fetch_klines(
    symbol: str,
    interval: str,
    start_ms: int,
    end_ms: int | None = None,
    *,
    api_url: str | None = None,
    client: Client | None = None,
    max_retries: int = DEFAULT_RETRIES,
    timeout: float = 10.0,
    backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
    max_wait_s: float = 120.0,
    on_page: Callable[[FetchProgress], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> KlineFetch:
    """Closed candles of `symbol` with open times in [start_ms, end_ms] (epoch ms; end None: up to now).

    The frame is what Binance sent, oldest first, minus the candle still open (its open time plus the interval
    not yet past by `clock`, whatever its close_time claims): run `clean_candles` on it, so that its report names
    whatever validation drops. Each request gets `max_retries` retries; a `Retry-After` longer than `max_wait_s`
    fails at once rather than stalling a trainer. `on_page` sees a `FetchProgress` after every page (the last one
    holds the totals). `client` reuses a client from `make_client` (then `api_url` and `timeout` are the client's
    own, and it is left open)."""
    symbol = symbol.strip().upper()
    step = interval_ms(interval)
    if max_retries < 0:
        raise ValueError("max_retries must be >= 0")
    api = make_client(api_url, timeout) if client is None else client
    fetch = _Fetch(api, max_retries, backoff_s, max_backoff_s, max_wait_s, sleep)
    # Newest open time whose candle is closed (with the skew margin) at the time of the call.
    now_ms = int(clock() * 1000)
    last_wanted = now_ms - CLOCK_SKEW_MS - step
    if end_ms is not None:
        last_wanted = min(last_wanted, end_ms)
    rows: list[list[Any]] = []
    pages = 0
    start = int(start_ms)
    try:
        while start <= last_wanted:
            params: dict[str, Any] = {"symbol": symbol, "interval": interval, "startTime": start}
            if end_ms is not None:
                params["endTime"] = int(end_ms)
            params["limit"] = PAGE_LIMIT
            page = fetch.get_page(params)
            if not isinstance(page, list):
                raise CandleError(
                    f"Binance answered the klines request for {symbol} {interval} with "
                    f"{type(page).__name__}, not a list of rows; check that the API URL points at Binance's "
                    "REST API (ending in /api)"
                )
            pages += 1
            rows.extend(page)
            newest = int(page[-1][0]) if page else None
            if on_page is not None:
                progress = FetchProgress(
                    symbol, interval, pages, fetch.requests, fetch.retries, len(rows), fetch.slept_s, newest
                )
                on_page(progress)
            if newest is None or len(page) < PAGE_LIMIT:
                break
            if newest < start:
                raise CandleError(
                    f"the klines API at {api.API_URL} answered startTime={start} with older candles; "
                    "it does not behave like Binance's"
                )
            start = newest + step
    finally:
        if client is None:
            api.close_connection()
    closed = [row for row in rows if _closed(row, step, now_ms - CLOCK_SKEW_MS)]
    frame = candles_from_klines(closed, source=f"binance {symbol} {interval}")
    return KlineFetch(frame, fetch.requests, pages, fetch.retries, fetch.slept_s)


def _closed(row: Sequence[Any], step: int, before_ms: int) -> bool:
    """Whether a kline row had closed before `before_ms` by both its open time and its close_time: a candle that
    opens ahead of the clock but claims to have closed would otherwise be kept, and the feed would ask only for
    candles after it, skipping the true ones (a row whose times are no numbers is kept for clean_candles to name)."""
    try:
        return int(row[0]) + step <= before_ms and int(row[6]) < before_ms
    except (TypeError, ValueError, IndexError):
        return True
