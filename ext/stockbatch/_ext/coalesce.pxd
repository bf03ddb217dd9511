# Coalescer: entries (one per distinct key) chained per range_key in an open-addressing
# table keyed by the hash each Request carries inline; calls (one per provider fetch).
from libc.stdint cimport uint64_t

from stockbatch._ext.queue cimport Request


cdef class _Entry:
    cdef Request proto  # the first request ever: kind, provider, symbol, range, hash
    cdef double lo
    cdef double hi
    cdef Py_hash_t hash  # proto.c_rhash, kept here so unlinking does not touch the request
    cdef Request first  # the first waiter still waiting, or None
    cdef list extra  # None, or the later waiters
    cdef list futs  # None, or one future-or-None per waiter (first, then extra)
    cdef bint flying  # planned into a call
    cdef bint dead  # withdrawn before it was planned
    cdef Call call  # the call it flies in (cleared when answered: no lasting cycle)
    cdef _Entry next  # the next entry with the same range_key
    cdef Py_ssize_t n_chain  # on a chain head: entries in the chain
    cdef int priority
    cdef double deadline
    cdef uint64_t seq

    cdef int join(self, Request req, object fut) except -1
    cdef list waiters(self)


cdef struct Slot:
    Py_hash_t hash
    void* head  # _Entry (owned reference), NULL = empty


cdef class Call:
    cdef uint64_t c_id
    cdef _Entry _single  # the first entry
    cdef list _entries  # None while _single is the only entry
    cdef tuple _symbols  # None for a one-symbol call
    cdef object c_start_us  # None = the first entry's
    cdef object c_end_us
    cdef readonly int priority
    cdef double c_deadline
    cdef double c_lo
    cdef double c_hi
    cdef uint64_t c_seq
    cdef uint64_t c_owner
    cdef int c_state  # 1 in flight, 0 answered, 2 being checked by complete_many
    cdef readonly bint grouped  # the provider takes several symbols: results are per symbol

    cdef list entries(self)


cdef class Coalescer:
    cdef dict _limits
    cdef bint c_merge
    cdef Slot* c_tab
    cdef Py_ssize_t c_tab_cap  # power of two
    cdef Py_ssize_t c_tab_n
    cdef list _pending  # entries in arrival order (dead / flying ones are skipped)
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

    cdef Py_ssize_t _probe(self, Request req, Py_ssize_t* empty) except -2
    cdef int _grow(self) except -1
    cdef int _unlink(self, _Entry e) except -1
    cdef int _add(self, object obj, object fut) except -1
    cdef int _emit(self, object unit, list out, dict buckets, list bucket_order) except -1
    cdef int _register(self, Call c, list out) except -1
    cdef list _finish(self, Call call)
    cdef int _complete(self, Call call, object result, list answers) except -1
