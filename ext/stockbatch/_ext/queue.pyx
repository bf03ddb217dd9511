"""Compiled Request and BatchQueue. Pure-Python twin and readable spec: stockbatch._py.queue.

Layout: one FIFO ring buffer of ``PyObject*`` per priority (only 5 priorities, so a pop is
O(1) and beats a heap), a min-heap of deadlines for the requests that have one, and an
open-addressing id -> request map for ``cancel``. Cancelled and expired requests are unlinked
at once (counts, map) and their ring slot is skipped lazily when it reaches the head (rings
are compacted when stale slots outnumber live ones).

Thread safety: every state change runs under the GIL without calling back into Python code
(no lock to take on the fast path). Waiting threads block on private ``_thread`` locks with
the GIL released; coroutines wait on futures woken with ``loop.call_soon_threadsafe``.
"""

cimport cython

import _thread
import asyncio
import math
import time
from collections import deque
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from types import MappingProxyType

from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from libc.math cimport INFINITY, isnan
from libc.stdint cimport uint64_t
from libc.string cimport memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from stockbatch._errors import QueueClosed, QueueFull
from stockbatch._py._shared import KINDS, MAX_PRIORITY, MIN_PRIORITY
from stockbatch._py._shared import STATE_NAMES as _STATE_NAMES
from stockbatch._py._shared import us_to_datetime as _us_to_datetime

__all__ = ["Request", "BatchQueue", "KINDS", "MIN_PRIORITY", "MAX_PRIORITY", "to_us"]

cdef enum:
    S_NEW = 0
    S_QUEUED = 1
    S_TAKEN = 2
    S_EXPIRED = 3
    S_CANCELLED = 4

# Odd ids here, even ids in the twin: unique in the process whichever backends run.
cdef uint64_t _next_id = 1
cdef uint64_t _next_queue = 1
cdef uint64_t _mark_gen = 0

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_DATE = date(1970, 1, 1)
_US = timedelta(microseconds=1)
_NO_PARAMS = MappingProxyType({})  # shared: no allocation per request without params


cdef inline double _now() noexcept nogil:
    # the clock of time.monotonic(), without a Python call
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


