"""Pure-Python twin of :mod:`stockbatch._ext.coalesce`: the :class:`Coalescer`.

The Coalescer turns requests into as few provider calls as possible:

1. **Identical keys share one fetch.** A request whose ``key`` equals one that is pending or
   in flight waits for that fetch; every waiter gets the same result (or the same error).
2. **Overlapping ranges merge.** Pending ``history`` requests with equal ``range_key``
   (kind, provider, symbol, interval, params) whose ``[start, end)`` ranges overlap or touch
   become one call covering their union; the result is sliced back to each requester's range
   by its ``ts`` column. A request whose range lies inside a call already in flight joins it.
3. **Compatible requests group.** When a provider declares it can serve several symbols per
   call (``batch_limits``, e.g. quotes for up to 50 symbols), requests that differ only in the
   symbol are grouped into calls of at most that many symbols; the result is split by its
   ``symbol`` column (or, for a mapping result, by key).

How an engine drives it::

    co = Coalescer(batch_limits={("yahoo", "quote"): 50})
    fut = co.submit(request)              # concurrent.futures.Future (or submit_async)
    for call in co.take_calls():          # Call: kind, provider, symbols, interval, range
        try:
            result = await source.fetch(call)   # a pyarrow Table with symbol / ts columns
        except Exception as exc:
            co.fail(call, exc)            # every waiter gets exc
        else:
            co.complete(call, result)     # every waiter gets its slice

``add`` / ``add_many`` register requests without futures: then the ``(request, value)``
pairs returned by ``complete`` / ``complete_many`` / ``fail`` are the answers (a value that
is an exception instance is an error). Cancelling one waiter's future (or ``cancel(request)``)
never affects the others; a pending fetch whose waiters all withdrew is not planned at all.

Details an engine relies on:

* Every call returned by ``take_calls`` must be passed once to ``complete``, ``complete_many``
  or ``fail`` (a second time raises ValueError). Requests that arrive while it is in flight
  and have the same key (or, for one-symbol history calls, a range inside its range) are
  answered by it too: ``call.requests`` is read at answer time.
* A call with ``call.grouped`` (its provider has a ``batch_limits`` entry > 1) must be given
  a per-symbol result: a table with a ``symbol`` column, or a mapping symbol -> value. In a
  mapping, an exception value is that symbol's error; a missing symbol answers its waiters
  with :class:`~stockbatch.SymbolNotFound`.
* Where a waiter asked for a narrower range than the call fetched, its part is the rows
  with ``start <= ts < end``; a result that cannot be sliced (no ``ts`` timestamp column)
  answers those waiters with :class:`~stockbatch.SchemaError`.
* ``call.priority`` / ``call.deadline`` are the most urgent / earliest of its waiters, for
  scheduling; ``take_calls`` returns calls most urgent first.
* Thread-safe; asyncio futures from ``submit_async`` are resolved on their own loop even when
  another thread completes the call. ``stats()`` feeds :mod:`stockbatch.stats`.
"""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import itertools
import math
from collections.abc import Iterable
from typing import Any

from ._shared import filter_range as _filter_range
from ._shared import filter_symbol as _filter_symbol
from ._shared import set_future as _set_future
from ._shared import us_to_datetime as _us_to_datetime
from .queue import Request

__all__ = ["Coalescer", "Call"]

_call_ids = itertools.count(1)
_NEG = -math.inf
_POS = math.inf


def _lo(us):
    return _NEG if us is None else us


def _hi(us):
    return _POS if us is None else us


class _Entry:
    """One distinct key: its waiters (request, future-or-None) and, once planned, its call."""

    __slots__ = (
        "key",
        "range_key",
        "symbol",
        "start_us",
        "end_us",
        "waiters",
        "call",
        "priority",
        "deadline",
        "seq",
        "dead",
    )

    def __init__(self, req, fut, seq):
        self.key = req.key
        self.range_key = req.range_key
        self.symbol = req.symbol
        self.start_us = req.start_us
        self.end_us = req.end_us
        self.waiters = [(req, fut)]
        self.call = None
        self.priority = req.priority
        self.deadline = req.deadline
        self.seq = seq
        self.dead = False

    def join(self, req, fut):
        self.waiters.append((req, fut))
        if req.priority < self.priority:
            self.priority = req.priority
        if req.deadline is not None and (self.deadline is None or req.deadline < self.deadline):
            self.deadline = req.deadline


