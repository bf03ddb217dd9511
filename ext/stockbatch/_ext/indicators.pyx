# Technical indicators per (symbol, interval) segment, compiled.
#
# Inputs are record batches sorted by (symbol, interval, ts), read zero-copy through
# __arrow_c_array__ (see arrow.pxd). Every indicator runs the same way:
#   segments  -> for each segment, maximal runs of present values (a null, NaN or inf
#                ends a run) -> the indicator's recurrence over each run, computed with
#                TA-Lib's seeds and rules, with two changes: recurrences are written
#                with the shortest dependency chain (no division on it), ~1e-16
#                relative; window sums are recomputed often enough not to drift. The
#                twin runs the same operations, so both backends agree bit for bit.
# Warm-up rows and missing rows are null; the outputs of one indicator share one
# validity bitmap. The pure-Python twin (stockbatch._py.indicators) is the readable spec.
from libc.stdint cimport int32_t, int64_t, uint8_t, uintptr_t
from libc.string cimport memcmp, memset
from libc.stdlib cimport malloc, free
from libc.math cimport sqrt, log, fabs, isfinite, NAN

from stockbatch._ext.arrow cimport (
    ArrowSchema, ArrowArray, Column, K_F64, K_STR, K_LSTR, K_I64, K_I32,
    col_f64, col_i64, col_valid, col_str_eq, import_capsules, find_child, fill_column,
    segment_starts,
)

import numpy as np
import pyarrow as pa

__all__ = ["segments", "sma", "ema", "rsi", "macd", "bbands", "atr", "volatility", "vwap"]

cdef int64_t US_PER_DAY = 86400000000


ctypedef struct Series:
    const double* v           # float64 values, row i at v[i]
    const uint8_t* validity   # NULL when no nulls
    int64_t voff              # bit offset of row 0 in validity
    bint positive             # values <= 0 also count as missing (log returns)


# One indicator's inputs, outputs and parameters, handed to its per-run function.
ctypedef struct Job:
    const double* in0
    const double* in1
    const double* in2
    double* out0
    double* out1
    double* out2
    int nout
    uint8_t* valid
    int64_t p0
    int64_t p1
    int64_t p2
    double f0
    double f1
    double* tmp

ctypedef int64_t (*run_fn)(Job* j, int64_t a, int64_t b) noexcept nogil


cdef inline bint present(const Series* s, int64_t i) noexcept nogil:
    cdef int64_t k
    cdef double x
    if s.validity != NULL:
        k = i + s.voff
        if not ((s.validity[k >> 3] >> (k & 7)) & 1):
            return False
    x = s.v[i]
    if s.positive:
        return isfinite(x) and x > 0.0
    return isfinite(x)


cdef inline bint all_present(const Series* s, int ns, int64_t i) noexcept nogil:
    cdef int k
    for k in range(ns):
        if not present(&s[k], i):
            return False
    return True


cdef inline void set_bits(uint8_t* bm, int64_t a, int64_t b) noexcept nogil:
    """Set validity bits [a, b): whole bytes with memset, the ragged ends bit by bit."""
    cdef int64_t i = a
    while i < b and (i & 7):
        bm[i >> 3] |= <uint8_t>(1 << (i & 7))
        i += 1
    if b - i >= 8:
        memset(bm + (i >> 3), 0xFF, <size_t>((b - i) >> 3))
        i += ((b - i) >> 3) << 3
    while i < b:
        bm[i >> 3] |= <uint8_t>(1 << (i & 7))
        i += 1


cdef inline void fill_nan(Job* j, int64_t a, int64_t b) noexcept nogil:
    cdef int64_t i
    for i in range(a, b):
        j.out0[i] = NAN
    if j.nout > 1:
        for i in range(a, b):
            j.out1[i] = NAN
    if j.nout > 2:
        for i in range(a, b):
            j.out2[i] = NAN


cdef inline bint all_clean(const Series* s, int ns, int64_t a, int64_t e) noexcept nogil:
    """True when rows [a, e) of every series are present: no nulls, all finite.

    x * 0.0 is NaN exactly for NaN and +-inf, and NaN survives the sums; four sums make
    it a throughput loop instead of one long addition chain."""
    cdef int k
    cdef int64_t i
    cdef const double* x
    cdef double z0 = 0.0, z1 = 0.0, z2 = 0.0, z3 = 0.0
    for k in range(ns):
        if s[k].validity != NULL or s[k].positive:
            return False
        x = s[k].v
        i = a
        while i + 4 <= e:
            z0 += x[i] * 0.0
            z1 += x[i + 1] * 0.0
            z2 += x[i + 2] * 0.0
            z3 += x[i + 3] * 0.0
            i += 4
        while i < e:
            z0 += x[i] * 0.0
            i += 1
    return (z0 + z1 + z2 + z3) == 0.0


