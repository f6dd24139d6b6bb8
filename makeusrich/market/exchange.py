"""What the project knows of Binance's REST API without loading python-binance: where it is, how often a request
is tried, how many rows a page holds, when a candle counts as closed. The client itself is makeusrich.market.binance,
python-binance's one room, loaded only by the code that fetches."""

DEFAULT_API_URL = "https://api.binance.com/api"
API_URL_ENV = "BINANCE_API_URL"
DEFAULT_RETRIES = 5
# An unreachable host (no such name, connection refused) is asked once more: a network that is down stays down.
UNREACHABLE_RETRIES = 1
# Binance's maximum rows per klines request: fewer rows per page only means more requests.
PAGE_LIMIT = 1000
# A candle counts as closed once its close_time is this far in the past by our clock, so that a local clock
# running slightly ahead of Binance's cannot make us keep (and later cache) a candle that is still moving.
CLOCK_SKEW_MS = 2_000
