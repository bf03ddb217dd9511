"""StockFetcher: the day_trade project's yfinance-based fetcher, same methods, arguments,
return shapes, exceptions and caches, running on stockbatch (``mode="stockbatch"``) or on
``yfinance.Ticker`` exactly as the original did (``mode="yfinance"``)."""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import pyarrow as pa

from . import _original
from ._backend import (
    SYMBOL_RULES,
    VALID_INTERVALS,
    Backend,
    LinearRetry,
    legacy_suffix_rule,
    parse_date,
    tse_suffix_rule,
    validate_period_interval,
)
from ._cache import TTLCache, cached_method, register
from ._errors import DataNotFoundError, InvalidSymbolError
from ._frames import bars_to_frames, is_intraday

try:
    import pandas as pd
except ImportError as exc:  # pragma: no cover
    raise ImportError("stockbatch.compat returns pandas DataFrames: pip install pandas") from exc

__all__ = ["StockFetcher", "BulkMethods"]

logger = logging.getLogger("stockbatch.compat")


def _quote_dict(row: dict[str, Any], symbol: str | None = None) -> dict[str, Any] | None:
    """One QUOTES row -> the original's price dict (its change arithmetic, its keys);
    ``symbol`` as the caller spelled it (the provider answers upper-case)."""
    price = row.get("price")
    if price is None:
        return None
    previous = row.get("previous_close")
    change = price - previous if previous else 0
    change_percent = (change / previous * 100) if previous else 0
    volume = row.get("volume")
    return {
        "symbol": symbol or row["symbol"],
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
        check = self._sb.check
        for code in codes:
            try:
                good[code] = check(self._format_symbol(check(code)))
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
        frames = bars_to_frames(
            table,
            interval=interval,
            auto_adjust=self._auto_adjust,
            tz_of=self._sb.tz_of,
            events=self._sb.tap.events,
        )
        for code, symbol in mapping.items():
            frame = frames.get(symbol, frames.get(symbol.upper()))
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
        by_symbol = {row["symbol"].upper(): row for row in table.to_pylist()}
        for code, symbol in mapping.items():
            row = by_symbol.get(symbol.upper())
            results[code] = _quote_dict(row, symbol) if row is not None else None
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


_UNSET: Any = object()
MODES = ("stockbatch", "yfinance")
#: Bulk method -> the single-symbol method the original built it on.
_BUILT_ON = {
    "get_realtime_data": "get_current_price",
    "bulk_get_current_prices": "get_current_price",
    "bulk_get_historical_data": "get_historical_data",
}


def _suffix_rule(
    market_suffix: Any, suffix_rule: Callable[[str], str] | None
) -> Callable[[str], str]:
    if suffix_rule is not None:
        if market_suffix is not _UNSET:
            raise TypeError("pass either suffix_rule= or market_suffix=, not both")
        return suffix_rule
    if market_suffix is _UNSET:
        return legacy_suffix_rule("T")  # the original's: every code without a dot gets .T
    if market_suffix is None:
        return lambda code: code
    return tse_suffix_rule(market_suffix)


class StockFetcher(BulkMethods):
    """Drop-in for day_trade's ``StockFetcher`` (yfinance), backed by stockbatch.

    Same public methods, arguments, return shapes, exceptions, caches (with their
    ``clear_cache()`` / ``cache_size()``) and private helpers the original's tests call
    (``_format_symbol``, ``_validate_symbol``, ``_validate_period_interval``,
    ``_validate_date_range``, ``_is_retryable_error``, ``_handle_error``, ``_retry_on_error``,
    ``_get_ticker``). By default it behaves as the original: codes are any string of 2+
    characters, and every code without a dot gets ``.T`` (``"aapl"`` -> ``"aapl.T"``).

    Parameters
    ----------
    cache_size, price_cache_ttl, historical_cache_ttl : int
        As the original: Ticker objects kept (yfinance mode), and seconds a price / a
        history stays cached (company info: ``company_cache_ttl``, 3600 s).
    retry_count, retry_delay : int, float
        As the original: calls in all, and the back-off unit (the n-th retry waits
        ``retry_delay * n``); connection failures, timeouts, HTTP 5xx and 429 are retried,
        then NetworkError. In stockbatch mode this is the retry policy of the source the
        fetcher makes (a ``source=`` you pass keeps its own).
    mode : {"stockbatch", "yfinance"}
        ``stockbatch``: every call goes through stockbatch's Yahoo source (no yfinance).
        ``yfinance``: single-symbol methods call ``yfinance.Ticker(symbol)`` exactly as the
        original (so patches of ``yfinance.Ticker`` reach them); bulk methods stay engine jobs.
    symbols : {"original", "strict"}
        ``original``: the original's check (a string of 2+ characters). ``strict``: also only
        Yahoo symbol characters, so a malformed code is an InvalidSymbolError up front.
    source : stockbatch source, optional
        Where data comes from (default ``stockbatch.sources.YahooChartSource()``).
    base_url : str, optional
        Base URL for the default Yahoo source (e.g. a fixture server); not with ``source``.
    market_suffix : str or None, optional
        The faster TSE rule instead of the original's: only 4-character Tokyo codes get this
        suffix (``"7203"`` -> ``"7203.T"``, ``"AAPL"`` stays); None: no suffix at all.
    suffix_rule : callable, optional
        Your own code -> provider symbol rule (``tse_suffix_rule()``, ``legacy_suffix_rule()``).
    auto_adjust : bool
        Like yfinance's default (True): prices adjusted, no Adj Close column.
    timeout : float, optional
        Seconds one stockbatch call may take in total.

    Examples
    --------
    >>> from stockbatch.compat import StockFetcher
    >>> fetcher = StockFetcher(base_url=server.url)          # doctest: +SKIP
    >>> fetcher.get_historical_data("7203", period="1mo")    # doctest: +SKIP
    >>> frames = fetcher.bulk_get_historical_data(["7203", "6758"], period="1y")  # doctest: +SKIP
    """

    #: Seconds company info stays cached (the original's 1 hour).
    company_cache_ttl = 3600

    def __init__(
        self,
        cache_size: int = 128,
        price_cache_ttl: int = 30,
        historical_cache_ttl: int = 300,
        retry_count: int = 3,
        retry_delay: float = 1.0,
        *,
        mode: str = "stockbatch",
        symbols: str = "original",
        source: Any = None,
        base_url: str | None = None,
        market_suffix: Any = _UNSET,
        suffix_rule: Callable[[str], str] | None = None,
        auto_adjust: bool = True,
        timeout: float | None = 120.0,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if symbols not in SYMBOL_RULES:
            raise ValueError(f"symbols must be one of {tuple(SYMBOL_RULES)}, not {symbols!r}")
        self.cache_size = cache_size
        self.price_cache_ttl = price_cache_ttl
        self.historical_cache_ttl = historical_cache_ttl
        self.retry_count = retry_count
        self.retry_delay = retry_delay
        self.mode = mode
        self._auto_adjust = auto_adjust
        self._get_ticker = lru_cache(maxsize=cache_size)(self._create_ticker)
        retry = LinearRetry(retry_count, retry_delay) if source is None else None
        self._sb = Backend(
            source=source,
            base_url=base_url,
            suffix_rule=_suffix_rule(market_suffix, suffix_rule),
            timeout=timeout,
            retry=retry,
            strict=symbols == "strict",
        )
        size = max(1024, int(cache_size))
        self._caches = {kind: TTLCache(size) for kind in ("price", "history", "range", "company")}
        register(self)

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the source's connections and stop the engine (its I/O loop)."""
        self._sb.close()

    def __enter__(self) -> StockFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"StockFetcher(mode={self.mode!r}, source={type(self._sb.source).__name__}, "
            f"suffix_rule={getattr(self._sb.suffix_rule, '__name__', 'custom')})"
        )

    # -- caches ----------------------------------------------------------------------------
    def clear_all_caches(self) -> None:
        """Forget every cached price, history, company info and Ticker (as the original:
        the method caches of every fetcher)."""
        self._get_ticker.cache_clear()
        for name in (
            "get_current_price",
            "get_historical_data",
            "get_historical_data_range",
            "get_company_info",
        ):
            method = getattr(self, name)
            if hasattr(method, "clear_cache"):
                method.clear_cache()
        for cache in self._caches.values():
            cache.clear()
        logger.info("all caches cleared")

    # -- the original's helpers ------------------------------------------------------------
    def _create_ticker(self, symbol: str) -> Any:
        """``yfinance.Ticker(symbol)`` (yfinance mode; cached by ``_get_ticker``)."""
        return _original.yfinance_module().Ticker(symbol)

    def _retry_on_error(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return _original.retry_on_error(self, func, *args, **kwargs)

    def _is_retryable_error(self, error: BaseException) -> bool:
        return _original.is_retryable_error(error)

    def _handle_error(self, error: BaseException | None) -> None:
        exc = _original.handle_error(error)
        if exc is error:
            raise exc
        raise exc from error

    def _format_symbol(self, code: str, market: str | None = None) -> str:
        """Code -> provider symbol by the configured rule (by default the original's: every
        code without a dot gets ``.T``); ``market`` forces ``code.market`` for such codes."""
        if market is not None:
            return code if "." in code else f"{code}.{market}"
        return self._sb.suffix_rule(code)

    def _validate_symbol(self, symbol: str) -> None:
        """InvalidSymbolError unless ``symbol`` passes the configured rule."""
        self._sb.check(symbol)

    def _validate_period_interval(self, period: str, interval: str) -> None:
        validate_period_interval(period, interval)

    def _validate_date_range(
        self, start_date: str | _dt.datetime, end_date: str | _dt.datetime
    ) -> None:
        _original.validate_date_range(start_date, end_date)

    def _uses_own(self, name: str) -> bool:
        """True when ``name`` is this class's own method (not overridden by a subclass, not
        patched on the class or the instance)."""
        return name not in vars(self) and getattr(type(self), name, None) is _OWN.get(name)

    # -- single symbols --------------------------------------------------------------------
    @cached_method("price", lambda self: self.price_cache_ttl)
    def get_current_price(self, code: str) -> dict[str, Any] | None:
        """Current price of one code (cached ``price_cache_ttl`` seconds).

        Returns
        -------
        dict
            symbol, current_price, previous_close, change, change_percent, volume,
            market_cap, timestamp (the local time of the fetch, like the original).

        Raises
        ------
        InvalidSymbolError, DataNotFoundError, NetworkError, StockFetcherError
        """
        if self.mode == "yfinance":
            return self._retry_on_error(self._yf_current_price, code)
        self._validate_symbol(code)
        symbol = self._format_symbol(code)
        table = self._sb.quotes([symbol])
        rows = [r for r in table.to_pylist() if r["symbol"].upper() == symbol.upper()]
        if not rows:
            raise DataNotFoundError(f"no quote for {symbol}", "DATA_NOT_FOUND")
        result = _quote_dict(rows[0], symbol)
        if result is None:
            raise DataNotFoundError(f"no current price for {symbol}", "DATA_NOT_FOUND")
        return result

    def _yf_current_price(self, code: str) -> dict[str, Any]:
        self._validate_symbol(code)
        symbol = self._format_symbol(code)
        return _original.price_dict_from_info(symbol, self._get_ticker(symbol).info)

    def _history_frame(self, symbol: str, interval: str, **kw: Any) -> pd.DataFrame:
        start, end = kw.pop("_start", None), kw.pop("_end", None)
        batch = self._sb.history(symbol, interval=interval, **kw)
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        md = table.schema.metadata or {}
        # the exchange zone the provider reported (chart meta), else the suffix table's
        reported = md.get(b"stockbatch.tz")
        tz_of = (lambda _s: reported.decode()) if reported else self._sb.tz_of
        raw = md.get(b"stockbatch.events")
        events = (
            {s: json.loads(raw) for s in set(table.column("symbol").to_pylist())} if raw else None
        )
        frames = bars_to_frames(
            table,
            interval=interval,
            auto_adjust=self._auto_adjust,
            tz_of=tz_of,
            start=start,
            end=end,
            events=events,
        )
        frame = next(iter(frames.values()), None)
        if frame is None or frame.empty:
            raise DataNotFoundError(f"historical data is empty: {symbol}", "DATA_NOT_FOUND")
        return frame

    def _yf_history(self, symbol: str, **kw: Any) -> pd.DataFrame:
        if not self._auto_adjust:
            kw["auto_adjust"] = False
        df = self._get_ticker(symbol).history(**kw)
        if df.empty:
            raise DataNotFoundError(f"historical data is empty: {symbol}", "DATA_NOT_FOUND")
        if df.index.tz is not None:
            df.index = df.index.tz_localize(None)
        return df

    @cached_method("history", lambda self: self.historical_cache_ttl)
    def get_historical_data(
        self, code: str, period: str = "1mo", interval: str = "1d"
    ) -> pd.DataFrame | None:
        """History of one code, as yfinance's ``Ticker.history(period=, interval=)`` with the
        zone stripped (cached ``historical_cache_ttl`` seconds).

        Returns
        -------
        pandas.DataFrame
            Open, High, Low, Close (float64), [Adj Close when ``auto_adjust=False``], Volume
            (int64), Dividends, Stock Splits (float64); tz-naive DatetimeIndex in the
            exchange's wall time, named ``Date`` (daily and longer) or ``Datetime``.

        Raises
        ------
        InvalidSymbolError
            Malformed code, or a period/interval the original refused.
        DataNotFoundError
            Unknown symbol or no bars.
        NetworkError
            The provider kept failing for ``retry_count`` attempts.
        StockFetcherError
            Any other failure (provider, decoding).
        """
        if self.mode == "yfinance":

            def fetch() -> pd.DataFrame:
                self._validate_symbol(code)
                self._validate_period_interval(period, interval)
                return self._yf_history(self._format_symbol(code), period=period, interval=interval)

            return self._retry_on_error(fetch)
        self._validate_symbol(code)
        self._validate_period_interval(period, interval)
        return self._history_frame(self._format_symbol(code), interval, period=period)

    @cached_method("range", lambda self: self.historical_cache_ttl)
    def get_historical_data_range(
        self,
        code: str,
        start_date: str | _dt.datetime,
        end_date: str | _dt.datetime,
        interval: str = "1d",
    ) -> pd.DataFrame | None:
        """History of one code between two dates (``YYYY-MM-DD`` strings or datetimes), as
        yfinance's ``Ticker.history(start=, end=)``: naive dates are exchange-local, ``end``
        is exclusive. Same frame as :meth:`get_historical_data`.

        Raises
        ------
        InvalidSymbolError
            Malformed code or dates, or start not before end.
        DataNotFoundError, NetworkError, StockFetcherError
        """
        if self.mode == "yfinance":

            def fetch() -> pd.DataFrame:
                self._validate_symbol(code)
                start, end = _original.validate_date_range(start_date, end_date)
                return self._yf_history(
                    self._format_symbol(code), start=start, end=end, interval=interval
                )

            return self._retry_on_error(fetch)
        self._validate_symbol(code)
        _original.validate_date_range(start_date, end_date)
        start = parse_date(start_date, "start")
        end = parse_date(end_date, "end")
        if interval not in VALID_INTERVALS:
            raise InvalidSymbolError(f"invalid interval: {interval!r}")
        symbol = self._format_symbol(code)
        zone = self._sb.tz_of(symbol)
        lo = pd.Timestamp(start)
        hi = pd.Timestamp(end)
        lo = lo.tz_localize(zone) if lo.tzinfo is None else lo
        hi = hi.tz_localize(zone) if hi.tzinfo is None else hi
        if not is_intraday(interval):
            # yfinance keeps daily bars whose exchange-local date falls in [start, end)
            lo, hi = lo.normalize(), hi.normalize() if hi != hi.normalize() else hi
        return self._history_frame(
            symbol, interval, start=lo.to_pydatetime(), end=hi.to_pydatetime(), _start=lo, _end=hi
        )

    @cached_method("company", lambda self: self.company_cache_ttl)
    def get_company_info(self, code: str) -> dict[str, Any] | None:
        """Company profile of one code (cached one hour, like the original).

        Returns
        -------
        dict
            symbol, name, sector, industry, market_cap, employees, description, website,
            headquarters (city), country, currency, exchange (None where unknown).

        Raises
        ------
        InvalidSymbolError, DataNotFoundError, NetworkError, StockFetcherError
        """
        if self.mode == "yfinance":

            def fetch() -> dict[str, Any]:
                self._validate_symbol(code)
                symbol = self._format_symbol(code)
                info = self._get_ticker(symbol).info
                if not info or len(info) < 5:
                    raise DataNotFoundError(f"no company info for {symbol}", "DATA_NOT_FOUND")
                return _original.company_dict(symbol, info)

            return self._retry_on_error(fetch)
        self._validate_symbol(code)
        symbol = self._format_symbol(code)
        info = self._sb.summary(
            symbol, _SUMMARY_MODULES, attempts=self.retry_count, delay=self.retry_delay
        )
        if len(info) < 5:
            raise DataNotFoundError(f"no company info for {symbol}", "DATA_NOT_FOUND")
        return _original.company_dict(symbol, info)

    # -- many symbols ----------------------------------------------------------------------
    def _per_code(self, method: Callable[[Any], Any], codes: Sequence[Any]) -> dict[Any, Any]:
        """The original's loop: ``method(code)`` for each code on up to 10 threads; a code
        whose call raises or returns nothing maps to None (and is logged)."""
        out: dict[Any, Any] = dict.fromkeys(codes)

        def one(code: Any) -> Any:
            try:
                return method(code)
            except Exception as exc:  # noqa: BLE001 - the original logged and went on
                logger.warning("fetch failed for %s: %s", code, exc)
                return None

        unique = list(dict.fromkeys(codes))
        with ThreadPoolExecutor(max_workers=max(1, min(len(unique), 10))) as pool:
            for code, value in zip(unique, pool.map(one, unique), strict=True):
                out[code] = value
        return out

    def bulk_get_historical_data(
        self,
        codes: Sequence[str],
        period: str = "1y",
        interval: str = "1d",
        batch_size: int = 50,
        delay: float = 0.1,
    ) -> dict[str, pd.DataFrame | None]:
        """History of many codes as one stockbatch engine job (see
        :meth:`BulkMethods.bulk_get_historical_data`); when ``get_historical_data`` is
        overridden (subclass or patch), that method is called per code instead."""
        if self._uses_own("get_historical_data"):
            return BulkMethods.bulk_get_historical_data(
                self, codes, period, interval, batch_size, delay
            )
        if not codes:
            return {}
        return self._per_code(lambda c: self.get_historical_data(c, period, interval), codes)

    def bulk_get_current_prices(
        self,
        codes: Sequence[str],
        batch_size: int = 100,
        delay: float = 0.05,
    ) -> dict[str, dict[str, Any] | None]:
        """Current prices of many codes through the batched quote endpoint (see
        :meth:`BulkMethods.bulk_get_current_prices`); when ``get_current_price`` is
        overridden (subclass or patch), that method is called per code instead."""
        if self._uses_own("get_current_price"):
            return BulkMethods.bulk_get_current_prices(self, codes, batch_size, delay)
        if not codes:
            return {}
        return self._per_code(self.get_current_price, codes)

    def get_realtime_data(self, codes: list[str]) -> dict[str, dict[str, Any]]:
        """Current prices of many codes; only the codes that succeeded are in the result
        (failures are logged). Built on ``get_current_price`` like the original when that is
        overridden or in yfinance mode (up to 10 calls at once), else one batched quote call
        per 100 codes.

        Raises
        ------
        InvalidSymbolError
            ``codes`` is not a non-empty list.
        """
        if not codes or not isinstance(codes, list):
            raise InvalidSymbolError(f"invalid list of codes: {codes!r}")
        if self.mode == "stockbatch" and self._uses_own("get_current_price"):
            return BulkMethods.get_realtime_data(self, codes)
        prices = self._per_code(self.get_current_price, codes)
        failed = [c for c, v in prices.items() if not v]
        if failed:
            logger.info("no current price for: %s", failed)
        return {c: v for c, v in prices.items() if v}


_SUMMARY_MODULES = (
    "quoteType",
    "assetProfile",
    "summaryDetail",
    "financialData",
    "defaultKeyStatistics",
)
_OWN = {name: StockFetcher.__dict__[name] for name in set(_BUILT_ON.values())}