cdef int64_t drive(Job* j, run_fn fn, const Series* s, int ns,
                   const int64_t* seg, int64_t nseg) noexcept nogil:
    """Call fn on every maximal run of present rows of every segment; NaN elsewhere.

    Returns the number of valid output rows."""
    cdef int64_t k, i, e, a, b, total = 0
    for k in range(nseg):
        i = seg[k]
        e = seg[k + 1]
        if i < e and all_clean(s, ns, i, e):
            # the common case: the whole segment is one run, no per-row checks
            total += fn(j, i, e)
            continue
        while i < e:
            a = i
            while a < e and not all_present(s, ns, a):
                a += 1
            fill_nan(j, i, a)
            if a >= e:
                break
            b = a + 1
            while b < e and all_present(s, ns, b):
                b += 1
            total += fn(j, a, b)
            i = b
    return total


# ---------------------------------------------------------------- per-run recurrences
# Each writes rows [a, b) of its outputs (NaN for the warm-up), sets the validity bits
# of the rows it produced and returns their count.

cdef enum:
    RESUM = 1024          # running window sums are recomputed at least this often


# A departing value this many times larger than what is left of a running sum means the
# sum is mostly rounding left over from it: recompute.
cdef double CANCEL = 65536.0


cdef inline double window_sum(const double* x, int64_t lo, int64_t hi) noexcept nogil:
    cdef double total = 0.0
    cdef int64_t k
    for k in range(lo, hi):
        total += x[k]
    return total


cdef inline double slide(const double* x, double total, int64_t i, int64_t p,
                         int64_t age) noexcept nogil:
    """The window sum of rows i-p+2..i from that of rows i-p+1..i-1 (total).

    Add the new value minus the departing one (one addition on the dependency chain),
    and recompute from scratch every RESUM rows and after a cancellation, so that
    rounding from long-gone or much larger values never accumulates (TA-Lib's running
    sum drifts: 4e-6 relative after prices fell from ~1e9 to ~1)."""
    cdef double out = total + (x[i] - x[i - p + 1])
    if (age & (RESUM - 1)) == 0 or fabs(x[i - p + 1]) > CANCEL * fabs(out):
        return window_sum(x, i - p + 2, i + 1)
    return out


cdef int64_t sma_run(Job* j, int64_t a, int64_t b) noexcept nogil:
    # TA-Lib INT_SMA's warm-up and start; the running sum as slide() describes, and a
    # multiply by 1/p instead of a division (equal to TA-Lib to ~1e-16 relative).
    cdef int64_t p = j.p0, i
    cdef const double* x = j.in0
    cdef double* o = j.out0
    cdef double total, inv = 1.0 / <double>p
    if b - a < p:
        fill_nan(j, a, b)
        return 0
    for i in range(a, a + p - 1):
        o[i] = NAN
    total = window_sum(x, a, a + p - 1)
    for i in range(a + p - 1, b):
        o[i] = (total + x[i]) * inv
        total = slide(x, total, i, p, i - a)
    set_bits(j.valid, a + p - 1, b)
    return b - (a + p - 1)


cdef int64_t ema_run(Job* j, int64_t a, int64_t b) noexcept nogil:
    # TA-Lib INT_EMA: seeded with the SMA of the first p values, k = 2 / (p + 1).
    cdef int64_t p = j.p0, i
    cdef const double* x = j.in0
    cdef double* o = j.out0
    cdef double k = 2.0 / <double>(p + 1), prev = 0.0, k1 = 1.0 - k
    if b - a < p:
        fill_nan(j, a, b)
        return 0
    for i in range(a, a + p):
        prev += x[i]
        o[i] = NAN
    prev = prev / <double>p
    o[a + p - 1] = prev
    for i in range(a + p, b):
        # prev*(1-k) + x*k rather than TA-Lib's (x-prev)*k + prev: a shorter dependency
        # chain (mul+add), equal to ~1e-16 relative
        prev = prev * k1 + x[i] * k
        o[i] = prev
    set_bits(j.valid, a + p - 1, b)
    return b - (a + p - 1)


cdef inline double rsi_value(double gain, double loss) noexcept nogil:
    # no change at all in the window: 0, as TA-Lib
    cdef double t = gain + loss
    if t == 0.0:
        return 0.0
    return 100.0 * (gain / t)


