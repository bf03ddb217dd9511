"""Pure-Python twin of :mod:`stockbatch._ext.queue`: :class:`Request` and :class:`BatchQueue`.

This module is the readable specification; the compiled module behaves the same.

A :class:`BatchQueue` holds requests in priority order (1 = most urgent … 5), FIFO inside a
priority. Requests carry an optional absolute ``deadline`` on the :func:`time.monotonic` clock:
every operation first removes the requests whose deadline has passed and *reports* them, either
to the ``on_expire`` callback or, without one, to :meth:`BatchQueue.drain_expired`. Nothing
ever leaves the queue unreported: a request is taken by ``get_batch``, expired, or cancelled.

Thread safety: one lock guards the state (the compiled twin relies on the GIL instead); blocked
threads wait on private locks, coroutines on futures woken with ``call_soon_threadsafe``, so
the asyncio front never busy-waits nor blocks its event loop.
"""

from __future__ import annotations

import _thread
import asyncio
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from .._errors import QueueClosed, QueueFull
from .._time import to_us  # the twin of the compiled queue.to_us
from ._shared import KINDS, MAX_PRIORITY, MIN_PRIORITY, STATE_NAMES
from ._shared import us_to_datetime as _us_to_datetime

__all__ = ["Request", "BatchQueue", "KINDS", "MIN_PRIORITY", "MAX_PRIORITY", "to_us"]

# Request states. Cancelled and expired are final: such a request cannot be put again.
_NEW, _QUEUED, _TAKEN, _EXPIRED, _CANCELLED = range(5)

# Process-wide id counter. The Python twin hands out even ids and the compiled module odd
# ones, so ids never collide even if both backends are used in one process.
_ids = itertools.count(2, 2)
_queue_ids = itertools.count(1)

_NO_PARAMS: Mapping[str, Any] = MappingProxyType(
    {}
)  # shared: no allocation per request without params


_PLAIN = (str, int, float, bool, type(None))


def _plain(value):
    """Plain immutable values only: keys then compare without running any Python code
    (which keeps the compiled coalescer's table operations atomic under the GIL)."""
    if type(value) in _PLAIN:
        return True
    return type(value) is tuple and all(_plain(x) for x in value)


def _freeze_params(params):
    if params is None:
        return (), _NO_PARAMS
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping or None, not {type(params).__name__}")
    items = []
    for k, v in params.items():
        if not isinstance(k, str):
            raise TypeError(f"params keys must be str, not {type(k).__name__}")
        if not _plain(v):
            raise TypeError(
                f"params[{k!r}] must be str, int, float, bool, None or a tuple of "
                f"them (use a tuple, not a list), not {type(v).__name__}"
            )
        items.append((k, v))
    items.sort(key=lambda kv: kv[0])
    return tuple(items), MappingProxyType(dict(items))


def _check_str(value, name, *, optional=False):
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str, not {value!r}")
    return value


