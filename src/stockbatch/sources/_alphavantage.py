"""Alpha Vantage TIME_SERIES_DAILY / TIME_SERIES_INTRADAY over aiohttp (:mod:`._http`).

The API key is taken from ``api_key=`` or ``ALPHAVANTAGE_API_KEY`` and never appears in a
repr, an error message or a log line (URLs are redacted before ``stockbatch.http`` logs them;
the HTTP libraries' loggers are filtered too).
"""

from __future__ import annotations

import logging
import os
import re
import time
import weakref
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from yarl import URL

from .. import _backend
from .._arrow import scalar
from .._errors import ProviderError, ProviderUnavailable, RateLimited
from .._redact import redact
from .._time import period_days
from ._base import HTTPOptions, HTTPSource, window

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["AlphaVantageSource"]

_decode = _backend.load("decode")
_INTRADAY = {
    "1m": "1min",
    "5m": "5min",
    "15m": "15min",
    "30m": "30min",
    "60m": "60min",
    "1h": "60min",
}
#: Alpha Vantage symbols: IBM, TSCO.LON, SHOP.TRT, 600104.SHH, BRK-B.
_AV_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9.\-_]{0,31}")


def _in_window(batch: pa.RecordBatch, interval: str, p1: int, p2: int) -> pa.Array:
    """Which bars of ``batch`` fall in ``[p1, p2)`` (epoch seconds).

    An intraday bar is in when its instant is. A daily bar is stamped at its exchange's
    midnight, up to 14 h before the UTC day it belongs to (Tokyo's 1 Oct is 30 Sep 15:00
    UTC): it is in when its local wall time is, so ``start=2026-10-01, end=2026-10-06``
    keeps the trading days 1-5 Oct in every zone, as Yahoo's chart answers them.
    """
    ts = batch.column("ts")
    tz = (batch.schema.metadata or {}).get(b"stockbatch.tz")
    if interval == "1d" and tz:
        ts = pc.local_timestamp(ts.cast(pa.timestamp("us", tz=tz.decode())))
    return pc.and_(
        pc.greater_equal(ts, scalar(p1 * 1_000_000, ts.type)),
        pc.less(ts, scalar(p2 * 1_000_000, ts.type)),
    )


