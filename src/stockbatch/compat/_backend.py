"""What StockFetcher and the accelerate() adapter share: symbol rules, the calls into stockbatch
(one :class:`~stockbatch.pipeline.BatchProcessingEngine` per backend: bulk history runs as an
engine job, every other source call on the engine's I/O loop), and the mapping of stockbatch's
errors onto the StockFetcher exceptions."""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import re
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

import pyarrow as pa

from .._errors import (
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    StockbatchError,
    SymbolNotFound,
)
from .._time import PERIODS, period_days
from .._types import INTERVALS
from ..sources import RetryPolicy
from ._errors import DataNotFoundError, InvalidSymbolError, NetworkError, StockFetcherError

T = TypeVar("T")
_log = logging.getLogger("stockbatch.compat")

# Yahoo symbols: letters, digits and . - ^ = (indices ^N225, FX USDJPY=X, classes BRK-B).
# Anything else (spaces, slashes, '..') never reaches a URL.
_SYMBOL = re.compile(r"^[A-Za-z0-9^][A-Za-z0-9.\-^=]{0,31}$")
# Tokyo Stock Exchange codes: 4 characters, digits, with letters allowed in the 2nd and 4th
# place since 2024 (e.g. 7203, 130A).
_TSE_CODE = re.compile(r"^[1-9][0-9A-Z][0-9][0-9A-Z]$")

VALID_PERIODS = PERIODS
VALID_INTERVALS = INTERVALS


def tse_suffix_rule(suffix: str = ".T") -> Callable[[str], str]:
    """The default code -> symbol rule: 4-character TSE codes get ``suffix``
    (``"7203"`` -> ``"7203.T"``); anything else (``"AAPL"``, ``"6758.T"``) is left as is."""

    def rule(code: str) -> str:
        return f"{code}{suffix}" if _TSE_CODE.match(code) else code

    rule.__name__ = f"tse_suffix_rule({suffix!r})"
    return rule


def legacy_suffix_rule(market: str = "T") -> Callable[[str], str]:
    """The day_trade original's rule: every code without a dot gets ``.{market}``
    (so ``"AAPL"`` became ``"AAPL.T"``)."""

    def rule(code: str) -> str:
        return code if "." in code else f"{code}.{market}"

    rule.__name__ = f"legacy_suffix_rule({market!r})"
    return rule


def validate_original(code: Any) -> str:
    """The original's ``_validate_symbol``: a non-empty string of 2+ characters (``EMPTY_TEST``
    and ``72 03`` pass; a symbol the provider cannot have then fails as DataNotFoundError,
    without a request)."""
    if not code or not isinstance(code, str):
        raise InvalidSymbolError(f"invalid symbol: {code!r}")
    if len(code) < 2:
        raise InvalidSymbolError(f"symbol too short: {code!r}")
    return code


def validate_code(code: Any) -> str:
    """The strict rule (``symbols="strict"``): the original's checks plus a character check,
    so a malformed code is an InvalidSymbolError before anything is fetched."""
    validate_original(code)
    if not _SYMBOL.match(code):
        raise InvalidSymbolError(f"malformed symbol: {code!r}")
    return code


#: code checks by name: ``"original"`` (the default) and ``"strict"``.
SYMBOL_RULES = {"original": validate_original, "strict": validate_code}


class LinearRetry(RetryPolicy):
    """The original's retry schedule: ``attempts`` tries in all, the n-th retry after
    ``base * n`` seconds (``retry_delay * (attempt + 1)``), no jitter; only connection
    failures, timeouts, HTTP 5xx and 429 are retried. A longer Retry-After is waited for (up to
    ``max_retry_after``)."""

    def __init__(self, attempts: int, delay: float):
        super().__init__(
            attempts=max(1, int(attempts)),
            base=max(0.0, float(delay)),
            jitter=0.0,
            retry_on=(RateLimited, ProviderUnavailable),
        )

    def delay(self, attempt: int, error: BaseException | None = None) -> float | None:
        if attempt >= self.attempts or not isinstance(error, self.retry_on):
            return None
        wait = self.base * attempt
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            wait = max(wait, float(retry_after))
        return wait