class Request:
    """One fetch someone asked for.

    Parameters
    ----------
    kind : {"history", "quote", "profile"}
    provider : str
        Provider name, e.g. ``"yahoo"``.
    symbol : str
    interval : str or None
        Bar interval (``"1d"``, ``"1m"`` …); required for ``history``.
    start, end : None, int, datetime, date or str
        Half-open range ``[start, end)`` (int = microseconds since the epoch, naive datetimes
        are UTC). None is unbounded on that side.
    params : Mapping[str, str | int | float | bool | None | tuple] or None
        Extra provider parameters (plain values or tuples of them); part of the identity
        (``key``). Never shown in ``repr``: they may hold API keys.
    priority : int
        1 (most urgent) to 5.
    deadline : float or None
        Absolute time on the :func:`time.monotonic` clock after which the request is useless.

    Attributes
    ----------
    id : int
        Unique in the process (a counter, never a clock reading).
    key : tuple
        Hashable; equal for two requests iff they are the same fetch.
    range_key : tuple
        ``key`` without the range: requests with equal ``range_key`` may merge their ranges.
    start_us, end_us : int or None
        The range in microseconds since the epoch.
    """

    __slots__ = (
        "_id",
        "_kind",
        "_provider",
        "_symbol",
        "_interval",
        "_start_us",
        "_end_us",
        "_params",
        "_frozen",
        "_priority",
        "_deadline",
        "_key",
        "_range_key",
        "_state",
        "_owner",
        "_enq",
        "__weakref__",
    )

    def __init__(
        self,
        kind,
        provider,
        symbol,
        interval=None,
        start=None,
        end=None,
        params=None,
        priority=3,
        deadline=None,
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        _check_str(provider, "provider")
        _check_str(symbol, "symbol")
        _check_str(interval, "interval", optional=True)
        if kind == "history" and interval is None:
            raise ValueError("a history request needs an interval")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int 1..5, not {priority!r}")
        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be 1 (most urgent) to 5, not {priority}")
        if deadline is not None:
            if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
                raise TypeError(f"deadline must be a monotonic time in seconds, not {deadline!r}")
            deadline = float(deadline)
            if math.isnan(deadline):
                raise ValueError("deadline is NaN")
        start_us = to_us(start, "start")
        end_us = to_us(end, "end")
        if start_us is not None and end_us is not None and start_us >= end_us:
            raise ValueError("start must be before end (the range is [start, end))")
        frozen, mapping = _freeze_params(params)
        self._id = next(_ids)
        self._kind = kind
        self._provider = provider
        self._symbol = symbol
        self._interval = interval
        self._start_us = start_us
        self._end_us = end_us
        self._params = mapping
        self._frozen = frozen
        self._priority = priority
        self._deadline = deadline
        self._key = (kind, provider, symbol, interval, start_us, end_us, frozen)
        self._range_key = (kind, provider, symbol, interval, frozen)
        self._state = _NEW
        self._owner = 0
        self._enq = 0.0

    id = property(lambda self: self._id)
    kind = property(lambda self: self._kind)
    provider = property(lambda self: self._provider)
    symbol = property(lambda self: self._symbol)
    interval = property(lambda self: self._interval)
    start_us = property(lambda self: self._start_us)
    end_us = property(lambda self: self._end_us)
    start = property(lambda self: _us_to_datetime(self._start_us))
    end = property(lambda self: _us_to_datetime(self._end_us))
    params = property(lambda self: self._params)
    priority = property(lambda self: self._priority)
    deadline = property(lambda self: self._deadline)
    key = property(lambda self: self._key)
    range_key = property(lambda self: self._range_key)

    @property
    def state(self) -> str:
        """``"new"``, ``"queued"``, ``"taken"``, ``"expired"`` or ``"cancelled"``."""
        return STATE_NAMES[self._state]

    def expired(self, now=None) -> bool:
        """True when the deadline has passed (at ``now``, default :func:`time.monotonic`)."""
        if self._deadline is None:
            return False
        return (time.monotonic() if now is None else now) >= self._deadline

    def __repr__(self):
        parts = [
            f"id={self._id}",
            f"kind={self._kind!r}",
            f"provider={self._provider!r}",
            f"symbol={self._symbol!r}",
        ]
        if self._interval is not None:
            parts.append(f"interval={self._interval!r}")
        if self._start_us is not None:
            parts.append(f"start={self.start.isoformat()}")
        if self._end_us is not None:
            parts.append(f"end={self.end.isoformat()}")
        if self._frozen:
            # keys only: parameter values may be secrets (API keys)
            parts.append(f"params=[{', '.join(k for k, _ in self._frozen)}]")
        parts.append(f"priority={self._priority}")
        return f"Request({', '.join(parts)})"


_RETRY: Any = object()  # an attempt stopped to report fresh expiries first: try again


def _resolve(fut):
    if not fut.done():
        fut.set_result(None)


def _wake(waiter):
    """Wake one waiter: a held thread lock, or an (event loop, future) pair."""
    if isinstance(waiter, tuple):
        loop, fut = waiter
        try:
            loop.call_soon_threadsafe(_resolve, fut)
        except RuntimeError:  # that loop is closed: nobody is left to wake
            pass
    else:
        waiter.release()


class BatchQueue:
    """Bounded, thread-safe priority queue of :class:`Request` with deadlines and batches.

    Parameters
    ----------
    maxsize : int
        Most requests held at once; 0 means unbounded.
    on_expire : callable(Request) or None
        Called (outside the queue's lock) for each request whose deadline passed while it was
        queued. Without it, expired requests are kept for :meth:`drain_expired`. Expiries are
        reported before the operation that found them takes, puts or cancels anything, so an
        exception from the callback propagates without losing a request (except for requests
        already past their deadline when put: those are reported after the put).

    Notes
    -----
    Order: priority 1 first, FIFO inside a priority. Each operation starts by expiring
    the requests whose deadline has passed. ``close()`` wakes every waiter: blocked ``put``
    calls raise :class:`~stockbatch.QueueClosed`, ``get_batch`` returns what is left and then
    raises :class:`~stockbatch.QueueClosed`.
    """

    def __init__(self, maxsize=0, *, on_expire=None):
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(f"maxsize must be an int >= 0, not {maxsize!r}")
        if on_expire is not None and not callable(on_expire):
            raise TypeError("on_expire must be callable or None")
        self._maxsize = maxsize
        self._on_expire = on_expire
        self._lock = _thread.allocate_lock()
        self._rings: list[deque[Request]] = [deque() for _ in range(MAX_PRIORITY)]
        self._depth = [0] * MAX_PRIORITY
        self._size = 0
        self._live = {}  # id -> request, for cancel()
        self._deadlines = []  # heap of (deadline, id, request)
        # waiters: a locked _thread lock (threads) or a (loop, future) pair (coroutines)
        self._getters: deque[Any] = deque()
        self._putters: deque[Any] = deque()
        self._expired = []
        self._closed = False
        self._uid = next(_queue_ids)
        self._n_put = self._n_got = self._n_expired = self._n_cancelled = 0
        self._wait_sum = 0.0
        self._wait_max = 0.0
        from ..stats import _track

        _track(self)

    # -- internals: every _x_locked runs with self._lock held --------------------------------
    def _live_entry(self, req):
        return req._state == _QUEUED and req._owner == self._uid

    def _unlink_locked(self, req):
        self._depth[req._priority - 1] -= 1
        self._size -= 1
        del self._live[req._id]

    def _expire_locked(self, now):
        """Remove every queued request whose deadline passed; return them."""
        fresh = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, req = heapq.heappop(heap)
            if self._live_entry(req):
                self._unlink_locked(req)
                req._state = _EXPIRED
                fresh.append(req)
        if fresh:
            self._n_expired += len(fresh)
            if self._on_expire is None:
                self._expired.extend(fresh)
            self._wake_all_locked(self._putters)
        return fresh

    def _report(self, fresh):
        if fresh and self._on_expire is not None:
            for req in fresh:
                self._on_expire(req)

    def _wake_locked(self, waiters, n):
        while n > 0 and waiters:
            _wake(waiters.popleft())
            n -= 1

    def _wake_all_locked(self, waiters):
        while waiters:
            _wake(waiters.popleft())

    def _check_batch(self, reqs):
        reqs = list(reqs)
        seen = set()
        for req in reqs:
            if type(req) is not Request:
                raise TypeError(f"BatchQueue takes Request objects, not {type(req).__name__}")
            if req._state == _QUEUED:
                raise ValueError(f"request {req._id} is already queued")
            if req._state in (_EXPIRED, _CANCELLED):
                raise ValueError(f"request {req._id} was {req.state}: make a new Request")
            if req._id in seen:
                raise ValueError(f"request {req._id} appears twice in one put_many")
            seen.add(req._id)
        if self._maxsize and len(reqs) > self._maxsize:
            raise ValueError(
                f"{len(reqs)} requests can never fit a queue of maxsize {self._maxsize}"
            )
        return reqs

    def _push_locked(self, reqs, now, fresh):
        """Enqueue ``reqs`` (space already checked). Already-expired ones are reported."""
        n = 0
        for req in reqs:
            if req._deadline is not None and req._deadline <= now:
                req._state = _EXPIRED
                fresh.append(req)
                self._n_expired += 1
                if self._on_expire is None:
                    self._expired.append(req)
                continue
            req._state = _QUEUED
            req._owner = self._uid
            req._enq = now
            self._rings[req._priority - 1].append(req)
            self._depth[req._priority - 1] += 1
            self._live[req._id] = req
            if req._deadline is not None:
                heapq.heappush(self._deadlines, (req._deadline, req._id, req))
            n += 1
        self._size += n
        self._n_put += len(reqs)
        if n:
            self._wake_locked(self._getters, n)

    def _take_locked(self, max_items, now):
        items: list[Request] = []
        for p in range(MAX_PRIORITY):
            ring = self._rings[p]
            while ring and len(items) < max_items:
                req = ring.popleft()
                if self._live_entry(req):
                    items.append(req)
            if len(items) >= max_items:
                break
        for req in items:
            self._unlink_locked(req)
            req._state = _TAKEN
            wait = now - req._enq
            self._wait_sum += wait
            if wait > self._wait_max:
                self._wait_max = wait
        self._n_got += len(items)
        if items:
            self._wake_all_locked(self._putters)
        return items

    def _next_deadline_locked(self):
        return self._deadlines[0][0] if self._deadlines else math.inf

    def _forget(self, waiters, waiter, *, getter):
        """A waiter gave up (timeout or cancellation): unregister it, or, if it was already
        woken, hand the wake-up on so that nobody misses it."""
        with self._lock:
            try:
                waiters.remove(waiter)
            except ValueError:
                if getter:
                    if self._size:
                        self._wake_locked(waiters, 1)
                else:
                    self._wake_all_locked(waiters)

    # -- producers ---------------------------------------------------------------------------
    def put(self, request, *, timeout=None):
        """Add one request; block while full (up to ``timeout`` s, then raise QueueFull)."""
        self.put_many((request,), timeout=timeout)

    def put_nowait(self, request):
        """Add one request or raise :class:`~stockbatch.QueueFull` at once."""
        self.put_many((request,), timeout=0)

    def put_many(self, requests: Iterable[Request], *, timeout=None):
        """Add all ``requests`` at once, in order, or none of them.

        Blocks until there is room for all (``timeout`` None = forever, 0 = do not wait),
        then raises :class:`~stockbatch.QueueFull` having added nothing. Requests whose
        deadline already passed are reported as expired rather than queued.
        """
        reqs = self._check_batch(requests)
        endtime = None if timeout is None else time.monotonic() + max(0.0, timeout)
        error: Exception | None
        while True:
            fresh = []
            waiter = None
            with self._lock:
                now = time.monotonic()
                fresh = self._expire_locked(now)
                if fresh and self._on_expire is not None:
                    error, waiter = None, _RETRY  # report them before changing anything else
                elif self._closed:
                    error = QueueClosed("put on a closed BatchQueue")
                elif not self._maxsize or self._size + len(reqs) <= self._maxsize:
                    self._push_locked(reqs, now, fresh)
                    error = None
                elif endtime is not None and now >= endtime:
                    error = QueueFull(f"BatchQueue full ({self._size}/{self._maxsize})")
                else:
                    error = None
                    waiter = _thread.allocate_lock()
                    waiter.acquire()
                    self._putters.append(waiter)
                    wait = self._next_deadline_locked() - now
                    if endtime is not None:
                        wait = min(wait, endtime - now)
            self._report(fresh)
            if error is not None:
                raise error
            if waiter is None:
                return
            if waiter is _RETRY:
                continue
            if not waiter.acquire(True, -1 if wait == math.inf else max(wait, 0.0)):
                self._forget(self._putters, waiter, getter=False)

    async def put_async(self, request, *, timeout=None):
        """Coroutine form of :meth:`put`."""
        await self.put_many_async((request,), timeout=timeout)

    async def put_many_async(self, requests, *, timeout=None):
        """Coroutine form of :meth:`put_many`: waits without blocking the event loop."""
        reqs = self._check_batch(requests)
        loop = asyncio.get_running_loop()
        endtime = None if timeout is None else time.monotonic() + max(0.0, timeout)
        error: Exception | None
        while True:
            waiter = None
            with self._lock:
                now = time.monotonic()
                fresh = self._expire_locked(now)
                if fresh and self._on_expire is not None:
                    error, waiter = None, _RETRY  # report them before changing anything else
                elif self._closed:
                    error = QueueClosed("put on a closed BatchQueue")
                elif not self._maxsize or self._size + len(reqs) <= self._maxsize:
                    self._push_locked(reqs, now, fresh)
                    error = None
                elif endtime is not None and now >= endtime:
                    error = QueueFull(f"BatchQueue full ({self._size}/{self._maxsize})")
                else:
                    error = None
                    waiter = (loop, loop.create_future())
                    self._putters.append(waiter)
                    wait = self._next_deadline_locked() - now
                    if endtime is not None:
                        wait = min(wait, endtime - now)
            self._report(fresh)
            if error is not None:
                raise error
            if waiter is None:
                return
            if waiter is _RETRY:
                continue
            await self._await_waiter(waiter, wait, self._putters, getter=False)

    async def _await_waiter(self, waiter, wait, waiters, *, getter):
        try:
            if wait == math.inf:
                await waiter[1]
            else:
                await asyncio.wait_for(waiter[1], max(wait, 0.0))
        except (asyncio.TimeoutError, TimeoutError):
            self._forget(waiters, waiter, getter=getter)
        except BaseException:
            self._forget(waiters, waiter, getter=getter)
            raise

    # -- consumers ---------------------------------------------------------------------------
    def _get_step(self, max_items, endtime, make_waiter):
        """One locked attempt: (items, fresh, waiter, wait)."""
        with self._lock:
            now = time.monotonic()
            fresh = self._expire_locked(now)
            if fresh and self._on_expire is not None:
                return [], fresh, _RETRY, 0.0  # report them before taking anything
            items = self._take_locked(max_items, now)
            waiter = None
            wait = 0.0
            if not items:
                if self._closed:
                    waiter = QueueClosed
                elif endtime is None or now < endtime:
                    waiter = make_waiter()
                    self._getters.append(waiter)
                    wait = math.inf if endtime is None else endtime - now
        return items, fresh, waiter, wait

    @staticmethod
    def _check_max(max_items):
        if not isinstance(max_items, int):
            raise TypeError(f"max_items must be an int, not {type(max_items).__name__}")
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, not {max_items!r}")

    def get_batch(self, max_items, *, timeout=None):
        """Take up to ``max_items`` requests, most urgent first.

        Blocks until at least one is there (``timeout`` None = forever, 0 = do not wait) and
        returns ``[]`` when the timeout passes. On a closed queue returns what is left, then
        raises :class:`~stockbatch.QueueClosed`.
        """
        self._check_max(max_items)
        endtime = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            items, fresh, waiter, wait = self._get_step(max_items, endtime, _new_lock)
            self._report(fresh)
            if waiter is _RETRY:
                continue
            if items:
                return items
            if waiter is QueueClosed:
                raise QueueClosed("get_batch on a closed, empty BatchQueue")
            if waiter is None:
                return []
            if not waiter.acquire(True, -1 if wait == math.inf else max(wait, 0.0)):
                self._forget(self._getters, waiter, getter=True)

    async def get_batch_async(self, max_items, *, timeout=None):
        """Coroutine form of :meth:`get_batch`: waits on a future woken by producers
        (``loop.call_soon_threadsafe``), never polling and never blocking the loop."""
        self._check_max(max_items)
        loop = asyncio.get_running_loop()
        endtime = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            items, fresh, waiter, wait = self._get_step(
                max_items, endtime, lambda: (loop, loop.create_future())
            )
            self._report(fresh)
            if waiter is _RETRY:
                continue
            if items:
                return items
            if waiter is QueueClosed:
                raise QueueClosed("get_batch on a closed, empty BatchQueue")
            if waiter is None:
                return []
            await self._await_waiter(waiter, wait, self._getters, getter=True)

    # -- the rest ----------------------------------------------------------------------------
    def cancel(self, request_id):
        """Remove a queued request (by id or the Request itself).

        Returns the cancelled :class:`Request`, or None when it is not queued here (already
        taken, expired or unknown).
        """
        if isinstance(request_id, Request):
            request_id = request_id._id
        if isinstance(request_id, bool) or not isinstance(request_id, int):
            raise TypeError(f"cancel takes a request id or a Request, not {request_id!r}")
        with self._lock:
            fresh = self._expire_locked(time.monotonic())
        self._report(fresh)  # first: a raising callback cancels nothing
        with self._lock:
            req = self._live.get(request_id)
            if req is not None:
                self._unlink_locked(req)
                req._state = _CANCELLED
                self._n_cancelled += 1
                self._wake_all_locked(self._putters)
        return req

    def drain_expired(self):
        """The requests that expired since the last call (only without ``on_expire``)."""
        with self._lock:
            fresh = self._expire_locked(time.monotonic())
            out, self._expired = self._expired, []
        self._report(fresh)
        return out

    def close(self):
        """Refuse further puts and wake every waiting producer and consumer."""
        with self._lock:
            self._closed = True
            self._wake_all_locked(self._getters)
            self._wake_all_locked(self._putters)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def maxsize(self) -> int:
        return self._maxsize

    def __len__(self):
        with self._lock:
            fresh = self._expire_locked(time.monotonic())
            n = self._size
        self._report(fresh)
        return n

    def qsize(self) -> int:
        """Requests queued now (after expiring the overdue ones)."""
        return len(self)

    def stats(self) -> dict:
        """Counters: ``depth``, ``depth_by_priority`` {1..5: n}, ``put``, ``got``, ``expired``,
        ``cancelled``, ``mean_wait`` and ``max_wait`` (seconds queued, of taken requests),
        ``maxsize``, ``closed``, ``waiting_getters``, ``waiting_putters``."""
        with self._lock:
            fresh = self._expire_locked(time.monotonic())
            out = {
                "depth": self._size,
                "depth_by_priority": {p + 1: self._depth[p] for p in range(MAX_PRIORITY)},
                "put": self._n_put,
                "got": self._n_got,
                "expired": self._n_expired,
                "cancelled": self._n_cancelled,
                "mean_wait": self._wait_sum / self._n_got if self._n_got else 0.0,
                "max_wait": self._wait_max,
                "maxsize": self._maxsize,
                "closed": self._closed,
                "waiting_getters": len(self._getters),
                "waiting_putters": len(self._putters),
            }
        self._report(fresh)
        return out

    def __repr__(self):
        return f"BatchQueue(depth={self._size}, maxsize={self._maxsize}, closed={self._closed})"


def _new_lock():
    lock = _thread.allocate_lock()
    lock.acquire()
    return lock