class Call:
    """One provider call planned by :meth:`Coalescer.take_calls`.

    Attributes
    ----------
    id : int
    kind, provider, interval : str
    symbols : tuple[str, ...]
        One symbol, or several when the provider serves them in one call.
    symbol : str
        The first (usually only) symbol.
    start, end : datetime or None; start_us, end_us : int or None
        The half-open range to fetch (the union of the merged requests' ranges).
    params : Mapping
    priority : int
        The most urgent priority among the waiters.
    deadline : float or None
        The earliest deadline among the waiters (monotonic clock).
    requests : tuple[Request, ...]
        Every request this call will answer (including ones that joined while in flight).
    grouped : bool
        The provider takes several symbols per call (``batch_limits`` > 1): the result must
        be per symbol (a table with a ``symbol`` column, or a mapping symbol -> value) and is
        split even when the call happens to carry one symbol.
    """

    __slots__ = (
        "id",
        "kind",
        "provider",
        "symbols",
        "interval",
        "start_us",
        "end_us",
        "params",
        "priority",
        "deadline",
        "grouped",
        "_entries",
        "_seq",
    )

    def __init__(self, entries, first, grouped=False):
        self.grouped = grouped
        self.id = next(_call_ids)
        self.kind = first.kind
        self.provider = first.provider
        self.interval = first.interval
        self.params = first.params
        self._entries = entries
        self.symbols = tuple(dict.fromkeys(e.symbol for e in entries))
        starts = [e.start_us for e in entries]
        ends = [e.end_us for e in entries]
        self.start_us = None if None in starts else min(starts)
        self.end_us = None if None in ends else max(ends)
        self.priority = min(e.priority for e in entries)
        deadlines = [e.deadline for e in entries if e.deadline is not None]
        self.deadline = min(deadlines) if deadlines else None
        self._seq = min(e.seq for e in entries)

    @property
    def symbol(self):
        return self.symbols[0]

    @property
    def start(self):
        return _us_to_datetime(self.start_us)

    @property
    def end(self):
        return _us_to_datetime(self.end_us)

    @property
    def requests(self):
        return tuple(req for e in self._entries for req, _ in e.waiters)

    def __len__(self):
        return sum(len(e.waiters) for e in self._entries)

    def __repr__(self):
        syms = ",".join(self.symbols[:5]) + (",…" if len(self.symbols) > 5 else "")
        return (
            f"Call(id={self.id}, kind={self.kind!r}, provider={self.provider!r}, "
            f"symbols=[{syms}], interval={self.interval!r}, start_us={self.start_us}, "
            f"end_us={self.end_us}, requests={len(self)})"
        )


def _part(call, entry, result):
    """The slice of ``result`` that answers ``entry``: its symbol and its range."""
    if call.grouped:
        result = _filter_symbol(result, entry.symbol)
    if (entry.start_us, entry.end_us) != (call.start_us, call.end_us):
        result = _filter_range(result, entry.start_us, entry.end_us)
    return result


def _cancelled(fut):
    return fut is not None and fut.cancelled()


