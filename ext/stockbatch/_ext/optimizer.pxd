# BatchOptimizer: per-operation state with a ring of observations in C arrays.

cdef class _Op:
    cdef int min_size
    cdef int max_size
    cdef int initial
    cdef double latency_target  # 0 = none
    cdef int window
    cdef int head  # index of the oldest observation
    cdef int count
    cdef double* sizes
    cdef double* secs
    cdef char* good
    cdef double cap
    cdef double cliff  # +inf = none
    cdef long long cliff_age
    cdef long long n
    cdef long long n_fail
    cdef long long n_rl
    cdef object last
    cdef tuple why

    cdef int slot(self, int i) noexcept


cdef class BatchOptimizer:
    cdef tuple _defaults
    cdef double c_decrease
    cdef int c_window
    cdef long long c_forget
    cdef dict _ops

    cdef _Op _op(self, object op)
