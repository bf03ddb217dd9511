"""Compiled BatchOptimizer. Pure-Python twin and readable spec: stockbatch._py.optimizer.

Same algorithm, same arithmetic in the same order (so both backends recommend the same sizes
for the same observations): a non-negative weighted least-squares fit of
t(b) = a + c*b + d*b^2 over the remembered window, the throughput optimum under an optional
latency target, a 2x trust region, AIMD on errors and rate limits, and cliff bisection.
"""

import math

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport INFINITY, fabs, floor, isinf, log, sqrt

from stockbatch._py._shared import check_size as _check_size

__all__ = ["BatchOptimizer", "fit", "fit_all"]

cdef double _GROW = 1.2  # cap recovery per successful batch near the cap
cdef double _BISECT_STOP = 0.9  # stop bisecting when good >= 0.9 * cliff
cdef double _PLAUSIBLE = 6.0  # BIC difference below which two models are not told apart
cdef int[7][3] _SUBSETS = [[0, 1, 2], [0, 1, -1], [0, 2, -1], [1, 2, -1], [0, -1, -1],
                           [1, -1, -1], [2, -1, -1]]
cdef int[7] _SUBSET_N = [3, 2, 2, 2, 1, 1, 1]
cdef enum:
    OK = 0
    FAILED = 1
    LIMITED = 2


cdef bint _solve(double[3][4] a, int n, double* x) noexcept nogil:
    """Solve the n x n augmented system ``a`` by Gaussian elimination, partial pivoting."""
    cdef int col, piv, r, k, i
    cdef double f, s, tmp
    for col in range(n):
        piv = col
        for r in range(col + 1, n):
            if fabs(a[r][col]) > fabs(a[piv][col]):
                piv = r
        if fabs(a[piv][col]) < 1e-300:
            return False
        if piv != col:
            for k in range(n + 1):
                tmp = a[col][k]
                a[col][k] = a[piv][k]
                a[piv][k] = tmp
        for r in range(col + 1, n):
            f = a[r][col] / a[col][col]
            for k in range(col, n + 1):
                a[r][k] -= f * a[col][k]
    for i in range(n - 1, -1, -1):
        s = a[i][n]
        for k in range(i + 1, n):
            s -= a[i][k] * x[k]
        x[i] = s / a[i][i]
    return True


cdef int _fit_all(const double* sizes, const double* secs, int m, int distinct,
                  double* scores, double* coefs) noexcept nogil:
    """Fit every subset of the terms (in _SUBSETS order); scores[s] = BIC, or +inf when the
    subset is under-determined or a coefficient comes out negative. Returns how many fit."""
    cdef int si, n, i, j, k, found = 0
    cdef double[3][4] a
    cdef double[3] x
    cdef double[3] f
    cdef double sse, w, t, b, r, fi
    cdef double* cand
    cdef bint ok
    for si in range(7):
        scores[si] = INFINITY
        cand = coefs + 3 * si
        cand[0] = 0.0
        cand[1] = 0.0
        cand[2] = 0.0
        n = _SUBSET_N[si]
        if n > distinct:
            continue  # under-determined
        for i in range(3):
            for j in range(4):
                a[i][j] = 0.0
        for k in range(m):
            b = sizes[k]
            t = secs[k]
            w = 1.0 / (t * t) if t > 0 else 1e12
            f[0] = 1.0
            f[1] = b
            f[2] = b * b
            for i in range(n):
                fi = f[_SUBSETS[si][i]]
                a[i][n] += w * fi * t
                for j in range(n):
                    a[i][j] += w * fi * f[_SUBSETS[si][j]]
        if not _solve(a, n, x):
            continue
        ok = True
        for i in range(n):
            if x[i] < 0:
                ok = False
        if not ok:
            continue
        for i in range(n):
            cand[_SUBSETS[si][i]] = x[i]
        sse = 0.0
        for k in range(m):
            b = sizes[k]
            t = secs[k]
            w = 1.0 / (t * t) if t > 0 else 1e12
            r = cand[0] + cand[1] * b + cand[2] * b * b - t
            sse += w * r * r
        # BIC: a term must pay for itself, so noise does not invent a congestion term
        scores[si] = m * log(sse / m + 1e-12) + n * log(<double>m)
        found += 1
    return found


