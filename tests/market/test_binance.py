"""fetch_klines through the real python-binance client and real HTTP, against tests/fixtures/fake_binance."""

from __future__ import annotations

import email.utils
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from binance.client import Client

from makeusrich.errors import CandleError, OfflineError
from makeusrich.market import binance, candles_from_table, clean_candles
from makeusrich.market.binance import PAGE_LIMIT, FetchProgress, fetch_klines, make_client
from tests.fixtures.fake_binance import BUNDLED_CSV, SAMPLE_CSV, FakeBinance, Fault

HOUR = 3_600_000


class Sleeps(list[float]):
    """An injected sleep that records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def csv_frame(path: Path) -> pd.DataFrame:
    """The expected candles, read from the CSV by pandas: a path independent of the server's JSON."""
    return candles_from_table(pd.read_csv(path), str(path))


def klines_paths(server: FakeBinance) -> list[str]:
    return [req.path for req in server.requests]


def window(server: FakeBinance, first: int, count: int) -> tuple[int, int]:
    """Open times of rows [first, first + count) of the served BTCUSDT series."""
    rows = server.rows()
    return rows[first][0], rows[first + count - 1][0]


# Full fetches and paging.


def test_full_fetch_equals_the_bundled_csv(fake_binance: FakeBinance) -> None:
    expected = csv_frame(BUNDLED_CSV)
    start, end = (int(expected["open_time"].iloc[i].timestamp() * 1000) for i in (0, -1))
    result = fetch_klines("BTCUSDT", "1h", start, end, api_url=fake_binance.url)
    pd.testing.assert_frame_equal(result.frame, expected, check_exact=True)
    assert len(result.frame) == 42_287
    # Spot values, so that a wrong column mapping cannot hide behind a self-consistent comparison.
    last = result.frame.iloc[-1]
    assert (last["open"], last["close"], last["trades"]) == (22136.42, 22029.16, 30859)
    assert result.frame["trades"].iloc[0] is pd.NA
    # Real data keeps its real gaps; the fetch neither fills nor hides them.
    _, report = clean_candles(result.frame, "1h")
    assert report.missing_candles == 22
    assert result.requests == len(fake_binance.requests) == math.ceil(42_287 / PAGE_LIMIT)


def test_sample_with_all_fields_round_trips(fake_binance: FakeBinance) -> None:
    fake_binance.add_csv("BTCUSDT", "1h", SAMPLE_CSV)
    expected = csv_frame(SAMPLE_CSV)
    start = int(expected["open_time"].iloc[0].timestamp() * 1000)
    result = fetch_klines("BTCUSDT", "1h", start, api_url=fake_binance.url)
    pd.testing.assert_frame_equal(result.frame, expected, check_exact=True)
    assert result.frame["quote_volume"].iloc[0] == 53957248.973789
    assert result.frame["trades"].iloc[0] == 47134
    assert result.frame["close_time"].iloc[-1] == pd.Timestamp("2024-01-02 23:59:59.999", tz="UTC")


@pytest.mark.parametrize(("rows", "pages"), [(1, 1), (999, 1), (1000, 1), (2000, 2), (2001, 3), (3500, 4)])
def test_paging_makes_one_request_per_page_and_nothing_else(fake_binance: FakeBinance, rows: int, pages: int) -> None:
    start, end = window(fake_binance, 100, rows)
    seen: list[FetchProgress] = []
    result = fetch_klines("BTCUSDT", "1h", start, end, api_url=fake_binance.url, on_page=seen.append)
    assert len(result.frame) == rows
    assert pages == math.ceil(rows / PAGE_LIMIT)
    assert result.requests == result.pages == pages == len(fake_binance.requests)
    # No ping, no exchangeInfo, no earliest-timestamp lookup: klines only, 1000 rows at a time, no overlap.
    assert klines_paths(fake_binance) == ["/api/v3/klines"] * pages
    served = fake_binance.rows()
    starts = [int(req.params["startTime"]) for req in fake_binance.requests]
    assert starts == [start] + [served[100 + k * PAGE_LIMIT - 1][0] + HOUR for k in range(1, pages)]
    assert {req.params["limit"] for req in fake_binance.requests} == {"1000"}
    assert {req.params["endTime"] for req in fake_binance.requests} == {str(end)}
    assert [p.pages for p in seen] == list(range(1, pages + 1))
    assert seen[-1].rows == rows and seen[-1].requests == pages and seen[-1].retries == 0


