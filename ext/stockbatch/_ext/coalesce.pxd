# Coalescer: groups (one per range_key), entries (one per distinct key) and calls (one per
# provider fetch).
from libc.stdint cimport uint64_t

from stockbatch._ext.queue cimport HashedKey, Request


cdef class _Entry:
    cdef Request proto  # the first request ever: kind, provider, symbol, range
    cdef HashedKey hrange
    cdef double lo
    cdef double hi
    cdef Request first  # the first waiter still waiting, or None
    cdef list extra  # None, or the later waiters
    cdef list futs  # None, or one future-or-None per waiter (first, then extra)
    cdef bint flying  # planned into a call
    cdef _Group group  # its group while pending or in flight (cycle broken on finish)
    cdef int priority
    cdef double deadline
    cdef uint64_t seq

    cdef int join(self, Request req, object fut) except -1
    cdef list waiters(self)


# Every entry (pending or in flight) with the same range_key: dedup is a scan of its few
# entries for the same [lo, hi), range merging sorts them; one dict lookup per request.
cdef class _Group:
    cdef list entries
    cdef object flying  # None, a Call or a list of Calls in flight for this range_key
    cdef bint queued  # listed in Coalescer._pending


cdef class Call:
    cdef uint64_t c_id
    cdef readonly str kind
    cdef readonly str provider
    cdef str c_symbol  # the first symbol
    cdef tuple _symbols  # None for a one-symbol call (made on demand)
    cdef readonly object interval
    cdef readonly object start_us
    cdef readonly object end_us
    cdef readonly object params
    cdef readonly int priority
    cdef double c_deadline
    cdef double c_lo
    cdef double c_hi
    cdef uint64_t c_seq
    cdef uint64_t c_owner
    cdef int c_state  # 1 in flight, 0 answered, 2 being checked by complete_many
    cdef readonly bint grouped  # the provider takes several symbols: results are per symbol
    cdef _Entry _single  # the first entry
    cdef list _entries  # None while _single is the only entry

    cdef list entries(self)


cdef class Coalescer:
    cdef dict _limits
    cdef bint c_merge
    cdef dict _groups  # HashedKey(range_key) -> _Group
    cdef list _pending  # groups holding pending entries
    cdef Py_ssize_t n_flying
    cdef uint64_t c_seq
    cdef uint64_t c_uid
    cdef object _weak  # weakref to self, for future callbacks (no reference cycle)
    cdef object __weakref__
    cdef long long n_in
    cdef long long n_out
    cdef long long n_dedup
    cdef long long n_merged
    cdef long long n_grouped
    cdef long long n_done
    cdef long long n_failed
    cdef long long n_answered
    cdef long long n_cancelled

    cdef int _add(self, object obj, object fut) except -1
    cdef int _emit(self, object unit, _Group g, list out, dict buckets,
                   list bucket_order) except -1
    cdef int _register(self, Call c, _Group g, list out) except -1
    cdef list _finish(self, Call call)
    cdef list _complete(self, Call call, object result)
