# Request and BatchQueue: C-level fields, so that the queue and the coalescer read a
# request's priority, deadline, state and key without Python attribute lookups.
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint64_t


cdef class Request:
    # The C fields the queue and the coalescer read come first, so that they share the
    # first cache lines of the object (requests are touched once per stage, mostly cold).
    cdef uint64_t c_id
    cdef uint64_t c_owner  # uid of the queue holding it
    cdef uint64_t c_mark  # put_many generation, to spot a request given twice
    cdef double c_enq  # monotonic time it was queued
    cdef double c_deadline  # INFINITY without a deadline
    cdef double c_lo  # start_us as a double, -inf when unbounded (exact below 2**53 us)
    cdef double c_hi  # end_us as a double, +inf when unbounded
    cdef Py_hash_t c_rhash  # hash(range_key), kept inline: the coalescer's table key
    cdef int c_state
    cdef readonly int priority
    cdef int c_kind  # 0 history, 1 quote, 2 profile
    cdef tuple c_params  # the frozen params (key[6]) without touching the key tuple
    cdef readonly object id  # Python int of c_id, made once
    cdef readonly str kind
    cdef readonly str provider
    cdef readonly str symbol
    cdef readonly object interval  # str or None
    cdef readonly object start_us  # int or None
    cdef readonly object end_us
    cdef readonly object params  # read-only mapping
    cdef readonly tuple key
    cdef readonly tuple range_key
    cdef object __weakref__


# One FIFO ring per priority; slots own a reference.
cdef struct Ring:
    PyObject** buf
    Py_ssize_t cap  # power of two
    Py_ssize_t head
    Py_ssize_t count  # entries in the ring, stale ones included


# Min-heap of deadlines; entries own a reference.
cdef struct Deadline:
    double when
    uint64_t seq
    PyObject* req


# Open-addressing map id -> request (borrowed: the rings own the references).
cdef struct IdSlot:
    uint64_t id  # 0 = empty (ids start at 1)
    PyObject* req


cdef class BatchQueue:
    cdef Py_ssize_t c_maxsize
    cdef Py_ssize_t c_size
    cdef Py_ssize_t c_depth[5]
    cdef Ring c_rings[5]
    cdef Deadline* c_heap
    cdef Py_ssize_t c_heap_n
    cdef Py_ssize_t c_heap_cap
    cdef uint64_t c_heap_seq
    cdef IdSlot* c_map
    cdef Py_ssize_t c_map_cap  # power of two
    cdef Py_ssize_t c_map_n
    cdef uint64_t c_uid
    cdef bint c_closed
    cdef object _on_expire
    cdef list _expired
    cdef object _getters  # deque of waiters: held thread locks or (loop, future)
    cdef object _putters
    cdef object __weakref__
    cdef long long n_put
    cdef long long n_got
    cdef long long n_expired
    cdef long long n_cancelled
    cdef double wait_sum
    cdef double wait_max

    cdef list _expire(self, double now)
    cdef int _push(self, list reqs, double now, list fresh) except -1
    cdef list _take(self, Py_ssize_t max_items, double now)
    cdef int _ring_push(self, int p, PyObject* obj) except -1
    cdef int _heap_push(self, double when, PyObject* obj) except -1
    cdef int _map_put(self, uint64_t key, PyObject* obj) except -1
    cdef PyObject* _map_get(self, uint64_t key)
    cdef void _map_del(self, uint64_t key)
    cdef void _unlink(self, Request req)
    cdef void _compact(self, int p)
    cdef int _wake(self, object waiters, Py_ssize_t n) except -1
    cdef object _report(self, list fresh)
