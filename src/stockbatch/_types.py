"""Literal aliases for the string options of the public API, in one place.

Type checkers reject a misspelt mode or interval at the call site; at run time these are
plain ``str`` and the functions still check their values. The tuples beside the aliases are
the same values for run-time checks (``typing.get_args`` of the alias); a test keeps each pair
equal.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "Mode",
    "MODES",
    "JobStatus",
    "JOB_STATUSES",
    "JobState",
    "JOB_STATES",
    "SymbolStatus",
    "SYMBOL_STATUSES",
    "RequestState",
    "REQUEST_STATES",
    "RequestKind",
    "REQUEST_KINDS",
    "IntervalName",
    "INTERVALS",
    "DAILY_INTERVALS",
    "SinkLevel",
    "SINK_LEVELS",
    "HealthStatus",
    "HEALTH_STATUSES",
    "DataKind",
    "DATA_KINDS",
    "SourceName",
    "SOURCE_NAMES",
    "Errors",
    "OnError",
]

#: Ingest modes: ADBC's four words, plus ``upsert`` (update on conflict) and ``insert_new``
#: (ignore on conflict).
Mode = Literal["append", "create", "replace", "create_append", "upsert", "insert_new"]
MODES: tuple[Mode, ...] = get_args(Mode)

#: :attr:`stockbatch.JobResult.status`.
JobStatus = Literal["completed", "failed", "cancelled", "timed_out"]
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)

#: :attr:`stockbatch.pipeline.PipelineJob.state`: waiting, running, or how it ended.
JobState = Literal["pending", "running", "completed", "failed", "cancelled", "timed_out"]
JOB_STATES: tuple[JobState, ...] = get_args(JobState)

#: :attr:`stockbatch.pipeline.SymbolOutcome.status` (``pending`` until the job decides).
SymbolStatus = Literal["pending", "stored", "empty", "failed", "cancelled"]
SYMBOL_STATUSES: tuple[SymbolStatus, ...] = get_args(SymbolStatus)

#: :attr:`stockbatch.Request.state`.
RequestState = Literal["new", "queued", "taken", "expired", "cancelled"]
REQUEST_STATES: tuple[RequestState, ...] = get_args(RequestState)

#: :data:`stockbatch.queueing.KINDS`.
RequestKind = Literal["history", "quote", "profile"]
REQUEST_KINDS: tuple[RequestKind, ...] = get_args(RequestKind)

#: Bar sizes a provider is asked for (Yahoo's names; ``resample(to=...)`` takes any
#: ``<n><m|h|d|wk|mo>``, so it keeps ``str``).
IntervalName = Literal[
    "1m", "2m", "5m", "15m", "30m", "60m", "90m", "1h", "1d", "5d", "1wk", "1mo", "3mo"
]
INTERVALS: tuple[IntervalName, ...] = get_args(IntervalName)
#: The intervals whose bars are keyed at the exchange's local midnight.
DAILY_INTERVALS: tuple[IntervalName, ...] = ("1d", "5d", "1wk", "1mo", "3mo")

#: :class:`stockbatch.sinks.Level` by name (the enum's values).
SinkLevel = Literal["basic", "advanced", "extreme"]
SINK_LEVELS: tuple[SinkLevel, ...] = get_args(SinkLevel)

#: :attr:`stockbatch.stats.Health.status`.
HealthStatus = Literal["healthy", "degraded", "unhealthy"]
HEALTH_STATUSES: tuple[HealthStatus, ...] = get_args(HealthStatus)

#: What a table holds: ``kind=`` of :func:`stockbatch.read` and of the sinks.
DataKind = Literal["bars", "quotes"]
DATA_KINDS: tuple[DataKind, ...] = get_args(DataKind)

#: The built-in sources by name (``source=`` of :func:`stockbatch.ingest`, the CLI's
#: ``--source``).
SourceName = Literal["yahoo", "yfinance", "alphavantage"]
SOURCE_NAMES: tuple[SourceName, ...] = get_args(SourceName)

#: ``errors=`` of :func:`stockbatch.fetch`.
Errors = Literal["raise", "ignore"]

#: ``on_error=`` of :meth:`stockbatch.sinks.Sink.ingest`: raise, or bisect and quarantine.
OnError = Literal["raise", "split"]
