"""The one exception tree of stockbatch.

::

    StockbatchError
    ├── SchemaError            data does not fit the canonical schema (also a ValueError)
    ├── ProviderError          a market-data provider failed (carries provider and symbol)
    │   ├── RateLimited        HTTP 429 / provider quota notes (carries retry_after)
    │   ├── SymbolNotFound     the provider does not know the symbol
    │   ├── DecodeError        a payload could not be decoded (provider, symbol, position)
    │   └── ProviderUnavailable  5xx, timeouts, connection errors, an open circuit breaker
    ├── SinkError              a database write failed and was rolled back
    ├── QueueError
    │   ├── QueueFull          a bounded queue stayed full for the whole timeout
    │   └── QueueClosed        the queue was closed
    └── JobError               a pipeline job failed, timed out or was cancelled
        ├── JobTimeout
        └── JobCancelled

Messages never contain secrets (API keys, passwords): sources and sinks redact them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "StockbatchError",
    "SchemaError",
    "ProviderError",
    "RateLimited",
    "SymbolNotFound",
    "DecodeError",
    "ProviderUnavailable",
    "SinkError",
    "QueueError",
    "QueueFull",
    "QueueClosed",
    "JobError",
    "JobTimeout",
    "JobCancelled",
]


class StockbatchError(Exception):
    """Root of every exception stockbatch raises on purpose."""


class SchemaError(StockbatchError, ValueError):
    """Data does not fit the target schema.

    ``problems`` maps each offending column to why it was refused.
    """

    def __init__(self, message: str, problems: dict[str, str] | None = None):
        super().__init__(message)
        self.problems = dict(problems or {})


class ProviderError(StockbatchError):
    """A provider call failed. ``provider`` and ``symbol`` say where, ``status`` is the HTTP
    status when there was one, ``retry_after`` the seconds the provider asked to wait;
    ``errors`` holds each source's own error when several were tried (failover)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        symbol: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        errors: Sequence[BaseException] | None = None,
    ):
        super().__init__(message)
        self.provider = provider
        self.symbol = symbol
        self.status = status
        self.retry_after = retry_after
        self.errors = list(errors or ())


class RateLimited(ProviderError):
    """The provider refused for rate reasons; ``retry_after`` seconds if it said so."""


class SymbolNotFound(ProviderError):
    """The provider does not know the symbol."""


class DecodeError(ProviderError):
    """A payload could not be decoded; ``position`` is the byte offset where it failed."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        symbol: str | None = None,
        position: int | None = None,
        status: int | None = None,
    ):
        super().__init__(message, provider=provider, symbol=symbol, status=status)
        self.position = position


class ProviderUnavailable(ProviderError):
    """Server errors, timeouts, lost connections, or an open circuit breaker."""


class SinkError(StockbatchError):
    """A database operation failed; a write was rolled back whole.

    ``table`` and ``mode`` say which write, ``sqlstate`` is the database's SQLSTATE (or
    error code) when it gave one, ``column`` the column at fault when one is known.
    """

    def __init__(
        self,
        message: str,
        *,
        table: str | None = None,
        mode: str | None = None,
        sqlstate: str | None = None,
        column: str | None = None,
    ):
        super().__init__(message)
        self.table = table
        self.mode = mode
        self.sqlstate = sqlstate
        self.column = column


class QueueError(StockbatchError):
    """Base of queue errors."""


class QueueFull(QueueError):
    """A bounded queue stayed full for the whole timeout."""


class QueueClosed(QueueError):
    """The queue is closed."""


class JobError(StockbatchError):
    """A pipeline job failed, timed out or was cancelled.

    ``failures`` maps each failed symbol to its reason, ``table`` holds what was fetched of
    the others (:func:`stockbatch.fetch`), ``result`` the job's
    :class:`~stockbatch.pipeline.JobResult` when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        failures: dict[str, str] | None = None,
        table: Any = None,
        result: Any = None,
    ):
        super().__init__(message)
        self.failures = dict(failures or {})
        self.table = table
        self.result = result


class JobTimeout(JobError):
    """A pipeline job ran past its timeout."""


class JobCancelled(JobError):
    """A pipeline job was cancelled."""
