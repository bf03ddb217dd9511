"""Reliability building blocks shared by the sources.

* :class:`TokenBucket` — per-provider rate limiter (``rate`` tokens per second, ``burst``).
* :class:`RetryPolicy` — exponential backoff with jitter that honours ``Retry-After``.
* :class:`CircuitBreaker` — stops calling a provider after consecutive failures, probes it
  again after ``reset_timeout``.
* :class:`ResponseCache` — in-memory LRU with TTL plus an optional on-disk cache (Arrow IPC
  files), keyed by the request key; counts hits and saved provider calls.
* :class:`SourceStats` — what a source did: calls, retries, errors, cache hits, saved calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from .._arrow import empty_batch
from .._errors import DecodeError, ProviderError, ProviderUnavailable, RateLimited
from .._redact import redact

__all__ = [
    "TokenBucket",
    "RetryPolicy",
    "CircuitBreaker",
    "ResponseCache",
    "SourceStats",
    "is_provider_failure",
]


class TokenBucket:
    """Async token bucket: at most ``burst`` calls at once, refilled at ``rate`` per second.

    Parameters
    ----------
    rate : float
        Tokens added per second (``float("inf")`` disables limiting).
    burst : int
        Bucket capacity (calls that may go out back to back).
    """

    def __init__(self, rate: float, burst: int = 1, *, clock=time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()
        self._lock = asyncio.Lock()
        self.waited = 0.0  # seconds spent waiting for tokens, in total

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}, burst={self.burst})"

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def acquire(self) -> None:
        """Wait until a token is available and take it (first come, first served)."""
        if self.rate == float("inf"):
            return
        async with self._lock:
            self._refill()
            if self._tokens < 1.0:
                wait = (1.0 - self._tokens) / self.rate
                self.waited += wait
                await asyncio.sleep(wait)
                self._refill()
            self._tokens -= 1.0


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter.

    The n-th retry waits ``min(max_delay, base * 2**n)`` scaled by a random factor in
    ``[1 - jitter, 1]``, or the provider's ``Retry-After`` when that is longer. A Retry-After
    beyond ``max_retry_after`` is not waited for: the error is raised at once (so that failover
    can take over).
    """

    attempts: int = 4
    base: float = 0.25
    max_delay: float = 8.0
    jitter: float = 0.5
    max_retry_after: float = 30.0
    retry_on: tuple = (RateLimited, ProviderUnavailable, DecodeError)

    def delay(self, attempt: int, error: BaseException | None = None) -> float | None:
        """Seconds to wait before retry number ``attempt`` (1-based), or None to give up."""
        if attempt >= self.attempts or not isinstance(error, self.retry_on):
            return None
        backoff = min(self.max_delay, self.base * 2 ** (attempt - 1))
        backoff *= 1.0 - self.jitter * random.random()
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            backoff = max(backoff, float(retry_after))
        return backoff


def is_provider_failure(exc: BaseException) -> bool:
    """What a circuit breaker counts: the provider itself failing — transport errors,
    timeouts, 5xx (ProviderUnavailable) and 429 / quota answers (RateLimited). A symbol's own
    answer (SymbolNotFound, a DecodeError of its payload, any other ProviderError such as a 400)
    means the provider is up and never counts."""
    return isinstance(exc, (ProviderUnavailable, RateLimited))


