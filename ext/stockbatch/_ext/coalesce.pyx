"""Compiled Coalescer. Pure-Python twin and readable spec: stockbatch._py.coalesce.

Every entry (one distinct request key) and call lives in plain dicts keyed by HashedKey (a
tuple hashed once, when the Request was made), so a lookup costs one pointer compare in the
common case. State changes run under the GIL without calling Python code, so they are atomic
between threads; futures are resolved (and pyarrow slicing runs) after the state change.
"""

cimport cython

import asyncio
import weakref
import concurrent.futures
from collections.abc import Mapping

from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject
from libc.math cimport INFINITY
from libc.stdint cimport uint64_t

from stockbatch._errors import SchemaError, SymbolNotFound

from stockbatch._ext.queue cimport Request

from stockbatch._ext.queue import _us_to_datetime

__all__ = ["Coalescer", "Call"]

cdef uint64_t _next_call = 1
cdef uint64_t _next_coalescer = 1


# Entries and calls are not tracked by the cycle collector: they never refer back to a call
# or a coalescer (futures' callbacks hold a weak reference), so they cannot form cycles, and
# the full collections do not have to walk every request in flight.
@cython.no_gc
cdef class _Entry:
    """One distinct key: its waiting requests (and futures)."""

    cdef int join(self, Request req, object fut) except -1:
        if self.first is None:
            self.first = req
            if self.futs is not None:
                self.futs.insert(0, fut)
        else:
            if self.extra is None:
                self.extra = [req]
            else:
                self.extra.append(req)
            if self.futs is not None:
                self.futs.append(fut)
            elif fut is not None:
                self.futs = [None] * len(self.extra)
                self.futs.append(fut)
        if req.priority < self.priority:
            self.priority = req.priority
        if req.c_deadline < self.deadline:
            self.deadline = req.c_deadline
        return 0

    cdef list waiters(self):
        if self.first is None:
            return []
        if self.extra is None:
            return [self.first]
        return [self.first] + self.extra


cdef _Entry _new_entry(Request req, object fut, uint64_t seq):
    cdef _Entry e = _Entry.__new__(_Entry)
    e.proto = req
    e.hrange = req.c_hrange
    e.lo = req.c_lo
    e.hi = req.c_hi
    e.first = req
    if fut is not None:
        e.futs = [fut]
    e.priority = req.priority
    e.deadline = req.c_deadline
    e.seq = seq
    return e


@cython.no_gc
cdef class _Group:
    pass


@cython.no_gc
cdef class Call:
    """One provider call planned by :meth:`Coalescer.take_calls`.

    Attributes: ``id``; ``kind``, ``provider``, ``interval``; ``symbols`` (one, or several when
    the provider serves them in one call) and ``symbol`` (the first); ``start``/``end``
    (datetime or None) and ``start_us``/``end_us`` — the half-open range to fetch, the union
    of the merged requests' ranges; ``params``; ``priority`` (most urgent waiter);
    ``deadline`` (earliest waiter's, monotonic clock, or None); ``requests`` (every request
    this call will answer, including ones that joined while it was in flight); ``grouped``
    (the provider takes several symbols per call: the result must be per symbol — a table
    with a ``symbol`` column or a mapping symbol -> value — and is split even when the call
    happens to carry one symbol).
    """

    cdef list entries(self):
        return [self._single] if self._entries is None else self._entries

    @property
    def id(self):
        return self.c_id

    @property
    def symbols(self):
        return (self.c_symbol,) if self._symbols is None else self._symbols

    @property
    def symbol(self):
        return self.c_symbol

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
    def requests(self):
        out = []
        for e in self.entries():
            out.extend((<_Entry>e).waiters())
        return tuple(out)

    def __len__(self):
        cdef Py_ssize_t n = 0
        for e in self.entries():
            n += len((<_Entry>e).waiters())
        return n

    def __repr__(self):
        syms = ",".join(self.symbols[:5]) + (",…" if len(self.symbols) > 5 else "")
        return (f"Call(id={self.id}, kind={self.kind!r}, provider={self.provider!r}, "
                f"symbols=[{syms}], interval={self.interval!r}, start_us={self.start_us}, "
                f"end_us={self.end_us}, requests={len(self)})")


