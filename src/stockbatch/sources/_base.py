"""The source interface every provider implements, and the reliability loop they share.

A source is an async object::

    async with YahooChartSource() as src:
        batch = await src.fetch_history("AAPL", interval="1d", period="1y")   # BARS schema
        quotes = await src.fetch_quotes(["AAPL", "MSFT"])                     # QUOTES schema
        async for symbol, result in src.fetch_many(["AAPL", "7203.T"], period="1y"):
            ...   # result is a RecordBatch or the ProviderError of that symbol

Errors are the ProviderError subclasses of :mod:`stockbatch._errors`: RateLimited,
SymbolNotFound, DecodeError, ProviderUnavailable. ``fetch_many`` never raises for one symbol:
it yields the exception in that symbol's place, so nothing is lost.

Symbols: :meth:`Source.normalize_symbol` is each provider's rule (Yahoo upper-cases). Every
fetch applies it, so bars come back under the normalised name; a symbol the provider cannot
have raises ValueError (``fetch_many`` yields a SymbolNotFound for it instead). In a URL a
symbol is always exactly one path segment or one query value (:func:`url_segment`).

Window: bars outside the asked window (see :func:`clip_window`) are dropped and counted in
``stats.out_of_window`` and in the batch's ``stockbatch.out_of_window`` schema metadata.
"""

from __future__ import annotations

import asyncio
import re
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._arrow import bools, empty_batch, fill_null, to_numpy
from .._errors import ProviderError, ProviderUnavailable, SymbolNotFound
from .._redact import redact
from .._time import period_days, to_epoch
from .._types import IntervalName
from ..schema import BARS
from ._http import DEFAULT_DEADLINE, DEFAULT_MAX_BYTES, DEFAULT_MAX_REDIRECTS, HTTPClient
from ._reliability import CircuitBreaker, ResponseCache, RetryPolicy, SourceStats, TokenBucket

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "Source",
    "ReliableSource",
    "HTTPSource",
    "HTTPOptions",
    "normalize_daily",
    "empty_bars",
    "url_segment",
    "clip_window",
    "INTERVAL_SECONDS",
    "YAHOO_INTERVALS",
    "OUT_OF_WINDOW_KEY",
]

#: What Yahoo's chart API serves (it answers 400 for 5d and 3mo bars).
YAHOO_INTERVALS: tuple[IntervalName, ...] = (
    "1m",
    "2m",
    "5m",
    "15m",
    "30m",
    "60m",
    "90m",
    "1h",
    "1d",
    "1wk",
    "1mo",
)


#: Length of one bar (seconds) per interval; a month/quarter at its longest.
INTERVAL_SECONDS = {
    "1m": 60,
    "2m": 120,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "60m": 3600,
    "90m": 5400,
    "1h": 3600,
    "1d": 86400,
    "5d": 5 * 86400,
    "1wk": 7 * 86400,
    "1mo": 31 * 86400,
    "3mo": 92 * 86400,
}
#: Schema metadata key of a batch from which out-of-window bars were dropped (their count).
OUT_OF_WINDOW_KEY = b"stockbatch.out_of_window"


def url_segment(symbol: str) -> str:
    """``symbol`` as exactly one URL path segment or query value: everything outside RFC 3986's
    unreserved set (``A-Z a-z 0-9 - . _ ~``) percent-encoded (UTF-8), and the dot segments
    ``.`` / ``..`` encoded too, so a symbol can never address another path or carry a query
    or a fragment."""
    seg = quote(symbol, safe="")
    if seg.strip(".") == "":
        seg = seg.replace(".", "%2E")
    return seg


