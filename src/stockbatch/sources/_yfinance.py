"""yfinance as a source, for users who rely on it: ``yf.download`` converted to BARS.

The conversion fixes what hurts yfinance users: no MultiIndex (one batch per symbol), UTC
timestamps (never naive), ``adj_close`` kept (``auto_adjust=False``), all-NaN rows dropped, and
a failed ticker reported as an error for that symbol instead of a silent NaN column.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from .._errors import ProviderError, ProviderUnavailable, RateLimited, SymbolNotFound
from .._redact import redact
from .._time import to_epoch
from .._types import DAILY_INTERVALS
from ..schema import BARS
from ._base import (
    YAHOO_INTERVALS,
    Source,
    check_options,
    clip_window,
    normalize_daily,
    window,
)

__all__ = ["YFinanceSource", "rewriting_session"]

_YAHOO_SYMBOL = re.compile(r"[A-Z0-9^][A-Z0-9.\-_=^&]{0,31}")  # as YahooChartSource
_LOCK = threading.Lock()  # yf.download keeps shared state: one download at a time


def rewriting_session(base_url: str):
    """A ``requests.Session`` that sends every ``https://*.yahoo.com/...`` request to
    ``base_url`` instead (how tests and benchmarks point yfinance at the fixture server)."""
    import requests

    base = base_url.rstrip("/")

    class _Rewrite(requests.Session):
        def request(self, method, url, *args, **kwargs):
            parts = urlsplit(str(url))
            if parts.hostname and parts.hostname.endswith("yahoo.com"):
                url = base + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            return super().request(method, url, *args, **kwargs)

    return _Rewrite()


def _exchange_tz(symbol: str) -> str | None:
    """The exchange time zone yfinance learnt for ``symbol`` (its tz cache), if any."""
    try:
        from yfinance import cache

        tz = cache.get_tz_cache().lookup(symbol)
    except Exception:  # noqa: BLE001 - a cache problem only costs the zone
        return None
    return tz if isinstance(tz, str) and tz else None


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


class YFinanceSource(Source):
    """Bars through ``yfinance.download``.

    Parameters
    ----------
    base_url : str, optional
        Send yfinance's requests there instead of Yahoo (e.g. the fixture server).
    threads : bool or int
        yfinance's own download threads.
    session : optional
        A requests / curl_cffi session for yfinance (overrides ``base_url``).
    normalize : bool
        Stamp daily-or-coarser bars at 00:00 exchange time (as yfinance does).

    Symbols (:meth:`normalize_symbol`): Yahoo's rule (yfinance upper-cases tickers): 1-32
    characters of ``A-Z 0-9 . - _ = ^ &`` starting with a letter, digit or ``^``.
    """

    name = "yfinance"
    intervals = YAHOO_INTERVALS
    symbol_rule = "1-32 of A-Z 0-9 . - _ = ^ &, starting with a letter, digit or ^; upper-cased"

    def normalize_symbol(self, symbol: str) -> str:
        """``symbol`` upper-cased and stripped; ValueError unless it fits ``symbol_rule``."""
        return self._check_symbol(symbol, _YAHOO_SYMBOL)

    def __init__(
        self,
        *,
        base_url: str | None = None,
        threads=True,
        session=None,
        timeout: float = 10.0,
        normalize: bool = True,
        concurrency: int = 1,
    ) -> None:
        super().__init__()
        import yfinance  # noqa: F401 - fail early when it is not installed

        self.base_url = base_url
        self.threads = threads
        self.timeout = timeout
        self.normalize = normalize
        self.concurrency = concurrency
        self._session = session or (rewriting_session(base_url) if base_url else None)

    def __repr__(self) -> str:
        where = redact(self.base_url) if self.base_url is not None else None
        return f"<YFinanceSource base_url={where!r}>"

    def _download(self, symbols: list[str], interval: str, start, end, period):
        import yfinance as yf

        kwargs = dict(
            interval=interval,
            threads=self.threads,
            group_by="ticker",
            auto_adjust=False,
            actions=False,
            progress=False,
            ignore_tz=False,
            timeout=self.timeout,
            multi_level_index=True,
        )
        if self._session is not None:
            kwargs["session"] = self._session
        if start is not None or end is not None:
            kwargs["start"] = to_epoch(start)
            kwargs["end"] = to_epoch(end)
        else:
            kwargs["period"] = period or "1mo"
        handler = _Collect()
        logger = logging.getLogger("yfinance")
        with _LOCK:
            logger.addHandler(handler)
            try:
                self.stats.requests += len(symbols)
                frame = yf.download(symbols, **kwargs)
            except Exception as exc:  # noqa: BLE001 - yfinance raises many kinds
                name = type(exc).__name__
                cls = RateLimited if "RateLimit" in name else ProviderUnavailable
                raise cls(
                    f"yfinance: download failed ({name}: {redact(exc)})", provider=self.name
                ) from None
            finally:
                logger.removeHandler(handler)
        return frame, handler.messages

    def _convert(self, frame, symbols, interval, messages, bounds=(None, None, None)) -> dict:
        import pandas as pd

        out: dict = {}
        tickers = (
            set(frame.columns.get_level_values(0))
            if frame is not None and isinstance(frame.columns, pd.MultiIndex)
            else set()
        )
        for sym in symbols:
            key = sym.upper()
            said = [m for m in messages if f"'{key}'" in m]
            if key not in tickers:
                out[sym] = self._error(sym, said)
                continue
            df = frame[key]
            cols = {
                "Open": "open",
                "High": "high",
                "Low": "low",
                "Close": "close",
                "Adj Close": "adj_close",
                "Volume": "volume",
            }
            df = df[[c for c in cols if c in df.columns]].rename(columns=cols)
            df = df.dropna(how="all")
            if df.empty:
                out[sym] = self._error(sym, said)
                continue
            idx = df.index
            # yf.download converts every ticker's index to the most common zone of the
            # download: the frame's zone is the symbol's own only for a single ticker
            tz = _exchange_tz(key) or (
                str(idx.tz) if idx.tz is not None and len(tickers) == 1 else None
            )
            if idx.tz is None:
                idx = idx.tz_localize("UTC")
            ts = pa.array(idx.tz_convert("UTC").as_unit("us"), pa.timestamp("us", tz="UTC"))
            n = len(df)
            arrays = [pa.array([sym] * n, pa.string()), pa.array([interval] * n, pa.string()), ts]
            for name in ("open", "high", "low", "close", "adj_close"):
                arrays.append(
                    pa.array(df[name].to_numpy(dtype="float64"), pa.float64(), from_pandas=True)
                    if name in df
                    else pa.nulls(n, pa.float64())
                )
            vol = df["volume"] if "volume" in df else None
            arrays.append(
                pa.array(vol.astype("Int64"), pa.int64())
                if vol is not None
                else pa.nulls(n, pa.int64())
            )
            arrays.append(pa.array([self.name] * n, pa.string()))
            md = dict(BARS.metadata)
            if tz:  # unknown: no normalizing (yfinance already stamps days at 00:00 local)
                md[b"stockbatch.tz"] = tz.encode()
            batch = pa.RecordBatch.from_arrays(arrays, schema=BARS.with_metadata(md))
            if self.normalize and interval in DAILY_INTERVALS:
                batch = normalize_daily(batch)
            batch, dropped = clip_window(batch, interval, *bounds)
            self.stats.out_of_window += dropped
            self.stats.bars += batch.num_rows
            out[sym] = batch
        return out

    def _error(self, sym: str, said: list[str]) -> ProviderError:
        text = redact("; ".join(said) or "no data returned")
        if "RateLimit" in text or "Too Many Requests" in text:
            exc: ProviderError = RateLimited(
                f"yfinance: {sym}: {text}", provider=self.name, symbol=sym
            )
        elif (
            not said
            or "delisted" in text
            or "not found" in text.lower()
            or "No data found" in text
            or "TzMissing" in text
        ):
            exc = SymbolNotFound(f"yfinance: {sym}: {text}", provider=self.name, symbol=sym)
        else:
            exc = ProviderUnavailable(f"yfinance: {sym}: {text}", provider=self.name, symbol=sym)
        self.stats.error(exc)
        return exc

    async def _fetch(self, symbols: list[str], interval, start, end, period) -> dict:
        bounds = window(interval, start, end, period)
        frame, messages = await asyncio.to_thread(
            self._download, symbols, interval, start, end, period
        )
        return self._convert(frame, symbols, interval, messages, bounds)

    async def fetch_history(
        self, symbol: str, *, interval: str = "1d", start=None, end=None, period: str | None = None
    ) -> pa.RecordBatch:
        symbol = self.normalize_symbol(symbol)
        result = (await self._fetch([symbol], interval, start, end, period))[symbol]
        if isinstance(result, Exception):
            raise result
        return result

    async def fetch_many(
        self,
        symbols: Iterable[str],
        *,
        concurrency: int | None = None,
        interval: str = "1d",
        start: Any = None,
        end: Any = None,
        period: str | None = None,
        **options: Any,
    ) -> AsyncIterator[tuple[str, pa.RecordBatch | Exception]]:
        """One ``yf.download`` for all symbols (its own threads), then one item per symbol
        (normalised names; a refused symbol is a SymbolNotFound under the name given)."""
        if options:
            raise TypeError(f"unknown options {sorted(options)}")
        check_options(interval=interval, start=start, end=end, period=period)
        good, bad = self._normalize_many(symbols)
        for item in bad:
            yield item
        if not good:
            return
        try:
            results = await self._fetch(list(good), interval, start, end, period)
        except ProviderError as exc:  # the download as a whole failed: every symbol says so
            results = {s: exc for s in good}
        for sym in good:
            yield sym, results[sym]