cdef Call _make_call(object unit, uint64_t owner):
    """A call for one entry, or for a list of entries (merged ranges / grouped symbols)."""
    global _next_call
    cdef Call c = Call.__new__(Call)
    cdef _Entry e = <_Entry>(unit[0] if type(unit) is list else unit)
    cdef Request first = e.proto
    c.c_id = _next_call
    _next_call += 1
    c.c_state = 1
    c.kind = first.kind
    c.provider = first.provider
    c.interval = first.interval
    c.params = first.params
    c._single = e
    c.c_owner = owner
    c.priority = e.priority
    c.c_deadline = e.deadline
    c.c_seq = e.seq
    c.c_lo = first.c_lo
    c.c_hi = first.c_hi
    c.start_us = first.start_us
    c.end_us = first.end_us
    c.c_symbol = first.symbol
    if type(unit) is not list:
        return c
    c._entries = <list>unit
    syms = tuple(dict.fromkeys([(<_Entry>x).proto.symbol for x in <list>unit]))
    if len(syms) > 1:
        c._symbols = syms
    for x in <list>unit:
        e = <_Entry>x
        if e.priority < c.priority:
            c.priority = e.priority
        if e.deadline < c.c_deadline:
            c.c_deadline = e.deadline
        if e.seq < c.c_seq:
            c.c_seq = e.seq
        if e.lo < c.c_lo:
            c.c_lo = e.lo
            c.start_us = e.proto.start_us
        if e.hi > c.c_hi:
            c.c_hi = e.hi
            c.end_us = e.proto.end_us
    return c


def _call_order(Call c):
    return (c.priority, c.c_seq)


def _filter_symbol(result, symbol):
    if isinstance(result, Mapping):
        if symbol not in result:
            return SymbolNotFound(f"the provider's answer has no {symbol!r}", symbol=symbol)
        return result[symbol]
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(result, (pa.Table, pa.RecordBatch)):
        return SchemaError(f"cannot split a {type(result).__name__} by symbol: return a "
                           "pyarrow Table or a mapping symbol -> result")
    if "symbol" not in result.schema.names:
        return SchemaError("cannot split the result by symbol: it has no 'symbol' column",
                           {"symbol": "missing"})
    return result.filter(pc.equal(result.column("symbol"), symbol))


def _filter_range(result, start_us, end_us):
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(result, BaseException):
        return result
    if not isinstance(result, (pa.Table, pa.RecordBatch)):
        return SchemaError(f"cannot slice a {type(result).__name__} by ts: return a pyarrow "
                           "Table with a 'ts' column")
    if "ts" not in result.schema.names:
        return SchemaError("cannot slice the result to the requested range: no 'ts' column",
                           {"ts": "missing"})
    ts = result.column("ts")
    if not pa.types.is_timestamp(ts.type):
        return SchemaError(f"'ts' must be a timestamp column, not {ts.type}",
                           {"ts": str(ts.type)})
    ts_us = pc.cast(pc.cast(ts, pa.timestamp("us", tz=ts.type.tz), safe=False), pa.int64())
    mask = None
    if start_us is not None:
        mask = pc.greater_equal(ts_us, start_us)
    if end_us is not None:
        upper = pc.less(ts_us, end_us)
        mask = upper if mask is None else pc.and_(mask, upper)
    return result if mask is None else result.filter(mask)


cdef object _part(Call call, _Entry e, object result):
    """The slice of ``result`` that answers ``e``: its symbol and its range."""
    if call.grouped:
        result = _filter_symbol(result, e.proto.symbol)
    if e.lo != call.c_lo or e.hi != call.c_hi:
        result = _filter_range(result, e.proto.start_us, e.proto.end_us)
    return result


def _set_future(fut, value, is_error):
    """Resolve a waiter's future unless its owner cancelled it (others are unaffected)."""
    if isinstance(fut, asyncio.Future):
        loop = fut.get_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            try:
                loop.call_soon_threadsafe(_set_future, fut, value, is_error)
            except RuntimeError:  # its loop is closed: nobody is waiting any more
                pass
            return
    if fut.done():
        return
    try:
        if is_error:
            fut.set_exception(value)
        else:
            fut.set_result(value)
    except (concurrent.futures.InvalidStateError, asyncio.InvalidStateError):
        pass  # cancelled between the check and the set