def clip_window(
    batch: pa.RecordBatch,
    interval: str,
    p1: int | None,
    p2: int | None,
    period: str | None = None,
    *,
    now: float | None = None,
) -> tuple[pa.RecordBatch, int]:
    """Drop the bars outside the asked window; return ``(batch, dropped)``.

    Explicit bounds keep ``[p1 - slack, p2)``; a period keeps ``[now - period - slack,
    now + 1 day)`` (``max``: no lower bound). ``slack`` is one bar of ``interval`` but at
    least a day: providers round the start down to the bar that contains it (Yahoo answers
    the week / month holding ``period1``), and a daily bar keyed at the exchange's local
    midnight (``normalize_daily``) starts up to 14 h before the UTC date it belongs to. The
    end is exact for explicit bounds — a bar starting at or after ``end`` is outside
    whatever the zone; for a period the day after ``now`` allows for clock skew between us and
    the provider. Anything else (1969 or year-9999 stamps in a 2025 window) is dropped and
    counted; the count is also written as ``stockbatch.out_of_window`` schema metadata.
    """
    if batch.num_rows == 0:
        return batch, 0
    slack = max(INTERVAL_SECONDS.get(interval, 86400), 86400)
    hi: int | None
    if p1 is None and p2 is None:
        now = time.time() if now is None else now
        hi = int(now) + 86400
        lo = None if period == "max" else int(now) - period_days(period or "1mo") * 86400 - slack
    else:
        lo = None if p1 is None else p1 - slack
        hi = p2
    if lo is None and hi is None:
        return batch, 0
    ts = batch.column("ts").view(pa.int64())  # zero-copy: the same int64 microseconds
    # numpy on the buffer, not pyarrow.compute: its Python wrappers cost ~25-50 µs a call
    # (~190 µs for a payload with a bar outside the window, ~40 µs this way)
    us = to_numpy(fill_null(ts, 0))  # a null stamp is outside whatever it holds (below)
    if (
        not ts.null_count
        and (lo is None or us.min() >= lo * 1_000_000)
        and (hi is None or us.max() < hi * 1_000_000)
    ):
        return batch, 0  # the common case: every bar inside
    inside = to_numpy(ts.is_valid()) if ts.null_count else np.ones(len(us), dtype=bool)
    if lo is not None:
        inside &= us >= lo * 1_000_000
    if hi is not None:
        inside &= us < hi * 1_000_000
    at = np.flatnonzero(inside)
    kept = len(at)
    if kept and at[-1] - at[0] + 1 == kept:  # one run of rows (bars in time order)
        out = batch.slice(int(at[0]), kept)
    else:
        out = batch.filter(bools(inside))
    dropped = batch.num_rows - kept  # > 0: a null stamp or one outside got past the check
    md = dict(out.schema.metadata or {})
    md[OUT_OF_WINDOW_KEY] = str(dropped).encode()
    return out.replace_schema_metadata(md), dropped


def empty_bars(symbol: str, interval: str, source: str) -> pa.RecordBatch:
    return empty_batch(BARS)


