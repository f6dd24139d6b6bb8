"""Errors that reach the user as one clear sentence (the CLI prints them and exits non-zero)."""

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


class StoreError(MakeUsRichError):
    """The model store refused an operation or holds inconsistent data."""


class NotFoundError(StoreError):
    """An object is not in the store."""