cdef int64_t rsi_run(Job* j, int64_t a, int64_t b) noexcept nogil:
    # TA-Lib RSI: Wilder's averages seeded by the plain mean of the first p changes.
    cdef int64_t p = j.p0, i
    cdef const double* x = j.in0
    cdef double* o = j.out0
    cdef double gain = 0.0, loss = 0.0, d, up, dn
    cdef double keep = <double>(p - 1) / <double>p, w = 1.0 / <double>p
    if b - a <= p:
        fill_nan(j, a, b)
        return 0
    o[a] = NAN
    for i in range(a + 1, a + p + 1):
        d = x[i] - x[i - 1]
        if d < 0:
            loss -= d
        else:
            gain += d
        o[i] = NAN
    loss /= <double>p
    gain /= <double>p
    o[a + p] = rsi_value(gain, loss)
    for i in range(a + p + 1, b):
        d = x[i] - x[i - 1]
        # Wilder: avg*(p-1)/p + change/p, written so that no division sits on the
        # dependency chain (TA-Lib multiplies, adds, then divides), and branch-free
        # (rises and falls are a coin toss for the branch predictor)
        up = d if d > 0.0 else 0.0
        dn = -d if d < 0.0 else 0.0
        gain = gain * keep + up * w
        loss = loss * keep + dn * w
        o[i] = rsi_value(gain, loss)
    set_bits(j.valid, a + p, b)
    return b - (a + p)


cdef int64_t macd_run(Job* j, int64_t a, int64_t b) noexcept nogil:
    # TA-Lib MACD: both EMAs start at row slow-1 (the fast one seeded by the SMA of the
    # fast values ending there), signal = EMA of the MACD line seeded by its first
    # `signal` values; all three outputs start at (slow - 1) + (signal - 1).
    cdef int64_t fast = j.p0, slow = j.p1, sig = j.p2, i
    cdef int64_t t0 = a + slow - 1, start = t0 + sig - 1
    cdef const double* x = j.in0
    cdef double kf = 2.0 / <double>(fast + 1)
    cdef double ks = 2.0 / <double>(slow + 1)
    cdef double kg = 2.0 / <double>(sig + 1)
    cdef double ef = 0.0, es = 0.0, m, msum = 0.0, s = 0.0
    cdef double kf1 = 1.0 - kf, ks1 = 1.0 - ks, kg1 = 1.0 - kg
    if b <= start:
        fill_nan(j, a, b)
        return 0
    fill_nan(j, a, start)
    for i in range(a, t0 + 1):
        es += x[i]
    es = es / <double>slow
    for i in range(t0 + 1 - fast, t0 + 1):
        ef += x[i]
    ef = ef / <double>fast
    m = ef - es
    for i in range(t0, b):
        if i > t0:
            ef = ef * kf1 + x[i] * kf
            es = es * ks1 + x[i] * ks
            m = ef - es
        if i < start:
            msum += m
            continue
        if i == start:
            msum += m
            s = msum / <double>sig
        else:
            s = s * kg1 + m * kg
        j.out0[i] = m
        j.out1[i] = s
        j.out2[i] = m - s
    set_bits(j.valid, start, b)
    return b - start


cdef enum:
    BB_RESHIFT = 64       # Bollinger shifted sums are recomputed around x[i] this often


cdef inline double two_pass_ss(const double* x, int64_t lo, int64_t hi,
                               double mid) noexcept nogil:
    """Sum of (x - mid)^2 over rows lo..hi-1, in four interleaved lanes."""
    cdef int64_t k = lo
    cdef double d0, d1, d2, d3, s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    while k + 4 <= hi:
        d0 = x[k] - mid
        d1 = x[k + 1] - mid
        d2 = x[k + 2] - mid
        d3 = x[k + 3] - mid
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
        k += 4
    while k < hi:
        d0 = x[k] - mid
        s0 += d0 * d0
        k += 1
    return (s0 + s1) + (s2 + s3)


cdef int64_t bbands_run(Job* j, int64_t a, int64_t b) noexcept nogil:
    # TA-Lib BBANDS with the SMA middle: mid = the SMA (as sma_run), width = nbdev times
    # the population std of the window. The variance comes from sliding sums of x - ref
    # (ref = a recent value, renewed every BB_RESHIFT rows with the sums recomputed), so
    # the subtraction Q/p - (S/p)^2 cancels little; when it still cancels heavily (flat
    # windows) the window is summed again around mid in two passes, which is exact.
    # "Heavily" is measured against the largest qq since the reshift (peak): once big values
    # leave the window, qq itself is rounding residue.
    cdef int64_t p = j.p0, i, k, lo
    cdef const double* x = j.in0
    cdef double nbdev = j.f0, total, mid, t, var, d, dq, ref = 0.0, ss = 0.0, qq = 0.0
    cdef double peak = 0.0
    cdef double inv = 1.0 / <double>p
    if b - a < p:
        fill_nan(j, a, b)
        return 0
    fill_nan(j, a, a + p - 1)
    total = window_sum(x, a, a + p - 1)
    for i in range(a + p - 1, b):
        mid = (total + x[i]) * inv
        total = slide(x, total, i, p, i - a)
        lo = i - p + 1
        if ((i - a - p + 1) & (BB_RESHIFT - 1)) == 0:
            ref = x[i]
            ss = 0.0
            qq = 0.0
            for k in range(lo, i + 1):
                d = x[k] - ref
                ss += d
                qq += d * d
            peak = qq
        else:
            d = x[i] - ref
            dq = x[lo - 1] - ref
            ss += d - dq
            qq += d * d - dq * dq
            if qq > peak:
                peak = qq
        var = (qq - ss * ss * inv) * inv
        if not (var > peak * inv * 0.00000095367431640625):   # 2^-20: heavy cancellation
            var = two_pass_ss(x, lo, i + 1, mid) * inv
        t = sqrt(var) * nbdev
        j.out0[i] = mid + t
        j.out1[i] = mid
        j.out2[i] = mid - t
    set_bits(j.valid, a + p - 1, b)
    return b - (a + p - 1)


