"""Binance kline intervals, apart from the candle code so that light importers (the pair spec, the operator)
do not load pandas."""

# Binance kline intervals with a fixed length. "1s" (too fine to train on hourly schedules) and "1M"
# (calendar months have no fixed length) are left out on purpose.
INTERVAL_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 3 * 60_000,
    "5m": 5 * 60_000,
    "15m": 15 * 60_000,
    "30m": 30 * 60_000,
    "1h": 3_600_000,
    "2h": 2 * 3_600_000,
    "4h": 4 * 3_600_000,
    "6h": 6 * 3_600_000,
    "8h": 8 * 3_600_000,
    "12h": 12 * 3_600_000,
    "1d": 86_400_000,
    "3d": 3 * 86_400_000,
    "1w": 7 * 86_400_000,
}
