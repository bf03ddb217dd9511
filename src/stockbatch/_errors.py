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
    """A provider call failed. ``provider`` and ``symbol`` say where."""

    def __init__(self, message: str, *, provider: str | None = None, symbol: str | None = None):
        super().__init__(message)
        self.provider = provider
        self.symbol = symbol


class RateLimited(ProviderError):
    """The provider refused for rate reasons; ``retry_after`` seconds if it said so."""

    def __init__(self, message: str, *, provider=None, symbol=None, retry_after: float | None = None):
        super().__init__(message, provider=provider, symbol=symbol)
        self.retry_after = retry_after


class SymbolNotFound(ProviderError):
    """The provider does not know the symbol."""


class DecodeError(ProviderError):
    """A payload could not be decoded; ``position`` is the byte offset where it failed."""

    def __init__(self, message: str, *, provider=None, symbol=None, position: int | None = None):
        super().__init__(message, provider=provider, symbol=symbol)
        self.position = position


class ProviderUnavailable(ProviderError):
    """Server errors, timeouts, lost connections, or an open circuit breaker."""


class SinkError(StockbatchError):
    """A database write failed; the transaction was rolled back."""


class QueueError(StockbatchError):
    """Base of queue errors."""


class QueueFull(QueueError):
    """A bounded queue stayed full for the whole timeout."""


class QueueClosed(QueueError):
    """The queue is closed."""


class JobError(StockbatchError):
    """A pipeline job failed."""


class JobTimeout(JobError):
    """A pipeline job ran past its timeout."""


class JobCancelled(JobError):
    """A pipeline job was cancelled."""