cdef inline double true_range(const double* h, const double* l, const double* c,
                              int64_t i) noexcept nogil:
    # TA-Lib TRANGE: max(high - low, |prev close - high|, |prev close - low|)
    cdef double g = h[i] - l[i], v2, v3
    v2 = fabs(c[i - 1] - h[i])
    v3 = fabs(c[i - 1] - l[i])
    g = v2 if v2 > g else g     # conditional moves, not branches
    return v3 if v3 > g else g


cdef int64_t atr_run(Job* j, int64_t a, int64_t b) noexcept nogil:
    # TA-Lib ATR: SMA of the first p true ranges (from row a + 1), then Wilder's
    # smoothing; period 1 is the true range itself.
    cdef int64_t p = j.p0, i
    cdef double prev = 0.0, keep = <double>(p - 1) / <double>p, w = 1.0 / <double>p
    cdef double* o = j.out0
    if b - a <= p:
        fill_nan(j, a, b)
        return 0
    o[a] = NAN
    if p == 1:
        for i in range(a + 1, b):
            o[i] = true_range(j.in0, j.in1, j.in2, i)
        set_bits(j.valid, a + 1, b)
        return b - a - 1
    for i in range(a + 1, a + p + 1):
        prev += true_range(j.in0, j.in1, j.in2, i)
        o[i] = NAN
    prev = prev / <double>p
    o[a + p] = prev
    for i in range(a + p + 1, b):
        # Wilder smoothing with no division on the dependency chain
        prev = prev * keep + true_range(j.in0, j.in1, j.in2, i) * w
        o[i] = prev
    set_bits(j.valid, a + p, b)
    return b - (a + p)


cdef inline double ring_m2(const double* ring, int64_t p, int64_t pos) noexcept nogil:
    """Sum of squared deviations from the mean of the ring, oldest (pos) first, two passes."""
    cdef int64_t k
    cdef double mean = 0.0, ss = 0.0, d
    for k in range(pos, p):
        mean += ring[k]
    for k in range(pos):
        mean += ring[k]
    mean = mean / <double>p
    for k in range(pos, p):
        d = ring[k] - mean
        ss += d * d
    for k in range(pos):
        d = ring[k] - mean
        ss += d * d
    return ss


cdef int64_t vol_run(Job* j, int64_t a, int64_t b) noexcept nogil:
    # Sample std (ddof j.p1) of the last p log returns times j.f0 (sqrt of the
    # annualisation factor). As bbands_run: sliding sums of r - ref (ref renewed every
    # BB_RESHIFT rows), and an exact two-pass sum over the window where they cancel
    # heavily (flat stretches give exactly 0). "Heavily" is measured against the largest
    # qq since the reshift: after big returns leave the window, qq itself is rounding residue.
    cdef int64_t p = j.p0, ddof = j.p1, i, k, pos
    cdef const double* x = j.in0
    cdef double* o = j.out0
    cdef double* ring = j.tmp      # the last p returns, at (i % p)
    cdef double r, d, dq, m2, ref = 0.0, ss = 0.0, qq = 0.0, peak = 0.0
    cdef double inv = 1.0 / <double>p
    if b - a <= p:
        fill_nan(j, a, b)
        return 0
    o[a] = NAN
    for i in range(a + 1, b):
        r = log(x[i] / x[i - 1])
        dq = ring[i % p] - ref     # the departing return (row i - p), once the ring is full
        ring[i % p] = r
        if i < a + p:
            o[i] = NAN
            continue
        pos = (i + 1) % p          # oldest return in the window
        if ((i - a - p) & (BB_RESHIFT - 1)) == 0:
            ref = r
            ss = 0.0
            qq = 0.0
            for k in range(pos, p):
                d = ring[k] - ref
                ss += d
                qq += d * d
            for k in range(pos):
                d = ring[k] - ref
                ss += d
                qq += d * d
            peak = qq
        else:
            d = r - ref
            ss += d - dq
            qq += d * d - dq * dq
            if qq > peak:
                peak = qq
        m2 = qq - ss * ss * inv
        if not (m2 > peak * 0.00000095367431640625):   # 2^-20: heavy cancellation
            m2 = ring_m2(ring, p, pos)
        o[i] = sqrt(m2 / <double>(p - ddof)) * j.f0
    set_bits(j.valid, a + p, b)
    return b - (a + p)


