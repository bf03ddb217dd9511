"""A drop-in stockbatch backend for code written against day_trade's ``StockFetcher``.

::

    from stockbatch.compat import StockFetcher

    fetcher = StockFetcher()                      # or StockFetcher(base_url=fixture.url)
    fetcher.get_current_price("7203")             # {"symbol": "7203.T", "current_price": ...}
    fetcher.get_historical_data("7203", period="1mo")          # yfinance-style DataFrame
    frames = fetcher.bulk_get_historical_data(["7203", "6758"], period="1y")  # concurrent

Or keep your own fetcher class and let stockbatch run only its bulk methods::

    from stockbatch.compat import accelerate
    MyFetcher = accelerate(MyFetcher)

Each fetcher owns one :class:`stockbatch.pipeline.BatchProcessingEngine` (made on first use,
stopped by ``close()`` / ``stockbatch_close()``). The bulk methods run through it: bulk history
is an engine job (``store_data=False``: concurrent, coalesced fetches, nothing written; codes
that fail are logged and come back as None), bulk quotes are the source's batched quote calls
on the engine's I/O loop. Single-symbol calls run on that same loop, so one HTTP connection
pool serves them all.

Two modes: ``StockFetcher()`` (``mode="stockbatch"``) fetches everything through stockbatch;
``StockFetcher(mode="yfinance")`` makes the single-symbol methods call ``yfinance.Ticker``
exactly as the original did (so suites that patch ``yfinance.Ticker`` pass unchanged).
:mod:`stockbatch.compat.stock_fetcher` mirrors ``day_trade.data.stock_fetcher`` (its names, a
patchable ``yf``, yfinance mode by default).

Exceptions keep their original names and sit under :class:`stockbatch.StockbatchError`::

    StockbatchError
    └── StockFetcherError
        ├── NetworkError         (connection, timeout, 5xx, 429 after the retries)
        ├── InvalidSymbolError   (also ValueError)
        └── DataNotFoundError
"""

from __future__ import annotations

from ._adapter import BULK_METHODS, accelerate
from ._backend import (
    VALID_INTERVALS,
    VALID_PERIODS,
    legacy_suffix_rule,
    tse_suffix_rule,
)
from ._cache import DataCache, cache_with_ttl
from ._errors import DataNotFoundError, InvalidSymbolError, NetworkError, StockFetcherError
from ._fetcher import MODES, BulkMethods, StockFetcher
from ._frames import ACTION_COLUMNS, COLUMNS, bars_to_frames, exchange_tz, history_columns

__all__ = [
    "StockFetcher",
    "BulkMethods",
    "accelerate",
    "BULK_METHODS",
    "StockFetcherError",
    "NetworkError",
    "InvalidSymbolError",
    "DataNotFoundError",
    "tse_suffix_rule",
    "legacy_suffix_rule",
    "bars_to_frames",
    "COLUMNS",
    "ACTION_COLUMNS",
    "history_columns",
    "MODES",
    "DataCache",
    "cache_with_ttl",
    "exchange_tz",
    "VALID_PERIODS",
    "VALID_INTERVALS",
]
