"""Compiled Coalescer. Pure-Python twin and readable spec: stockbatch._py.coalesce.

Entries (one per distinct request key) are chained per range_key in an open-addressing
table keyed by the hash every Request carries inline, so the common lookup touches nothing
but the request and the table (no key object, no dict). Range merging walks a chain; a
duplicate compares the range keys. State changes run under the GIL without calling Python
code (except a tuple compare on hash hits), so they are atomic between threads; futures are
resolved (and pyarrow slicing runs) after the state change.
"""

cimport cython

import asyncio
import weakref
import concurrent.futures

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport Py_EQ, PyObject_RichCompareBool
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.math cimport INFINITY
from libc.stdint cimport uint64_t
from libc.string cimport memset

from stockbatch._ext.queue cimport Request

from stockbatch._py._shared import filter_range as _filter_range
from stockbatch._py._shared import filter_symbol as _filter_symbol
from stockbatch._py._shared import set_future as _set_future
from stockbatch._py._shared import us_to_datetime as _us_to_datetime

__all__ = ["Coalescer", "Call"]

cdef uint64_t _next_call = 1
cdef uint64_t _next_coalescer = 1


# Entries and calls are not tracked by the cycle collector: the only cycle (entry.call <->
# call entries) is broken when the call is answered, and by Coalescer.__dealloc__ for calls
# never answered; futures' callbacks hold the coalescer weakly. So full collections do not
# walk every request in flight.
@cython.no_gc
@cython.freelist(2048)
cdef class _Entry:
    """One distinct key: its waiting requests (and futures)."""

    cdef int join(self, Request req, object fut) except -1:
        if self.first is None:
            self.first = req
            if self.futs is not None:
                self.futs.insert(0, fut)
            elif fut is not None:
                self.futs = [fut] + [None] * (len(self.extra) if self.extra else 0)
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
    e.lo = req.c_lo
    e.hi = req.c_hi
    e.hash = req.c_rhash
    e.first = req
    if fut is not None:
        e.futs = [fut]
    e.priority = req.priority
    e.deadline = req.c_deadline
    e.seq = seq
    return e


cdef inline int _same_range_key(Request a, Request b) except -1:
    # field by field rather than the range_key tuples: the request objects are already in
    # cache, their tuples mostly are not (strings compare by identity first)
    if a is b:
        return 1
    if a.c_rhash != b.c_rhash or a.c_kind != b.c_kind:
        return 0
    if not (a.symbol is b.symbol or a.symbol == b.symbol):
        return 0
    if not (a.provider is b.provider or a.provider == b.provider):
        return 0
    if not (a.interval is b.interval or a.interval == b.interval):
        return 0
    if a.c_params is b.c_params:  # () is shared by every request without params
        return 1
    return PyObject_RichCompareBool(a.c_params, b.c_params, Py_EQ)


@cython.no_gc
@cython.freelist(2048)
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
    def kind(self):
        return self._single.proto.kind

    @property
    def provider(self):
        return self._single.proto.provider

    @property
    def interval(self):
        return self._single.proto.interval

    @property
    def params(self):
        return self._single.proto.params

    @property
    def symbol(self):
        return self._single.proto.symbol

    @property
    def symbols(self):
        return (self._single.proto.symbol,) if self._symbols is None else self._symbols

    @property
    def start_us(self):
        return self._single.proto.start_us if self._entries is None else self.c_start_us

    @property
    def end_us(self):
        return self._single.proto.end_us if self._entries is None else self.c_end_us

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
    c.c_id = _next_call
    _next_call += 1
    c.c_state = 1
    c._single = e
    c.c_owner = owner
    c.priority = e.priority
    c.c_deadline = e.deadline
    c.c_seq = e.seq
    c.c_lo = e.lo
    c.c_hi = e.hi
    if type(unit) is not list:
        return c  # the common case touches nothing but the entry
    c._entries = <list>unit
    c.c_start_us = e.proto.start_us
    c.c_end_us = e.proto.end_us
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
            c.c_start_us = e.proto.start_us
        if e.hi > c.c_hi:
            c.c_hi = e.hi
            c.c_end_us = e.proto.end_us
    return c


def _call_order(Call c):
    return (c.priority, c.c_seq)


cdef object _part(Call call, _Entry e, object result):
    """The slice of ``result`` that answers ``e``: its symbol and its range."""
    if call.grouped:
        result = _filter_symbol(result, e.proto.symbol)
    if e.lo != call.c_lo or e.hi != call.c_hi:
        result = _filter_range(result, e.proto.start_us, e.proto.end_us)
    return result