# ---------------------------------------------------------------- Python-facing glue

cdef class _Batch:
    """Borrowed view of a record batch exported through __arrow_c_array__."""
    cdef object caps          # keeps the exported structs alive
    cdef ArrowSchema* schema
    cdef ArrowArray* array
    cdef int64_t n
    cdef list keep            # converted columns, alive as long as this view

    def __cinit__(self, data):
        if not hasattr(data, "__arrow_c_array__"):
            raise TypeError(
                f"expected a record batch exporting __arrow_c_array__, got {type(data).__name__}"
            )
        self.caps = data.__arrow_c_array__()
        import_capsules(self.caps, &self.schema, &self.array)
        self.n = self.array.length
        self.keep = []

    cdef int column(self, str name, Column* c) except -1:
        cdef int64_t k = find_child(self.schema, name)
        if k < 0:
            raise KeyError(f"column {name!r} is missing")
        return fill_column(self.schema.children[k], self.array.children[k], self.array.offset, c)

    cdef bint has(self, str name) except -1:
        return find_child(self.schema, name) >= 0

    cdef int series(self, str name, Series* s, bint positive=False) except -1:
        """Describe a numeric column as float64 values (converted once if not float64)."""
        cdef Column c
        cdef double* p
        cdef int64_t i
        self.column(name, &c)
        if c.kind == K_STR or c.kind == K_LSTR:
            raise TypeError(f"column {name!r} holds strings; a numeric column is needed")
        s.validity = c.validity
        s.voff = c.offset
        s.positive = positive
        if c.kind == K_F64:
            s.v = (<const double*>c.values) + c.offset
            return 0
        buf = pa.allocate_buffer(max(self.n, 1) * 8)
        self.keep.append(buf)
        p = <double*><uintptr_t>buf.address
        with nogil:
            for i in range(self.n):
                p[i] = col_f64(&c, i)
        s.v = p
        return 0


cdef enum:
    SEG_BLOCK = 64        # smallest block of rows find_segments tests at once
    SEG_BLOCK_MAX = 8192  # blocks double up to this while rows stay unchanged


cdef inline bint block_same(const Column* c, int64_t s, int64_t e) noexcept nogil:
    """True when rows s..e-1 provably equal row s-1 (False means: check row by row).

    utf8 without nulls: every length equals row s-1's and the bytes of rows s-1..e-1 are
    that string repeated (one memcmp of the range against itself shifted by one string).
    Dictionary with int32 indices without nulls: every index equals row s-1's."""
    cdef const int32_t* off
    cdef const int32_t* idx
    cdef int64_t j, base, width, bad = 0
    if c == NULL:
        return True
    if c.validity != NULL:
        return False
    if c.index_width == 4:
        idx = (<const int32_t*>c.values) + c.offset
        for j in range(s, e):
            bad |= idx[j] != idx[s - 1]
        return bad == 0
    if c.index_width != 0 or c.s.off32 == NULL:
        return False
    off = c.s.off32 + c.s.offset
    base = off[s - 1]
    width = off[s] - base
    for j in range(s, e + 1):
        bad |= (off[j] - base) != (j - s + 1) * width
    if bad:
        return False
    return memcmp(c.s.chars + base + width, c.s.chars + base, <size_t>((e - s) * width)) == 0


cdef int64_t find_segments(const Column* symbol, const Column* interval, int64_t n,
                           int64_t* out) noexcept nogil:
    """segment_starts of arrow.pxd, with the same result, skipping blocks of rows that are
    provably unchanged (the common case: thousands of bars per symbol) instead of comparing
    strings row by row."""
    cdef int64_t i = 1, j, e, k = 1, block = SEG_BLOCK
    if n == 0:
        out[0] = 0
        return 0
    out[0] = 0
    while i < n:
        e = i + block if i + block < n else n
        if block_same(symbol, i, e) and block_same(interval, i, e):
            i = e
            if block < SEG_BLOCK_MAX:
                block *= 2
            continue
        if block > SEG_BLOCK:
            # a boundary lies ahead: retry with a smaller block before going row by row
            block //= 4
            if block < SEG_BLOCK:
                block = SEG_BLOCK
            continue
        for j in range(i, e):
            if not col_str_eq(symbol, j, j - 1) or (
                interval != NULL and not col_str_eq(interval, j, j - 1)
            ):
                out[k] = j
                k += 1
        i = e
    out[k] = n
    return k


