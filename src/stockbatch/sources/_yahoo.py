"""Yahoo Finance chart and quote API over aiohttp (keep-alive, bounded concurrency; see
:mod:`._http` for the byte caps, the deadline and the redirect rule)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .. import _backend
from .._arrow import empty_batch
from .._errors import ProviderError, ProviderUnavailable, RateLimited, SymbolNotFound
from .._redact import redact
from .._time import period_days
from .._types import DAILY_INTERVALS
from ..schema import QUOTES
from ._base import (
    YAHOO_INTERVALS,
    HTTPOptions,
    HTTPSource,
    clip_window,
    normalize_daily,
    url_segment,
    window,
)
from ._http import (
    HTTPResponse,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["YahooChartSource", "INTERVAL_WINDOW_DAYS"]

_decode = _backend.load("decode")

#: Widest window Yahoo serves per request for these intervals (days); wider asks are split.
INTERVAL_WINDOW_DAYS = {
    "1m": 8,
    "2m": 60,
    "5m": 60,
    "15m": 60,
    "30m": 60,
    "60m": 730,
    "90m": 60,
    "1h": 730,
}
#: Yahoo symbols: AAPL, BRK-B, 7203.T, ^GSPC, EURUSD=X, ES=F, M&M.NS, BTC-USD.
_YAHOO_SYMBOL = re.compile(r"[A-Z0-9^][A-Z0-9.\-_=^&]{0,31}")
_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def _retry_after(resp: HTTPResponse) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def split_window(p1: int, p2: int, interval: str) -> list[tuple[int, int]]:
    """``[p1, p2)`` cut into pieces no wider than Yahoo allows for ``interval``."""
    days = INTERVAL_WINDOW_DAYS.get(interval)
    if days is None or p2 - p1 <= days * 86400:
        return [(p1, p2)]
    step = days * 86400
    return [(a, min(a + step, p2)) for a in range(p1, p2, step)]


class YahooChartSource(HTTPSource):
    """Bars from Yahoo's ``/v8/finance/chart`` and quotes from ``/v7/finance/quote``.

    Parameters
    ----------
    base_url : str
        API root (``https://query2.finance.yahoo.com``; the fixture server's ``.url`` in tests).
    cookie_url : str, optional
        Where the session cookie comes from (Yahoo: ``https://fc.yahoo.com``; default
        ``base_url + "/"`` when ``base_url`` is given).
    crumb : {"auto", True, False}
        ``auto``: do the cookie/crumb handshake when the server answers 401/403;
        ``True``: before the first call; ``False``: never.
    concurrency : int
        Requests in flight at once (also the connection pool size). The default 8 covers the
        default rate (50/s) at 100+ ms round trips; on aiohttp the CPU per request stays flat
        from 4 to 32 in flight (bench/test_http.py).
    events : bool
        Ask for dividends and splits (kept in the ``stockbatch.events`` schema metadata).
    normalize : bool
        Stamp daily-or-coarser bars at 00:00 exchange time (see ``normalize_daily``).
    rate, burst, retry, breaker, cache, timeout
        See :class:`ReliableSource` (``timeout``: seconds to connect, and without a byte).
    deadline : float
        Seconds for one whole request (connect, headers, whole body, redirects).
    max_bytes : int
        Cap of one response body, on the wire and after decompression (default 16 MiB).
    max_redirects : int
        Same-origin redirects followed; a redirect to another host/port/scheme fails.
    headers : mapping, optional
        Extra request headers.
    ssl : bool or ssl.SSLContext
        TLS verification: ``True`` (default CAs), ``False``, or your own context.
    proxy : str, optional
        Proxy URL; default: ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` from the environment.
    client : aiohttp.ClientSession, optional
        Your own session (used as is, never closed here); caps, deadline and the redirect rule
        still apply per request.

    Symbols (:meth:`normalize_symbol`): Yahoo's are case-insensitive and it answers them
    upper-case, so ``aapl`` is ``AAPL``; 1-32 characters of ``A-Z 0-9 . - _ = ^ &`` starting
    with a letter, a digit or ``^`` (``AAPL``, ``BRK-B``, ``7203.T``, ``^GSPC``,
    ``EURUSD=X``, ``M&M.NS``). ``/ ? # , %`` and whitespace cannot be in one.
    """

    name = "yahoo"
    intervals = YAHOO_INTERVALS
    max_symbols_per_call = 50
    symbol_rule = "1-32 of A-Z 0-9 . - _ = ^ &, starting with a letter, digit or ^; upper-cased"
    default_headers = {"User-Agent": _USER_AGENT, "Accept": "application/json,*/*"}

    def normalize_symbol(self, symbol: str) -> str:
        """``symbol`` upper-cased and stripped; ValueError unless it fits ``symbol_rule``."""
        return self._check_symbol(symbol, _YAHOO_SYMBOL)

    def __init__(
        self,
        *,
        base_url: str = "https://query2.finance.yahoo.com",
        cookie_url: str | None = None,
        crumb="auto",
        concurrency: int = 8,
        events: bool = True,
        normalize: bool = True,
        rate: float = 50.0,
        burst: int = 50,
        timeout: float = 10.0,
        **options: Unpack[HTTPOptions],
    ) -> None:
        super().__init__(
            rate=rate, burst=burst, timeout=timeout, concurrency=concurrency, **options
        )
        self.base_url = base_url.rstrip("/")
        if cookie_url is None:
            cookie_url = (
                "https://fc.yahoo.com"
                if "finance.yahoo.com" in self.base_url
                else self.base_url + "/"
            )
        self.cookie_url = cookie_url
        self.crumb_mode = crumb
        self.events = events
        self.normalize = normalize
        self._crumb: str | None = None
        self._crumb_lock = asyncio.Lock()
        self._sem = asyncio.Semaphore(concurrency)

    def __repr__(self) -> str:
        return f"<YahooChartSource {redact(self.base_url)!r}>"

    # -- cookie / crumb ------------------------------------------------------------------------
    async def _handshake(self, stale: str | None = None) -> str:
        async with self._crumb_lock:
            if self._crumb is not None and self._crumb != stale:
                return self._crumb  # another request did it meanwhile
            try:
                await self._http.get(self.cookie_url, what="cookie")
                resp = await self._http.get(f"{self.base_url}/v1/test/getcrumb", what="crumb")
            except ProviderError as exc:
                raise ProviderUnavailable(
                    f"yahoo: cookie/crumb handshake failed ({exc})", provider=self.name
                ) from None
            if resp.status == 429:
                raise RateLimited(
                    "yahoo: crumb request rate-limited",
                    provider=self.name,
                    status=429,
                    retry_after=_retry_after(resp),
                )
            text = resp.text().strip()
            if resp.status != 200 or not text or "<" in text:
                raise ProviderUnavailable(
                    f"yahoo: no crumb (HTTP {resp.status})", provider=self.name, status=resp.status
                )
            self._crumb = text
            self.stats.requests += 2
            return text

    async def _get(self, path: str, params: dict, symbol: str | None) -> HTTPResponse:
        """GET with the crumb when needed; maps 429/5xx to errors (transport failures, the
        deadline, the byte cap and refused redirects are mapped by :class:`HTTPClient`)."""
        if self.crumb_mode is True and self._crumb is None:
            await self._handshake()
        for attempt in range(2):
            p = dict(params)
            if self._crumb is not None:
                p["crumb"] = self._crumb
            async with self._sem:
                resp = await self._http.get(
                    self.base_url + path, params=p, symbol=symbol, what=symbol or "quote"
                )
            if resp.status in (401, 403) and self.crumb_mode and attempt == 0:
                await self._handshake(stale=self._crumb)
                continue
            break
        status = resp.status
        if status == 429:
            raise RateLimited(
                f"yahoo: {symbol or 'quote'}: HTTP 429 Too Many Requests",
                provider=self.name,
                symbol=symbol,
                status=status,
                retry_after=_retry_after(resp),
            )
        if status >= 500:
            raise ProviderUnavailable(
                f"yahoo: {symbol or 'quote'}: HTTP {status}",
                provider=self.name,
                symbol=symbol,
                status=status,
            )
        if status in (401, 403):
            raise ProviderUnavailable(
                f"yahoo: {symbol or 'quote'}: HTTP {status} (crumb refused)",
                provider=self.name,
                symbol=symbol,
                status=status,
            )
        return resp

    # -- history -------------------------------------------------------------------------------
    def _params(self, interval: str, p1, p2, period) -> dict:
        params = {"interval": interval, "includePrePost": "false"}
        if self.events:
            params["events"] = "div,splits"
        if p1 is not None:
            params["period1"] = str(p1)
            params["period2"] = str(p2)
        else:
            params["range"] = period
        return params

    async def _chart(self, symbol: str, params: dict, interval: str) -> pa.RecordBatch:
        resp = await self._get(f"/v8/finance/chart/{url_segment(symbol)}", params, symbol)
        status = resp.status
        content = resp.body
        if status == 404 and not content.lstrip().startswith(b"{"):
            raise SymbolNotFound(f"yahoo: {symbol}: HTTP 404", provider=self.name, symbol=symbol)
        # 200, and Yahoo's JSON error answers (404 Not Found, 400, 422): the decoder raises
        # SymbolNotFound / ProviderError / DecodeError as the payload says
        batch = _decode.decode_yahoo_chart(
            content, symbol=symbol, interval=interval, source=self.name
        )
        if status != 200:
            raise ProviderError(
                f"yahoo: {symbol}: HTTP {status}", provider=self.name, symbol=symbol
            )
        return batch

    async def fetch_history(
        self, symbol: str, *, interval: str = "1d", start=None, end=None, period: str | None = None
    ) -> pa.RecordBatch:
        symbol = self.normalize_symbol(symbol)
        p1, p2, period = window(interval, start, end, period)
        asked = (p1, p2, period)
        # keyed by what was asked (a period, not the clock-dependent bounds made from it below,
        # which would never hit the cache again)
        key = f"{self.name}|{symbol}|{interval}|{p1}|{p2}|{period}"
        limit = INTERVAL_WINDOW_DAYS.get(interval)
        if p1 is None and limit is not None and period_days(period) > limit:
            # a period wider than Yahoo serves at this interval: ask for explicit pieces
            p2 = int(time.time())
            p1 = p2 - period_days(period) * 86400
            period = None
        pieces = split_window(p1, p2, interval) if p1 is not None else [(None, None)]

        async def run() -> pa.RecordBatch:
            if len(pieces) == 1:
                a, b = pieces[0]
                batch = await self._chart(symbol, self._params(interval, a, b, period), interval)
            else:
                parts = await asyncio.gather(
                    *(
                        self._chart(symbol, self._params(interval, a, b, None), interval)
                        for a, b in pieces
                    )
                )
                batch = _concat(parts)
            if self.normalize and interval in DAILY_INTERVALS:
                batch = normalize_daily(batch)
            batch, dropped = clip_window(batch, interval, *asked)
            self.stats.out_of_window += dropped
            return batch

        return await self._call(key, symbol, run, calls=len(pieces))

    # -- quotes --------------------------------------------------------------------------------
    async def fetch_quotes(self, symbols: Iterable[str]) -> pa.RecordBatch:
        """Quotes of the (normalised) symbols; those Yahoo does not know — or cannot have,
        by :meth:`normalize_symbol` — are listed in ``stockbatch.missing``."""
        given = list(symbols)
        refused = []
        normal = []
        for s in given:
            try:
                normal.append(self.normalize_symbol(s))
            except ValueError:
                refused.append(str(s))
        symbols = list(dict.fromkeys(normal))
        chunks = [
            symbols[i : i + self.max_symbols_per_call]
            for i in range(0, len(symbols), self.max_symbols_per_call)
        ]

        async def one(chunk):
            async def run():
                resp = await self._get("/v7/finance/quote", {"symbols": ",".join(chunk)}, None)
                if resp.status != 200:
                    raise ProviderError(
                        f"yahoo: quote: HTTP {resp.status}", provider=self.name, status=resp.status
                    )
                return _decode.decode_yahoo_quote(resp.body, source=self.name)

            return await self._call(None, None, run)

        parts = await asyncio.gather(*(one(c) for c in chunks)) if chunks else []
        table = pa.Table.from_batches(parts, schema=QUOTES) if parts else QUOTES.empty_table()
        found = set(table.column("symbol").to_pylist())
        missing = [s for s in symbols if s not in found] + refused
        md = dict(QUOTES.metadata)
        if missing:
            md[b"stockbatch.missing"] = ",".join(missing).encode()
        table = table.replace_schema_metadata(md)
        batches = table.combine_chunks().to_batches()
        return batches[0] if batches else empty_batch(table.schema)


def _concat(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
    """Pieces of one symbol's window into one batch (schema metadata of the last piece, the
    events of all pieces)."""
    nonempty = [p for p in parts if p.num_rows] or parts[:1]
    schema = parts[-1].schema
    events: dict[str, list[Any]] = {"dividends": [], "splits": []}
    for p in parts:
        raw = (p.schema.metadata or {}).get(b"stockbatch.events")
        if raw:
            ev = json.loads(raw)
            events["dividends"] += ev["dividends"]
            events["splits"] += ev["splits"]
    md = dict(schema.metadata or {})
    md.pop(b"stockbatch.events", None)
    if events["dividends"] or events["splits"]:
        md[b"stockbatch.events"] = json.dumps(events, separators=(",", ":")).encode()
    table = pa.Table.from_batches([p.replace_schema_metadata(md) for p in nonempty])
    batches = table.combine_chunks().to_batches()
    return batches[0] if batches else nonempty[0].replace_schema_metadata(md)