def validate_period_interval(period: str, interval: str) -> None:
    """The original's period/interval checks, same messages in English, same exception."""
    if period not in VALID_PERIODS:
        raise InvalidSymbolError(f"invalid period: {period!r}; valid: {list(VALID_PERIODS)}")
    if interval not in VALID_INTERVALS:
        raise InvalidSymbolError(f"invalid interval: {interval!r}; valid: {list(VALID_INTERVALS)}")
    if interval.endswith("m") and not interval.endswith("mo") and period not in ("1d", "5d"):
        raise InvalidSymbolError("minute bars are only supported with period '1d' or '5d'")


def parse_date(value: Any, what: str) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        return value
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return _dt.datetime.strptime(value, "%Y-%m-%d")
        except ValueError as exc:
            raise InvalidSymbolError(
                f"invalid {what} date (expected YYYY-MM-DD): {value!r}"
            ) from exc
    raise InvalidSymbolError(f"invalid {what} date: {value!r}")


def translate(exc: BaseException, symbol: str | None = None) -> StockFetcherError:
    """stockbatch error -> the StockFetcher exception the original raised for that case."""
    where = f" for {symbol}" if symbol else ""
    if isinstance(exc, StockFetcherError):
        return exc
    if isinstance(exc, SymbolNotFound):
        return DataNotFoundError(f"no data{where}: {exc}", "DATA_NOT_FOUND")
    if isinstance(exc, (RateLimited, ProviderUnavailable)):
        # what the original's _handle_error made of connection errors, timeouts, 5xx, 429
        return NetworkError(f"network error{where}: {exc}", "NETWORK_ERROR")
    if isinstance(exc, ValueError):  # the source refuses the symbol: no provider can have it
        return DataNotFoundError(f"no data{where}: {exc}", "DATA_NOT_FOUND")
    if isinstance(exc, (ProviderError, StockbatchError)):
        return StockFetcherError(f"fetch failed{where}: {exc}")
    return StockFetcherError(f"fetch failed{where}: {type(exc).__name__}: {exc}")


def _period_start(period: str, now: float | None = None) -> int | str:
    """The first second of a Yahoo ``range=period`` request, as Yahoo (and yfinance, which
    sends ``range=``) count it: back from *now*. The engine, given the period itself, would
    count back from the next UTC midnight (so that a day's jobs coalesce), which can leave out
    the first bar yfinance returns; bulk history must equal the single calls and yfinance."""
    now = time.time() if now is None else now
    if period == "max":
        return 0
    if period == "ytd":
        year = _dt.datetime.fromtimestamp(now, _dt.timezone.utc).year
        return int(_dt.datetime(year, 1, 1, tzinfo=_dt.timezone.utc).timestamp())
    return int(now) - period_days(period) * 86400


def _make_source(source: Any, base_url: str | None, retry: RetryPolicy | None = None) -> Any:
    if source is not None:
        if base_url is not None:
            raise TypeError("pass either source= or base_url=, not both")
        return source
    from ..sources import YahooChartSource

    kw: dict[str, Any] = {"retry": retry} if retry is not None else {}
    return YahooChartSource(base_url=base_url, **kw) if base_url else YahooChartSource(**kw)


class EventTap:
    """Keeps the dividends and splits (``stockbatch.events`` metadata) of every history batch
    the source returns, per symbol: an engine job's table drops per-symbol metadata, and the
    bulk frames need them for Dividends / Stock Splits. Installed on the source instance
    (its ``fetch_history`` wrapped), removed by :meth:`remove`."""

    def __init__(self, source: Any):
        self.source = source
        self.events: dict[str, dict] = {}
        self._inner = getattr(source, "__dict__", {}).get("fetch_history")
        fetch = source.fetch_history

        async def fetch_history(symbol: str, **kw: Any) -> Any:
            batch = await fetch(symbol, **kw)
            self.record(batch)
            return batch

        self._wrapper = fetch_history
        try:
            source.fetch_history = fetch_history
            self.installed = True
        except (AttributeError, TypeError):  # slotted or frozen source: no actions in bulk
            self.installed = False

    def record(self, batch: Any) -> None:
        raw = (batch.schema.metadata or {}).get(b"stockbatch.events")
        if not raw or not batch.num_rows:
            return
        import json

        got = json.loads(raw)
        symbol = batch.column(batch.schema.get_field_index("symbol"))[0].as_py()
        have = self.events.setdefault(symbol, {"dividends": [], "splits": []})
        for kind in ("dividends", "splits"):
            seen = {row[0] for row in have[kind]}
            have[kind] = sorted(have[kind] + [r for r in got.get(kind, []) if r[0] not in seen])

    def remove(self) -> None:
        if not self.installed:
            return
        self.installed = False
        if getattr(self.source, "__dict__", {}).get("fetch_history") is not self._wrapper:
            return  # another tap went on top of this one: leave the chain as it is
        if self._inner is not None:
            self.source.fetch_history = self._inner
        else:
            self.source.__dict__.pop("fetch_history", None)