cdef object _segments_of(_Batch b):
    cdef Column sym, itv
    cdef Column* pitv = NULL
    cdef int64_t k, n = b.n
    out = np.empty(n + 1, dtype=np.int64)
    cdef int64_t[::1] o = out
    if n == 0:
        out[0] = 0
        return out[:1]
    if not b.has("symbol"):
        # no symbol column: one series
        o[0] = 0
        o[1] = n
        k = 1
    else:
        b.column("symbol", &sym)
        if b.has("interval"):
            b.column("interval", &itv)
            pitv = &itv
        with nogil:
            k = find_segments(&sym, pitv, n, &o[0])
    _check_order(b, &o[0], k)
    return out[:k + 1]


cdef bint _sorted_fast(const Column* ts, const int64_t* seg, int64_t nseg) noexcept nogil:
    """ts (int64, no nulls) never decreases inside a segment: a loop without early exit,
    which the compiler vectorizes."""
    cdef const int64_t* t = (<const int64_t*>ts.values) + ts.offset
    cdef int64_t k, i, bad = 0
    for k in range(nseg):
        for i in range(seg[k] + 1, seg[k + 1]):
            bad |= t[i] < t[i - 1]
    return bad == 0


cdef int _check_order(_Batch b, const int64_t* seg, int64_t nseg) except -1:
    """ValueError when ts decreases inside a segment: the rows are not sorted, and every
    indicator would silently mix unrelated bars. Null ts are skipped."""
    cdef Column ts
    cdef int64_t k, i, bad = -1, last, t
    cdef bint seen
    if not b.has("ts"):
        return 0
    b.column("ts", &ts)
    if ts.kind != K_I64:
        return 0
    if ts.validity == NULL and _sorted_fast(&ts, seg, nseg):
        return 0
    with nogil:
        for k in range(nseg):
            seen = False
            last = 0
            for i in range(seg[k], seg[k + 1]):
                if not col_valid(&ts, i):
                    continue
                t = col_i64(&ts, i)
                if seen and t < last:
                    bad = i
                    break
                seen = True
                last = t
            if bad >= 0:
                break
    if bad >= 0:
        raise ValueError(
            f"rows are not sorted by (symbol, interval, ts): ts decreases at row {bad}; "
            "sort them first (stockbatch.normalize does)"
        )
    return 0


def _segments_reference(batch):
    """segment_starts of arrow.pxd, row by row (the tests compare find_segments with it)."""
    cdef _Batch b = _Batch(batch)
    cdef Column sym, itv
    cdef Column* pitv = NULL
    cdef int64_t k, n = b.n
    out = np.empty(n + 1, dtype=np.int64)
    cdef int64_t[::1] o = out
    b.column("symbol", &sym)
    if b.has("interval"):
        b.column("interval", &itv)
        pitv = &itv
    with nogil:
        k = segment_starts(&sym, pitv, n, &o[0])
    return out[:k + 1]


def segments(batch):
    """Row boundaries of the (symbol, interval) runs: int64 array ``[0, ..., len(batch)]``.

    A batch without a ``symbol`` column is one series. ValueError when ``ts`` decreases
    inside a run (the rows are not sorted)."""
    return _segments_of(_Batch(batch))


cdef object _check_segments(object segs, int64_t n):
    if segs is None:
        return None
    arr = np.ascontiguousarray(segs, dtype=np.int64)
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise ValueError("segments must be a 1-d array of row boundaries [0, ..., n]")
    cdef const int64_t[::1] s = arr
    cdef int64_t k, m = s.shape[0]
    if s[0] != 0 or s[m - 1] != n:
        raise ValueError(f"segments must start at 0 and end at the row count {n}")
    for k in range(1, m):
        if s[k] < s[k - 1]:
            raise ValueError("segments must be non-decreasing")
    return arr


cdef class _Out:
    """One float64 output: a fresh Arrow buffer or the caller's writable buffer."""
    cdef object buf
    cdef double* ptr

    def __cinit__(self, object out, int64_t n, str what):
        cdef double[::1] mv
        if out is None:
            self.buf = pa.allocate_buffer(max(n, 1) * 8)
            self.ptr = <double*><uintptr_t>self.buf.address
            return
        try:
            mv = out
        except (TypeError, ValueError, BufferError) as exc:
            raise TypeError(
                f"{what} must be a writable, contiguous float64 buffer (e.g. numpy.empty(n))"
            ) from exc
        if mv.shape[0] != n:
            raise ValueError(f"{what} has {mv.shape[0]} elements; the data has {n} rows")
        self.buf = pa.py_buffer(out)
        self.ptr = &mv[0] if n > 0 else NULL
        if self.ptr == NULL:
            self.buf = pa.allocate_buffer(8)
            self.ptr = <double*><uintptr_t>self.buf.address


