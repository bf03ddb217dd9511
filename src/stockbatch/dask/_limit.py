"""One provider rate limit for the whole cluster, on Dask's own primitives.

The bucket is a :class:`distributed.Queue` on the scheduler holding at most ``burst`` tokens.
The client that started the ingest mints tokens into it at ``rate`` per second (a thread of
:class:`TokenMinter`); every provider call on every worker first takes one token
(:class:`ClusterLimiter`, put in place of the source's own ``limiter``). So N workers send
``rate`` calls per second together, not N times that.

A 429 (``RateLimited``) seen by any worker sets a :class:`distributed.Variable` to "paused
until": while it is in the future the minter mints nothing and empties the bucket, so every
worker waits, not only the one that was told (:class:`SharedBackoff`, put in place of the
source's ``retry`` policy, reports it).

No server of our own: the scheduler holds both objects; they die with the ingest call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any

from .._errors import ProviderUnavailable, RateLimited
from ..sources import RetryPolicy

__all__ = ["ClusterLimiter", "SharedBackoff", "TokenMinter", "install"]

# provider calls wait for a token in these threads (a Queue.get blocks)
_WAITERS = concurrent.futures.ThreadPoolExecutor(
    max_workers=64, thread_name_prefix="stockbatch-token"
)


@dataclass(frozen=True)
class LimitSpec:
    """What crosses to the workers: the names of the scheduler's objects (picklable)."""

    name: str
    rate: float
    burst: int

    @property
    def tokens(self) -> str:
        return f"{self.name}-tokens"

    @property
    def pause(self) -> str:
        return f"{self.name}-pause"


class ClusterLimiter:
    """Duck-types :class:`stockbatch.sources.TokenBucket` (``acquire``): one token per
    provider call from the cluster's bucket. Lives on a worker, for one shard."""

    def __init__(self, spec: LimitSpec, client: Any) -> None:
        from distributed import Queue, Variable

        self.spec = spec
        self.rate = spec.rate
        self.burst = spec.burst
        self._queue = Queue(spec.tokens, client=client)
        self._pause = Variable(spec.pause, client=client)
        self._paused_until = 0.0  # what this worker was told itself (wall clock)
        self.waited = 0.0

    def __repr__(self) -> str:
        return f"ClusterLimiter(rate={self.rate:g}, burst={self.burst})"

    async def acquire(self) -> None:
        t0 = time.monotonic()
        own = self._paused_until - time.time()
        if own > 0:
            await asyncio.sleep(own)
        await asyncio.get_running_loop().run_in_executor(_WAITERS, self._take)
        self.waited += time.monotonic() - t0

    def _take(self) -> None:
        """One token, waiting as long as the ingest that made the bucket is running (its
        pause flag exists); a provider failure once it has ended, never a thread stuck."""
        gone = ProviderUnavailable("the cluster's rate limit is gone: its ingest has ended")
        while True:
            try:
                self._queue.get(timeout=2)
                return
            except TimeoutError:  # none minted (a pause, or a slow rate): still running?
                pass
            except Exception:  # noqa: BLE001 - the scheduler no longer knows the bucket
                raise gone from None
            try:
                self._pause.get(timeout=2)
            except Exception:  # noqa: BLE001 - deleted when the ingest ended
                raise gone from None

    def pause(self, seconds: float) -> None:
        """Every worker holds back for ``seconds`` (a provider said 429)."""
        until = time.time() + seconds
        if until <= self._paused_until:
            return
        self._paused_until = until
        _WAITERS.submit(self._pause.set, until)


class SharedBackoff(RetryPolicy):
    """The source's retry policy, unchanged, except that a rate-limit answer's wait is also
    told to the whole cluster (:meth:`ClusterLimiter.pause`)."""

    limiter: ClusterLimiter | None = None

    @classmethod
    def wrap(cls, policy: RetryPolicy, limiter: ClusterLimiter) -> SharedBackoff:
        fields = {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy)}
        made = cls(**fields)
        made.limiter = limiter
        return made

    def delay(self, attempt: int, error: BaseException | None = None) -> float | None:
        wait = super().delay(attempt, error)
        if isinstance(error, RateLimited) and self.limiter is not None:
            told = getattr(error, "retry_after", None)
            self.limiter.pause(wait if wait is not None else float(told or self.base))
        return wait


def install(source: Any, spec: LimitSpec, client: Any) -> None:
    """Put the cluster's bucket and shared back-off in ``source`` (each member of a
    failover source) in place of its own limiter and retry policy."""
    limiter = ClusterLimiter(spec, client)
    for src in [source, *getattr(source, "sources", ())]:
        if hasattr(src, "limiter") and isinstance(getattr(src, "retry", None), RetryPolicy):
            src.limiter = limiter
            src.retry = SharedBackoff.wrap(src.retry, limiter)


class TokenMinter:
    """Client side: makes the scheduler's bucket and pause flag, and mints ``rate`` tokens
    per second into the bucket (capacity ``burst``) until :meth:`close`."""

    TICK = 0.02  # seconds between mints

    def __init__(self, client: Any, name: str, rate: float, burst: int) -> None:
        from distributed import Queue, Variable

        if not rate > 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.spec = LimitSpec(name, float(rate), int(burst))
        self._queue = Queue(self.spec.tokens, client=client, maxsize=int(burst))
        self._pause = Variable(self.spec.pause, client=client)
        self._pause.set(0.0)
        self.minted = 0
        self.paused_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"stockbatch-minter-{name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        rate, burst = self.spec.rate, self.spec.burst
        credit, last, ticks, paused_until = 0.0, time.monotonic(), 0, 0.0
        while not self._stop.wait(self.TICK):
            now = time.monotonic()
            dt, last = now - last, now
            credit += dt * rate
            try:
                if ticks % 5 == 0:
                    paused_until = float(self._pause.get(timeout=5))
                ticks += 1
                if time.time() < paused_until:  # a 429 somewhere: nobody sends
                    self.paused_s += dt
                    credit = 0.0
                    self._queue.get(batch=True)
                    continue
                room = burst - self._queue.qsize()
                n = max(0, min(int(credit), room))
                for _ in range(n):
                    self._queue.put(1)
                self.minted += n
                credit -= n
                if n == room:  # the bucket is full: credit beyond it is lost
                    credit = min(credit, 1.0)
            except Exception:  # noqa: BLE001 - the client is closing; stop minting
                if self._stop.is_set():
                    return
                time.sleep(self.TICK)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for release in (self._queue.close, self._pause.delete):
            try:
                release()
            except Exception:  # noqa: BLE001 - the cluster is gone already
                pass