def describe(exc: BaseException) -> str:
    """``str(exc)`` plus the transport error under it when the message hides it (sources
    raise ``from None``: the underlying exception is still ``__context__``), redacted."""
    text = str(exc)
    under = exc.__cause__ or exc.__context__
    if under is not None:
        detail = str(under) or type(under).__name__
        if detail not in text:
            text = f"{text}: {type(under).__name__}: {detail}"
    return redact(text)


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive provider failures; after
    ``reset_timeout`` seconds one trial call is let through (half-open): success closes it,
    failure opens it again.

    Only provider failures count (:func:`is_provider_failure`): a symbol's 404 or undecodable
    payload says the provider is up, so it resets the count like a success. While open,
    :meth:`check` raises ProviderUnavailable carrying the last underlying cause and, as
    ``retry_after``, the seconds until the next trial. A trial that ends without a verdict
    (cancelled, or an unexpected exception) gives its turn back (:meth:`release`), and a trial
    older than ``reset_timeout`` is presumed lost — the breaker can never stay shut for good.
    """

    def __init__(
        self, failure_threshold: int = 5, reset_timeout: float = 30.0, *, clock=time.monotonic
    ):
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_at: float | None = None
        self.times_opened = 0
        self.last_error: str | None = None  # redacted text of the last provider failure

    @property
    def _trial(self) -> bool:
        return self._trial_at is not None

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self.opened_at is None:
            return "closed"
        if self._clock() - self.opened_at >= self.reset_timeout:
            return "half-open"
        return "open"

    def check(self, provider: str, symbol: str | None = None) -> None:
        """Raise ProviderUnavailable when calls must not go out now; in half-open state let
        exactly one trial call through."""
        state = self.state
        if state == "closed":
            return
        now = self._clock()
        if state == "half-open":
            if self._trial_at is None or now - self._trial_at >= self.reset_timeout:
                self._trial_at = now
                return
            wait = max(0.0, self.reset_timeout - (now - self._trial_at))
        else:
            wait = max(0.0, self.reset_timeout - (now - self.opened_at))
        cause = f"; last failure: {self.last_error}" if self.last_error else ""
        raise ProviderUnavailable(
            f"{provider}: {symbol or 'quote'}: circuit breaker open after {self.failures} "
            f"consecutive failures{cause} (next trial call in {wait:.1f} s)",
            provider=provider,
            symbol=symbol,
            retry_after=wait,
        )

    def success(self) -> None:
        """The provider answered (data, or a symbol's own error): close."""
        self.failures = 0
        self.opened_at = None
        self._trial_at = None

    def failure(self, error: BaseException | None = None) -> None:
        """A provider failure (see :func:`is_provider_failure`); ``error`` is remembered for
        the open-breaker message."""
        if error is not None:
            self.last_error = describe(error)
        self.failures += 1
        self._trial_at = None
        if self.failures >= self.failure_threshold:
            if self.opened_at is None or self.state != "open":
                self.times_opened += 1
            self.opened_at = self._clock()

    def record(self, error: BaseException) -> None:
        """Classify a provider call's exception: a failure, or an answer (a success)."""
        if is_provider_failure(error):
            self.failure(error)
        else:
            self.success()

    def release(self) -> None:
        """A call ended with no verdict (cancelled, unexpected exception): if it was the
        half-open trial, let the next call be the trial."""
        self._trial_at = None


class ResponseCache:
    """LRU cache of decoded record batches with a TTL, optionally backed by a directory.

    Parameters
    ----------
    maxsize : int
        Entries kept in memory.
    ttl : float
        Seconds an entry stays fresh (memory and disk).
    directory : str or Path, optional
        Also keep entries as Arrow IPC files there (survives restarts).
    """

    def __init__(self, maxsize: int = 1024, ttl: float = 300.0, *, directory=None):
        self.maxsize = maxsize
        self.ttl = ttl
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._mem: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0

    def __len__(self) -> int:
        return len(self._mem)

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / (hashlib.sha256(key.encode()).hexdigest() + ".arrow")

    def get(self, key: str) -> pa.RecordBatch | None:
        now = time.time()
        hit = self._mem.get(key)
        if hit is not None:
            stamp, batch = hit
            if now - stamp <= self.ttl:
                self._mem.move_to_end(key)
                self.hits += 1
                return batch
            del self._mem[key]
        if self.directory is not None:
            path = self._path(key)
            try:
                if now - path.stat().st_mtime <= self.ttl:
                    with pa.OSFile(str(path), "rb") as f:
                        table = pa.ipc.open_file(f).read_all()
                    batch = (
                        table.combine_chunks().to_batches()[0]
                        if table.num_rows
                        else empty_batch(table.schema)
                    )
                    self._remember(key, batch, path.stat().st_mtime)
                    self.hits += 1
                    self.disk_hits += 1
                    return batch
            except (FileNotFoundError, pa.ArrowInvalid, OSError, IndexError):
                pass
        self.misses += 1
        return None

    def _remember(self, key: str, batch: pa.RecordBatch, stamp: float) -> None:
        self._mem[key] = (stamp, batch)
        self._mem.move_to_end(key)
        while len(self._mem) > self.maxsize:
            self._mem.popitem(last=False)

    def put(self, key: str, batch: pa.RecordBatch) -> None:
        self._remember(key, batch, time.time())
        if self.directory is not None:
            path = self._path(key)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            with pa.OSFile(str(tmp), "wb") as f, pa.ipc.new_file(f, batch.schema) as w:
                w.write_batch(batch)
            os.replace(tmp, path)

    def clear(self) -> None:
        self._mem.clear()
        if self.directory is not None:
            for p in self.directory.glob("*.arrow"):
                p.unlink(missing_ok=True)


@dataclass
class SourceStats:
    """Counters of one source (``source.stats``)."""

    requests: int = 0  # HTTP requests (or library calls) that went out
    retries: int = 0
    errors: dict = field(default_factory=dict)  # exception class name -> count
    cache_hits: int = 0
    saved_calls: int = 0  # provider calls avoided thanks to the cache
    rate_limited: int = 0  # 429 / quota answers received
    circuit_opened: int = 0
    failovers: int = 0  # FailoverSource: symbols served by a later source
    bars: int = 0
    out_of_window: int = 0  # bars dropped for lying outside the asked window

    def error(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.errors[name] = self.errors.get(name, 0) + 1
        if isinstance(exc, RateLimited):
            self.rate_limited += 1

    def as_dict(self) -> dict:
        return asdict(self)


def is_retryable(exc: BaseException) -> bool:
    """Transient provider failures (worth a retry or a failover)."""
    return isinstance(exc, (RateLimited, ProviderUnavailable, DecodeError)) or (
        isinstance(exc, ProviderError) and getattr(exc, "transient", False)
    )