cdef object _outs(object out, int nout, int64_t n):
    if nout == 1:
        return [_Out(out, n, "out")]
    if out is None:
        return [_Out(None, n, "out") for _ in range(nout)]
    if not isinstance(out, (tuple, list)) or len(out) != nout:
        raise TypeError(f"out must be a tuple of {nout} float64 buffers")
    return [_Out(o, n, f"out[{k}]") for k, o in enumerate(out)]


cdef object _finish(list outs, object bitmap, int64_t n, int64_t nvalid):
    validity = None if nvalid == n else bitmap
    return [
        pa.Array.from_buffers(pa.float64(), n, [validity, (<_Out>o).buf], null_count=n - nvalid)
        for o in outs
    ]


cdef int _check_period(str name, object value, int64_t minimum) except -1:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > 100_000_000:
        raise ValueError(f"{name} must be <= 100000000, got {value}")
    return 0


cdef object _run(object batch, run_fn fn, tuple columns, int nout, object out, object segs,
                 int64_t p0, int64_t p1, int64_t p2, double f0, bint positive, int64_t tmp_n):
    cdef _Batch b = _Batch(batch)
    cdef Series s[3]
    cdef Job j
    cdef int ns = len(columns), k
    cdef int64_t n = b.n, nseg, nvalid
    cdef const int64_t[::1] sv
    for k in range(ns):
        b.series(columns[k], &s[k], positive)
    seg_arr = _check_segments(segs, n)
    if seg_arr is None:
        seg_arr = _segments_of(b)
    sv = seg_arr
    nseg = sv.shape[0] - 1
    outs = _outs(out, nout, n)
    bitmap = pa.allocate_buffer(max((n + 7) >> 3, 1))
    memset(<void*><uintptr_t>bitmap.address, 0, <size_t>max((n + 7) >> 3, 1))
    memset(&j, 0, sizeof(Job))
    j.in0 = s[0].v
    if ns > 1:
        j.in1 = s[1].v
        j.in2 = s[2].v
    j.nout = nout
    j.out0 = (<_Out>outs[0]).ptr
    if nout > 1:
        j.out1 = (<_Out>outs[1]).ptr
        j.out2 = (<_Out>outs[2]).ptr
    j.valid = <uint8_t*><uintptr_t>bitmap.address
    j.p0 = p0
    j.p1 = p1
    j.p2 = p2
    j.f0 = f0
    if tmp_n > n:
        tmp_n = n       # a run longer than the period fits in the data
    if tmp_n > 0:
        j.tmp = <double*>malloc(<size_t>tmp_n * sizeof(double))
        if j.tmp == NULL:
            raise MemoryError()
    try:
        with nogil:
            nvalid = drive(&j, fn, s, ns, &sv[0], nseg)
    finally:
        free(j.tmp)
    return _finish(outs, bitmap, n, nvalid)


def sma(batch, period, *, column="close", out=None, segments=None):
    """Simple moving average; first value at row period-1 of each run (TA-Lib SMA)."""
    _check_period("period", period, 1)
    return _run(batch, sma_run, (column,), 1, out, segments, period, 0, 0, 0.0, False, 0)[0]


def ema(batch, period, *, column="close", out=None, segments=None):
    """Exponential moving average seeded by the SMA of the first period values (TA-Lib EMA)."""
    _check_period("period", period, 1)
    return _run(batch, ema_run, (column,), 1, out, segments, period, 0, 0, 0.0, False, 0)[0]


def rsi(batch, period, *, column="close", out=None, segments=None):
    """Wilder's RSI; first value at row period of each run (TA-Lib RSI)."""
    _check_period("period", period, 1)
    return _run(batch, rsi_run, (column,), 1, out, segments, period, 0, 0, 0.0, False, 0)[0]


def macd(batch, fast, slow, signal, *, column="close", out=None, segments=None):
    """MACD line, signal and histogram (TA-Lib MACD); returns a 3-tuple of arrays."""
    _check_period("fast", fast, 1)
    _check_period("slow", slow, 1)
    _check_period("signal", signal, 1)
    if slow < fast:
        fast, slow = slow, fast   # as TA-Lib does
    return tuple(_run(batch, macd_run, (column,), 3, out, segments, fast, slow, signal,
                      0.0, False, 0))