cdef class Coalescer:
    """Deduplicate, merge and group requests into provider calls.

    ``Coalescer(*, batch_limits=None, merge_ranges=True)``: ``batch_limits`` maps a provider
    name or ``(provider, kind)`` to the most symbols one call may carry (default 1);
    ``merge_ranges`` merges overlapping or touching ``history`` ranges. Identical keys pending
    or in flight share one fetch. Thread-safe. See :mod:`stockbatch._py.coalesce` for the
    full contract (the twin documents it at length).
    """

    def __init__(self, *, batch_limits=None, merge_ranges=True):
        global _next_coalescer
        limits = {}
        for k, v in (batch_limits or {}).items():
            ok_key = isinstance(k, str) or (
                isinstance(k, tuple) and len(k) == 2 and all(isinstance(x, str) for x in k))
            if not ok_key:
                raise TypeError(f"batch_limits keys are provider or (provider, kind), not {k!r}")
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"batch_limits[{k!r}] must be an int >= 1, not {v!r}")
            limits[k] = v
        self._limits = limits
        self.c_merge = bool(merge_ranges)
        self._groups = {}
        self._pending = []
        self.c_uid = _next_coalescer
        _next_coalescer += 1
        self._weak = weakref.ref(self)
        from stockbatch.stats import _track

        _track(self)

    def __dealloc__(self):
        # break the group <-> entry cycles of what was never answered (neither is tracked
        # by the cycle collector)
        if self._groups is not None:
            for g in self._groups.values():
                if (<_Group>g).entries is not None:
                    for e in (<_Group>g).entries:
                        (<_Entry>e).group = None
                    (<_Group>g).entries = None

    def limit(self, provider, kind):
        """Most symbols per call for ``provider`` / ``kind``."""
        return self._limits.get((provider, kind)) or self._limits.get(provider) or 1

    # -- intake ------------------------------------------------------------------------------
    cdef int _add(self, object obj, object fut) except -1:
        cdef Request req
        cdef _Entry entry
        cdef _Group g
        cdef Call call
        cdef PyObject* found
        if type(obj) is not Request:
            raise TypeError(f"Coalescer takes Request objects, not {type(obj).__name__}")
        req = <Request>obj
        self.n_in += 1
        found = PyDict_GetItem(self._groups, req.c_hrange)
        if found == NULL:
            g = _Group.__new__(_Group)
            self._groups[req.c_hrange] = g
        else:
            g = <_Group>found
            # same range_key: the same key iff the same range
            if g.entries is not None:
                for x in g.entries:
                    entry = <_Entry>x
                    if entry.lo == req.c_lo and entry.hi == req.c_hi:
                        entry.join(req, fut)
                        self.n_dedup += 1
                        return 0
        self.c_seq += 1
        entry = _new_entry(req, fut, self.c_seq)
        entry.group = g
        if g.entries is None:
            g.entries = [entry]
        else:
            g.entries.append(entry)
        if g.flying is not None and self.c_merge and req.c_kind == 0:
            for x in ((g.flying,) if type(g.flying) is Call else <list>g.flying):
                call = <Call>x
                if call.c_lo <= req.c_lo and req.c_hi <= call.c_hi:
                    # joins a fetch in flight that covers its range
                    if call._entries is None:
                        call._entries = [call._single]
                    call._entries.append(entry)
                    entry.flying = True
                    self.n_merged += 1
                    return 0
        if not g.queued:
            g.queued = True
            self._pending.append(g)
        return 0

    def add(self, request):
        """Register ``request``; its answer comes back from :meth:`complete`/:meth:`fail`."""
        self._add(request, None)

    def add_many(self, requests):
        """:meth:`add` each request (all are checked first: a bad one adds nothing)."""
        cdef list reqs = requests if type(requests) is list else list(requests)
        for obj in reqs:
            if type(obj) is not Request:
                raise TypeError(f"Coalescer takes Request objects, not {type(obj).__name__}")
        for obj in reqs:
            self._add(obj, None)

    def submit(self, request):
        """Register ``request``; the returned concurrent.futures.Future gets its result or
        error (await it with :func:`asyncio.wrap_future`, or use :meth:`submit_async`)."""
        if type(request) is not Request:
            raise TypeError(f"Coalescer takes Request objects, not {type(request).__name__}")
        fut = concurrent.futures.Future()
        self._add(request, fut)
        fut.add_done_callback(_Withdraw(self._weak, request))
        return fut

    def submit_async(self, request):
        """Like :meth:`submit`, returning a future of the running event loop (resolved
        thread-safely even when another thread completes the call)."""
        if type(request) is not Request:
            raise TypeError(f"Coalescer takes Request objects, not {type(request).__name__}")
        fut = asyncio.get_running_loop().create_future()
        self._add(request, fut)
        fut.add_done_callback(_Withdraw(self._weak, request))
        return fut

    def _remove_waiter(self, Request request):
        """Unregister one waiter; returns its future, or False when it was not waiting."""
        cdef PyObject* found = PyDict_GetItem(self._groups, request.c_hrange)
        cdef _Group g
        cdef _Entry entry = None
        cdef Py_ssize_t index = -1
        if found == NULL:
            return False
        g = <_Group>found
        for x in g.entries:
            e = <_Entry>x
            if e.lo == request.c_lo and e.hi == request.c_hi:
                entry = e
                break
        if entry is None:
            return False
        if entry.first is request:
            index = 0
        elif entry.extra is not None:
            for i in range(len(entry.extra)):
                if entry.extra[i] is request:
                    index = i + 1
                    break
        if index < 0:
            return False
        if index == 0:
            entry.first = entry.extra.pop(0) if entry.extra else None
        else:
            del entry.extra[index - 1]
        fut = None
        if entry.futs is not None:
            fut = entry.futs.pop(index)
        self.n_cancelled += 1
        if entry.first is None and not entry.flying:
            # nobody waits for this pending fetch: do not plan it
            g.entries.remove(entry)
            entry.group = None
            if not g.entries and g.flying is None:
                del self._groups[request.c_hrange]
        return fut

    def cancel(self, request):
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
    cdef int _register(self, Call c, _Group g, list out) except -1:
        self.n_flying += 1
        if c._entries is None:
            c._single.flying = True
        else:
            for x in c._entries:
                (<_Entry>x).flying = True
        if g is not None and self.c_merge and c._single.proto.c_kind == 0:
            # single-symbol history call: later requests inside its range may join it
            if g.flying is None:
                g.flying = c
            elif type(g.flying) is Call:
                g.flying = [g.flying, c]
            else:
                (<list>g.flying).append(c)
        out.append(c)
        return 0

    cdef int _emit(self, object unit, _Group g, list out, dict buckets,
                   list bucket_order) except -1:
        """Turn one fetch unit (an entry, or a list of range-merged entries) into a call, or
        put it into a multi-symbol bucket when the provider takes several symbols."""
        cdef _Entry e
        cdef int lim = 1
        cdef double lo, hi
        if type(unit) is list:
            self.n_merged += len(<list>unit) - 1
            e = <_Entry>(<list>unit)[0]
        else:
            e = <_Entry>unit
        if self._limits:
            lim = self.limit(e.proto.provider, e.proto.kind)
        if lim <= 1:
            return self._register(_make_call(unit, self.c_uid), g, out)
        group = unit if type(unit) is list else [unit]
        lo = min([(<_Entry>y).lo for y in group])
        hi = max([(<_Entry>y).hi for y in group])
        bkey = (e.proto.kind, e.proto.provider, e.proto.interval, lo, hi, e.proto.key[6])
        bucket = buckets.get(bkey)
        if bucket is None or len(bucket[1]) >= lim:
            bucket = buckets[bkey] = (list(group), {e.proto.symbol}, g)
            bucket_order.append(bucket)
        else:
            self.n_grouped += 1
            bucket[0].extend(group)
            bucket[1].add(e.proto.symbol)
        return 0

    def take_calls(self):
        """Plan every pending request into provider calls and mark them in flight.

        Returns the calls, most urgent first (then oldest first). Each must eventually be
        passed to :meth:`complete` or :meth:`fail`.
        """
        cdef list pending = self._pending
        cdef list out = []
        cdef list bucket_order = []
        cdef dict buckets = {}
        cdef list group, current
        cdef _Entry e
        cdef _Group g
        cdef Call c, prev
        cdef double hi
        cdef Py_ssize_t i
        self._pending = []
        for x in pending:
            g = <_Group>x
            g.queued = False
            if g.entries is None:
                continue
            if len(g.entries) == 1:
                e = <_Entry>g.entries[0]
                if not e.flying:
                    self._emit(e, g, out, buckets, bucket_order)
                continue
            group = [y for y in g.entries if not (<_Entry>y).flying]
            if not group:
                continue
            if len(group) == 1:
                self._emit(group[0], g, out, buckets, bucket_order)
                continue
            if not (self.c_merge and (<_Entry>group[0]).proto.c_kind == 0):
                for y in group:
                    self._emit(y, g, out, buckets, bucket_order)
                continue
            group.sort(key=_entry_order)
            current = [group[0]]
            hi = (<_Entry>group[0]).hi
            for i in range(1, len(group)):
                e = <_Entry>group[i]
                if e.lo <= hi:  # overlaps or touches
                    current.append(e)
                    if e.hi > hi:
                        hi = e.hi
                else:
                    self._emit(current if len(current) > 1 else current[0], g, out, buckets,
                               bucket_order)
                    current = [e]
                    hi = e.hi
            self._emit(current if len(current) > 1 else current[0], g, out, buckets,
                       bucket_order)
        for bucket in bucket_order:
            entries = bucket[0]
            c = _make_call(entries if len(<list>entries) > 1 else entries[0], self.c_uid)
            c.grouped = True
            self._register(c, bucket[2] if len(bucket[1]) == 1 else None, out)
        self.n_out += len(out)
        # most urgent first, then oldest: sort only when not already in that order
        prev = None
        for x in out:
            c = <Call>x
            if prev is not None and (c.priority < prev.priority or (
                    c.priority == prev.priority and c.c_seq < prev.c_seq)):
                out.sort(key=_call_order)
                break
            prev = c
        return out

    # -- answers -----------------------------------------------------------------------------
    cdef list _finish(self, Call call):
        cdef _Entry e
        cdef _Group g
        cdef list entries = call.entries()
        if call.c_owner != self.c_uid or call.c_state != 1:
            raise ValueError(f"call {call.c_id} is not in flight in this Coalescer "
                             "(already completed or failed?)")
        call.c_state = 0
        self.n_flying -= 1
        for x in entries:
            e = <_Entry>x
            g = e.group
            e.group = None  # break the group <-> entry cycle
            if g.flying is not None:
                if g.flying is call:
                    g.flying = None
                elif type(g.flying) is list and call in <list>g.flying:
                    (<list>g.flying).remove(call)
                    if len(<list>g.flying) == 1:
                        g.flying = (<list>g.flying)[0]
            if len(g.entries) == 1:
                g.entries = None
            else:
                g.entries.remove(e)
            if g.entries is None and g.flying is None:
                del self._groups[e.hrange]
        return entries

    cdef list _complete(self, Call call, object result):
        cdef list entries = self._finish(call)
        cdef list answers = []
        cdef _Entry e
        cdef bint multi = call.grouped
        self.n_done += 1
        for x in entries:
            e = <_Entry>x
            if e.first is None:
                continue  # every waiter withdrew
            if not multi and e.lo == call.c_lo and e.hi == call.c_hi:
                value = result
            else:
                value = _part(call, e, result)
            _answer(e, value, isinstance(value, BaseException), answers)
        self.n_answered += len(answers)
        return answers

    def complete(self, Call call not None, result):
        """Answer every waiter of ``call`` with its slice of ``result``.

        ``result`` is a pyarrow Table/RecordBatch (split by ``symbol`` for multi-symbol calls,
        sliced by ``ts`` where a waiter asked for a narrower range), a mapping symbol ->
        result for multi-symbol calls, or any object when no slicing is needed. Returns the
        ``(request, value)`` answers; a value that is an exception (e.g. SchemaError when the
        result cannot be sliced) went to that waiter as its error.
        """
        return self._complete(call, result)

    def complete_many(self, calls, results):
        """:meth:`complete` each call with the result at the same position; returns all the
        answers in one list. Every call is checked to be in flight before any is answered."""
        cdef list cs = list(calls)
        cdef list rs = list(results)
        cdef list answers = []
        if len(cs) != len(rs):
            raise ValueError(f"{len(cs)} calls but {len(rs)} results")
        bad = None
        for x in cs:
            if type(x) is not Call or (<Call>x).c_owner != self.c_uid or \
                    (<Call>x).c_state != 1:
                bad = x
                break
            (<Call>x).c_state = 2  # seen: a second occurrence is refused
        for x in cs:
            if type(x) is Call and (<Call>x).c_state == 2:
                (<Call>x).c_state = 1
        if bad is not None:
            raise ValueError(f"{bad!r} is not a call in flight in this Coalescer "
                             "(or appears twice)")
        for i in range(len(cs)):
            answers.extend(self._complete(<Call>cs[i], rs[i]))
        return answers

    def fail(self, Call call not None, exc):
        """Answer every waiter of ``call`` with the same exception ``exc``; returns the
        ``(request, exc)`` answers."""
        if not isinstance(exc, BaseException):
            raise TypeError(f"fail needs an exception instance, not {type(exc).__name__}")
        cdef list entries = self._finish(call)
        cdef list answers = []
        self.n_failed += 1
        for x in entries:
            _answer(<_Entry>x, exc, True, answers)
        self.n_answered += len(answers)
        return answers

    # -- reporting ---------------------------------------------------------------------------
    def in_flight(self):
        """How many calls are taken and not yet completed or failed."""
        return self.n_flying

    def stats(self):
        """``requests_in``, ``calls_out``, ``saving_ratio`` (1 - calls_out / requests_in),
        ``deduplicated`` (joined an identical fetch), ``merged`` (range merged or joined an
        in-flight range), ``grouped`` (folded into a multi-symbol call), ``pending``,
        ``in_flight``, ``calls_completed``, ``calls_failed``, ``answered``, ``cancelled``."""
        return {
            "requests_in": self.n_in,
            "calls_out": self.n_out,
            "saving_ratio": 1.0 - <double>self.n_out / self.n_in if self.n_in else 0.0,
            "deduplicated": self.n_dedup,
            "merged": self.n_merged,
            "grouped": self.n_grouped,
            "pending": sum([1 for g in self._pending if (<_Group>g).entries is not None
                            for e in (<_Group>g).entries if not (<_Entry>e).flying]),
            "in_flight": self.n_flying,
            "calls_completed": self.n_done,
            "calls_failed": self.n_failed,
            "answered": self.n_answered,
            "cancelled": self.n_cancelled,
        }

    def __repr__(self):
        return (f"Coalescer(requests_in={self.n_in}, calls_out={self.n_out}, "
                f"in_flight={self.n_flying})")


cdef int _answer(_Entry e, object value, bint is_error, list answers) except -1:
    """Append (request, value) for every waiter of ``e``; resolve their futures."""
    cdef Py_ssize_t i
    cdef list reqs
    if e.first is None:
        return 0
    if e.futs is None:
        answers.append((e.first, value))
        if e.extra is not None:
            for req in e.extra:
                answers.append((req, value))
        return 0
    reqs = e.waiters()
    for i in range(len(reqs)):
        fut = e.futs[i]
        if fut is not None and fut.cancelled():
            continue
        answers.append((reqs[i], value))
        if fut is not None:
            _set_future(fut, value, is_error)
    return 0


cdef class _Withdraw:
    """Done-callback of a waiter's future: when its owner cancelled it, stop waiting. Holds
    the coalescer weakly, so futures never keep it alive."""

    cdef object coalescer
    cdef object request

    def __init__(self, coalescer, request):
        self.coalescer = coalescer
        self.request = request

    def __call__(self, fut):
        co = self.coalescer()
        if co is not None and fut.cancelled():
            co._remove_waiter(self.request)


def _entry_order(_Entry e):
    return (e.lo, e.hi, e.seq)
