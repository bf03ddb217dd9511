"""The original StockFetcher's own logic, for both modes: its retry loop and error mapping, its
date-range check, its company-info fields, and (``mode="yfinance"``) its single-symbol calls
through ``yfinance.Ticker``, line for line in behaviour (messages in English).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable
from typing import Any

from .._errors import ProviderUnavailable, RateLimited
from ._errors import DataNotFoundError, InvalidSymbolError, NetworkError, StockFetcherError

__all__ = [
    "retry_on_error",
    "is_retryable_error",
    "handle_error",
    "validate_date_range",
    "company_dict",
    "price_dict_from_info",
    "yfinance_module",
]

_log = logging.getLogger("stockbatch.compat")

_RETRYABLE_STATUS = (500, 502, 503, 504, 408, 429)
_RETRYABLE_WORDS = (
    "connection",
    "timeout",
    "network",
    "temporary",
    "read timeout",
    "connection timeout",
    "500",
    "502",
    "503",
    "504",
)


def _requests_exceptions() -> Any:
    try:
        import requests.exceptions as req_exc
    except ImportError:  # pragma: no cover - requests comes with yfinance
        return None
    return req_exc


def is_retryable_error(error: BaseException) -> bool:
    """The original's rule: connection errors and timeouts, HTTP 5xx / 408 / 429, else any
    message mentioning connection, timeout, network, temporary or a 50x code. Its own typed
    errors (not found, invalid) are never retried."""
    if isinstance(error, NetworkError | ProviderUnavailable | RateLimited):
        return True
    if isinstance(error, StockFetcherError):
        return False
    req_exc = _requests_exceptions()
    if req_exc is not None:
        if isinstance(error, req_exc.ConnectionError | req_exc.Timeout):
            return True
        if isinstance(error, req_exc.HTTPError):
            response = getattr(error, "response", None)
            if response is not None:
                return response.status_code in _RETRYABLE_STATUS
    message = str(error).lower()
    return any(word in message for word in _RETRYABLE_WORDS)


def handle_error(error: BaseException | None) -> StockFetcherError:
    """The original's ``_handle_error``: its own exceptions as they are; connection errors,
    timeouts and HTTP errors -> NetworkError; else by the message: connection / network /
    timeout -> NetworkError, not found / invalid -> InvalidSymbolError, no data / empty ->
    DataNotFoundError, anything else StockFetcherError. Returns the exception to raise."""
    if isinstance(error, StockFetcherError):
        return error
    details = {"original_error": str(error)}
    req_exc = _requests_exceptions()
    if req_exc is not None and isinstance(
        error, req_exc.ConnectionError | req_exc.Timeout | req_exc.HTTPError
    ):
        return NetworkError(f"network error: {error}", "NETWORK_ERROR", details)
    message = str(error).lower()
    if "connection" in message or "network" in message or "timeout" in message:
        return NetworkError(f"network error: {error}", "NETWORK_ERROR", details)
    if "not found" in message or "invalid" in message:
        return InvalidSymbolError(f"invalid symbol: {error}", "INVALID_SYMBOL", details)
    if "no data" in message or "empty" in message:
        return DataNotFoundError(f"data not found: {error}", "DATA_NOT_FOUND", details)
    return StockFetcherError(f"stock data fetch failed: {error}", "STOCK_FETCH_ERROR", details)


def retry_on_error(fetcher: Any, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The original's ``_retry_on_error``: up to ``retry_count`` calls; a retryable error waits
    ``retry_delay * (attempt + 1)`` seconds, any other ends the loop; the last error goes
    through ``fetcher._handle_error``."""
    last: BaseException | None = None
    count = fetcher.retry_count
    for attempt in range(count):
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped by _handle_error, as the original
            last = exc
            if fetcher._is_retryable_error(exc):
                if attempt < count - 1:
                    _log.warning("retry %d/%d: %s", attempt + 1, count, exc)
                    time.sleep(fetcher.retry_delay * (attempt + 1))
                    continue
            else:
                break
    fetcher._handle_error(last)
    return None  # _handle_error raised; a custom one that did not: like the original, None


def _as_datetime(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return _dt.datetime.strptime(value, "%Y-%m-%d")
        except ValueError as exc:
            raise InvalidSymbolError(f"invalid {what} date format: {value}") from exc
    return value


def validate_date_range(start_date: Any, end_date: Any) -> tuple[Any, Any]:
    """The original's ``_validate_date_range``: ``YYYY-MM-DD`` strings or datetimes, start
    before end (InvalidSymbolError otherwise); an end in the future is only logged. Returns
    both as datetimes (strings parsed)."""
    start = _as_datetime(start_date, "start")
    end = _as_datetime(end_date, "end")
    try:
        if start >= end:
            raise InvalidSymbolError(f"start date is not before end date: {start} >= {end}")
    except TypeError as exc:
        raise InvalidSymbolError(f"invalid date range: {start_date!r}, {end_date!r}") from exc
    if isinstance(end, _dt.datetime) and end.tzinfo is None and end > _dt.datetime.now():
        _log.warning("end date is in the future: %s", end)
    return start, end


def company_dict(symbol: str, info: dict[str, Any]) -> dict[str, Any]:
    """The original's company-info fields from a yfinance-style ``info`` dict."""
    return {
        "symbol": symbol,
        "name": info.get("longName") or info.get("shortName"),
        "sector": info.get("sector"),
        "industry": info.get("industry"),
        "market_cap": info.get("marketCap"),
        "employees": info.get("fullTimeEmployees"),
        "description": info.get("longBusinessSummary"),
        "website": info.get("website"),
        "headquarters": info.get("city"),
        "country": info.get("country"),
        "currency": info.get("currency"),
        "exchange": info.get("exchange"),
    }


def price_dict_from_info(symbol: str, info: dict[str, Any]) -> dict[str, Any]:
    """The original's ``get_current_price`` body after ``ticker.info``."""
    if not info or len(info) < 5:
        raise DataNotFoundError(f"no company info for {symbol}")
    current_price = info.get("currentPrice") or info.get("regularMarketPrice")
    previous_close = info.get("previousClose")
    if current_price is None:
        raise DataNotFoundError(f"no current price for {symbol}")
    change = current_price - previous_close if previous_close else 0
    change_percent = (change / previous_close * 100) if previous_close else 0
    return {
        "symbol": symbol,
        "current_price": current_price,
        "previous_close": previous_close,
        "change": change,
        "change_percent": change_percent,
        "volume": info.get("volume", 0),
        "market_cap": info.get("marketCap"),
        "timestamp": _dt.datetime.now(),
    }


def yfinance_module() -> Any:
    """The ``yf`` of :mod:`stockbatch.compat.stock_fetcher` (so ``patch("yfinance.Ticker")`` and
    ``patch("stockbatch.compat.stock_fetcher.yf")`` both reach the calls)."""
    from . import stock_fetcher

    yf = stock_fetcher.yf
    if yf is None:
        raise StockFetcherError(
            "mode='yfinance' needs yfinance: pip install 'stockbatch[yfinance]'"
        )
    return yf