def to_us(value, name="value"):
    """Microseconds since the Unix epoch (UTC) of ``value``, or None.

    Accepts None, an int (already microseconds), an aware or naive datetime (naive = UTC),
    a date (midnight UTC) or an ISO 8601 string.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a date/time, not bool")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name} is not an ISO 8601 date or date-time: {value!r}") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return (value - _EPOCH) // _US
    if isinstance(value, date):
        return (value - _EPOCH_DATE).days * 86_400_000_000
    raise TypeError(
        f"{name} must be None, int microseconds, datetime, date or ISO string, "
        f"not {type(value).__name__}"
    )


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
            raise TypeError(f"params[{k!r}] must be str, int, float, bool, None or a tuple of "
                            f"them (use a tuple, not a list), not {type(v).__name__}")
        items.append((k, v))
    items.sort(key=lambda kv: kv[0])
    return tuple(items), MappingProxyType(dict(items))


def _check_str(value, name, optional=False):
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str, not {value!r}")
    return value


# Not tracked by the cycle collector: a request refers only to immutable atoms, tuples of
# them and a read-only params mapping, so it cannot be part of a cycle (unless a params value
# refers back to its own request). Saves a full-GC traversal of every queued request.
@cython.no_gc
cdef class Request:
    """One fetch someone asked for.

    ``Request(kind, provider, symbol, interval=None, start=None, end=None, params=None,
    priority=3, deadline=None)``: kind is ``history``, ``quote`` or ``profile``; the range is
    half-open ``[start, end)`` (int microseconds, datetime, date or ISO string; naive = UTC);
    ``params`` maps str to plain values (str, int, float, bool, None or tuples of them; part
    of the identity, never shown in repr);
    priority 1 (most urgent) to 5; ``deadline`` an absolute :func:`time.monotonic` time.

    ``id`` is unique in the process (a counter); ``key`` is hashable and equal for two requests
    iff they are the same fetch; ``range_key`` is ``key`` without the range.
    """

    def __init__(self, kind, provider, symbol, interval=None, start=None, end=None, params=None,
                 priority=3, deadline=None):
        global _next_id
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        _check_str(provider, "provider")
        _check_str(symbol, "symbol")
        _check_str(interval, "interval", True)
        if kind == "history" and interval is None:
            raise ValueError("a history request needs an interval")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int 1..5, not {priority!r}")
        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be 1 (most urgent) to 5, not {priority}")
        cdef double c_deadline = INFINITY
        if deadline is not None:
            if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
                raise TypeError(f"deadline must be a monotonic time in seconds, not {deadline!r}")
            c_deadline = float(deadline)
            if isnan(c_deadline):
                raise ValueError("deadline is NaN")
        start_us = to_us(start, "start")
        end_us = to_us(end, "end")
        if start_us is not None and end_us is not None and start_us >= end_us:
            raise ValueError("start must be before end (the range is [start, end))")
        frozen, mapping = _freeze_params(params)
        self.c_id = _next_id
        _next_id += 2
        self.id = self.c_id
        self.kind = kind
        self.c_kind = KINDS.index(kind)
        self.provider = provider
        self.symbol = symbol
        self.interval = interval
        self.start_us = start_us
        self.end_us = end_us
        self.c_lo = -INFINITY if start_us is None else <double>start_us
        self.c_hi = INFINITY if end_us is None else <double>end_us
        self.params = mapping
        self.priority = priority
        self.c_deadline = c_deadline
        self.key = (kind, provider, symbol, interval, start_us, end_us, frozen)
        self.range_key = (kind, provider, symbol, interval, frozen)
        self.c_rhash = hash(self.range_key)
        self.c_params = frozen
        self.c_state = S_NEW

    @property
    def start(self):
        return _us_to_datetime(self.start_us)

    @property
    def end(self):
        return _us_to_datetime(self.end_us)

    @property
    def deadline(self):
        return None if self.c_deadline == INFINITY else self.c_deadline

    @property
    def state(self):
        """``"new"``, ``"queued"``, ``"taken"``, ``"expired"`` or ``"cancelled"``."""
        return _STATE_NAMES[self.c_state]

    def expired(self, now=None):
        """True when the deadline has passed (at ``now``, default :func:`time.monotonic`)."""
        if self.c_deadline == INFINITY:
            return False
        return (_now() if now is None else now) >= self.c_deadline

    def __repr__(self):
        parts = [f"id={self.id}", f"kind={self.kind!r}", f"provider={self.provider!r}",
                 f"symbol={self.symbol!r}"]
        if self.interval is not None:
            parts.append(f"interval={self.interval!r}")
        if self.start_us is not None:
            parts.append(f"start={self.start.isoformat()}")
        if self.end_us is not None:
            parts.append(f"end={self.end.isoformat()}")
        if self.key[6]:
            # keys only: parameter values may be secrets (API keys)
            parts.append(f"params=[{', '.join(k for k, _ in self.key[6])}]")
        parts.append(f"priority={self.priority}")
        return f"Request({', '.join(parts)})"


_RETRY = object()  # an attempt stopped to report fresh expiries first: try again


def _resolve(fut):
    if not fut.done():
        fut.set_result(None)


cdef inline bint _live(Request req, uint64_t uid) noexcept:
    return req.c_state == S_QUEUED and req.c_owner == uid


cdef inline Py_ssize_t _home(uint64_t key, Py_ssize_t mask) noexcept nogil:
    # Fibonacci hashing: sequential ids spread over the table
    return <Py_ssize_t>((key * 0x9E3779B97F4A7C15ULL) >> 32) & mask


cdef inline bint _before(Deadline* a, Deadline* b) noexcept nogil:
    return a.when < b.when or (a.when == b.when and a.seq < b.seq)


def _new_lock():
    lock = _thread.allocate_lock()
    lock.acquire()
    return lock


cdef class BatchQueue:
    """Bounded, thread-safe priority queue of :class:`Request` with deadlines and batches.

    ``BatchQueue(maxsize=0, *, on_expire=None)``: ``maxsize`` 0 is unbounded; ``on_expire``
    is called for each request whose deadline passed while queued (without it they are kept
    for :meth:`drain_expired`), before the operation that found them takes, puts or cancels
    anything (so a raising callback loses nothing). Priority 1 first, FIFO inside a
    priority; every operation first expires overdue requests. ``close()`` wakes every waiter.
    """

    def __cinit__(self):
        cdef int p
        for p in range(5):
            self.c_rings[p].buf = <PyObject**>PyMem_Malloc(16 * sizeof(PyObject*))
            if self.c_rings[p].buf == NULL:
                raise MemoryError()
            self.c_rings[p].cap = 16
            self.c_rings[p].head = 0
            self.c_rings[p].count = 0
            self.c_depth[p] = 0
        self.c_heap = <Deadline*>PyMem_Malloc(16 * sizeof(Deadline))
        self.c_heap_cap = 16
        self.c_map = <IdSlot*>PyMem_Malloc(64 * sizeof(IdSlot))
        if self.c_heap == NULL or self.c_map == NULL:
            raise MemoryError()
        memset(self.c_map, 0, 64 * sizeof(IdSlot))
        self.c_map_cap = 64

    def __init__(self, maxsize=0, *, on_expire=None):
        global _next_queue
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(f"maxsize must be an int >= 0, not {maxsize!r}")
        if on_expire is not None and not callable(on_expire):
            raise TypeError("on_expire must be callable or None")
        self.c_maxsize = maxsize
        self._on_expire = on_expire
        self._expired = []
        self._getters = deque()
        self._putters = deque()
        self.c_uid = _next_queue
        _next_queue += 1
        from stockbatch.stats import _track

        _track(self)

    def __dealloc__(self):
        cdef int p
        cdef Py_ssize_t i
        for p in range(5):
            if self.c_rings[p].buf != NULL:
                for i in range(self.c_rings[p].count):
                    Py_DECREF(<object>self.c_rings[p].buf[
                        (self.c_rings[p].head + i) & (self.c_rings[p].cap - 1)])
                PyMem_Free(self.c_rings[p].buf)
        if self.c_heap != NULL:
            for i in range(self.c_heap_n):
                Py_DECREF(<object>self.c_heap[i].req)
            PyMem_Free(self.c_heap)
        PyMem_Free(self.c_map)

    # -- C structures ------------------------------------------------------------------------
    cdef int _ring_push(self, int p, PyObject* obj) except -1:
        cdef Ring* r = &self.c_rings[p]
        cdef PyObject** buf
        cdef Py_ssize_t i
        if r.count == r.cap:
            buf = <PyObject**>PyMem_Malloc(2 * r.cap * sizeof(PyObject*))
            if buf == NULL:
                raise MemoryError()
            for i in range(r.count):
                buf[i] = r.buf[(r.head + i) & (r.cap - 1)]
            PyMem_Free(r.buf)
            r.buf = buf
            r.head = 0
            r.cap *= 2
        Py_INCREF(<object>obj)
        r.buf[(r.head + r.count) & (r.cap - 1)] = obj
        r.count += 1
        return 0

    cdef void _compact(self, int p):
        # drop the stale (cancelled / expired) slots of ring p, keeping FIFO order
        cdef Ring* r = &self.c_rings[p]
        cdef Py_ssize_t i, k = 0
        cdef PyObject* obj
        for i in range(r.count):
            obj = r.buf[(r.head + i) & (r.cap - 1)]
            if _live(<Request>obj, self.c_uid):
                r.buf[(r.head + k) & (r.cap - 1)] = obj
                k += 1
            else:
                Py_DECREF(<object>obj)
        r.count = k

    cdef int _heap_push(self, double when, PyObject* obj) except -1:
        cdef Deadline* heap
        cdef Deadline item
        cdef Py_ssize_t i, parent
        if self.c_heap_n == self.c_heap_cap:
            heap = <Deadline*>PyMem_Malloc(2 * self.c_heap_cap * sizeof(Deadline))
            if heap == NULL:
                raise MemoryError()
            for i in range(self.c_heap_n):
                heap[i] = self.c_heap[i]
            PyMem_Free(self.c_heap)
            self.c_heap = heap
            self.c_heap_cap *= 2
        Py_INCREF(<object>obj)
        item.when = when
        item.seq = self.c_heap_seq
        item.req = obj
        self.c_heap_seq += 1
        i = self.c_heap_n
        self.c_heap_n += 1
        while i > 0:
            parent = (i - 1) >> 1
            if not _before(&item, &self.c_heap[parent]):
                break
            self.c_heap[i] = self.c_heap[parent]
            i = parent
        self.c_heap[i] = item
        return 0

    cdef int _map_put(self, uint64_t key, PyObject* obj) except -1:
        cdef IdSlot* old
        cdef Py_ssize_t old_cap, i, j, mask
        if (self.c_map_n + 1) * 2 > self.c_map_cap:
            old = self.c_map
            old_cap = self.c_map_cap
            self.c_map = <IdSlot*>PyMem_Malloc(2 * old_cap * sizeof(IdSlot))
            if self.c_map == NULL:
                self.c_map = old
                raise MemoryError()
            memset(self.c_map, 0, 2 * old_cap * sizeof(IdSlot))
            self.c_map_cap = 2 * old_cap
            mask = self.c_map_cap - 1
            for i in range(old_cap):
                if old[i].id != 0:
                    j = _home(old[i].id, mask)
                    while self.c_map[j].id != 0:
                        j = (j + 1) & mask
                    self.c_map[j] = old[i]
            PyMem_Free(old)
        mask = self.c_map_cap - 1
        j = _home(key, mask)
        while self.c_map[j].id != 0:
            j = (j + 1) & mask
        self.c_map[j].id = key
        self.c_map[j].req = obj
        self.c_map_n += 1
        return 0

    cdef PyObject* _map_get(self, uint64_t key):
        cdef Py_ssize_t mask = self.c_map_cap - 1
        cdef Py_ssize_t j = _home(key, mask)
        while self.c_map[j].id != 0:
            if self.c_map[j].id == key:
                return self.c_map[j].req
            j = (j + 1) & mask
        return NULL

    cdef void _map_del(self, uint64_t key):
        # linear probing with backward-shift deletion: no tombstones
        cdef Py_ssize_t mask = self.c_map_cap - 1
        cdef Py_ssize_t i = _home(key, mask), j, k
        while self.c_map[i].id != key:
            if self.c_map[i].id == 0:
                return
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            if self.c_map[j].id == 0:
                break
            k = _home(self.c_map[j].id, mask)
            if (i <= j and (k <= i or k > j)) or (i > j and k <= i and k > j):
                self.c_map[i] = self.c_map[j]
                i = j
        self.c_map[i].id = 0
        self.c_map[i].req = NULL
        self.c_map_n -= 1

    cdef void _unlink(self, Request req):
        self.c_depth[req.priority - 1] -= 1
        self.c_size -= 1
        self._map_del(req.c_id)

    cdef int _wake(self, object waiters, Py_ssize_t n) except -1:
        # n < 0: wake all
        while n != 0 and waiters:
            waiter = waiters.popleft()
            if type(waiter) is tuple:
                loop, fut = waiter
                try:
                    loop.call_soon_threadsafe(_resolve, fut)
                except RuntimeError:  # that loop is closed: nobody is left to wake
                    pass
            else:
                waiter.release()
            n -= 1
        return 0

    # -- the core operations (atomic under the GIL) ------------------------------------------
    cdef list _expire(self, double now):
        """Unlink every queued request whose deadline passed; None when there is none."""
        cdef list fresh = None
        cdef Request req
        cdef Deadline last
        cdef PyObject* obj
        cdef Py_ssize_t i, child, n
        cdef int p
        cdef bint stale = False
        while self.c_heap_n > 0 and self.c_heap[0].when <= now:
            obj = self.c_heap[0].req
            # pop the heap top: sift the last entry down from the root
            self.c_heap_n -= 1
            n = self.c_heap_n
            if n > 0:
                last = self.c_heap[n]
                i = 0
                while True:
                    child = 2 * i + 1
                    if child >= n:
                        break
                    if child + 1 < n and _before(&self.c_heap[child + 1], &self.c_heap[child]):
                        child += 1
                    if not _before(&self.c_heap[child], &last):
                        break
                    self.c_heap[i] = self.c_heap[child]
                    i = child
                self.c_heap[i] = last
            req = <Request>obj
            Py_DECREF(<object>obj)  # the heap's reference; `req` holds its own
            if _live(req, self.c_uid):
                self._unlink(req)
                req.c_state = S_EXPIRED
                if fresh is None:
                    fresh = []
                fresh.append(req)
                stale = True
        if fresh is not None:
            self.n_expired += len(fresh)
            if self._on_expire is None:
                self._expired.extend(fresh)
            if self._putters:
                self._wake(self._putters, -1)
        if stale:
            for p in range(5):
                if self.c_rings[p].count - self.c_depth[p] > 64 + self.c_depth[p]:
                    self._compact(p)
        return fresh

    cdef int _push(self, list reqs, double now, list fresh) except -1:
        cdef Request req
        cdef Py_ssize_t n = 0
        for req in reqs:
            if req.c_deadline <= now:
                req.c_state = S_EXPIRED
                fresh.append(req)
                self.n_expired += 1
                if self._on_expire is None:
                    self._expired.append(req)
                continue
            self._ring_push(req.priority - 1, <PyObject*>req)
            self._map_put(req.c_id, <PyObject*>req)
            if req.c_deadline != INFINITY:
                self._heap_push(req.c_deadline, <PyObject*>req)
            req.c_state = S_QUEUED
            req.c_owner = self.c_uid
            req.c_enq = now
            self.c_depth[req.priority - 1] += 1
            n += 1
        self.c_size += n
        self.n_put += len(reqs)
        if n and self._getters:
            self._wake(self._getters, n)
        return 0

    cdef list _take(self, Py_ssize_t max_items, double now):
        cdef Py_ssize_t n = self.c_size if self.c_size < max_items else max_items
        cdef Py_ssize_t i = 0
        cdef int p
        cdef Ring* r
        cdef PyObject* obj
        cdef Request req
        cdef double wait
        if n == 0:
            return []
        cdef list out = PyList_New(n)
        for p in range(5):
            r = &self.c_rings[p]
            while i < n and r.count > 0:
                obj = r.buf[r.head]
                r.head = (r.head + 1) & (r.cap - 1)
                r.count -= 1
                req = <Request>obj
                if _live(req, self.c_uid):
                    self.c_depth[p] -= 1
                    self._map_del(req.c_id)
                    req.c_state = S_TAKEN
                    wait = now - req.c_enq
                    self.wait_sum += wait
                    if wait > self.wait_max:
                        self.wait_max = wait
                    PyList_SET_ITEM(out, i, <object>obj)  # steals the ring's reference
                    i += 1
                else:
                    Py_DECREF(<object>obj)
            if i == n:
                break
        self.c_size -= n
        self.n_got += n
        if self._putters:
            self._wake(self._putters, -1)
        return out

    # -- helpers shared by the blocking and async paths -------------------------------------
    cdef object _report(self, list fresh):
        if fresh and self._on_expire is not None:
            for req in fresh:
                self._on_expire(req)

    def _check_batch(self, requests):
        global _mark_gen
        cdef list reqs = list(requests)
        cdef Request req
        _mark_gen += 1
        for obj in reqs:
            if type(obj) is not Request:
                raise TypeError(f"BatchQueue takes Request objects, not {type(obj).__name__}")
            req = <Request>obj
            if req.c_state == S_QUEUED:
                raise ValueError(f"request {req.id} is already queued")
            if req.c_state == S_EXPIRED or req.c_state == S_CANCELLED:
                raise ValueError(f"request {req.id} was {req.state}: make a new Request")
            if req.c_mark == _mark_gen:
                raise ValueError(f"request {req.id} appears twice in one put_many")
            req.c_mark = _mark_gen
        if self.c_maxsize and len(reqs) > self.c_maxsize:
            raise ValueError(f"{len(reqs)} requests can never fit a queue of maxsize "
                             f"{self.c_maxsize}")
        return reqs

    def _try_put(self, list reqs, double endtime, make_waiter):
        """One atomic attempt: (error, waiter, wait, fresh)."""
        cdef double now = _now()
        cdef list fresh = self._expire(now)
        cdef double wait
        if fresh is not None and self._on_expire is not None:
            return None, _RETRY, 0.0, fresh  # report them before changing anything else
        if fresh is None:
            fresh = []
        if self.c_closed:
            return QueueClosed("put on a closed BatchQueue"), None, 0.0, fresh
        if not self.c_maxsize or self.c_size + len(reqs) <= self.c_maxsize:
            self._push(reqs, now, fresh)
            return None, None, 0.0, fresh
        if now >= endtime:
            return (QueueFull(f"BatchQueue full ({self.c_size}/{self.c_maxsize})"), None, 0.0,
                    fresh)
        waiter = make_waiter()
        self._putters.append(waiter)
        wait = endtime - now
        if self.c_heap_n and self.c_heap[0].when - now < wait:
            wait = self.c_heap[0].when - now  # wake when a deadline frees room
        return None, waiter, wait, fresh

    def _forget(self, waiters, waiter, bint getter):
        """A waiter gave up: unregister it or, if already woken, pass the wake-up on."""
        try:
            waiters.remove(waiter)
        except ValueError:
            if getter:
                if self.c_size:
                    self._wake(waiters, 1)
            else:
                self._wake(waiters, -1)

    # -- producers ---------------------------------------------------------------------------
    def put(self, request, *, timeout=None):
        """Add one request; block while full (up to ``timeout`` s, then raise QueueFull)."""
        cdef Request req
        cdef double now
        cdef list fresh
        if type(request) is Request and not self.c_closed:
            req = <Request>request
            if req.c_state == S_NEW or req.c_state == S_TAKEN:
                # fast path, one C pass: room now and not already past its deadline
                now = _now()
                fresh = self._expire(now)
                if fresh is None and req.c_deadline > now and (
                        not self.c_maxsize or self.c_size < self.c_maxsize):
                    self._push([req], now, None)
                    return
                self._report(fresh)
        self.put_many((request,), timeout=timeout)

    def put_nowait(self, request):
        """Add one request or raise :class:`~stockbatch.QueueFull` at once."""
        self.put_many((request,), timeout=0)

    def put_many(self, requests, *, timeout=None):
        """Add all ``requests`` at once, in order, or none of them.

        Blocks until there is room for all (``timeout`` None = forever, 0 = do not wait),
        then raises :class:`~stockbatch.QueueFull` having added nothing. Requests whose
        deadline already passed are reported as expired rather than queued.
        """
        cdef list reqs = self._check_batch(requests)
        cdef double endtime = INFINITY if timeout is None else _now() + max(0.0, timeout)
        while True:
            error, waiter, wait, fresh = self._try_put(reqs, endtime, _new_lock)
            self._report(fresh)
            if error is not None:
                raise error
            if waiter is None:
                return
            if waiter is _RETRY:
                continue
            if not waiter.acquire(True, -1 if wait == INFINITY else max(wait, 0.0)):
                self._forget(self._putters, waiter, False)

    async def put_async(self, request, *, timeout=None):
        """Coroutine form of :meth:`put`."""
        await self.put_many_async((request,), timeout=timeout)

    async def put_many_async(self, requests, *, timeout=None):
        """Coroutine form of :meth:`put_many`: waits without blocking the event loop."""
        reqs = self._check_batch(requests)
        loop = asyncio.get_running_loop()
        endtime = math.inf if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            error, waiter, wait, fresh = self._try_put(
                reqs, endtime, lambda: (loop, loop.create_future()))
            self._report(fresh)
            if error is not None:
                raise error
            if waiter is None:
                return
            if waiter is _RETRY:
                continue
            await self._await_waiter(waiter, wait, self._putters, False)

    async def _await_waiter(self, waiter, wait, waiters, getter):
        try:
            if wait == math.inf:
                await waiter[1]
            else:
                await asyncio.wait_for(waiter[1], max(wait, 0.0))
        except (asyncio.TimeoutError, TimeoutError):
            self._forget(waiters, waiter, getter)
        except BaseException:
            self._forget(waiters, waiter, getter)
            raise

    # -- consumers ---------------------------------------------------------------------------
    def _try_get(self, Py_ssize_t max_items, double endtime, make_waiter):
        """One atomic attempt: (items, fresh, waiter, wait); waiter is QueueClosed when the
        queue is closed and empty."""
        cdef double now = _now()
        cdef list fresh = self._expire(now)
        cdef list items
        if fresh is not None and self._on_expire is not None:
            return [], fresh, _RETRY, 0.0  # report them before taking anything
        items = self._take(max_items, now)
        if items or self.c_closed or now >= endtime:
            return items, fresh, (QueueClosed if not items and self.c_closed else None), 0.0
        waiter = make_waiter()
        self._getters.append(waiter)
        return items, fresh, waiter, endtime - now

    def get_batch(self, Py_ssize_t max_items, *, timeout=None):
        """Take up to ``max_items`` requests, most urgent first.

        Blocks until at least one is there (``timeout`` None = forever, 0 = do not wait) and
        returns ``[]`` when the timeout passes. On a closed queue returns what is left, then
        raises :class:`~stockbatch.QueueClosed`.
        """
        cdef double now
        cdef list fresh, items
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, not {max_items}")
        # fast path: no Python-level call at all when something is queued
        now = _now()
        fresh = self._expire(now)
        if fresh is not None:
            self._report(fresh)  # before taking: a raising callback loses nothing
        items = self._take(max_items, now)
        if items:
            return items
        if self.c_closed:
            raise QueueClosed("get_batch on a closed, empty BatchQueue")
        if timeout is not None and timeout <= 0:
            return items
        cdef double endtime = INFINITY if timeout is None else now + timeout
        while True:
            items, fresh, waiter, wait = self._try_get(max_items, endtime, _new_lock)
            self._report(fresh)
            if waiter is _RETRY:
                continue
            if items:
                return items
            if waiter is QueueClosed:
                raise QueueClosed("get_batch on a closed, empty BatchQueue")
            if waiter is None:
                return []
            if not waiter.acquire(True, -1 if wait == INFINITY else max(wait, 0.0)):
                self._forget(self._getters, waiter, True)

    async def get_batch_async(self, max_items, *, timeout=None):
        """Coroutine form of :meth:`get_batch`: waits on a future woken by producers
        (``loop.call_soon_threadsafe``), never polling and never blocking the loop."""
        if not isinstance(max_items, int):
            raise TypeError(f"max_items must be an int, not {type(max_items).__name__}")
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, not {max_items}")
        loop = asyncio.get_running_loop()
        endtime = math.inf if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            items, fresh, waiter, wait = self._try_get(
                max_items, endtime, lambda: (loop, loop.create_future()))
            self._report(fresh)
            if waiter is _RETRY:
                continue
            if items:
                return items
            if waiter is QueueClosed:
                raise QueueClosed("get_batch on a closed, empty BatchQueue")
            if waiter is None:
                return []
            await self._await_waiter(waiter, wait, self._getters, True)

    # -- the rest ----------------------------------------------------------------------------
    def cancel(self, request_id):
        """Remove a queued request (by id or the Request itself).

        Returns the cancelled :class:`Request`, or None when it is not queued here (already
        taken, expired or unknown).
        """
        cdef uint64_t key
        cdef PyObject* obj
        cdef Request req = None
        cdef int p
        if isinstance(request_id, Request):
            request_id = (<Request>request_id).id
        if isinstance(request_id, bool) or not isinstance(request_id, int):
            raise TypeError(f"cancel takes a request id or a Request, not {request_id!r}")
        self._report(self._expire(_now()))  # first: a raising callback cancels nothing
        if 0 < request_id < 2 ** 64:
            key = request_id
            obj = self._map_get(key)
            if obj != NULL:
                req = <Request>obj
                self._unlink(req)
                req.c_state = S_CANCELLED
                self.n_cancelled += 1
                p = req.priority - 1
                if self.c_rings[p].count - self.c_depth[p] > 64 + self.c_depth[p]:
                    self._compact(p)
                if self._putters:
                    self._wake(self._putters, -1)
        return req

    def drain_expired(self):
        """The requests that expired since the last call (only without ``on_expire``)."""
        fresh = self._expire(_now())
        out = self._expired
        self._expired = []
        self._report(fresh)
        return out

    def close(self):
        """Refuse further puts and wake every waiting producer and consumer."""
        self.c_closed = True
        self._wake(self._getters, -1)
        self._wake(self._putters, -1)

    @property
    def closed(self):
        return bool(self.c_closed)

    @property
    def maxsize(self):
        return self.c_maxsize

    def __len__(self):
        self._report(self._expire(_now()))
        return self.c_size

    def qsize(self):
        """Requests queued now (after expiring the overdue ones)."""
        return len(self)

    def stats(self):
        """Counters: ``depth``, ``depth_by_priority`` {1..5: n}, ``put``, ``got``, ``expired``,
        ``cancelled``, ``mean_wait`` and ``max_wait`` (seconds queued, of taken requests),
        ``maxsize``, ``closed``, ``waiting_getters``, ``waiting_putters``."""
        fresh = self._expire(_now())
        out = {
            "depth": self.c_size,
            "depth_by_priority": {p + 1: self.c_depth[p] for p in range(5)},
            "put": self.n_put,
            "got": self.n_got,
            "expired": self.n_expired,
            "cancelled": self.n_cancelled,
            "mean_wait": self.wait_sum / self.n_got if self.n_got else 0.0,
            "max_wait": self.wait_max,
            "maxsize": self.c_maxsize,
            "closed": bool(self.c_closed),
            "waiting_getters": len(self._getters),
            "waiting_putters": len(self._putters),
        }
        self._report(fresh)
        return out

    def __repr__(self):
        return (f"BatchQueue(depth={self.c_size}, maxsize={self.c_maxsize}, "
                f"closed={bool(self.c_closed)})")
