"""The one-call API: :func:`fetch`, :func:`ingest`, :func:`read`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

from ._errors import JobError
from .pipeline import BatchProcessingEngine, JobResult, Progress
from .sinks import Sink, connect

__all__ = ["fetch", "ingest", "read"]

DEFAULT_DB = "stockbatch.db"


def ingest(
    symbols: Iterable[str] | str,
    *,
    db: str | os.PathLike[str] | Sink = DEFAULT_DB,
    source: Any = None,
    base_url: str | None = None,
    interval: str = "1d",
    period: str | None = None,
    start: Any = None,
    end: Any = None,
    mode: str = "upsert",
    table: str | None = None,
    indicators: Iterable[str] | str | None = None,
    validate: bool = True,
    spike_threshold: float | None = None,
    on_progress: Callable[[Progress], Any] | None = None,
    job_id: str | None = None,
    timeout: float | None = None,
    concurrency: int | None = None,
) -> JobResult:
    """Fetch bars for ``symbols``, check them, and store them in ``db``.

    Parameters
    ----------
    symbols : str or iterable of str
        Provider symbols (``"AAPL"``, ``"7203.T"``); duplicates are dropped.
    db : path, URI or Sink
        ``stockbatch.db`` (default, SQLite), ``sqlite:///…``, ``postgresql://…``,
        ``duckdb:///…``, ``mysql://…``, or an open :class:`~stockbatch.sinks.Sink`.
    source : name, Source, or list of them
        ``"yahoo"`` (default), ``"yfinance"``, ``"alphavantage"``, a Source instance, or a
        list of them (failover in that order).
    base_url : str, optional
        Base URL for a source given by name (a fixture server, a proxy).
    interval : str
        ``1m`` … ``1h``, ``1d``, ``1wk``, ``1mo``.
    period : str, optional
        ``5d``, ``1mo``, ``1y``, ``max`` … counted back from now; or ``start``/``end``
        (datetime, date, ISO text or epoch seconds; ``[start, end)``). Default ``1mo``.
    mode : str
        ``upsert`` (default: re-running is idempotent), ``insert_new``, ``append``,
        ``create``, ``replace``, ``create_append``.
    indicators : spec strings, optional
        ``["sma20", "rsi14", "macd"]`` …, computed per symbol, returned in
        ``result.indicators`` and stored in the ``indicators`` table (one row per bar and
        indicator, upserted; ``result.stats["indicator_values_stored"]``).
    validate, spike_threshold
        Check the bars (rejected rows go to the quarantine table with their reasons).
    on_progress : callable, optional
        Receives :class:`~stockbatch.pipeline.Progress` snapshots.
    timeout : float, optional
        Seconds for the whole job.
    concurrency : int, optional
        Provider requests in flight at once (default: the source's own).

    Returns
    -------
    JobResult
        Never raises for a symbol's failure: ``result.success`` is False and
        ``result.symbols[s].error`` says why; every other symbol is stored.

    Raises
    ------
    ValueError, TypeError
        Bad options (symbols, period, mode, indicator specs).
    """
    with BatchProcessingEngine(max_concurrent_jobs=1) as engine:
        job = engine.create_stock_data_pipeline_job(
            symbols,
            source=source,
            base_url=base_url,
            sink=db,
            interval=interval,
            period=period,
            start=start,
            end=end,
            mode=mode,
            table=table,
            indicators=indicators,
            validate=validate,
            spike_threshold=spike_threshold,
            timeout=timeout,
            on_progress=on_progress,
            job_id=job_id,
            concurrency=concurrency,
        )
        return engine.run(job)


def fetch(
    symbols: Iterable[str] | str,
    *,
    source: Any = None,
    base_url: str | None = None,
    interval: str = "1d",
    period: str | None = None,
    start: Any = None,
    end: Any = None,
    errors: str = "raise",
    timeout: float | None = None,
) -> pa.Table:
    """Fetch bars for ``symbols`` into one table (canonical ``BARS`` schema, sorted by
    symbol, interval, ts, duplicate keys dropped). Nothing is stored or filtered: check the
    bars with :func:`stockbatch.validate`. The provider's metadata per symbol (exchange time
    zone, currency, dividends, splits) is the table's ``stockbatch.meta`` schema metadata
    (JSON), which a sink's ``ingest`` reads to date each bar in its exchange's zone.

    ``errors="raise"`` (default): if any symbol failed, raise :class:`~stockbatch.JobError`
    whose ``failures`` maps each failed symbol to its reason and whose ``table`` holds the
    bars of the others. ``errors="ignore"``: return what was fetched. Other options are
    those of :func:`ingest`.
    """
    if errors not in ("raise", "ignore"):
        raise ValueError("errors must be 'raise' or 'ignore'")
    with BatchProcessingEngine(max_concurrent_jobs=1) as engine:
        job = engine.create_stock_data_pipeline_job(
            symbols,
            source=source,
            base_url=base_url,
            store_data=False,
            validate=False,
            interval=interval,
            period=period,
            start=start,
            end=end,
            timeout=timeout,
        )
        result = engine.run(job)
    if errors == "raise" and not result.success:
        failures = {
            s: result.symbols[s].error or result.symbols[s].status for s in result.failed_symbols
        }
        shown = "; ".join(f"{s}: {e}" for s, e in list(failures.items())[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise JobError(
            f"{len(failures)} of {len(result.symbols)} symbols failed: {shown}{more}"
            if failures
            else (result.error or result.status),
            failures=failures,
            table=result.table,
            result=result,
        )
    return result.table


def read(
    db: str | os.PathLike[str] | Sink = DEFAULT_DB,
    symbols: Iterable[str] | str | None = None,
    *,
    interval: str | None = None,
    start: Any = None,
    end: Any = None,
    table: str | None = None,
    kind: str = "bars",
) -> pa.Table:
    """Stored bars (or quotes, ``kind="quotes"``) from ``db`` in the canonical schema,
    timestamps in UTC, ordered by key. ``result.to_pandas()`` or
    ``polars.from_arrow(result)`` hand it over.

    ``start`` is inclusive, ``end`` exclusive. A date (``datetime.date`` or
    ``"YYYY-MM-DD"``) is the exchange's trading date for daily and longer bars and the
    exchange-local day for intraday bars (``"2026-11-30"`` finds Tokyo's bar of that day,
    stored at ``2026-11-29T15:00Z``); a datetime or ISO text with a time is a UTC instant
    (naive: UTC).

    ``kind="actions"``: the stored dividends and splits (symbol, date, ts, dividend,
    split_ratio, source; ``start``/``end`` select by date). ``kind="symbols"``: one row
    per symbol (exchange, timezone, currency, instrument_type, first_bar, last_bar,
    last_ingested, source). ``kind="indicators"``: the values stored by
    ``ingest(indicators=…)`` (symbol, interval, name, ts, value; ``start``/``end`` by ts).
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    # a Sink given is the caller's: read it and leave it open
    with contextlib.nullcontext(db) if isinstance(db, Sink) else connect(db) as sink:
        return sink.read(
            table=table, kind=kind, symbols=symbols, interval=interval, start=start, end=end
        )