def test_paging_across_a_gap_and_a_range_beyond_the_data(fake_binance: FakeBinance) -> None:
    # 2022-06-14 is near the end of the file: asking up to 2030 returns what exists, in one short page.
    start = int(datetime(2022, 6, 14, tzinfo=UTC).timestamp() * 1000)
    end = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)
    result = fetch_klines("BTCUSDT", "1h", start, end, api_url=fake_binance.url)
    assert len(result.frame) == 25
    assert result.requests == 1


def test_api_url_comes_from_the_environment(fake_binance: FakeBinance, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_API_URL", fake_binance.url + "/")
    assert binance.resolve_api_url() == fake_binance.url
    start, end = window(fake_binance, 0, 5)
    assert len(fetch_klines("BTCUSDT", "1h", start, end).frame) == 5
    assert len(fake_binance.requests) == 1
    monkeypatch.delenv("BINANCE_API_URL")
    assert binance.resolve_api_url() == "https://api.binance.com/api"


def test_a_given_client_is_reused_and_lower_case_symbols_work(fake_binance: FakeBinance) -> None:
    client = make_client(fake_binance.url, timeout=5)
    start, end = window(fake_binance, 0, 3)
    for _ in range(2):
        assert len(fetch_klines("btcusdt", "1h", start, end, client=client).frame) == 3
    assert [req.params["symbol"] for req in fake_binance.requests] == ["BTCUSDT", "BTCUSDT"]
    assert client.session.headers["Accept"] == "application/json"  # still open: not ours to close


# Faults: each is retried and the result is still complete.

FAULTS = {
    "429": Fault.rate_limited(retry_after=None),
    "418": Fault.banned(retry_after=None),
    "500": Fault.server_error(500),
    "503": Fault.server_error(503),
    "502 html": Fault.server_error(502, body="<html><body>502 Bad Gateway</body></html>"),
    "dropped connection": Fault.drop(),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_each_fault_is_retried_and_the_result_is_complete(fake_binance: FakeBinance, name: str) -> None:
    start, end = window(fake_binance, 0, 1500)
    clean = fetch_klines("BTCUSDT", "1h", start, end, api_url=fake_binance.url).frame
    fake_binance.clear()

    def fault_on_second_page(progress: FetchProgress) -> None:
        if progress.pages == 1:
            fake_binance.faults.append(FAULTS[name])

    sleeps = Sleeps()
    result = fetch_klines(
        "BTCUSDT", "1h", start, end, api_url=fake_binance.url, on_page=fault_on_second_page, sleep=sleeps
    )
    pd.testing.assert_frame_equal(result.frame, clean, check_exact=True)
    assert (result.requests, result.pages, result.retries) == (3, 2, 1)
    second, retried = fake_binance.requests[1:]
    assert second.fault == FAULTS[name] and retried.fault is None
    assert second.params == retried.params  # the same page asked again
    # No Retry-After: one exponential backoff step with jitter, between half and all of the base delay.
    assert len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.5
    assert result.slept_s == pytest.approx(sleeps[0])


def test_retry_after_is_honoured(fake_binance: FakeBinance) -> None:
    in_five_s = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    fake_binance.faults.extend(
        [
            Fault.rate_limited(retry_after=7),
            Fault.banned(retry_after=2),
            Fault.server_error(503, retry_after="0.5"),
            Fault.rate_limited(retry_after=in_five_s),
            Fault.server_error(500),
        ]
    )
    sleeps = Sleeps()
    start, end = window(fake_binance, 0, 10)
    result = fetch_klines("BTCUSDT", "1h", start, end, api_url=fake_binance.url, sleep=sleeps, max_retries=5)
    assert len(result.frame) == 10
    assert sleeps[:3] == [7.0, 2.0, 0.5]
    assert 3.0 <= sleeps[3] <= 5.0  # an HTTP date, measured against our clock
    assert 4.0 <= sleeps[4] <= 8.0  # no header on the fifth failure: backoff 0.5 * 2**4, jittered
    assert len(fake_binance.requests) == 6


def test_backoff_grows_exponentially(fake_binance: FakeBinance) -> None:
    fake_binance.faults.extend([Fault.server_error(503)] * 4)
    sleeps = Sleeps()
    start, end = window(fake_binance, 0, 10)
    fetch_klines("BTCUSDT", "1h", start, end, api_url=fake_binance.url, sleep=sleeps, backoff_s=1.0)
    for k, slept in enumerate(sleeps):
        assert 2**k / 2 <= slept <= 2**k
    assert len(sleeps) == 4


def test_exhausted_retries_say_so(fake_binance: FakeBinance) -> None:
    fake_binance.faults.extend([Fault.server_error(503)] * 3 + [Fault.server_error(500)])
    sleeps = Sleeps()
    start, end = window(fake_binance, 0, 10)
    with pytest.raises(CandleError) as info:
        fetch_klines("BTCUSDT", "1h", start, end, api_url=fake_binance.url, sleep=sleeps, max_retries=3)
    message = str(info.value)
    assert "failed after 4 attempt(s)" in message
    assert "HTTP 500" in message  # the last error, not the first
    assert "try again later" in message
    assert fake_binance.url in message
    assert len(fake_binance.requests) == 4 and len(sleeps) == 3


def test_exhausted_retries_on_a_ban_say_it_is_a_ban(fake_binance: FakeBinance) -> None:
    fake_binance.faults.extend([Fault.banned(retry_after=1)] * 2)
    start, end = window(fake_binance, 0, 10)
    with pytest.raises(CandleError, match=r"failed after 2 attempt\(s\).*HTTP 418.*banned"):
        fetch_klines("BTCUSDT", "1h", start, end, api_url=fake_binance.url, sleep=Sleeps(), max_retries=1)


@pytest.mark.parametrize(
    ("fault", "pattern"),
    [
        (Fault.banned(retry_after=3600), r"banned this IP address for 3600 s \(HTTP 418\)"),
        (Fault.rate_limited(retry_after=600), r"HTTP 429.*wait 600 s"),
    ],
)
def test_a_long_ban_or_wait_fails_at_once(fake_binance: FakeBinance, fault: Fault, pattern: str) -> None:
    fake_binance.faults.append(fault)
    sleeps = Sleeps()
    start, end = window(fake_binance, 0, 10)
    with pytest.raises(CandleError, match=pattern):
        fetch_klines("BTCUSDT", "1h", start, end, api_url=fake_binance.url, sleep=sleeps, max_wait_s=120)
    assert sleeps == [] and len(fake_binance.requests) == 1


def test_unknown_symbol_names_it_and_is_not_retried(fake_binance: FakeBinance) -> None:
    sleeps = Sleeps()
    with pytest.raises(CandleError, match=r"does not know the symbol 'DOGEXYZ'.*-1121") as info:
        fetch_klines("dogexyz", "1h", 1_600_000_000_000, api_url=fake_binance.url, sleep=sleeps)
    assert "currency and compare" in str(info.value)
    assert sleeps == [] and len(fake_binance.requests) == 1


def test_unsupported_interval_fails_before_any_request(fake_binance: FakeBinance) -> None:
    with pytest.raises(CandleError, match="unsupported interval '1M'"):
        fetch_klines("BTCUSDT", "1M", 1_600_000_000_000, api_url=fake_binance.url)
    assert fake_binance.requests == []


def test_other_client_errors_are_not_retried(fake_binance: FakeBinance) -> None:
    fake_binance.faults.append(Fault.server_error(400, body='{"code":-1104,"msg":"Not all sent parameters."}'))
    sleeps = Sleeps()
    with pytest.raises(CandleError, match=r"refused .* HTTP 400 \(code -1104"):
        fetch_klines("BTCUSDT", "1h", 1_600_000_000_000, api_url=fake_binance.url, sleep=sleeps)
    assert sleeps == [] and len(fake_binance.requests) == 1


def test_a_restricted_location_is_offline_not_a_bad_request(fake_binance: FakeBinance) -> None:
    """HTTP 451 is what Binance answers where it does not operate: `auto` then falls back as with no network."""
    body = '{"code":0,"msg":"Service unavailable from a restricted location."}'
    fake_binance.faults.append(Fault.server_error(451, body=body))
    sleeps = Sleeps()
    with pytest.raises(OfflineError) as info:
        fetch_klines("BTCUSDT", "1h", 1_600_000_000_000, api_url=fake_binance.url, sleep=sleeps)
    assert info.value.reason == (
        "Binance does not serve this location (HTTP 451: Service unavailable from a restricted location.)"
    )
    assert "use --source sample" in str(info.value) and "BINANCE_API_URL" in str(info.value)
    assert sleeps == [] and len(fake_binance.requests) == 1


def test_slow_response_times_out_and_is_retried(fake_binance: FakeBinance, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client gives up on its own timeout, not after the 5 s answer: shown by what each HTTP request was sent
    with and how it ended, not by a stopwatch (which a loaded machine stretches)."""
    sent: list[tuple[object, str]] = []  # (the timeout requests was given, HTTP status or the exception's name)
    send = requests.adapters.HTTPAdapter.send

    def recording_send(self: requests.adapters.HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            response = send(self, request, *args, **kwargs)
        except Exception as exc:
            sent.append((kwargs.get("timeout"), type(exc).__name__))
            raise
        sent.append((kwargs.get("timeout"), str(response.status_code)))
        return response

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", recording_send)
    fake_binance.faults.append(Fault.slow(5.0))
    sleeps = Sleeps()
    start, end = window(fake_binance, 0, 1200)
    result = fetch_klines("BTCUSDT", "1h", start, end, api_url=fake_binance.url, timeout=0.3, sleep=sleeps)
    assert len(result.frame) == 1200
    assert (result.requests, result.retries) == (3, 1)
    assert fake_binance.requests[0].fault == Fault.slow(5.0)
    assert fake_binance.requests[0].params == fake_binance.requests[1].params
    # The first request timed out on the 0.3 s it was given and its page was asked again; nothing else failed.
    assert sent == [(0.3, "ReadTimeout"), (0.3, "200"), (0.3, "200")]
    assert len(sleeps) == 1 and result.slept_s == sleeps[0]  # one backoff, recorded instead of waited


def test_timeouts_exhaust_retries_with_a_clear_error(fake_binance: FakeBinance) -> None:
    fake_binance.faults.extend([Fault.slow(5.0), Fault.drop()])
    with pytest.raises(CandleError, match=r"failed after 2 attempt\(s\) \(last error: ConnectionError"):
        fetch_klines(
            "BTCUSDT",
            "1h",
            1_502_942_400_000,
            api_url=fake_binance.url,
            timeout=0.2,
            sleep=Sleeps(),
            max_retries=1,
        )
    assert [req.fault.kind for req in fake_binance.requests if req.fault] == ["slow", "drop"]


def test_a_server_that_is_not_there_fails_after_one_retry() -> None:
    with FakeBinance(bundled=False) as gone:
        url = gone.url
    sleeps = Sleeps()
    with pytest.raises(CandleError) as info:
        fetch_klines("BTCUSDT", "1h", 1_600_000_000_000, api_url=url, sleep=sleeps, max_retries=5)
    host = url.removeprefix("http://").removesuffix("/api")
    assert str(info.value).startswith(f"cannot reach Binance at {host}: it refused the connection")
    assert "--source sample" in str(info.value) and "--source file:PATH" in str(info.value)
    assert len(sleeps) == 1  # one retry, not five: a refused connection stays refused


def test_a_name_that_does_not_resolve_fails_after_one_retry() -> None:
    """What a machine with no network meets: no DNS answer. `.invalid` never resolves (RFC 6761)."""
    sleeps = Sleeps()
    with pytest.raises(CandleError) as info:
        fetch_klines("BTCUSDT", "1h", 1_600_000_000_000, api_url="https://binance.invalid/api", sleep=sleeps)
    assert str(info.value).startswith("cannot reach Binance at binance.invalid: its name does not resolve")
    assert "--source sample" in str(info.value) and len(str(info.value)) < 300
    assert len(sleeps) == 1
    with pytest.raises(CandleError):
        fetch_klines("BTCUSDT", "1h", 0, api_url="https://binance.invalid/api", sleep=(none := Sleeps()), max_retries=0)
    assert none == []  # --binance-retries 0 means no retry at all


def test_a_malformed_api_url_is_a_clear_error() -> None:
    sleeps = Sleeps()
    with pytest.raises(CandleError, match=r"check the API URL \(argument api_url or \$BINANCE_API_URL"):
        fetch_klines("BTCUSDT", "1h", 1_600_000_000_000, api_url="127.0.0.1:9/api", sleep=sleeps)
    assert sleeps == []


# Only closed candles.


def test_the_still_open_candle_is_dropped(fake_binance: FakeBinance) -> None:
    now_ms = int(datetime(2026, 3, 1, 12, 30, tzinfo=UTC).timestamp() * 1000)
    served = fake_binance.add_synthetic("ETHUSDT", "1h", 2500, now_ms=now_ms)
    assert served[-1][0] <= now_ms < served[-1][6]  # the fake's last candle is the open one
    result = fetch_klines("ETHUSDT", "1h", served[0][0], api_url=fake_binance.url, clock=lambda: now_ms / 1000)
    assert len(result.frame) == 2499
    assert result.frame["open_time"].iloc[-1] == pd.Timestamp(served[-2][0], unit="ms", tz="UTC")
    assert (result.frame["close_time"] < pd.Timestamp(now_ms, unit="ms", tz="UTC")).all()
    assert result.frame["close"].iloc[-1] == float(served[-2][4])
    # Up to date: three pages hold 2500 rows; no end time was sent.
    assert result.requests == 3
    assert all("endTime" not in req.params for req in fake_binance.requests)


def test_a_candle_closed_within_the_clock_skew_margin_waits_for_the_next_fetch(
    fake_binance: FakeBinance,
) -> None:
    now_ms = int(datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC).timestamp() * 1000)  # 11:00 closed 1 s ago
    served = fake_binance.add_synthetic("ETHUSDT", "1h", 10, now_ms=now_ms)
    result = fetch_klines("ETHUSDT", "1h", served[0][0], api_url=fake_binance.url, clock=lambda: now_ms / 1000)
    assert result.frame["open_time"].iloc[-1] == pd.Timestamp(served[-3][0], unit="ms", tz="UTC")
    later = now_ms + binance.CLOCK_SKEW_MS
    result = fetch_klines("ETHUSDT", "1h", served[0][0], api_url=fake_binance.url, clock=lambda: later / 1000)
    assert result.frame["open_time"].iloc[-1] == pd.Timestamp(served[-2][0], unit="ms", tz="UTC")


def test_up_to_date_fetch_on_the_real_clock(fake_binance: FakeBinance) -> None:
    served = fake_binance.add_synthetic("ETHUSDT", "1m", 1500)
    result = fetch_klines("ETHUSDT", "1m", served[0][0], api_url=fake_binance.url)
    now = pd.Timestamp.now(tz="UTC")
    assert (result.frame["close_time"] < now).all()
    assert 1497 <= len(result.frame) <= 1499  # the open minute is never kept
    assert result.requests == 2


def test_nothing_to_fetch_makes_no_request(fake_binance: FakeBinance) -> None:
    now_ms = int(time.time() * 1000)
    result = fetch_klines("BTCUSDT", "1h", now_ms, api_url=fake_binance.url)
    assert result.frame.empty and result.requests == 0 and fake_binance.requests == []


# The fake itself, as python-binance sees it: the semantics the tests above rely on.


def test_fake_speaks_binance_to_python_binance(fake_binance: FakeBinance) -> None:
    client = make_client(fake_binance.url, timeout=5)  # python-binance's own Client, made without leaking a loop
    assert isinstance(client, Client) and client.loop.is_closed()
    assert client.ping() == {}
    assert abs(client.get_server_time()["serverTime"] - time.time() * 1000) < 5_000
    info = client.get_symbol_info("BTCUSDT")
    assert info is not None and (info["baseAsset"], info["quoteAsset"]) == ("BTC", "USDT")
    served = fake_binance.rows()
    # No time bounds: the newest `limit` rows (default 500); limits above 1000 are capped.
    assert client.get_klines(symbol="BTCUSDT", interval="1h") == served[-500:]
    assert len(client.get_klines(symbol="BTCUSDT", interval="1h", limit=5000)) == 1000
    # Bounds are inclusive on open_time; endTime alone counts back from the end.
    a, b = served[10][0], served[20][0]
    assert client.get_klines(symbol="BTCUSDT", interval="1h", startTime=a, endTime=b) == served[10:21]
    assert client.get_klines(symbol="BTCUSDT", interval="1h", endTime=b, limit=3) == served[18:21]
    assert client.get_klines(symbol="BTCUSDT", interval="1h", startTime=a + 1, limit=2) == served[11:13]
    row = served[-1]
    assert len(row) == 12 and isinstance(row[0], int) and isinstance(row[6], int)
    assert all(isinstance(value, str) for value in row[1:6])
    from binance.exceptions import BinanceAPIException

    with pytest.raises(BinanceAPIException) as info_error:
        client.get_klines(symbol="NOPE", interval="1h")
    assert (info_error.value.status_code, info_error.value.code) == (400, -1121)
    assert info_error.value.message == "Invalid symbol."
    with pytest.raises(BinanceAPIException) as info_error:
        client.get_klines(symbol="BTCUSDT", interval="7h")
    assert info_error.value.code == -1120
    client.close_connection()
