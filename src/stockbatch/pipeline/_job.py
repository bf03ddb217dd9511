"""A pipeline job: what to fetch, from where, and where to store it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._redact import redact
from .._time import period_days, to_epoch
from .._types import DAILY_INTERVALS, MODES, SOURCE_NAMES
from ..sinks import Sink
from ..sources import FailoverSource, Source
from ..sources._base import YAHOO_INTERVALS
from ._result import JobResult, Progress

__all__ = [
    "PipelineJob",
    "INTERVALS",
    "provider_symbols",
    "check_interval",
    "check_table_name",
    "resolve_source",
    "resolve_window",
]

_job_ids = itertools.count(1)


def resolve_source(source: Any = None, *, base_url: str | None = None) -> tuple[Source, bool]:
    """``(source, owned)`` for a name, a Source, or a list of them (failover in that order).

    ``owned`` is True when the source was made here (the engine then closes it).
    """
    from .. import sources

    if isinstance(source, Source):
        return source, False
    if source is None:
        source = "yahoo"
    if isinstance(source, str):
        kw: dict[str, Any] = {"base_url": base_url} if base_url else {}
        if source == "yfinance":
            return sources.YFinanceSource(**kw), True
        if base_url and _is_loopback(base_url):
            # the default rate limits protect against a remote provider's 429s; a server on
            # this machine (the fixture server, a local cache) needs none
            kw.update(rate=1e9, burst=1_000_000)
        if source == "yahoo":
            return sources.YahooChartSource(**kw), True
        if source == "alphavantage":
            return sources.AlphaVantageSource(**kw), True
        raise ValueError(
            f"unknown source {source!r}: use one of {', '.join(SOURCE_NAMES)} "
            "or a stockbatch.sources.Source"
        )
    if isinstance(source, Sequence):
        made = [resolve_source(s, base_url=base_url) for s in source]
        return FailoverSource([s for s, _ in made]), any(o for _, o in made)
    raise TypeError(
        f"source must be a name, a Source or a list of them, not {type(source).__name__}"
    )


#: Every bar interval some built-in source serves (the CLI's choices).
INTERVALS = YAHOO_INTERVALS


def check_interval(source: Source, interval: str) -> None:
    """``ValueError`` naming what ``source`` serves when it cannot serve ``interval``."""
    served = source.intervals
    if (
        not isinstance(interval, str)
        or (served is not None and interval not in served)
        or (served is None and interval not in INTERVALS + DAILY_INTERVALS)
    ):
        can = served if served is not None else INTERVALS + DAILY_INTERVALS
        raise ValueError(
            f"{source.name} does not serve interval {interval!r}: use one of "
            f"{', '.join(dict.fromkeys(can))}"
        )


def check_table_name(table: str, sink: Any = None) -> None:
    """``ValueError`` for a table name the sinks would refuse (checked when a job is made;
    with an open :class:`Sink`, by that database's rules, e.g. no temporary schemas)."""
    from .._errors import SinkError
    from ..sinks._ddl import check_name

    try:
        sink.check_table(table) if isinstance(sink, Sink) else check_name(table)
    except SinkError as exc:
        raise ValueError(str(exc)) from None


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_window(
    interval: str, period: str | None, start: Any, end: Any, *, now: float | None = None
) -> tuple[int, int]:
    """``[start, end)`` in epoch microseconds. A period counts back from now, as Yahoo's
    ``range=`` does; the window is widened to whole UTC days (daily or coarser bars) or whole
    minutes, so it covers Yahoo's and repeated jobs of one day ask for the same range (they
    coalesce and hit the cache)."""
    if period is not None and (start is not None or end is not None):
        raise ValueError("give either period or start/end, not both")
    p1, p2 = to_epoch(start), to_epoch(end)
    now = time.time() if now is None else now
    step = 86400 if interval in DAILY_INTERVALS else 60
    anchor = now if p2 is None else p2
    if p2 is None:
        p2 = (int(now) // step + 1) * step  # after now, stable within the step
    if p1 is None:
        p1 = int(anchor - period_days(period or "1mo") * 86400) // step * step
    if p2 <= p1:
        raise ValueError(
            f"end ({dt.datetime.fromtimestamp(p2, dt.timezone.utc):%Y-%m-%d %H:%M}) "
            f"is not after start "
            f"({dt.datetime.fromtimestamp(p1, dt.timezone.utc):%Y-%m-%d %H:%M})"
        )
    return p1 * 1_000_000, p2 * 1_000_000


@dataclass(eq=False, repr=False)
class PipelineJob:
    """One job: symbols through fetch → transform → validate → store → analyze.

    Made by :meth:`BatchProcessingEngine.create_stock_data_pipeline_job`; run by
    :meth:`~BatchProcessingEngine.execute_job`, :meth:`~BatchProcessingEngine.run` or
    :meth:`~BatchProcessingEngine.submit`. ``state`` is ``pending``, ``running``, or the
    result's status once finished.
    """

    symbols: tuple[str, ...]  # in the provider's spelling
    source: Source
    sink: Sink | str | os.PathLike | None
    kind: str = "bars"  # "bars" (history) or "quotes"
    interval: str = "1d"
    start_us: int = 0
    end_us: int = 0
    store_data: bool = True
    mode: str = "upsert"
    table: str | None = None
    indicators: tuple[str, ...] = ()
    validate: bool = True
    spike_threshold: float | None = None
    priority: int = 3
    timeout: float | None = None
    on_progress: Callable[[Progress], Any] | None = field(default=None, repr=False)
    job_id: str = ""
    owns_source: bool = field(default=False, repr=False)
    concurrency: int | None = None
    invalid: dict[str, str] = field(default_factory=dict)  # symbols refused, with why
    state: str = "pending"
    result: JobResult | None = field(default=None, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _abort: Callable[[BaseException], None] | None = field(default=None, repr=False)
    _cancel_reason: str = field(default="cancelled", repr=False)

    def __repr__(self) -> str:  # never the database password (a URI may carry it)
        sink = (
            self.sink
            if self.sink is None or isinstance(self.sink, Sink)
            else redact(str(self.sink))
        )
        return (
            f"PipelineJob(job_id={self.job_id!r}, state={self.state!r}, "
            f"symbols={len(self.symbols)}, source={self.source.name!r}, sink={sink!r}, "
            f"kind={self.kind!r}, interval={self.interval!r}, mode={self.mode!r})"
        )

    __str__ = __repr__

    def __post_init__(self) -> None:
        if not self.job_id:
            self.job_id = f"job-{os.getpid()}-{int(time.time() * 1000)}-{next(_job_ids)}"
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        if not 1 <= self.priority <= 5:
            raise ValueError("priority must be 1 (most urgent) to 5")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive")


def provider_symbols(
    source: Source, symbols: Iterable[str]
) -> tuple[tuple[str, ...], dict[str, str]]:
    """``symbols`` in the provider's spelling (``source.normalize_symbol``: Yahoo upper-cases,
    so ``aapl`` and ``AAPL`` are one series), duplicates dropped, order kept; and the
    symbols the provider cannot have, each with the reason (they fail, the others run)."""
    out: dict[str, None] = {}
    invalid: dict[str, str] = {}
    for s in symbols:
        try:
            out[source.normalize_symbol(s)] = None
        except ValueError as exc:
            invalid[s] = str(exc)
    return tuple(out), invalid


def clean_symbols(symbols: Iterable[str] | str) -> tuple[str, ...]:
    """Symbols in order, stripped, duplicates removed; a clear error for anything else."""
    if isinstance(symbols, str):
        symbols = [symbols]
    out: dict[str, None] = {}
    for s in symbols:
        if not isinstance(s, str):
            raise TypeError(f"symbols must be strings, got {type(s).__name__}: {s!r}")
        s = s.strip()
        if not s:
            raise ValueError("empty symbol")
        if len(s) > 64 or any(ch.isspace() or ord(ch) < 32 for ch in s):
            raise ValueError(f"invalid symbol {s!r}")
        out[s] = None
    if not out:
        raise ValueError("no symbols given")
    return tuple(out)