cdef class Coalescer:
    """Deduplicate, merge and group requests into provider calls.

    ``Coalescer(*, batch_limits=None, merge_ranges=True)``: ``batch_limits`` maps a provider
    name or ``(provider, kind)`` to the most symbols one call may carry (default 1);
    ``merge_ranges`` merges overlapping or touching ``history`` ranges. Identical keys pending
    or in flight share one fetch. Thread-safe. See :mod:`stockbatch._py.coalesce` for the
    full contract (the twin documents it at length).
    """

    def __cinit__(self):
        self.c_tab = <Slot*>PyMem_Malloc(64 * sizeof(Slot))
        if self.c_tab == NULL:
            raise MemoryError()
        memset(self.c_tab, 0, 64 * sizeof(Slot))
        self.c_tab_cap = 64

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
        self._pending = []
        self.c_uid = _next_coalescer
        _next_coalescer += 1
        self._weak = weakref.ref(self)
        from stockbatch.stats import _track

        _track(self)

    def __dealloc__(self):
        # drop the table; break the entry <-> call cycles of calls never answered (neither
        # is tracked by the cycle collector)
        cdef Py_ssize_t i
        cdef _Entry e
        if self.c_tab == NULL:
            return
        for i in range(self.c_tab_cap):
            if self.c_tab[i].head != NULL:
                e = <_Entry>self.c_tab[i].head
                while e is not None:
                    e.call = None
                    e = e.next
                Py_DECREF(<object>self.c_tab[i].head)
        PyMem_Free(self.c_tab)
        self.c_tab = NULL

    def limit(self, provider, kind):
        """Most symbols per call for ``provider`` / ``kind``."""
        return self._limits.get((provider, kind)) or self._limits.get(provider) or 1

    # -- the range_key table -----------------------------------------------------------------
    cdef Py_ssize_t _probe(self, Request req, Py_ssize_t* empty) except -2:
        """Slot of req's range_key chain, or -1 (then *empty is where it would go)."""
        cdef Py_ssize_t mask = self.c_tab_cap - 1
        cdef Py_ssize_t i = _home(req.c_rhash, mask)
        while self.c_tab[i].head != NULL:
            if self.c_tab[i].hash == req.c_rhash and \
                    _same_range_key((<_Entry>self.c_tab[i].head).proto, req):
                return i
            i = (i + 1) & mask
        empty[0] = i
        return -1

    cdef int _grow(self) except -1:
        cdef Slot* old = self.c_tab
        cdef Py_ssize_t old_cap = self.c_tab_cap, i, j, mask
        cdef Slot* tab = <Slot*>PyMem_Malloc(2 * old_cap * sizeof(Slot))
        if tab == NULL:
            raise MemoryError()
        memset(tab, 0, 2 * old_cap * sizeof(Slot))
        mask = 2 * old_cap - 1
        for i in range(old_cap):
            if old[i].head != NULL:
                j = _home(old[i].hash, mask)
                while tab[j].head != NULL:
                    j = (j + 1) & mask
                tab[j] = old[i]
        self.c_tab = tab
        self.c_tab_cap = 2 * old_cap
        PyMem_Free(old)
        return 0

    cdef int _unlink(self, _Entry e) except -1:
        """Take ``e`` out of its range_key chain (deleting the slot of an emptied chain).
        Found by its stored hash and identity: the request is not touched."""
        cdef Py_ssize_t i, j, k, mask = self.c_tab_cap - 1
        cdef _Entry head, prev
        i = _home(e.hash, mask)
        while self.c_tab[i].head != NULL:
            if self.c_tab[i].hash == e.hash:
                head = <_Entry>self.c_tab[i].head
                if head is e:
                    break
                prev = head
                while prev.next is not None and prev.next is not e:
                    prev = prev.next
                if prev.next is e:
                    prev.next = e.next
                    e.next = None
                    head.n_chain -= 1
                    return 0
            i = (i + 1) & mask
        else:
            return 0  # not linked
        if e.next is not None:
            e.next.n_chain = e.n_chain - 1
            Py_INCREF(e.next)
            self.c_tab[i].head = <void*>e.next
            e.next = None
            Py_DECREF(e)
            return 0
        # last of its chain: delete the slot, backward-shift the followers (no tombstones)
        self.c_tab[i].head = NULL
        self.c_tab_n -= 1
        j = i
        while True:
            j = (j + 1) & mask
            if self.c_tab[j].head == NULL:
                break
            k = _home(self.c_tab[j].hash, mask)
            if (i <= j and (k <= i or k > j)) or (i > j and k <= i and k > j):
                self.c_tab[i] = self.c_tab[j]
                self.c_tab[j].head = NULL
                i = j
        Py_DECREF(e)
        return 0

    # -- intake ------------------------------------------------------------------------------
    cdef int _add(self, object obj, object fut) except -1:
        cdef Request req
        cdef _Entry entry, e, head
        cdef Call call
        cdef Py_ssize_t i, empty = 0
        if type(obj) is not Request:
            raise TypeError(f"Coalescer takes Request objects, not {type(obj).__name__}")
        req = <Request>obj
        self.n_in += 1
        i = self._probe(req, &empty)
        if i >= 0:
            head = <_Entry>self.c_tab[i].head
            e = head
            while e is not None:  # same range_key: the same key iff the same range
                if e.lo == req.c_lo and e.hi == req.c_hi:
                    e.join(req, fut)
                    self.n_dedup += 1
                    return 0
                e = e.next
            self.c_seq += 1
            entry = _new_entry(req, fut, self.c_seq)
            entry.next = head.next
            head.next = entry
            head.n_chain += 1
            if self.c_merge and req.c_kind == 0:
                e = head
                while e is not None:
                    call = e.call
                    if call is not None and call._symbols is None and \
                            call.c_lo <= req.c_lo and req.c_hi <= call.c_hi:
                        # joins a one-symbol fetch in flight that covers its range
                        if call._entries is None:
                            call._entries = [call._single]
                            call.c_start_us = call._single.proto.start_us
                            call.c_end_us = call._single.proto.end_us
                        call._entries.append(entry)
                        entry.flying = True
                        entry.call = call
                        self.n_merged += 1
                        return 0
                    e = e.next
            self._pending.append(entry)
            return 0
        self.c_seq += 1
        entry = _new_entry(req, fut, self.c_seq)
        entry.n_chain = 1
        Py_INCREF(entry)
        self.c_tab[empty].hash = req.c_rhash
        self.c_tab[empty].head = <void*>entry
        self.c_tab_n += 1
        if self.c_tab_n * 2 > self.c_tab_cap:
            self._grow()
        self._pending.append(entry)
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
        cdef Py_ssize_t empty = 0, index = -1
        cdef Py_ssize_t i = self._probe(request, &empty)
        cdef _Entry entry
        if i < 0:
            return False
        entry = <_Entry>self.c_tab[i].head
        while entry is not None and not (entry.lo == request.c_lo and
                                         entry.hi == request.c_hi):
            entry = entry.next
        if entry is None:
            return False
        if entry.first is request:
            index = 0
        elif entry.extra is not None:
            for k in range(len(entry.extra)):
                if entry.extra[k] is request:
                    index = k + 1
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
            entry.dead = True  # nobody waits for this pending fetch: do not plan it
            self._unlink(entry)
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
    cdef int _register(self, Call c, list out) except -1:
        self.n_flying += 1
        if c._entries is None:
            c._single.flying = True
            c._single.call = c
        else:
            for x in c._entries:
                (<_Entry>x).flying = True
                (<_Entry>x).call = c
        out.append(c)
        return 0

    cdef int _emit(self, object unit, list out, dict buckets, list bucket_order) except -1:
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
            return self._register(_make_call(unit, self.c_uid), out)
        group = unit if type(unit) is list else [unit]
        lo = min([(<_Entry>y).lo for y in group])
        hi = max([(<_Entry>y).hi for y in group])
        bkey = (e.proto.kind, e.proto.provider, e.proto.interval, lo, hi, e.proto.key[6])
        bucket = buckets.get(bkey)
        if bucket is None or len(bucket[1]) >= lim:
            bucket = buckets[bkey] = (list(group), {e.proto.symbol})
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
        cdef _Entry e, y
        cdef Call c, prev
        cdef double hi
        cdef Py_ssize_t i, empty = 0
        self._pending = []
        for x in pending:
            e = <_Entry>x
            if e.dead or e.flying:
                continue
            if e.n_chain == 1 or not (self.c_merge and e.proto.c_kind == 0):
                # alone with its range_key (or no merging): one fetch
                self._emit(e, out, buckets, bucket_order)
                continue
            # history with other entries of the same range_key: merge the pending ones
            i = self._probe(e.proto, &empty)
            group = []
            y = <_Entry>self.c_tab[i].head if i >= 0 else e
            while y is not None:
                if not y.flying and not y.dead:
                    group.append(y)
                y = y.next
            if len(group) == 1:
                self._emit(group[0], out, buckets, bucket_order)
                continue
            group.sort(key=_entry_order)
            current = [group[0]]
            hi = (<_Entry>group[0]).hi
            for i in range(1, len(group)):
                y = <_Entry>group[i]
                if y.lo <= hi:  # overlaps or touches
                    current.append(y)
                    if y.hi > hi:
                        hi = y.hi
                else:
                    self._emit(current if len(current) > 1 else current[0], out, buckets,
                               bucket_order)
                    current = [y]
                    hi = y.hi
            self._emit(current if len(current) > 1 else current[0], out, buckets,
                       bucket_order)
        for bucket in bucket_order:
            entries = bucket[0]
            c = _make_call(entries if len(<list>entries) > 1 else entries[0], self.c_uid)
            c.grouped = True
            self._register(c, out)
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
        """Mark ``call`` answered and unlink its entries; returns them (None for a call with
        a single entry: no list made on the common path)."""
        cdef _Entry e
        if call.c_owner != self.c_uid or call.c_state != 1:
            raise ValueError(f"call {call.c_id} is not in flight in this Coalescer "
                             "(already completed or failed?)")
        call.c_state = 0
        self.n_flying -= 1
        if call._entries is None:
            call._single.call = None  # break the entry <-> call cycle
            self._unlink(call._single)
            return None
        for x in call._entries:
            e = <_Entry>x
            e.call = None
            self._unlink(e)
        return call._entries

    cdef int _complete(self, Call call, object result, list answers) except -1:
        cdef list entries = self._finish(call)
        cdef _Entry e
        cdef bint split = call.grouped
        cdef Py_ssize_t before = len(answers)
        self.n_done += 1
        if entries is None:
            e = call._single
            if e.first is not None:
                value = result if not split else _part(call, e, result)
                _answer(e, value, isinstance(value, BaseException), answers)
            self.n_answered += len(answers) - before
            return 0
        for x in entries:
            e = <_Entry>x
            if e.first is None:
                continue  # every waiter withdrew
            if not split and e.lo == call.c_lo and e.hi == call.c_hi:
                value = result
            else:
                value = _part(call, e, result)
            _answer(e, value, isinstance(value, BaseException), answers)
        self.n_answered += len(answers) - before
        return 0

    def complete(self, Call call not None, result):
        """Answer every waiter of ``call`` with its slice of ``result``.

        ``result`` is a pyarrow Table/RecordBatch (split by ``symbol`` for grouped calls,
        sliced by ``ts`` where a waiter asked for a narrower range), a mapping symbol ->
        result for grouped calls, or any object when no slicing is needed. Returns the
        ``(request, value)`` answers; a value that is an exception (e.g. SchemaError when the
        result cannot be sliced) went to that waiter as its error.
        """
        cdef list answers = []
        self._complete(call, result, answers)
        return answers

    def complete_many(self, calls, results):
        """:meth:`complete` each call with the result at the same position; returns all the
        answers in one list. Every call is checked to be in flight before any is answered."""
        cdef list cs = calls if type(calls) is list else list(calls)
        cdef list rs = results if type(results) is list else list(results)
        cdef list answers = []
        cdef Py_ssize_t i
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
            self._complete(<Call>cs[i], rs[i], answers)
        return answers

    def fail(self, Call call not None, exc):
        """Answer every waiter of ``call`` with the same exception ``exc``; returns the
        ``(request, exc)`` answers."""
        if not isinstance(exc, BaseException):
            raise TypeError(f"fail needs an exception instance, not {type(exc).__name__}")
        cdef list entries = self._finish(call)
        cdef list answers = []
        self.n_failed += 1
        for x in (entries if entries is not None else (call._single,)):
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
            "pending": sum([1 for e in self._pending
                            if not (<_Entry>e).dead and not (<_Entry>e).flying]),
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


cdef inline Py_ssize_t _home(Py_hash_t h, Py_ssize_t mask) noexcept nogil:
    # Fibonacci hashing spreads Python's hashes (small ints hash to themselves)
    return <Py_ssize_t>((<uint64_t>h * 0x9E3779B97F4A7C15ULL) >> 32) & mask