class Backend:
    """Symbol rule + source + engine: everything the compat classes need from stockbatch.

    The engine is made on first use and closed by :meth:`close`. All source calls run on its
    one I/O loop (an HTTP session must stay on the loop it was first used on), so single calls
    and bulk jobs share the source's connection pool.
    """

    def __init__(
        self,
        *,
        source: Any = None,
        base_url: str | None = None,
        suffix_rule: Callable[[str], str] | None = None,
        market_suffix: str | None = ".T",
        tz_of: Callable[[str], str] | None = None,
        timeout: float | None = 120.0,
        retry: RetryPolicy | None = None,
        strict: bool = True,
    ):
        from ._frames import exchange_tz

        self.source = _make_source(source, base_url, retry)
        self.strict = strict
        self.tap = EventTap(self.source)
        if suffix_rule is None:
            suffix_rule = tse_suffix_rule(market_suffix) if market_suffix else (lambda c: c)
        self.suffix_rule = suffix_rule
        self.tz_of = tz_of or exchange_tz
        self.timeout = timeout
        self._engine: Any = None
        self._lock = threading.Lock()
        #: The last bulk-history job's result (figures: ``stats``, ``stages``, ``symbols``).
        self.last_result: Any = None

    @property
    def engine(self) -> Any:
        """The backend's :class:`~stockbatch.pipeline.BatchProcessingEngine` (made on first
        use)."""
        with self._lock:
            if self._engine is None:
                from ..pipeline import BatchProcessingEngine

                self._engine = BatchProcessingEngine(max_concurrent_jobs=4)
            return self._engine

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the engine's I/O loop; StockFetcherError after ``timeout``."""
        try:  # on the engine's own loop thread this raises RuntimeError (it would deadlock)
            return self.engine.run_coroutine(coro, self.timeout)
        except TimeoutError as exc:
            raise StockFetcherError(f"no answer within {self.timeout:g} s") from exc

    # -- symbols ---------------------------------------------------------------------------
    def check(self, code: Any) -> str:
        """``code`` if it passes the configured rule (strict or the original's), else
        InvalidSymbolError."""
        return validate_code(code) if self.strict else validate_original(code)

    def symbol(self, code: str) -> str:
        return self.check(self.suffix_rule(self.check(code)))

    def symbols(self, codes: Iterable[Any]) -> tuple[dict[Any, str], dict[Any, Exception]]:
        """code -> symbol for the valid ones, code -> error for the rest."""
        good: dict[Any, str] = {}
        bad: dict[Any, Exception] = {}
        for code in codes:
            try:
                good[code] = self.symbol(code)
            except (InvalidSymbolError, TypeError) as exc:
                bad[code] = exc
        return good, bad

    # -- data ------------------------------------------------------------------------------
    def history(self, symbol: str, **kw: Any) -> pa.RecordBatch | pa.Table:
        try:
            return self.run(self.source.fetch_history(symbol, **kw))
        except (StockbatchError, ValueError) as exc:
            raise translate(exc, symbol) from exc

    def summary(
        self, symbol: str, modules: Sequence[str], *, attempts: int = 1, delay: float = 0.0
    ) -> dict[str, Any]:
        """Yahoo's ``quoteSummary`` modules of ``symbol`` (company profile), flattened into one
        dict as yfinance's ``Ticker.info`` does. Connection failures, 5xx and 429 are retried
        ``attempts`` times in all, ``delay * n`` seconds before the n-th retry.

        Raises DataNotFoundError (unknown symbol), NetworkError, StockFetcherError."""
        import json

        from ..sources import YahooChartSource
        from ..sources._base import url_segment

        source = self.source
        if not isinstance(source, YahooChartSource):
            raise StockFetcherError(
                f"company info needs the Yahoo source, not {type(source).__name__} "
                "(or use mode='yfinance')"
            )
        try:
            name = source.normalize_symbol(symbol)
        except ValueError as exc:
            raise DataNotFoundError(f"no company info for {symbol}: {exc}") from exc
        path = f"/v10/finance/quoteSummary/{url_segment(name)}"
        params = {"modules": ",".join(modules), "formatted": "false", "symbol": name}
        for attempt in range(max(1, attempts)):
            try:
                resp = self.run(source._get(path, params, name))
                break
            except (ProviderUnavailable, RateLimited) as exc:
                if attempt + 1 >= max(1, attempts):
                    raise translate(exc, symbol) from exc
                _log.warning("retry %d/%d: %s", attempt + 1, attempts, exc)
                time.sleep(delay * (attempt + 1))
            except StockbatchError as exc:
                raise translate(exc, symbol) from exc
        try:
            doc = json.loads(resp.body)
            result = (doc.get("quoteSummary") or {}).get("result")
        except (ValueError, AttributeError) as exc:
            raise StockFetcherError(f"undecodable company info for {symbol}") from exc
        if resp.status == 404 or not result:
            raise DataNotFoundError(
                f"no company info for {symbol} (HTTP {resp.status})", "DATA_NOT_FOUND"
            )
        if resp.status != 200 or not isinstance(result[0], dict):
            raise StockFetcherError(f"company info for {symbol}: HTTP {resp.status}")
        info: dict[str, Any] = {}
        for module in result[0].values():
            if isinstance(module, dict):
                info.update({k: v for k, v in module.items() if v is not None})
        return info

    def histories(
        self,
        symbols: Sequence[str],
        *,
        interval: str = "1d",
        period: str | None = None,
        start: Any = None,
        end: Any = None,
    ) -> pa.Table:
        """Many symbols as one engine job (fetch on the engine's loop, coalesced, no storage,
        no validation); one Arrow table. Symbols that fail are left out (their reasons are
        logged)."""
        from ..schema import BARS

        if not symbols:
            return BARS.empty_table()
        engine = self.engine
        if period not in (None, "max") and start is None and end is None:
            start = _period_start(period)  # "max" stays a period: start 0 would read as unset
            period = None
        try:
            job = engine.create_stock_data_pipeline_job(
                list(symbols),
                source=self.source,
                store_data=False,
                validate=False,
                interval=interval,
                period=period,
                start=start,
                end=end,
                timeout=self.timeout,
            )
        except (ValueError, TypeError) as exc:
            raise InvalidSymbolError(str(exc)) from exc
        try:
            result = engine.run(job)
        except StockbatchError as exc:
            raise translate(exc) from exc
        self.last_result = result
        for symbol in result.failed_symbols:
            _log.warning("no history for %s: %s", symbol, result.symbols[symbol].error)
        if result.status == "timed_out":
            _log.warning("bulk history job %s: %s", result.job_id, result.error)
        elif result.status == "failed":
            raise StockFetcherError(f"bulk history failed: {result.error}")
        table = result.table
        if table is None or not table.num_rows:
            return BARS.empty_table()
        return table.replace_schema_metadata(BARS.metadata)

    def quotes(self, symbols: Sequence[str], *, chunk: int = 100) -> pa.Table:
        """Quotes through the batched quote endpoint, ``chunk`` symbols a call, calls
        concurrent."""
        chunk = max(1, int(chunk))
        parts = [list(symbols[i : i + chunk]) for i in range(0, len(symbols), chunk)]

        async def run() -> list[Any]:
            return await asyncio.gather(*(self.source.fetch_quotes(p) for p in parts))

        try:
            batches = self.run(run()) if parts else []
        except StockbatchError as exc:
            raise translate(exc) from exc
        from ..schema import QUOTES

        tables = [b if isinstance(b, pa.Table) else pa.Table.from_batches([b]) for b in batches]
        return pa.concat_tables(tables) if tables else QUOTES.empty_table()

    def close(self) -> None:
        self.tap.remove()
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is None:
            return
        aclose = getattr(self.source, "aclose", None)
        if aclose is not None and engine._io.alive:
            try:
                engine.run_coroutine(aclose(), 10)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        engine.close()
