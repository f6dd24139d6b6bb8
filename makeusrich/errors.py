"""Errors that reach the user as one clear sentence (the CLI prints them and exits non-zero)."""


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