def normalize_daily(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Stamp daily-or-coarser bars at 00:00 of the exchange's time zone (as UTC instants), so
    that every provider gives the same key (symbol, interval, ts) for the same trading day.

    The zone comes from the ``stockbatch.tz`` schema metadata; without it the batch is
    returned unchanged.
    """
    md = batch.schema.metadata or {}
    tz = md.get(b"stockbatch.tz")
    if not tz or batch.num_rows == 0:
        return batch
    ts = batch.column("ts")
    key = floored = None
    if ts.null_count == 0 and len(ts) <= _MIDNIGHTS_ROWS:
        key = (tz, ts.type, to_numpy(ts).tobytes())
        floored = _MIDNIGHTS.get(key)
    if floored is None:
        # view, not cast: the same int64 microseconds under the zone's type (cast re-validates)
        local = ts.view(pa.timestamp("us", tz=tz.decode()))
        floored = pc.floor_temporal(local, unit="day").view(ts.type)
        if key is not None:
            if len(_MIDNIGHTS) >= _MIDNIGHTS_MAX:
                _MIDNIGHTS.clear()  # the simplest bound (and safe beside other threads)
            _MIDNIGHTS[key] = floored
    return batch.set_column(batch.schema.get_field_index("ts"), batch.schema.field("ts"), floored)


#: normalize_daily's answers by (zone, type, stamps). The daily bars of one exchange carry the
#: same stamps (Yahoo stamps each session at its open), so the symbols of one window share one
#: zone conversion, the largest cost of stamping a daily payload; Arrow arrays are immutable,
#: so batches may share one. Bounded: 256 answers of at most 2,048 bars (8 years) each.
_MIDNIGHTS: dict[tuple[bytes, pa.DataType, bytes], pa.Array] = {}
_MIDNIGHTS_MAX = 256
_MIDNIGHTS_ROWS = 2048


class Source:
    """Base of every source.

    Subclasses set ``name`` and implement :meth:`fetch_history` (and :meth:`fetch_quotes`
    when ``max_symbols_per_call > 0``).

    Attributes
    ----------
    name : str
        Provider name, written in the ``source`` column.
    max_symbols_per_call : int
        Symbols one quote call may carry (0: quotes not served).
    concurrency : int
        Default bound of :meth:`fetch_many`.
    intervals : tuple of str or None
        The bar intervals the provider serves (None: not known, any is tried). Jobs check
        it when they are made.
    stats : SourceStats
        Requests, retries, errors, cache hits and saved calls.
    """

    name: str = "source"
    max_symbols_per_call: int = 0
    concurrency: int = 8
    intervals: tuple[str, ...] | None = None

    def __init__(self) -> None:
        self.stats = SourceStats()

    async def fetch_history(
        self, symbol: str, *, interval: str = "1d", start=None, end=None, period: str | None = None
    ) -> pa.RecordBatch:
        """Bars of one symbol as a BARS record batch, oldest first.

        Parameters
        ----------
        symbol : str
            Provider symbol, e.g. ``AAPL``, ``7203.T``.
        interval : str
            ``1m`` … ``1h``, ``1d``, ``1wk``, ``1mo``.
        start, end : datetime, date, ISO string or epoch seconds, optional
            Window ``[start, end)``; ``end`` defaults to now.
        period : str, optional
            ``1d``, ``5d``, ``1mo``, ``3mo``, ``6mo``, ``1y``, ``2y``, ``5y``, ``10y``, ``ytd``,
            ``max`` — instead of start/end (default ``1mo`` when neither is given).

        Raises
        ------
        SymbolNotFound, RateLimited, DecodeError, ProviderUnavailable
        """
        raise NotImplementedError

    async def fetch_quotes(self, symbols: Iterable[str]) -> pa.RecordBatch:
        """Latest quotes as a QUOTES record batch (symbols the provider does not know are
        absent; their names are in the ``stockbatch.missing`` schema metadata)."""
        raise ProviderError(f"{self.name} does not serve quotes", provider=self.name)

    def _secrets(self) -> tuple[str, ...]:
        """The secrets this source holds (API keys, credential header values): masked in
        every error it raises, in any encoding (:func:`stockbatch._redact.redact`)."""
        return ()

    def _scrub(self, exc: BaseException) -> BaseException:
        """``exc`` with its message redacted (in place; returned for ``raise``)."""
        text = str(exc)
        clean = redact(text, self._secrets())
        if clean != text:
            exc.args = (clean,)
        return exc

    #: The rule :meth:`normalize_symbol` enforces (said in its ValueError).
    symbol_rule = (
        "1-64 printable characters, no whitespace, not '.' or '..'; case is kept "
        "(surrounding whitespace is stripped)"
    )

    def normalize_symbol(self, symbol: str) -> str:
        """This provider's spelling of ``symbol``; ValueError for a symbol it cannot have.

        The base rule (generic sources): surrounding whitespace stripped, case kept; 1-64
        printable characters with no whitespace or control characters, and not ``.`` / ``..``.
        Providers tighten it (:class:`YahooChartSource` upper-cases). Idempotent:
        ``normalize_symbol(normalize_symbol(s)) == normalize_symbol(s)``.

        Raises
        ------
        ValueError
            Naming the symbol and the rule (``symbol_rule``).
        """
        if not isinstance(symbol, str):
            raise ValueError(
                f"{self.name}: symbol {symbol!r} is not a string (rule: {self.symbol_rule})"
            )
        s = symbol.strip()
        if (
            not (1 <= len(s) <= 64)
            or s in (".", "..")
            or any(ch.isspace() or unicodedata.category(ch)[0] in "CZ" for ch in s)
        ):
            raise ValueError(f"{self.name}: bad symbol {symbol!r} (rule: {self.symbol_rule})")
        return s

    def _check_symbol(self, symbol: str, pattern: re.Pattern, *, upper: bool = True) -> str:
        """Helper of provider rules: strip, optionally upper-case, then match ``pattern``."""
        if not isinstance(symbol, str):
            raise ValueError(
                f"{self.name}: symbol {symbol!r} is not a string (rule: {self.symbol_rule})"
            )
        s = symbol.strip()
        if upper:
            s = s.upper()
        if not pattern.fullmatch(s):
            raise ValueError(f"{self.name}: bad symbol {symbol!r} (rule: {self.symbol_rule})")
        return s

    def _normalize_many(self, symbols: Iterable[str]):
        """``(normalised unique symbols, [(given, SymbolNotFound)] for refused ones)``."""
        good: dict[str, None] = {}
        bad: list[tuple[str, ProviderError]] = []
        for given in symbols:
            try:
                good[self.normalize_symbol(given)] = None
            except ValueError as exc:
                err = SymbolNotFound(str(exc), provider=self.name, symbol=str(given))
                err.__cause__ = exc
                self.stats.error(err)
                bad.append((given, err))
        return list(good), bad

    async def fetch_many(
        self, symbols: Iterable[str], *, concurrency: int | None = None, **options
    ) -> AsyncIterator[tuple[str, pa.RecordBatch | Exception]]:
        """Fetch many symbols concurrently (at most ``concurrency`` at a time) and yield
        ``(symbol, batch_or_exception)`` as each completes. Options are those of
        :meth:`fetch_history`.

        Every distinct normalised symbol is yielded exactly once, under its normalised name
        (``aapl`` and ``AAPL`` are one symbol at Yahoo); a symbol the provider cannot have
        is yielded under the name given with a SymbolNotFound (naming the rule). An
        exception is yielded, never raised: a ProviderError, or — for a bug in a source —
        a ProviderError naming the unexpected exception (chained as ``__cause__``). Bad
        options (period, bounds) raise ValueError before anything is fetched."""
        check_options(**options)  # refuse bad options once, not once per symbol
        good, bad = self._normalize_many(symbols)
        for item in bad:
            yield item
        sem = asyncio.Semaphore(concurrency or self.concurrency)

        async def one(sym: str):
            async with sem:
                try:
                    return sym, await self.fetch_history(sym, **options)
                except ProviderError as exc:
                    return sym, exc
                except Exception as exc:  # noqa: BLE001 - one symbol's bug is its own answer
                    err = ProviderError(
                        f"{self.name}: {sym}: unexpected {type(exc).__name__}: "
                        f"{redact(exc, self._secrets())}",
                        provider=self.name,
                        symbol=sym,
                    )
                    err.__cause__ = exc
                    self.stats.error(err)
                    return sym, err

        tasks = [asyncio.ensure_future(one(s)) for s in good]
        try:
            for fut in asyncio.as_completed(tasks):
                yield await fut
        finally:
            for t in tasks:
                t.cancel()

    async def aclose(self) -> None:
        """Release connections."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


class ReliableSource(Source):
    """A source whose provider calls go through cache → circuit breaker → rate limiter →
    call with timeout → retries (backoff, jitter, Retry-After).

    Parameters
    ----------
    rate, burst : float, int
        Token bucket of this provider (calls per second, back-to-back allowance).
    retry : RetryPolicy, optional
    breaker : CircuitBreaker, optional
    cache : ResponseCache or bool, optional
        ``True`` for a default in-memory cache, ``False``/``None`` for none.
    timeout : float
        Seconds per request.
    """

    def __init__(
        self,
        *,
        rate: float = 50.0,
        burst: int = 20,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        cache: ResponseCache | bool | None = None,
        timeout: float = 10.0,
        concurrency: int = 8,
    ) -> None:
        super().__init__()
        self.limiter = TokenBucket(rate, burst)
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        # (not ``cache or None``: an empty ResponseCache has len 0 and would be dropped)
        self.cache = (
            ResponseCache()
            if cache is True
            else (None if cache is None or cache is False else cache)
        )
        self.timeout = timeout
        self.concurrency = concurrency

    async def _call(
        self,
        key: str | None,
        symbol: str | None,
        call: Callable[[], Awaitable[pa.RecordBatch]],
        *,
        calls: int = 1,
    ) -> pa.RecordBatch:
        """Run ``call`` reliably; ``key`` caches the result, ``calls`` is how many provider
        calls a cache hit saves."""
        if key is not None and self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.stats.cache_hits += 1
                self.stats.saved_calls += calls
                return hit
        attempt = 0
        last: ProviderError | None = None
        while True:
            attempt += 1
            try:
                self.breaker.check(self.name, symbol)
            except ProviderUnavailable as refused:
                self.stats.error(refused)
                if last is not None:
                    raise last from None  # this symbol's own failure says more than the refusal
                raise
            verdict = False  # did this call tell the breaker anything?
            try:
                await self.limiter.acquire()
                self.stats.requests += 1
                try:
                    batch = await call()
                except ProviderError as exc:
                    self._scrub(exc)  # one place: no source error leaves with a secret
                    self.stats.error(exc)
                    self.breaker.record(exc)  # only provider failures count against it
                    verdict = True
                    self.stats.circuit_opened = self.breaker.times_opened
                    if isinstance(exc, SymbolNotFound):
                        raise
                    wait = self.retry.delay(attempt, exc)
                    if wait is None:
                        raise
                    last = exc
                    self.stats.retries += 1
                    await asyncio.sleep(wait)
                    continue
                self.breaker.success()
                verdict = True
            finally:
                if not verdict:  # cancelled or a bug: never keep the half-open trial
                    self.breaker.release()
            self.stats.bars += batch.num_rows
            if key is not None and self.cache is not None:
                self.cache.put(key, batch)
            return batch


class HTTPOptions(TypedDict, total=False):
    """The options every HTTP source passes through with the same default (see
    :class:`HTTPSource`)."""

    retry: RetryPolicy | None
    breaker: CircuitBreaker | None
    cache: ResponseCache | bool | None
    deadline: float
    max_bytes: int
    max_redirects: int
    headers: Mapping[str, str] | None
    ssl: Any
    proxy: str | None
    client: aiohttp.ClientSession | None


class HTTPSource(ReliableSource):
    """A :class:`ReliableSource` that fetches over its own :class:`HTTPClient` (``_http``).

    Subclasses keep their provider's defaults for ``rate``, ``burst``, ``timeout`` and
    ``concurrency`` and pass the rest (:class:`HTTPOptions`) through, so those defaults live
    here once. The client names the source in errors and redacts the source's secrets
    (:meth:`Source._secrets`) from every URL it shows; ``default_headers`` go under the
    user's ``headers``. ``name`` must be set before this ``__init__`` runs.
    """

    default_headers: Mapping[str, str] = {}

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        timeout: float,
        concurrency: int,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        cache: ResponseCache | bool | None = None,
        deadline: float = DEFAULT_DEADLINE,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        headers: Mapping[str, str] | None = None,
        ssl: Any = True,
        proxy: str | None = None,
        client: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(
            rate=rate,
            burst=burst,
            retry=retry,
            breaker=breaker,
            cache=cache,
            timeout=timeout,
            concurrency=concurrency,
        )
        self._http = HTTPClient(
            name=self.name,
            concurrency=concurrency,
            timeout=timeout,
            deadline=deadline,
            max_bytes=max_bytes,
            max_redirects=max_redirects,
            headers={**self.default_headers, **dict(headers or {})},
            ssl=ssl,
            proxy=proxy,
            session=client,
            redact=lambda text: redact(text, self._secrets()),
        )

    async def aclose(self) -> None:
        await self._http.aclose()


def check_options(
    *, interval: str = "1d", start=None, end=None, period: str | None = None, **_other
) -> None:
    """ValueError / TypeError for fetch options no symbol could be fetched with."""
    window(interval, start, end, period)
    if period is not None:
        period_days(period)


def window(interval: str, start, end, period: str | None, *, now: float | None = None):
    """``(p1, p2, period)``: explicit epoch bounds, or None bounds and a period string."""
    p1, p2 = to_epoch(start), to_epoch(end)
    if p1 is None and p2 is None:
        return None, None, period or "1mo"
    now = time.time() if now is None else now
    if p2 is None:
        p2 = int(now)
    if p1 is None:
        p1 = p2 - period_days(period or "1mo") * 86400
    if p2 < p1:
        raise ValueError("end is before start")
    return p1, p2, None
