"""The names of day_trade's ``day_trade.data.stock_fetcher`` module, for test suites and code
that import (or patch) that module: change only the import path.

::

    # before                                        # after
    from day_trade.data.stock_fetcher import (      from stockbatch.compat.stock_fetcher import (
        StockFetcher, StockFetcherError, ...)           StockFetcher, StockFetcherError, ...)
    @patch("day_trade.data.stock_fetcher.yf.Ticker")  @patch("stockbatch.compat.stock_fetcher.yf.Ticker")

Here :class:`StockFetcher` defaults to ``mode="yfinance"``: its single-symbol methods call
``yf.Ticker(symbol)`` as the original did, so ``patch("yfinance.Ticker")`` (or of this module's
``yf``) reaches them; its bulk methods still run as stockbatch engine jobs. ``yf`` is the
``yfinance`` module (None when it is not installed).
"""

from __future__ import annotations

from typing import Any

from ._cache import DataCache, cache_with_ttl
from ._errors import (
    DataNotFoundError,
    InvalidSymbolError,
    NetworkError,
    StockFetcherError,
)
from ._fetcher import StockFetcher as _StockFetcher

try:
    import yfinance as yf
except ImportError:  # pragma: no cover - the yfinance extra is not installed
    yf = None

__all__ = [
    "StockFetcher",
    "StockFetcherError",
    "NetworkError",
    "InvalidSymbolError",
    "DataNotFoundError",
    "DataCache",
    "cache_with_ttl",
    "yf",
]


class StockFetcher(_StockFetcher):
    """:class:`stockbatch.compat.StockFetcher` with ``mode="yfinance"`` by default."""

    def __init__(self, *args: Any, mode: str = "yfinance", **kwargs: Any):
        super().__init__(*args, mode=mode, **kwargs)