def fit_all(sizes, seconds):
    """Weighted least-squares fits of every subset of the terms of t = a + c b + d b^2 whose
    coefficients come out non-negative: a list of (BIC, (a, c, d)), in subset order."""
    cdef int m = len(sizes)
    cdef double* buf = <double*>PyMem_Malloc((2 * m + 1) * sizeof(double))
    cdef double[7] scores
    cdef double[21] coefs
    if buf == NULL:
        raise MemoryError()
    try:
        for i in range(m):
            buf[i] = sizes[i]
            buf[m + i] = seconds[i]
        _fit_all(buf, buf + m, m, len(set(sizes)), scores, coefs)
    finally:
        PyMem_Free(buf)
    return [(scores[i], (coefs[3 * i], coefs[3 * i + 1], coefs[3 * i + 2]))
            for i in range(7) if scores[i] != INFINITY]


def fit(sizes, seconds):
    """Non-negative weighted least-squares fit of t = a + c b + d b^2; returns (a, c, d):
    the subset of terms with the lowest BIC."""
    best = None
    best_score = INFINITY
    for score, coef in fit_all(sizes, seconds):
        if score < best_score:
            best, best_score = coef, score
    return best if best is not None else (0.0, 0.0, 0.0)


def _optimum(double a, double c, double d, lat, int min_size, double largest):
    """Best size for model (a, c, d) under latency target ``lat`` (None = none): (size, why)."""
    cdef double r, b_lat
    why = [f"model t(b) = {a:.4g} + {c:.4g}*b + {d:.4g}*b^2 s"]
    if d > 0 and a > 0:
        r = sqrt(a / d)
        why.append(f"throughput peaks at {r:.1f}")
    elif d > 0 or (a == 0 and c > 0):
        r = largest if d == 0 else min_size
        why.append("throughput does not grow with size")
    else:
        r = INFINITY
        why.append("throughput grows with size")
    if lat is not None:
        if a >= lat:
            b_lat = min_size
        elif d > 0:
            b_lat = (-c + sqrt(c * c + 4 * d * (lat - a))) / (2 * d)
        elif c > 0:
            b_lat = (lat - a) / c
        else:
            b_lat = INFINITY
        if b_lat < r:
            r = b_lat
            why.append(f"latency target {lat:g} s allows {b_lat:.1f}")
    return r, why


cdef class _Op:
    def __cinit__(self, int min_size, int max_size, int initial, latency_target, int window):
        self.min_size = min_size
        self.max_size = max_size
        self.initial = initial
        self.latency_target = 0.0 if latency_target is None else latency_target
        self.window = window
        self.sizes = <double*>PyMem_Malloc(window * sizeof(double))
        self.secs = <double*>PyMem_Malloc(window * sizeof(double))
        self.good = <char*>PyMem_Malloc(window * sizeof(char))
        if self.sizes == NULL or self.secs == NULL or self.good == NULL:
            raise MemoryError()
        self.cap = max_size
        self.cliff = INFINITY
        self.why = ()

    def __dealloc__(self):
        PyMem_Free(self.sizes)
        PyMem_Free(self.secs)
        PyMem_Free(self.good)

    cdef int slot(self, int i) noexcept:
        return (self.head + i) % self.window


