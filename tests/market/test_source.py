"""Incremental candle fetching through the store's cache, against the loopback Binance stand-in and both
store backends."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from makeusrich.errors import CandleError, OfflineError
from makeusrich.market import Source, binance, candles_from_klines, last_closed_open_ms, load_candles, merge_candles
from makeusrich.pair import CurrencyPairSpec
from makeusrich.store import ObjectStore, PairStore
from tests.fixtures.fake_binance import FakeBinance

HOUR = 3_600_000
NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


def spec(days: int = 30) -> CurrencyPairSpec:
    return CurrencyPairSpec(currency="eth", compare="usdt", lookback_days=days)


@pytest.fixture
def market(fake_binance: FakeBinance) -> FakeBinance:
    """ETHUSDT hourly candles up to two hours after NOW, so that NOW + 1h still has a closed candle to fetch."""
    fake_binance.add_synthetic("ETHUSDT", "1h", 2000, now_ms=int((NOW + timedelta(hours=2)).timestamp() * 1000))
    return fake_binance


def klines(server: FakeBinance) -> list[object]:
    return server.requests_to("klines")


def test_source_parsing() -> None:
    assert Source.parse("binance").kind == "binance"
    assert Source.parse("file:/data/x.csv") == Source("file", "/data/x.csv")
    assert str(Source.parse("file:/data/x.csv")) == "file:/data/x.csv"
    assert Source.parse("auto").kind == "auto"
    with pytest.raises(CandleError, match="unknown candle source 'ftp': use auto, binance, sample or file:PATH"):
        Source.parse("ftp")


def test_last_closed_candle() -> None:
    assert last_closed_open_ms(NOW, HOUR) == int(datetime(2026, 11, 20, 11, tzinfo=UTC).timestamp() * 1000)


def test_incremental_fetch_uses_the_cache(market: FakeBinance, object_store: ObjectStore) -> None:
    store = PairStore(object_store, "default", "eth-usdt")
    first = load_candles(spec(), Source("binance"), store, now=NOW, api_url=market.url)
    assert first.requests == 1 == len(klines(market))  # 720 candles: one page
    assert len(first.frame) == 30 * 24
    assert first.frame["open_time"].iloc[-1] == pd.Timestamp("2026-11-20 11:00", tz="UTC")
    served = candles_from_klines(market.rows("ETHUSDT", "1h"))
    expected = served[served["open_time"].isin(first.frame["open_time"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(first.frame, expected)
    assert store.read_candles("1h") is not None

    again = load_candles(spec(), Source("binance"), store, now=NOW, api_url=market.url)
    assert again.requests == 0 and len(klines(market)) == 1  # up to date: no request at all
    pd.testing.assert_frame_equal(again.frame, first.frame)

    later = load_candles(spec(), Source("binance"), store, now=NOW + timedelta(hours=1), api_url=market.url)
    assert later.requests == 1 and len(klines(market)) == 2
    request = klines(market)[-1]
    assert int(request.params["startTime"]) == int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp() * 1000)
    assert later.frame["open_time"].iloc[-1] == pd.Timestamp("2026-11-20 12:00", tz="UTC")
    assert len(later.frame) == 30 * 24  # the window slides; the oldest candle leaves it


def test_a_longer_lookback_refetches_what_the_cache_lacks(market: FakeBinance, tmp_path: object) -> None:
    from makeusrich.store import LocalStore

    store = PairStore(LocalStore(str(tmp_path)), "default", "eth-usdt")
    load_candles(spec(10), Source("binance"), store, now=NOW, api_url=market.url)
    longer = load_candles(spec(60), Source("binance"), store, now=NOW, api_url=market.url)
    assert longer.requests == 2  # 1,440 candles: two pages
    assert len(longer.frame) == 60 * 24


def test_a_damaged_cache_is_refetched(market: FakeBinance, object_store: ObjectStore) -> None:
    store = PairStore(object_store, "default", "eth-usdt")
    object_store.put(store.candles_key("1h"), b"not parquet")
    result = load_candles(spec(), Source("binance"), store, now=NOW, api_url=market.url)
    assert result.requests == 1 and len(result.frame) == 30 * 24
    assert store.read_candles("1h") is not None  # rewritten


def test_unknown_symbol_is_named(market: FakeBinance) -> None:
    with pytest.raises(CandleError, match="XYZUSDT"):
        load_candles(
            CurrencyPairSpec(currency="xyz", compare="usdt"), Source("binance"), None, now=NOW, api_url=market.url
        )


def test_unreachable_binance_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real fetch, with short backoff so the test takes well under a second.
    monkeypatch.setattr(binance, "fetch_klines", functools.partial(binance.fetch_klines, backoff_s=0.01))
    with pytest.raises(CandleError, match=r"cannot reach Binance at 127.0.0.1:9: .*use --source sample"):
        load_candles(spec(), Source("binance"), None, now=NOW, api_url="http://127.0.0.1:9/api")


def test_merge_prefers_fresh_candles() -> None:
    rows = [[i * HOUR, "1", "2", "0.5", "1.5", "10", (i + 1) * HOUR - 1, "0", 1, "0", "0", "0"] for i in range(3)]
    cached = candles_from_klines(rows)
    fresh = candles_from_klines([[2 * HOUR, "1", "3", "0.5", "2.5", "10", 3 * HOUR - 1, "0", 1, "0", "0", "0"]])
    merged = merge_candles(cached, fresh)
    assert merged["close"].tolist() == [1.5, 1.5, 2.5]


def test_auto_uses_binance_when_it_answers(market: FakeBinance) -> None:
    candles = load_candles(spec(), Source("auto"), None, now=NOW, api_url=market.url)
    assert candles.source == "binance" and candles.requests >= 1


def test_auto_falls_back_to_the_sample_when_binance_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The offline laptop of `makeusrich up`: said in one line, and the run goes on with the bundled sample."""
    monkeypatch.setattr(binance, "fetch_klines", functools.partial(binance.fetch_klines, backoff_s=0.01))
    btc = CurrencyPairSpec(currency="btc", compare="usdt", lookback_days=30)
    candles = load_candles(btc, Source("auto"), None, now=NOW, api_url="http://127.0.0.1:9/api")
    assert candles.source == "sample"
    assert candles.frame["open_time"].iloc[-1] == pd.Timestamp("2022-06-15 00:00", tz="UTC")
    said = [r.getMessage() for r in caplog.records if "bundled sample" in r.getMessage()]
    assert said == [
        "cannot reach Binance at 127.0.0.1:9: it refused the connection (nothing listens there); using the "
        "bundled sample of BTCUSDT 1h candles instead (offline sample data, ends 2022-06-15)"
    ]


def test_auto_without_offline_data_for_the_pair_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binance, "fetch_klines", functools.partial(binance.fetch_klines, backoff_s=0.01))
    with pytest.raises(CandleError) as caught:
        load_candles(spec(), Source("auto"), None, now=NOW, api_url="http://127.0.0.1:9/api")
    assert str(caught.value) == (
        "cannot reach Binance at 127.0.0.1:9: it refused the connection (nothing listens there), and ETHUSDT 1h "
        "has no offline data (the bundled sample holds BTCUSDT 1h only); connect to the internet, or use "
        "--source file:PATH with its candles"
    )


def test_binance_alone_never_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binance, "fetch_klines", functools.partial(binance.fetch_klines, backoff_s=0.01))
    btc = CurrencyPairSpec(currency="btc", compare="usdt", lookback_days=30)
    with pytest.raises(OfflineError, match="use --source sample"):
        load_candles(btc, Source("binance"), None, now=NOW, api_url="http://127.0.0.1:9/api")
