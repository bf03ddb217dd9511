"""Market-data sources: each yields canonical BARS (or QUOTES) record batches.

Interface (see :class:`Source`)::

    async with YahooChartSource() as src:
        batch = await src.fetch_history("AAPL", interval="1d", period="1y")
        async for symbol, result in src.fetch_many(symbols, period="1y"):
            ...   # RecordBatch, or that symbol's ProviderError

Sources: :class:`YahooChartSource`, :class:`YFinanceSource`, :class:`AlphaVantageSource`,
:class:`HTTPJSONSource`, and :class:`FailoverSource` over several. Reliability pieces:
:class:`TokenBucket`, :class:`RetryPolicy`, :class:`CircuitBreaker`, :class:`ResponseCache`.
"""

from __future__ import annotations

from ._alphavantage import AlphaVantageSource
from ._base import ReliableSource, Source, normalize_daily
from ._failover import FailoverSource
from ._httpjson import HTTPJSONSource
from ._reliability import CircuitBreaker, ResponseCache, RetryPolicy, SourceStats, TokenBucket
from ._yahoo import INTERVAL_WINDOW_DAYS, YahooChartSource
from ._yfinance import YFinanceSource, rewriting_session

__all__ = [
    "Source",
    "ReliableSource",
    "YahooChartSource",
    "YFinanceSource",
    "AlphaVantageSource",
    "HTTPJSONSource",
    "FailoverSource",
    "TokenBucket",
    "RetryPolicy",
    "CircuitBreaker",
    "ResponseCache",
    "SourceStats",
    "normalize_daily",
    "rewriting_session",
    "INTERVAL_WINDOW_DAYS",
]