cdef class BatchOptimizer:
    """Recommend batch sizes per operation from measured timings.

    ``BatchOptimizer(*, min_size=1, max_size=1000, initial=None, latency_target=None,
    decrease=0.5, window=64, forget=200)``; ``record(op, batch_size, seconds, ok,
    rate_limited=False)``, ``recommend(op)``, ``explain(op)``. The algorithm is described in
    :mod:`stockbatch._py.optimizer`.
    """

    def __init__(self, *, min_size=1, max_size=1000, initial=None, latency_target=None,
                 decrease=0.5, window=64, forget=200):
        self._defaults = self._check_limits(min_size, max_size, initial, latency_target)
        if not 0.0 < decrease < 1.0:
            raise ValueError(f"decrease must be in (0, 1), not {decrease!r}")
        self.c_decrease = decrease
        _check_size(window, "window")
        if window < 3:
            raise ValueError("window must be >= 3")
        self.c_window = window
        self.c_forget = _check_size(forget, "forget")
        self._ops = {}

    @staticmethod
    def _check_limits(min_size, max_size, initial, latency_target):
        _check_size(min_size, "min_size")
        _check_size(max_size, "max_size")
        if min_size > max_size:
            raise ValueError(f"min_size {min_size} > max_size {max_size}")
        if initial is None:
            initial = min(max(min_size, round(math.sqrt(min_size * max_size))), 32)
            initial = max(initial, min_size)
        _check_size(initial, "initial")
        initial = min(max(initial, min_size), max_size)
        if latency_target is not None:
            if isinstance(latency_target, bool) or not isinstance(latency_target, (int, float)) \
                    or not latency_target > 0 or math.isinf(latency_target):
                raise ValueError(f"latency_target must be seconds > 0, not {latency_target!r}")
            latency_target = float(latency_target)
        return min_size, max_size, initial, latency_target

    def configure(self, op, *, min_size=None, max_size=None, initial=None,
                  latency_target=None):
        """Set bounds / initial size / latency target for one operation (resets it)."""
        d_min, d_max, _, d_lat = self._defaults
        limits = self._check_limits(min_size or d_min, max_size or d_max, initial,
                                    latency_target if latency_target is not None else d_lat)
        self._ops[op] = _Op(*limits, self.c_window)

    cdef _Op _op(self, object op):
        st = self._ops.get(op)
        if st is None:
            st = self._ops[op] = _Op(*self._defaults, self.c_window)
        return <_Op>st

    def record(self, op, batch_size, seconds, ok, rate_limited=False):
        """One observation: a batch of ``batch_size`` items took ``seconds``; ``ok`` False
        when it failed; ``rate_limited`` when the provider refused for rate reasons."""
        _check_size(batch_size, "batch_size")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or \
                not seconds >= 0 or math.isinf(seconds):
            raise ValueError(f"seconds must be a finite number >= 0, not {seconds!r}")
        cdef _Op st = self._op(op)
        cdef double b = batch_size
        cdef bint good = bool(ok) and not rate_limited
        cdef int i, n_ok = 0, n_failed = 1, k
        st.n += 1
        st.cliff_age += 1
        if st.cliff_age > self.c_forget:
            st.cliff = INFINITY
        if good:
            if b >= st.cliff:
                st.cliff = INFINITY  # it worked after all
            if b >= 0.8 * st.cap:
                st.cap = min(<double>st.max_size, st.cap * _GROW)
        else:
            if rate_limited:
                st.n_rl += 1
            if not ok:
                st.n_fail += 1
                # A cliff when batches this large failed at least twice and more often than
                # they succeeded (in the window): one failure alone may be chance.
                for i in range(st.count):
                    k = st.slot(i)
                    if st.sizes[k] >= b:
                        if st.good[k] == OK:
                            n_ok += 1
                        elif st.good[k] == FAILED:
                            n_failed += 1
                if n_failed >= 2 and n_failed > n_ok:
                    if b < st.cliff:
                        st.cliff = b
                    st.cliff_age = 0
            st.cap = max(<double>st.min_size, min(st.cap, b) * self.c_decrease)
        # append to the ring (dropping the oldest when full)
        if st.count == st.window:
            k = st.head
            st.head = (st.head + 1) % st.window
        else:
            k = st.slot(st.count)
            st.count += 1
        st.sizes[k] = b
        st.secs[k] = float(seconds)
        st.good[k] = OK if good else FAILED if not ok else LIMITED

    def recommend(self, op):
        """The batch size to use next for ``op``."""
        cdef _Op st = self._op(op)
        cdef double* sizes = <double*>PyMem_Malloc((2 * st.window + 1) * sizeof(double))
        cdef double* secs
        cdef double[7] scores
        cdef double[21] coefs
        cdef double r, lo, hi, g, limit, best_score, smin = INFINITY, smax = 0
        cdef int m = 0, i, k, out, nfit
        if sizes == NULL:
            raise MemoryError()
        secs = sizes + st.window
        why = []
        try:
            for i in range(st.count):
                k = st.slot(i)
                if st.good[k] == OK:
                    sizes[m] = st.sizes[k]
                    secs[m] = st.secs[k]
                    smin = min(smin, sizes[m])
                    smax = max(smax, sizes[m])
                    m += 1
            if m == 0:
                r = st.initial
                why.append(f"no successful observation yet: initial {st.initial}")
            else:
                # Optimism under uncertainty: of the models the data cannot tell apart
                # (BIC within _PLAUSIBLE of the best), follow the one promising the largest
                # size, so noise never stops the exploration early.
                nfit = _fit_all(sizes, secs, m, len({sizes[i] for i in range(m)}), scores,
                                coefs)
                best_score = INFINITY
                for i in range(7):
                    if scores[i] < best_score:
                        best_score = scores[i]
                r = -INFINITY
                model_why = None
                lat_obj = None if st.latency_target == 0 else st.latency_target
                for i in range(7):
                    if scores[i] != INFINITY and scores[i] <= best_score + _PLAUSIBLE:
                        rk, wk = _optimum(coefs[3 * i], coefs[3 * i + 1], coefs[3 * i + 2],
                                          lat_obj, st.min_size, smax)
                        if rk > r:
                            r = rk
                            model_why = wk
                if nfit == 0:
                    r = smax
                    model_why = ["no model fits"]
                why.append(f"{model_why[0]} over {m} observations")
                why.extend(model_why[1:])
                lo = smin / 2.0
                hi = smax * 2.0
                if r > hi:
                    r = hi
                    why.append(f"explore: at most 2x the largest tried ({int(smax)})")
                elif r < lo:
                    r = lo
                    why.append(f"explore: at least half the smallest tried ({int(smin)})")
            if r > st.cap and st.cap < st.max_size:
                r = st.cap
                why.append(f"capped at {st.cap:.1f} after errors/rate limits")
            if not isinf(st.cliff):
                g = -1.0
                for i in range(m):
                    if sizes[i] < st.cliff and sizes[i] > g:
                        g = sizes[i]
                if g < 0:
                    g = st.min_size
                limit = g if g >= _BISECT_STOP * st.cliff else sqrt(g * st.cliff)
                limit = min(limit, st.cliff - 1)
                if r > limit:
                    r = limit
                    why.append(f"cliff at {st.cliff:g}: probe {limit:.1f} (largest good {g:g})")
        finally:
            PyMem_Free(sizes)
        out = <int>floor(r + 0.5) if r < st.max_size else st.max_size
        out = min(max(out, st.min_size), st.max_size)
        st.last = out
        st.why = tuple(why)
        return out

    def explain(self, op):
        """Why :meth:`recommend` chooses what it does for ``op`` (computed afresh)."""
        r = self.recommend(op)
        cdef _Op st = self._op(op)
        head = (f"{op}: batch size {r} in [{st.min_size}, {st.max_size}] after {st.n} "
                f"observations ({st.n_fail} failed, {st.n_rl} rate limited)")
        return head + "; " + "; ".join(st.why)

    def stats(self, op):
        """Counters and state for ``op``: observations, failures, rate limits, cap, cliff."""
        cdef _Op st = self._op(op)
        return {"observations": st.n, "failed": st.n_fail, "rate_limited": st.n_rl,
                "cap": st.cap, "cliff": None if isinf(st.cliff) else int(st.cliff),
                "last": st.last}

    def ops(self):
        """The operation names seen so far."""
        return list(self._ops)