class _RedactKeys(logging.Filter):
    """Masks secrets in the HTTP libraries' log records (they may log request URLs):
    ``apikey=…`` in any encoding, credential headers, URI passwords, and the keys of live
    AlphaVantageSource objects wherever they appear (:func:`stockbatch._redact.redact`)."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

    def _secrets(self) -> list[str]:
        return [k for src in list(self.keys.values()) for k in src._secrets()]

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets()
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(
                redact(a, secrets) if isinstance(a, (str, URL, bytes)) else a for a in args
            )
        if isinstance(record.msg, str):
            record.msg = redact(record.msg, secrets)
        return True


_FILTER = _RedactKeys()
# a logger's filters do not apply to its children's records: name each logger that logs
for _name in (
    "stockbatch.http",
    "aiohttp.client",
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
):
    if _FILTER not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_FILTER)


class AlphaVantageSource(HTTPSource):
    """Bars from Alpha Vantage (one symbol per call).

    Parameters
    ----------
    api_key : str, optional
        Default: the ``ALPHAVANTAGE_API_KEY`` environment variable.
    base_url : str
        ``https://www.alphavantage.co`` (the fixture server's ``.url`` in tests).
    rate, burst : float, int
        Free-tier safe by default: 5 calls a minute, no burst.
    outputsize : {"auto", "compact", "full"}
        ``auto`` asks for ``full`` only when the window reaches past the last 100 bars.
    timeout, deadline, max_bytes, max_redirects, headers, ssl, proxy, client
        As for :class:`YahooChartSource` (``client``: your own ``aiohttp.ClientSession``).

    Symbols (:meth:`normalize_symbol`): case-insensitive at Alpha Vantage, upper-cased here;
    1-32 characters of ``A-Z 0-9 . - _`` starting with a letter or digit (``IBM``,
    ``TSCO.LON``, ``600104.SHH``). The symbol travels as one query value.
    """

    name = "alphavantage"
    intervals = ("1m", "5m", "15m", "30m", "60m", "1h", "1d")
    symbol_rule = "1-32 of A-Z 0-9 . - _, starting with a letter or digit; upper-cased"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str = "https://www.alphavantage.co",
        rate: float = 5 / 60,
        burst: int = 1,
        outputsize: str = "auto",
        timeout: float = 15.0,
        concurrency: int = 2,
        **options: Unpack[HTTPOptions],
    ) -> None:
        super().__init__(
            rate=rate, burst=burst, timeout=timeout, concurrency=concurrency, **options
        )
        key = api_key if api_key is not None else os.environ.get("ALPHAVANTAGE_API_KEY")
        if not key:
            raise ProviderError(
                "alphavantage: no API key: pass api_key= or set ALPHAVANTAGE_API_KEY",
                provider=self.name,
            )
        self.__key = key
        _FILTER.keys[id(self)] = self
        self.base_url = base_url.rstrip("/")
        self.outputsize = outputsize

    def __repr__(self) -> str:
        return f"<AlphaVantageSource {self.base_url!r} api_key=***>"

    def __getstate__(self):
        raise TypeError("AlphaVantageSource holds a secret and is not picklable")

    def _secrets(self) -> tuple[str, ...]:
        return (self.__key,)

    def normalize_symbol(self, symbol: str) -> str:
        """``symbol`` upper-cased and stripped; ValueError unless it fits ``symbol_rule``."""
        return self._check_symbol(symbol, _AV_SYMBOL)

    async def fetch_history(
        self, symbol: str, *, interval: str = "1d", start=None, end=None, period: str | None = None
    ) -> pa.RecordBatch:
        symbol = self.normalize_symbol(symbol)
        if interval == "1d":
            params = {"function": "TIME_SERIES_DAILY", "symbol": symbol}
        elif interval in _INTRADAY:
            params = {
                "function": "TIME_SERIES_INTRADAY",
                "symbol": symbol,
                "interval": _INTRADAY[interval],
            }
        else:
            raise ProviderError(
                f"alphavantage: interval {interval!r} is not served (1d, {', '.join(_INTRADAY)})",
                provider=self.name,
                symbol=symbol,
            )
        p1, p2, period = window(interval, start, end, period)
        asked = f"{p1}|{p2}|{period}"  # the cache key: not the clock-made bounds below
        if p1 is None:
            p2 = int(time.time())
            p1 = p2 - period_days(period) * 86400
        size = self.outputsize
        if size == "auto":
            span_days = (p2 - p1) / 86400
            size = (
                "full"
                if (interval == "1d" and span_days > 140) or (interval != "1d" and span_days > 1)
                else "compact"
            )
        params["outputsize"] = size
        key = f"{self.name}|{symbol}|{interval}|{size}|{asked}"

        async def run() -> pa.RecordBatch:
            try:
                resp = await self._http.get(
                    f"{self.base_url}/query", params={**params, "apikey": self.__key}, symbol=symbol
                )
            except ProviderError as exc:  # the layer's messages never hold the URL's query
                raise self._scrub(exc) from None
            if resp.status == 429:
                raise RateLimited(
                    f"alphavantage: {symbol}: HTTP 429",
                    provider=self.name,
                    symbol=symbol,
                    status=429,
                    retry_after=60.0,
                )
            if resp.status >= 500:
                raise ProviderUnavailable(
                    f"alphavantage: {symbol}: HTTP {resp.status}",
                    provider=self.name,
                    symbol=symbol,
                    status=resp.status,
                )
            try:
                batch = _decode.decode_alphavantage(
                    resp.body, symbol=symbol, interval=interval, source=self.name
                )
            except ProviderError as exc:
                raise self._scrub(exc) from None
            # Alpha Vantage answers its whole series (compact: 100 bars, full: 20 years):
            # cut to [p1, p2) here. Bars outside are expected, not a provider fault, so they
            # are not counted in stats.out_of_window (1969 / 9999 stamps go with them).
            return batch.filter(_in_window(batch, interval, p1, p2))

        return await self._call(key, symbol, run)
