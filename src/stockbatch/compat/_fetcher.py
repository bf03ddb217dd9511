"""StockFetcher: the day_trade project's yfinance-based fetcher, same methods and return
shapes, running on stockbatch."""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pyarrow as pa

from ._backend import (
    Backend,
    parse_date,
    validate_code,
    validate_period_interval,
)
from ._errors import DataNotFoundError, InvalidSymbolError
from ._frames import bars_to_frames, is_intraday

try:
    import pandas as pd
except ImportError as exc:  # pragma: no cover
    raise ImportError("stockbatch.compat returns pandas DataFrames: pip install pandas") from exc

__all__ = ["StockFetcher", "BulkMethods"]

logger = logging.getLogger("stockbatch.compat")


class _TTLCache:
    """The original's per-method TTL caches (30 s prices, 300 s history), thread-safe.
    Frames are handed out as copies so a caller mutating one cannot poison the cache."""

    def __init__(self, maxsize: int):
        self._data: dict[tuple, tuple[float, Any]] = {}
        self._maxsize = max(0, int(maxsize))
        self._lock = threading.Lock()

    def get(self, key: tuple, ttl: float) -> Any:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            stamp, value = hit
            if time.monotonic() - stamp >= ttl:
                del self._data[key]
                return None
        return value.copy() if isinstance(value, (pd.DataFrame, dict)) else value

    def set(self, key: tuple, value: Any) -> None:
        if self._maxsize == 0:
            return
        with self._lock:
            if len(self._data) >= self._maxsize:
                self._data.pop(next(iter(self._data)))  # oldest first
            self._data[key] = (time.monotonic(), value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


def _quote_dict(row: dict[str, Any]) -> dict[str, Any] | None:
    """One QUOTES row -> the original's price dict (its change arithmetic, its keys)."""
    price = row.get("price")
    if price is None:
        return None
    previous = row.get("previous_close")
    change = price - previous if previous else 0
    change_percent = (change / previous * 100) if previous else 0
    volume = row.get("volume")
    return {
        "symbol": row["symbol"],
        "current_price": price,
        "previous_close": previous,
        "change": change,
        "change_percent": change_percent,
        "volume": volume if volume is not None else 0,
        "market_cap": row.get("market_cap"),
        "timestamp": _dt.datetime.now(),
    }


class BulkMethods:
    """The bulk half of StockFetcher, on stockbatch. Needs ``self._sb`` (a compat Backend) and
    ``self._format_symbol(code)``; :func:`stockbatch.compat.accelerate` grafts it onto any
    fetcher class."""

    _sb: Backend
    _auto_adjust: bool

    def _format_symbol(self, code: str) -> str:  # the host's own rule wins when it has one
        return self._sb.symbol(code)

    def _map_codes(self, codes: Iterable[Any]) -> tuple[dict[Any, str], list[Any]]:
        good: dict[Any, str] = {}
        bad: list[Any] = []
        for code in codes:
            try:
                good[code] = validate_code(self._format_symbol(validate_code(code)))
            except (InvalidSymbolError, TypeError, ValueError) as exc:
                logger.warning("skipping %r: %s", code, exc)
                bad.append(code)
        return good, bad

    def bulk_get_historical_data(
        self,
        codes: Sequence[str],
        period: str = "1y",
        interval: str = "1d",
        batch_size: int = 50,
        delay: float = 0.1,
    ) -> dict[str, pd.DataFrame | None]:
        """History of many codes as one stockbatch engine job (concurrent, coalesced fetches).

        Parameters
        ----------
        codes : list of str
            Codes as the caller knows them (``"7203"``); each maps through the symbol rule.
        period, interval : str
            As :meth:`StockFetcher.get_historical_data`.
        batch_size, delay : int, float
            Accepted for compatibility and ignored: stockbatch sizes its own batches and its
            sources rate-limit themselves, so there is nothing to sleep for.

        Returns
        -------
        dict
            code -> yfinance-style DataFrame, or None for a code that is malformed, unknown
            or has no data (failures never sink the other codes).

        Raises
        ------
        InvalidSymbolError
            ``period`` or ``interval`` is not valid (nothing is fetched).
        """
        del batch_size, delay
        if not codes:
            return {}
        validate_period_interval(period, interval)
        mapping, _bad = self._map_codes(codes)
        results: dict[str, pd.DataFrame | None] = dict.fromkeys(codes)
        if not mapping:
            return results
        symbols = list(dict.fromkeys(mapping.values()))
        table = self._sb.histories(symbols, period=period, interval=interval)
        frames = bars_to_frames(table, interval=interval, auto_adjust=self._auto_adjust,
                                tz_of=self._sb.tz_of)
        for code, symbol in mapping.items():
            frame = frames.get(symbol)
            if frame is None:
                logger.warning("no historical data for %s (%s)", code, symbol)
            results[code] = frame
        return results

    def bulk_get_current_prices(
        self,
        codes: Sequence[str],
        batch_size: int = 100,
        delay: float = 0.05,
    ) -> dict[str, dict[str, Any] | None]:
        """Current prices of many codes through the batched quote endpoint: ``batch_size``
        symbols per request, requests concurrent on the engine's I/O loop (``delay`` is
        accepted and ignored).

        Returns code -> the dict of :meth:`StockFetcher.get_current_price`, or None."""
        del delay
        if not codes:
            return {}
        mapping, _bad = self._map_codes(codes)
        results: dict[str, dict[str, Any] | None] = dict.fromkeys(codes)
        if not mapping:
            return results
        symbols = list(dict.fromkeys(mapping.values()))
        table = self._sb.quotes(symbols, chunk=batch_size)
        by_symbol = {row["symbol"]: row for row in table.to_pylist()}
        for code, symbol in mapping.items():
            row = by_symbol.get(symbol)
            results[code] = _quote_dict(row) if row is not None else None
        return results

    def get_realtime_data(self, codes: list[str]) -> dict[str, dict[str, Any]]:
        """Current prices of many codes; like the original, only the codes that succeeded
        are in the result (failures are logged).

        Raises
        ------
        InvalidSymbolError
            ``codes`` is not a non-empty list.
        """
        if not codes or not isinstance(codes, list):
            raise InvalidSymbolError(f"invalid list of codes: {codes!r}")
        prices = self.bulk_get_current_prices(codes)
        failed = [c for c, v in prices.items() if v is None]
        if failed:
            logger.info("no current price for: %s", failed)
        return {c: v for c, v in prices.items() if v is not None}


class StockFetcher(BulkMethods):
    """Drop-in for day_trade's ``StockFetcher`` (yfinance), backed by stockbatch.

    Same methods, arguments, return shapes and exceptions; the bulk methods run through the
    fetcher's :class:`~stockbatch.pipeline.BatchProcessingEngine` (all codes concurrently)
    instead of looping over yfinance.

    Parameters
    ----------
    cache_size, price_cache_ttl, historical_cache_ttl : int
        As the original: entries kept, and seconds a price / a history stays cached.
    retry_count, retry_delay : int, float
        Accepted for compatibility; retries (with backoff and Retry-After) are the source's
        job in stockbatch, configured on the source.
    source : stockbatch source, optional
        Where data comes from (default ``stockbatch.sources.YahooChartSource()``).
    base_url : str, optional
        Base URL for the default Yahoo source (e.g. a fixture server); not with ``source``.
    market_suffix : str or None
        Suffix for 4-character Tokyo codes (``"7203"`` -> ``"7203.T"``); None turns it off.
    suffix_rule : callable, optional
        code -> provider symbol; replaces the ``market_suffix`` rule. ``legacy_suffix_rule()``
        is the original's (every code without a dot gets ``.T``).
    auto_adjust : bool
        Like yfinance's default (True): prices adjusted by adj_close/close.
    timeout : float, optional
        Seconds one method call may take in total.

    Examples
    --------
    >>> from stockbatch.compat import StockFetcher
    >>> fetcher = StockFetcher(base_url=server.url)          # doctest: +SKIP
    >>> fetcher.get_historical_data("7203", period="1mo")    # doctest: +SKIP
    >>> frames = fetcher.bulk_get_historical_data(["7203", "6758"], period="1y")  # doctest: +SKIP
    """

    def __init__(
        self,
        cache_size: int = 128,
        price_cache_ttl: int = 30,
        historical_cache_ttl: int = 300,
        retry_count: int = 3,
        retry_delay: float = 1.0,
        *,
        source: Any = None,
        base_url: str | None = None,
        market_suffix: str | None = ".T",
        suffix_rule: Callable[[str], str] | None = None,
        auto_adjust: bool = True,
        timeout: float | None = 120.0,
    ):
        self.cache_size = cache_size
        self.price_cache_ttl = price_cache_ttl
        self.historical_cache_ttl = historical_cache_ttl
        self.retry_count = retry_count
        self.retry_delay = retry_delay
        self._auto_adjust = auto_adjust
        self._sb = Backend(source=source, base_url=base_url, market_suffix=market_suffix,
                           suffix_rule=suffix_rule, timeout=timeout)
        self._cache = _TTLCache(cache_size)

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the source's connections and stop the engine (its I/O loop)."""
        self._sb.close()

    def __enter__(self) -> StockFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def clear_all_caches(self) -> None:
        """Forget every cached price and history."""
        self._cache.clear()

    def __repr__(self) -> str:
        return (f"StockFetcher(source={type(self._sb.source).__name__}, "
                f"suffix_rule={getattr(self._sb.suffix_rule, '__name__', 'custom')})")

    # -- single symbols --------------------------------------------------------------------
    def _format_symbol(self, code: str, market: str | None = None) -> str:
        """Code -> provider symbol (``"7203"`` -> ``"7203.T"``) by the configured rule;
        ``market`` forces the original's ``code.market`` form for codes without a dot."""
        if market is not None:
            return code if "." in code else f"{code}.{market}"
        return self._sb.symbol(code)

    def _validate_symbol(self, symbol: str) -> None:
        validate_code(symbol)

    def get_current_price(self, code: str) -> dict[str, Any] | None:
        """Current price of one code (cached ``price_cache_ttl`` seconds).

        Returns
        -------
        dict
            symbol, current_price, previous_close, change, change_percent, volume,
            market_cap, timestamp (the local time of the fetch, like the original).

        Raises
        ------
        InvalidSymbolError, DataNotFoundError, StockFetcherError
        """
        symbol = self._format_symbol(validate_code(code))
        key = ("price", symbol)
        cached = self._cache.get(key, self.price_cache_ttl)
        if cached is not None:
            return cached
        table = self._sb.quotes([symbol])
        rows = [r for r in table.to_pylist() if r["symbol"] == symbol]
        if not rows:
            raise DataNotFoundError(f"no quote for {symbol}")
        result = _quote_dict(rows[0])
        if result is None:
            raise DataNotFoundError(f"no current price for {symbol}")
        self._cache.set(key, result)
        return dict(result)

    def _history_frame(self, symbol: str, interval: str, **kw: Any) -> pd.DataFrame:
        start, end = kw.pop("_start", None), kw.pop("_end", None)
        batch = self._sb.history(symbol, interval=interval, **kw)
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        # the exchange zone the provider reported (chart meta), else the suffix table's
        reported = (table.schema.metadata or {}).get(b"stockbatch.tz")
        tz_of = (lambda _s: reported.decode()) if reported else self._sb.tz_of
        frames = bars_to_frames(table, interval=interval, auto_adjust=self._auto_adjust,
                                tz_of=tz_of, start=start, end=end)
        frame = frames.get(symbol)
        if frame is None or frame.empty:
            raise DataNotFoundError(f"historical data is empty: {symbol}")
        return frame

    def get_historical_data(self, code: str, period: str = "1mo",
                            interval: str = "1d") -> pd.DataFrame | None:
        """History of one code, as yfinance's ``Ticker.history(period=, interval=)`` with the
        zone stripped (cached ``historical_cache_ttl`` seconds).

        Returns
        -------
        pandas.DataFrame
            Open, High, Low, Close (float64), Volume (int64); tz-naive DatetimeIndex in the
            exchange's wall time, named ``Date`` (daily and longer) or ``Datetime``.

        Raises
        ------
        InvalidSymbolError
            Malformed code, or a period/interval the original refused.
        DataNotFoundError
            Unknown symbol or no bars.
        StockFetcherError
            Any other failure (network, provider, decoding).
        """
        validate_code(code)
        validate_period_interval(period, interval)
        symbol = self._format_symbol(code)
        key = ("history", symbol, period, interval)
        cached = self._cache.get(key, self.historical_cache_ttl)
        if cached is not None:
            return cached
        frame = self._history_frame(symbol, interval, period=period)
        self._cache.set(key, frame)
        return frame.copy()

    def get_historical_data_range(self, code: str, start_date: str | _dt.datetime,
                                  end_date: str | _dt.datetime,
                                  interval: str = "1d") -> pd.DataFrame | None:
        """History of one code between two dates (``YYYY-MM-DD`` strings or datetimes), as
        yfinance's ``Ticker.history(start=, end=)``: naive dates are exchange-local, ``end``
        is exclusive.

        Raises
        ------
        InvalidSymbolError
            Malformed code or dates, or start not before end.
        DataNotFoundError, StockFetcherError
        """
        validate_code(code)
        start = parse_date(start_date, "start")
        end = parse_date(end_date, "end")
        if start >= end:
            raise InvalidSymbolError(f"start date is not before end date: {start} >= {end}")
        if interval not in ("1m", "2m", "5m", "15m", "30m", "60m", "90m", "1h", "1d", "5d",
                            "1wk", "1mo", "3mo"):
            raise InvalidSymbolError(f"invalid interval: {interval!r}")
        symbol = self._format_symbol(code)
        key = ("range", symbol, start, end, interval)
        cached = self._cache.get(key, self.historical_cache_ttl)
        if cached is not None:
            return cached
        zone = self._sb.tz_of(symbol)
        lo = pd.Timestamp(start)
        hi = pd.Timestamp(end)
        lo = lo.tz_localize(zone) if lo.tzinfo is None else lo
        hi = hi.tz_localize(zone) if hi.tzinfo is None else hi
        if not is_intraday(interval):
            # yfinance keeps daily bars whose exchange-local date falls in [start, end)
            lo, hi = lo.normalize(), hi.normalize() if hi != hi.normalize() else hi
        frame = self._history_frame(symbol, interval, start=lo.to_pydatetime(),
                                    end=hi.to_pydatetime(), _start=lo, _end=hi)
        self._cache.set(key, frame)
        return frame.copy()