def bbands(batch, period, nbdev, *, column="close", out=None, segments=None):
    """Bollinger bands (upper, middle, lower) around the SMA (TA-Lib BBANDS, matype SMA)."""
    _check_period("period", period, 1)
    nbdev = float(nbdev)
    if not isfinite(nbdev) or nbdev < 0:
        raise ValueError(f"nbdev must be a finite number >= 0, got {nbdev}")
    return tuple(_run(batch, bbands_run, (column,), 3, out, segments, period, 0, 0,
                      nbdev, False, 0))


def atr(batch, period, *, out=None, segments=None):
    """Average true range of high, low, close (TA-Lib ATR); first value at row period."""
    _check_period("period", period, 1)
    return _run(batch, atr_run, ("high", "low", "close"), 1, out, segments, period, 0, 0,
                0.0, False, 0)[0]


def volatility(batch, period, *, ddof=1, annualize=None, column="close", out=None,
               segments=None):
    """Rolling std (ddof) of the last period log returns, times sqrt(annualize) if given."""
    _check_period("period", period, 1)
    _check_period("ddof", ddof, 0)
    if ddof >= period:
        raise ValueError(f"period must exceed ddof ({ddof}), got {period}")
    scale = 1.0
    if annualize is not None:
        annualize = float(annualize)
        if not isfinite(annualize) or annualize <= 0:
            raise ValueError(f"annualize must be a positive number, got {annualize}")
        scale = sqrt(annualize)
    return _run(batch, vol_run, (column,), 1, out, segments, period, ddof, 0, scale, True,
                period)[0]


def vwap(batch, *, day=None, out=None, segments=None):
    """Volume-weighted average of the typical price (high + low + close) / 3, reset per day.

    ``day`` gives each row's session-day key (int64); by default UTC days of ``ts``."""
    cdef _Batch b = _Batch(batch)
    cdef Series s[4]
    cdef Column ts
    cdef int64_t n = b.n, nseg, k, i, e, d, cur = 0, nvalid = 0, t
    cdef bint started, newday
    cdef int64_t day_lo = 0
    cdef double cpv, cv, tp
    cdef const int64_t[::1] sv
    cdef const int64_t[::1] dv
    cdef double* o
    cdef uint8_t* bm
    cdef bint own_day = day is None
    b.series("high", &s[0])
    b.series("low", &s[1])
    b.series("close", &s[2])
    b.series("volume", &s[3])
    b.column("ts", &ts)
    if ts.kind != K_I64 and ts.kind != K_I32:
        raise TypeError("column 'ts' must be a timestamp (or integer) column")
    if not own_day:
        day = np.ascontiguousarray(day, dtype=np.int64)
        if day.shape[0] != n:
            raise ValueError(f"day has {day.shape[0]} keys; the data has {n} rows")
    else:
        day = np.zeros(1, dtype=np.int64)
    dv = day
    seg_arr = _check_segments(segments, n)
    if seg_arr is None:
        seg_arr = _segments_of(b)
    sv = seg_arr
    nseg = sv.shape[0] - 1
    outs = _outs(out, 1, n)
    o = (<_Out>outs[0]).ptr
    bitmap = pa.allocate_buffer(max((n + 7) >> 3, 1))
    bm = <uint8_t*><uintptr_t>bitmap.address
    memset(bm, 0, <size_t>max((n + 7) >> 3, 1))
    with nogil:
        for k in range(nseg):
            e = sv[k + 1]
            started = False
            cpv = 0.0
            cv = 0.0
            for i in range(sv[k], e):
                if not (col_valid(&ts, i) and all_present(s, 4, i)):
                    o[i] = NAN
                    continue
                if own_day:
                    t = col_i64(&ts, i)
                    # rows are sorted: compare with the current day's range and divide
                    # (40-odd cycles) only when a new day starts
                    newday = not started or t < day_lo or t - day_lo >= US_PER_DAY
                    if newday:
                        d = t // US_PER_DAY
                        if t < 0 and d * US_PER_DAY != t:
                            d -= 1    # floor: days before 1970 stay on their own day
                        day_lo = d * US_PER_DAY
                else:
                    d = dv[i]
                    newday = not started or d != cur
                if newday:
                    started = True
                    cur = d
                    cpv = 0.0
                    cv = 0.0
                tp = (s[0].v[i] + s[1].v[i] + s[2].v[i]) / 3.0
                cpv += tp * s[3].v[i]
                cv += s[3].v[i]
                if cv != 0.0:
                    o[i] = cpv / cv
                    bm[i >> 3] |= <uint8_t>(1 << (i & 7))
                    nvalid += 1
                else:
                    o[i] = NAN
    return _finish(outs, bitmap, n, nvalid)[0]
