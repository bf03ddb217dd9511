"""The StockFetcher exceptions, kept under their original names so ``except`` clauses of
existing code keep working, and rooted in stockbatch's tree::

    StockbatchError
    └── StockFetcherError        any fetch failure (network, provider, decode)
        ├── InvalidSymbolError   malformed code, bad period/interval/date (also a ValueError)
        └── DataNotFoundError    the provider knows no data for the symbol / range
"""

from __future__ import annotations

from .._errors import StockbatchError

__all__ = ["StockFetcherError", "InvalidSymbolError", "DataNotFoundError"]


class StockFetcherError(StockbatchError):
    """A StockFetcher call failed; ``__cause__`` holds the stockbatch error behind it."""


class InvalidSymbolError(StockFetcherError, ValueError):
    """The code, period, interval or date range is not valid; nothing was requested."""


class DataNotFoundError(StockFetcherError):
    """The provider has no data for this symbol (unknown symbol, empty range)."""
