"""The StockFetcher exceptions, kept under their original names so ``except`` clauses of
existing code keep working, and rooted in stockbatch's tree::

    StockbatchError
    └── StockFetcherError        any fetch failure (provider, decode, anything else)
        ├── NetworkError         connection / timeout / 5xx / 429, retries exhausted
        ├── InvalidSymbolError   malformed code, bad period/interval/date (also a ValueError)
        └── DataNotFoundError    the provider knows no data for the symbol / range

Like the original's later versions, each takes ``message`` and optional ``error_code`` and
``details`` (a dict); ``str(exc)`` is the message.
"""

from __future__ import annotations

from typing import Any

from .._errors import StockbatchError

__all__ = ["StockFetcherError", "NetworkError", "InvalidSymbolError", "DataNotFoundError"]


class StockFetcherError(StockbatchError):
    """A StockFetcher call failed; ``__cause__`` holds the error behind it."""

    def __init__(
        self,
        message: str = "",
        error_code: str | None = None,
        details: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.details = dict(details or {})


class NetworkError(StockFetcherError):
    """The provider could not be reached or kept failing (connection, timeout, HTTP 5xx or
    429) for all ``retry_count`` attempts."""


class InvalidSymbolError(StockFetcherError, ValueError):
    """The code, period, interval or date range is not valid; nothing was requested."""


class DataNotFoundError(StockFetcherError):
    """The provider has no data for this symbol (unknown symbol, empty range)."""