class Coalescer:
    """Deduplicate, merge and group requests into provider calls (see the module docstring).

    Parameters
    ----------
    batch_limits : Mapping[str or (str, str), int], optional
        Most symbols one call may carry, by provider name or by ``(provider, kind)``; a
        missing entry means 1 (one symbol per call).
    merge_ranges : bool
        Merge overlapping or touching ``history`` ranges (default True).

    Thread-safe: any thread may add, take, complete or fail.
    """

    def __init__(self, *, batch_limits=None, merge_ranges=True):
        limits = {}
        for k, v in (batch_limits or {}).items():
            ok_key = isinstance(k, str) or (
                isinstance(k, tuple) and len(k) == 2 and all(isinstance(x, str) for x in k)
            )
            if not ok_key:
                raise TypeError(f"batch_limits keys are provider or (provider, kind), not {k!r}")
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"batch_limits[{k!r}] must be an int >= 1, not {v!r}")
            limits[k] = v
        self._limits = limits
        self._merge = bool(merge_ranges)
        self._lock = _thread.allocate_lock()
        self._by_key: dict[Any, Any] = {}  # key -> _Entry, pending or in flight
        self._pending = []  # _Entry in arrival order
        self._inflight: dict[int, Call] = {}  # call id -> Call
        self._flight_ranges: dict[
            Any, list[Call]
        ] = {}  # range_key -> [Call] (history calls in flight)
        self._seq = 0
        self._n_in = self._n_out = self._n_dedup = self._n_merged = self._n_grouped = 0
        self._n_done = self._n_failed = self._n_answered = self._n_cancelled = 0
        from ..stats import _track

        _track(self)

    def limit(self, provider, kind) -> int:
        """Most symbols per call for ``provider`` / ``kind``."""
        return self._limits.get((provider, kind)) or self._limits.get(provider) or 1

    # -- intake ------------------------------------------------------------------------------
    def _add_locked(self, req, fut):
        if type(req) is not Request:
            raise TypeError(f"Coalescer takes Request objects, not {type(req).__name__}")
        self._n_in += 1
        entry = self._by_key.get(req.key)
        if entry is not None and not entry.dead:
            entry.join(req, fut)
            self._n_dedup += 1
            return
        self._seq += 1
        entry = _Entry(req, fut, self._seq)
        self._by_key[entry.key] = entry
        if self._merge and req.kind == "history":
            for call in self._flight_ranges.get(entry.range_key, ()):
                if _lo(call.start_us) <= _lo(entry.start_us) and _hi(entry.end_us) <= _hi(
                    call.end_us
                ):
                    entry.call = call
                    call._entries.append(entry)
                    self._n_merged += 1
                    return
        self._pending.append(entry)

    def add(self, request) -> None:
        """Register ``request``; its answer comes back from :meth:`complete`/:meth:`fail`."""
        with self._lock:
            self._add_locked(request, None)

    def add_many(self, requests: Iterable) -> None:
        """:meth:`add` each request (all are checked first: a bad one adds nothing)."""
        reqs = list(requests)
        for req in reqs:
            if type(req) is not Request:
                raise TypeError(f"Coalescer takes Request objects, not {type(req).__name__}")
        with self._lock:
            for req in reqs:
                self._add_locked(req, None)

    def submit(self, request) -> concurrent.futures.Future:
        """Register ``request``; the returned future gets its result or error.

        Await it from asyncio with :func:`asyncio.wrap_future`, or use :meth:`submit_async`.
        """
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            self._add_locked(request, fut)
        fut.add_done_callback(lambda f: self._withdraw(request, f))
        return fut

    def submit_async(self, request) -> asyncio.Future:
        """Like :meth:`submit`, returning a future of the running event loop (resolved
        thread-safely even when another thread completes the call)."""
        fut = asyncio.get_running_loop().create_future()
        with self._lock:
            self._add_locked(request, fut)
        fut.add_done_callback(lambda f: self._withdraw(request, f))
        return fut

    def _withdraw(self, request, fut):
        # done-callback of a waiter's future: when its owner cancelled it, stop waiting
        if fut.cancelled():
            self._remove_waiter(request)

    def _remove_waiter(self, request):
        """Unregister one waiter; returns its future, or False when it was not waiting."""
        with self._lock:
            entry = self._by_key.get(request.key)
            if entry is None:
                return False
            index = next((i for i, w in enumerate(entry.waiters) if w[0] is request), -1)
            if index < 0:
                return False
            fut = entry.waiters.pop(index)[1]
            self._n_cancelled += 1
            if not entry.waiters and entry.call is None:
                entry.dead = True  # nobody waits for this pending fetch: do not plan it
                del self._by_key[entry.key]
        return fut

    def cancel(self, request) -> bool:
        """Withdraw one request's interest. Other waiters of the same fetch keep theirs; a
        pending fetch nobody waits for any more is dropped. Its future (if any) is cancelled.
        Returns False when the request is not waiting here."""
        if type(request) is not Request:
            raise TypeError(f"cancel takes a Request, not {type(request).__name__}")
        fut = self._remove_waiter(request)
        if fut is False:
            return False
        if fut is not None:
            fut.cancel()
        return True

    # -- planning ----------------------------------------------------------------------------
    def take_calls(self) -> list:
        """Plan every pending request into provider calls and mark them in flight.

        Returns the calls, most urgent first (then oldest first). Each must eventually be
        passed to :meth:`complete` or :meth:`fail`.
        """
        with self._lock:
            pending, self._pending = self._pending, []
            units = []  # (entries, first request) groups that each need one fetch range
            ranged: dict[Any, list[Any]] = {}
            for entry in pending:
                if entry.dead:
                    continue
                if self._merge and entry.waiters[0][0].kind == "history":
                    ranged.setdefault(entry.range_key, []).append(entry)
                else:
                    units.append([entry])
            for group in ranged.values():
                if len(group) == 1:
                    units.append(group)
                    continue
                group.sort(key=lambda e: (_lo(e.start_us), _hi(e.end_us), e.seq))
                current = [group[0]]
                hi = _hi(group[0].end_us)
                for e in group[1:]:
                    if _lo(e.start_us) <= hi:  # overlaps or touches
                        current.append(e)
                        hi = max(hi, _hi(e.end_us))
                    else:
                        units.append(current)
                        current = [e]
                        hi = _hi(e.end_us)
                units.append(current)
            # (entries, symbols of a grouped call or None, first request, grouped)
            calls: list[tuple[list[Any], set[str] | None, Any, bool]] = []
            buckets: dict[Any, tuple[list[Any], set[str], Any, bool]] = {}
            for unit in units:
                first = unit[0].waiters[0][0]
                if len(unit) > 1:
                    self._n_merged += len(unit) - 1
                lim = self.limit(first.provider, first.kind)
                if lim > 1:
                    starts = [e.start_us for e in unit]
                    ends = [e.end_us for e in unit]
                    s = None if None in starts else min(starts)
                    e_ = None if None in ends else max(ends)
                    bkey = (first.kind, first.provider, first.interval, s, e_, first.key[6])
                    bucket = buckets.get(bkey)
                    if bucket is None or len(bucket[1]) >= lim:
                        bucket = buckets[bkey] = ([], set(), first, True)
                        calls.append(bucket)
                    else:
                        self._n_grouped += 1
                    bucket[0].extend(unit)
                    bucket[1].add(first.symbol)
                else:
                    calls.append((unit, None, first, False))
            out = []
            for entries, _, first, grouped in calls:
                call = Call(entries, first, grouped)
                for e in entries:
                    e.call = call
                self._inflight[call.id] = call
                keys = {e.range_key for e in entries}
                if self._merge and first.kind == "history" and len(keys) == 1:
                    # one symbol: later requests inside its range may join it in flight
                    self._flight_ranges.setdefault(keys.pop(), []).append(call)
                out.append(call)
            self._n_out += len(out)
        out.sort(key=lambda c: (c.priority, c._seq))
        return out

    # -- answers -----------------------------------------------------------------------------
    def _finish_locked(self, call: Call) -> list[Any]:
        if self._inflight.pop(call.id, None) is not call:
            raise ValueError(
                f"call {call.id} is not in flight in this Coalescer (already completed or failed?)"
            )
        for e in call._entries:
            key = e.key
            if self._by_key.get(key) is e:
                del self._by_key[key]
        for rk in {e.range_key for e in call._entries}:
            lst = self._flight_ranges.get(rk)
            if lst is not None and call in lst:
                lst.remove(call)
                if not lst:
                    del self._flight_ranges[rk]
        return list(call._entries)

    def complete(self, call, result) -> list:
        """Answer every waiter of ``call`` with its slice of ``result``.

        ``result`` is a pyarrow Table/RecordBatch (split by ``symbol`` for multi-symbol calls,
        sliced by ``ts`` where a waiter asked for a narrower range), a mapping symbol ->
        result for multi-symbol calls, or any object when no slicing is needed. Returns the
        ``(request, value)`` answers; a value that is an exception (e.g. SchemaError when the
        result cannot be sliced) went to that waiter as its error.
        """
        if not isinstance(call, Call):
            raise TypeError(f"complete takes a Call, not {type(call).__name__}")
        with self._lock:
            entries = self._finish_locked(call)
            self._n_done += 1
        answers = []
        for e in entries:
            value = _part(call, e, result)
            is_error = isinstance(value, BaseException)
            for req, fut in e.waiters:
                if _cancelled(fut):
                    continue
                answers.append((req, value))
                if fut is not None:
                    _set_future(fut, value, is_error)
        with self._lock:
            self._n_answered += len(answers)
        return answers

    def complete_many(self, calls, results) -> list:
        """:meth:`complete` each call with the result at the same position; returns all the
        answers in one list. Every call is checked to be in flight before any is answered."""
        calls = list(calls)
        results = list(results)
        if len(calls) != len(results):
            raise ValueError(f"{len(calls)} calls but {len(results)} results")
        with self._lock:
            seen: set[int] = set()
            for call in calls:
                if (
                    not isinstance(call, Call)
                    or self._inflight.get(call.id) is not call
                    or call.id in seen
                ):
                    raise ValueError(
                        f"{call!r} is not a call in flight in this Coalescer (or appears twice)"
                    )
                seen.add(call.id)
        answers = []
        for call, result in zip(calls, results, strict=True):
            answers.extend(self.complete(call, result))
        return answers

    def fail(self, call, exc) -> list:
        """Answer every waiter of ``call`` with the same exception ``exc``; returns the
        ``(request, exc)`` answers."""
        if not isinstance(call, Call):
            raise TypeError(f"fail takes a Call, not {type(call).__name__}")
        if not isinstance(exc, BaseException):
            raise TypeError(f"fail needs an exception instance, not {type(exc).__name__}")
        with self._lock:
            entries = self._finish_locked(call)
            self._n_failed += 1
        answers = []
        for e in entries:
            for req, fut in e.waiters:
                if _cancelled(fut):
                    continue
                answers.append((req, exc))
                if fut is not None:
                    _set_future(fut, exc, True)
        with self._lock:
            self._n_answered += len(answers)
        return answers

    # -- reporting ---------------------------------------------------------------------------
    def in_flight(self) -> int:
        """How many calls are taken and not yet completed or failed."""
        with self._lock:
            return len(self._inflight)

    def stats(self) -> dict:
        """``requests_in``, ``calls_out``, ``saving_ratio`` (1 - calls_out / requests_in),
        ``deduplicated`` (joined an identical fetch), ``merged`` (range merged or joined an
        in-flight range), ``grouped`` (folded into a multi-symbol call), ``pending``,
        ``in_flight``, ``calls_completed``, ``calls_failed``, ``answered``, ``cancelled``."""
        with self._lock:
            return {
                "requests_in": self._n_in,
                "calls_out": self._n_out,
                "saving_ratio": 1.0 - self._n_out / self._n_in if self._n_in else 0.0,
                "deduplicated": self._n_dedup,
                "merged": self._n_merged,
                "grouped": self._n_grouped,
                "pending": sum(1 for e in self._pending if not e.dead),
                "in_flight": len(self._inflight),
                "calls_completed": self._n_done,
                "calls_failed": self._n_failed,
                "answered": self._n_answered,
                "cancelled": self._n_cancelled,
            }

    def __repr__(self):
        return (
            f"Coalescer(requests_in={self._n_in}, calls_out={self._n_out}, "
            f"in_flight={len(self._inflight)})"
        )
