# Compiled kernels over bars: validate, normalize, resample, returns / log_returns.
#
# Columns are read zero-copy through the Arrow C Data Interface (arrow.pxd); loops run with
# the GIL released; results go back to Arrow over numpy-owned buffers without a copy. The
# rule definitions and report types are shared with the pure-Python twin
# (stockbatch._py.kernels, the readable spec) through stockbatch._validation.
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from libc.math cimport fabs, isfinite, log, NAN
from libc.stdint cimport INT64_MAX, INT64_MIN, int32_t, int64_t, uint8_t, uint16_t
from libc.string cimport memcmp

from stockbatch._ext.arrow cimport (
    ArrowArray, ArrowSchema, Column, batch_column, col_f64, col_str, col_str_eq, col_valid,
    import_capsules, K_F64,
)

from stockbatch._arrow import float_array
from stockbatch._validation import (
    RESAMPLE_COLUMNS, RULES, VALIDATE_COLUMNS, NormalizeResult, Rule, ValidationReport,
    calendar_edges, mask_buffer, parse_interval, prepare,
)

__all__ = ["validate", "normalize", "resample", "returns", "log_returns"]

# Validity stand-in for columns without a bitmap: every bit set, grown on demand, so the
# row loops read validity the same branch-free way for every column. Outgrown buffers are
# kept (never freed) because a loop in another thread may still read them without the GIL.
_ones = [np.full(1024, 0xFF, np.uint8)]


cdef const uint8_t* _ones_for(int64_t nbits):
    if _ones[len(_ones) - 1].shape[0] * 8 < nbits + 64:
        _ones.append(np.full(nbits // 8 + 1024, 0xFF, np.uint8))
    cdef const uint8_t[::1] view = _ones[len(_ones) - 1]
    return &view[0]


ctypedef struct Bits:
    const uint8_t* p
    int64_t off


cdef inline int bit(Bits b, int64_t i) noexcept nogil:
    cdef int64_t j = i + b.off
    return (b.p[j >> 3] >> (j & 7)) & 1


cdef inline int64_t _last_valid(Bits b, int64_t i, int64_t j) noexcept nogil:
    """The last row of [i, j) whose bit is set, or i - 1 when none is."""
    cdef int64_t r = j - 1
    while r >= i and not bit(b, r):
        r -= 1
    return r


cdef Bits _bits(const Column* c, int64_t n):
    cdef Bits b
    if c.validity == NULL:
        b.p = _ones_for(n)
        b.off = 0
    else:
        b.p = c.validity
        b.off = c.offset
    return b


cdef inline const double* _f64(const Column* c) noexcept nogil:
    return (<const double*>c.values) + c.offset


cdef inline const int64_t* _i64(const Column* c) noexcept nogil:
    return (<const int64_t*>c.values) + c.offset


cdef inline bint _plain_str(const Column* c) noexcept nogil:
    """A utf8 column (int32 offsets) without nulls and not dictionary-encoded."""
    return c.index_width == 0 and c.validity == NULL and c.s.off32 != NULL


cdef inline bint _row_eq_plain(const int32_t* off, const char* chars, int64_t j) noexcept nogil:
    cdef int32_t a = off[j - 1], b = off[j], c = off[j + 1]
    return c - b == b - a and memcmp(chars + a, chars + b, c - b) == 0


cdef int64_t _next_change_plain(const Column* col, int64_t i, int64_t end) noexcept nogil:
    """First row j in [i, end) whose string differs from row j - 1's, else end.

    Within a run of equal strings of length L the offsets step by L, and the bytes of rows
    j .. j+k-1 equal those of rows j-1 .. j+k-2 shifted by L: one memcmp checks 64 rows."""
    cdef const int32_t* off = col.s.off32 + col.s.offset
    cdef const char* chars = col.s.chars
    cdef int64_t j = i, q, chunk
    cdef int32_t L
    cdef bint length_break
    while j < end:
        L = off[j] - off[j - 1]
        chunk = end - j if end - j < 64 else 64
        length_break = False
        for q in range(chunk):
            if off[j + q + 1] - off[j + q] != L:
                chunk = q
                length_break = True
                break
        if chunk and memcmp(chars + off[j], chars + off[j - 1], chunk * L) != 0:
            for q in range(chunk):
                if not _row_eq_plain(off, chars, j + q):
                    return j + q
        j += chunk
        if length_break:
            return j
    return end


cdef int64_t _next_change(const Column* col, int64_t i, int64_t end) noexcept nogil:
    """First row j in [i, end) whose value differs from row j - 1's (nulls equal), else end."""
    cdef int64_t j
    if _plain_str(col):
        return _next_change_plain(col, i, end)
    if col.index_width == 4 and col.validity == NULL:
        # equal indices mean equal strings; unequal ones may still be (repeated dictionary values)
        for j in range(i, end):
            if (<const int32_t*>col.values)[j + col.offset] != \
                    (<const int32_t*>col.values)[j - 1 + col.offset] and \
                    not col_str_eq(col, j, j - 1):
                return j
        return end
    for j in range(i, end):
        if not col_str_eq(col, j, j - 1):
            return j
    return end


cdef int64_t _find_segments(const Column* sym, const Column* itv, int64_t n,
                            int64_t* out) noexcept nogil:
    """segment_starts (arrow.pxd), faster on plain and int32-dictionary strings: the start row
    of every (symbol, interval) run into out (capacity n + 1), then n; returns the count."""
    cdef int64_t i = 1, k = 1, js, ji
    if n == 0:
        out[0] = 0
        return 0
    out[0] = 0
    js = 0
    while i < n:
        if js < i:
            js = _next_change(sym, i, n)
        ji = _next_change(itv, i, js) if itv != NULL else js
        if ji < n:
            out[k] = ji
            k += 1
        i = ji + 1
    out[k] = n
    return k


cdef class _Batch:
    """Keeps the exported capsules alive while Columns point into them."""
    cdef object caps
    cdef ArrowSchema* schema
    cdef ArrowArray* array
    cdef readonly object batch
    cdef int64_t n

    def __cinit__(self, batch):
        self.batch = batch
        self.caps = batch.__arrow_c_array__()
        import_capsules(self.caps, &self.schema, &self.array)
        self.n = self.array.length

    cdef int column(self, str name, Column* c) except -1:
        return batch_column(self.schema, self.array, name, c)

    cdef bint has(self, str name):
        return name in self.batch.schema.names

    cdef object segments(self):
        """Start row of every (symbol, interval) run, then n (numpy int64)."""
        cdef Column c_sym, c_int
        cdef const Column* c_pint = NULL
        cdef int64_t c_n = self.n, c_k
        self.column("symbol", &c_sym)
        if self.has("interval"):
            self.column("interval", &c_int)
            c_pint = &c_int
        # capacity n + 1; only the pages actually written cost memory
        starts = np.empty(c_n + 1, np.int64)
        cdef int64_t[::1] v = starts
        with nogil:
            c_k = _find_segments(&c_sym, c_pint, c_n, &v[0])
        return starts[:c_k + 1]


def _check_threshold(spike_threshold):
    if spike_threshold is None:
        return None
    thr = float(spike_threshold)
    if not math.isfinite(thr) or thr < 0:
        raise ValueError(f"spike_threshold must be a finite number >= 0, not {spike_threshold!r}")
    return thr


# ---------------------------------------------------------------------------------------
# validate

def validate(data, *, rules=Rule.DEFAULT, spike_threshold=None, out=None):
    """Check every row against ``rules``; see :func:`stockbatch.validate`."""
    rules = Rule(rules)
    thr = _check_threshold(spike_threshold)
    if thr is None:
        rules &= ~Rule.PRICE_SPIKE
    batch = prepare(data, VALIDATE_COLUMNS, ("adj_close",))
    cdef _Batch b = _Batch(batch)
    cdef int64_t n = b.n
    mask = mask_buffer(n, out)
    hist = np.zeros(512, np.int64)
    if n:
        _validate(b, mask, hist, <int>int(rules), thr if thr is not None else -1.0)
    counts = {}
    for r in RULES:
        if r & rules:
            counts[r.name] = int(hist[(np.arange(512) & int(r)) != 0].sum())
    return ValidationReport(mask, counts, rules, pa.Table.from_batches([batch]))


ctypedef struct VCols:
    # validity of symbol, interval, ts, open, high, low, close, adj_close, volume
    Bits bs, bi, bt, bo, bh, bl, bc, ba, bv
    const double* po
    const double* ph
    const double* pl
    const double* pc
    const double* pa
    const int64_t* pv
    const int64_t* pt
    int adj_on
    # the bitmaps that exist (columns without one are all valid), for block checks
    int nmaps
    const uint8_t* maps[9]
    int64_t moff[9]


cdef inline bint _all_set(const uint8_t* p, int64_t start, int64_t count) noexcept nogil:
    """Bits start .. start+count-1 of bitmap p are all 1."""
    cdef int64_t end = start + count
    while start < end and (start & 7):
        if not (p[start >> 3] >> (start & 7)) & 1:
            return False
        start += 1
    while start + 8 <= end:
        if p[start >> 3] != 0xFF:
            return False
        start += 8
    while start < end:
        if not (p[start >> 3] >> (start & 7)) & 1:
            return False
        start += 1
    return True


cdef inline bint _block_valid(const VCols* v, int64_t i, int64_t count) noexcept nogil:
    cdef int k
    for k in range(v.nmaps):
        if not _all_set(v.maps[k], i + v.moff[k], count):
            return False
    return True


cdef inline unsigned _elem_fast(const VCols* v, int64_t i) noexcept nogil:
    """Rules 0-5 of a row whose fields are all present; 0xFFFF when a price is not finite
    (the caller then takes the careful path)."""
    cdef double xo = v.po[i], xh = v.ph[i], xl = v.pl[i], xc = v.pc[i], xa = v.pa[i]
    # x * 0 is 0 for finite x and NaN for NaN / inf: one test for all five prices
    cdef double z = xo * 0.0 + xh * 0.0 + xl * 0.0 + xc * 0.0 + xa * 0.0
    cdef double top, bottom, least
    cdef unsigned m
    if z != z:
        return 0xFFFF
    # all finite: "below any of" is "below the max of", branch-free
    top = xo if xo > xc else xc
    top = top if top > xl else xl
    bottom = xo if xo < xc else xc
    bottom = bottom if bottom < xh else xh
    least = bottom if bottom < xl else xl
    least = least if least < xa else xa
    m = (least <= 0) << 2
    m |= (xh < top) << 3
    m |= (xl > bottom) << 4
    m |= (v.pv[i] < 0) << 5
    return m


cdef inline unsigned _elem_careful(const VCols* v, int64_t i, int* vt_out,
                                   int* fc_out) noexcept nogil:
    """Rules 0-5 of any row: nulls and non-finite values never take part in comparisons."""
    cdef int vs = bit(v.bs, i) & bit(v.bi, i)
    cdef int vt = bit(v.bt, i)
    cdef int vo = bit(v.bo, i), vh = bit(v.bh, i), vl = bit(v.bl, i), vc = bit(v.bc, i)
    cdef int va = bit(v.ba, i) & v.adj_on, vv = bit(v.bv, i)
    cdef double xo = v.po[i], xh = v.ph[i], xl = v.pl[i], xc = v.pc[i], xa = v.pa[i]
    cdef int fo = vo & isfinite(xo), fh = vh & isfinite(xh), fl = vl & isfinite(xl)
    cdef int fc = vc & isfinite(xc), fa = va & isfinite(xa)
    cdef unsigned m = (vs & vt & vo & vh & vl & vc & vv) ^ 1
    m |= ((vo ^ fo) | (vh ^ fh) | (vl ^ fl) | (vc ^ fc) | (va ^ fa)) << 1
    m |= ((fo & (xo <= 0)) | (fh & (xh <= 0)) | (fl & (xl <= 0))
          | (fc & (xc <= 0)) | (fa & (xa <= 0))) << 2
    m |= (fh & ((fo & (xh < xo)) | (fc & (xh < xc)) | (fl & (xh < xl)))) << 3
    m |= (fl & ((fo & (xl > xo)) | (fc & (xl > xc)) | (fh & (xl > xh)))) << 4
    m |= (vv & (v.pv[i] < 0)) << 5
    vt_out[0] = vt
    fc_out[0] = fc
    return m


cdef int _validate(_Batch b, object mask, object hist, int c_rules, double c_thr) except -1:
    cdef Column sym, itv, ts, o, h, lo, c, a, vol
    cdef int64_t n = b.n
    b.column("symbol", &sym)
    b.column("interval", &itv)
    b.column("ts", &ts)
    b.column("open", &o)
    b.column("high", &h)
    b.column("low", &lo)
    b.column("close", &c)
    b.column("volume", &vol)
    cdef bint has_adj = b.has("adj_close")
    if has_adj:
        b.column("adj_close", &a)
    else:
        a = c  # stand-in, masked out by adj_on
    seg = b.segments()
    cdef const int64_t[::1] c_seg = seg
    cdef int64_t c_nseg = seg.shape[0] - 1
    cdef uint16_t[::1] c_mask = mask
    cdef int64_t[::1] c_hist = hist
    cdef VCols v
    v.bs = _bits(&sym, n)
    v.bi = _bits(&itv, n)
    v.bt = _bits(&ts, n)
    v.bo = _bits(&o, n)
    v.bh = _bits(&h, n)
    v.bl = _bits(&lo, n)
    v.bc = _bits(&c, n)
    v.ba = _bits(&a, n)
    v.bv = _bits(&vol, n)
    v.po = _f64(&o)
    v.ph = _f64(&h)
    v.pl = _f64(&lo)
    v.pc = _f64(&c)
    v.pa = _f64(&a)
    v.pv = _i64(&vol)
    v.pt = _i64(&ts)
    v.adj_on = 1 if has_adj else 0
    v.nmaps = 0
    cdef const Column* cols[9]
    cols[0] = &sym
    cols[1] = &itv
    cols[2] = &ts
    cols[3] = &o
    cols[4] = &h
    cols[5] = &lo
    cols[6] = &c
    cols[7] = &a
    cols[8] = &vol
    cdef int q
    for q in range(9):
        if (q != 7 or has_adj) and cols[q].validity != NULL:
            v.maps[v.nmaps] = cols[q].validity
            v.moff[v.nmaps] = cols[q].offset
            v.nmaps += 1
    cdef bint spike_on = c_thr >= 0
    cdef int64_t s, i, j, e, hi, t, t_max
    cdef int vt, fc, has_max, good, prev_good, hm
    cdef double xc, prev_c
    cdef bint fast
    cdef unsigned m
    with nogil:
        for s in range(c_nseg):
            has_max = 0
            t_max = INT64_MIN
            prev_good = 0
            prev_c = 1.0
            i = c_seg[s]
            hi = c_seg[s + 1]
            while i < hi:
                # blocks of 64 rows: when no field of the block is null, the fast path
                # skips every validity bit
                e = i + 64 if i + 64 < hi else hi
                fast = _block_valid(&v, i, e - i)
                for j in range(i, e):
                    if fast:
                        m = _elem_fast(&v, j)
                        vt = 1
                        fc = 1
                        if m == 0xFFFF:
                            m = _elem_careful(&v, j, &vt, &fc)
                    else:
                        m = _elem_careful(&v, j, &vt, &fc)
                    # against the largest earlier ts of the segment (nulls skipped)
                    t = v.pt[j]
                    hm = vt & has_max
                    m |= (hm & (t < t_max)) << 6
                    m |= (hm & (t == t_max)) << 7
                    if vt and (t > t_max or not has_max):
                        t_max = t
                    has_max |= vt
                    if spike_on:
                        xc = v.pc[j]
                        good = fc & (xc > 0)
                        if good & prev_good:
                            m |= (fabs(xc / prev_c - 1.0) > c_thr) << 8
                        prev_good = good
                        prev_c = xc
                    m &= c_rules
                    c_mask[j] = <uint16_t>m
                    if m:
                        c_hist[m] += 1
                i = e
    return 0


# ---------------------------------------------------------------------------------------
# normalize

cdef inline int _cmp_str(const Column* c, int64_t i, int64_t j) noexcept nogil:
    """Order of rows i and j of a string column: bytewise, nulls last."""
    cdef bint vi = col_valid(c, i), vj = col_valid(c, j)
    cdef int64_t ni, nj
    cdef const char* si
    cdef const char* sj
    cdef int r
    if not vi or not vj:
        return (not vi) - (not vj)
    si = col_str(c, i, &ni)
    sj = col_str(c, j, &nj)
    if ni == nj and si == sj:
        return 0
    r = memcmp(si, sj, ni if ni < nj else nj)
    if r != 0:
        return -1 if r < 0 else 1
    return (ni > nj) - (ni < nj)


cdef int64_t _scan_keys(_Batch b, uint8_t* keep) except -2:
    """-1 when the rows are out of (symbol, interval, ts) order (nulls last), else the number
    of rows whose key equals the next row's (with keep != NULL their bits are cleared)."""
    cdef Column sym, itv, ts
    cdef int64_t n = b.n, s, j, lo, hi, dups = 0
    cdef int r, vp, vj
    b.column("symbol", &sym)
    b.column("interval", &itv)
    b.column("ts", &ts)
    seg = b.segments()
    cdef const int64_t[::1] c_seg = seg
    cdef int64_t c_nseg = seg.shape[0] - 1
    cdef const int64_t* pt = _i64(&ts)
    cdef Bits bt = _bits(&ts, n)
    cdef bint ts_nulls = ts.validity != NULL
    with nogil:
        for s in range(c_nseg):
            lo = c_seg[s]
            hi = c_seg[s + 1]
            if s:
                # consecutive segments differ in symbol or interval: they must ascend
                r = _cmp_str(&sym, lo - 1, lo)
                if r == 0:
                    r = _cmp_str(&itv, lo - 1, lo)
                if r > 0:
                    dups = -1
                    break
            # inside a segment only ts decides (nulls last, two nulls are equal keys)
            for j in range(lo + 1, hi):
                if ts_nulls:
                    vp = bit(bt, j - 1)
                    vj = bit(bt, j)
                    if vp != vj:
                        if vj:
                            dups = -1
                            break
                        continue
                    if vp and pt[j] != pt[j - 1]:
                        if pt[j] < pt[j - 1]:
                            dups = -1
                            break
                        continue
                elif pt[j] != pt[j - 1]:
                    if pt[j] < pt[j - 1]:
                        dups = -1
                        break
                    continue
                dups += 1
                if keep != NULL:
                    keep[(j - 1) >> 3] &= ~(1 << ((j - 1) & 7))
            if dups < 0:
                break
    return dups


def _sort_key(arr):
    if not pa.types.is_dictionary(arr.type):
        return arr
    ranks = pc.rank(arr.dictionary, sort_keys="ascending", tiebreaker="dense")
    return ranks.take(arr.indices)


def normalize(data, *, adjust=False):
    """Sort by (symbol, interval, ts), drop duplicate keys (keep last), optionally adjust."""
    need = ("symbol", "interval", "ts")
    if adjust:
        need += ("open", "high", "low", "close", "adj_close")
    batch = prepare(data, need)
    cdef _Batch b = _Batch(batch)
    cdef int64_t dups = _scan_keys(b, NULL)
    was_unsorted = dups < 0
    if was_unsorted:
        keys = pa.table({k: _sort_key(batch.column(k)) for k in ("symbol", "interval", "ts")})
        order = pc.sort_indices(keys, sort_keys=[(k, "ascending", "at_end")
                                                 for k in keys.column_names])
        batch = batch.take(order)
        b = _Batch(batch)
        dups = _scan_keys(b, NULL)
    cdef uint8_t[::1] c_keep
    if dups > 0:
        keep = np.full((b.n + 7) // 8, 0xFF, np.uint8)
        c_keep = keep
        _scan_keys(b, &c_keep[0])
        flags = pa.Array.from_buffers(pa.bool_(), b.n, [None, pa.py_buffer(keep)])
        batch = batch.filter(flags)
        b = _Batch(batch)
    if adjust and b.n:
        batch = _adjust(b)
    return NormalizeResult(pa.Table.from_batches([batch]), int(dups), bool(was_unsorted))


cdef object _adjust(_Batch b):
    """OHLC times adj_close / close where both are present, finite and close != 0."""
    cdef Column c, a, x
    cdef int64_t n = b.n, i
    cdef double f
    b.column("close", &c)
    b.column("adj_close", &a)
    factor = np.empty(n, np.float64)
    cdef double[::1] c_f = factor
    with nogil:
        for i in range(n):
            f = NAN
            if col_valid(&c, i) and col_valid(&a, i):
                f = col_f64(&a, i) / col_f64(&c, i)
            c_f[i] = f if isfinite(f) else 1.0
    batch = b.batch
    cdef double[::1] c_y
    cdef int64_t off
    for name in ("open", "high", "low", "close"):
        b.column(name, &x)
        arr = batch.column(name)
        off = x.offset
        # same offset as the input so that its validity bitmap is shared, not copied
        y = np.empty(n + off, np.float64)
        c_y = y
        with nogil:
            for i in range(n):
                c_y[i + off] = col_f64(&x, i) * c_f[i]
        validity = arr.buffers()[0] if arr.null_count else None
        new = pa.Array.from_buffers(pa.float64(), n, [validity, pa.py_buffer(y)], offset=off)
        batch = batch.set_column(batch.schema.get_field_index(name), name, new)
    return batch


# ---------------------------------------------------------------------------------------
# returns

cdef object _returns(object data, str column, bint c_log, object out):
    batch = prepare(data, ("symbol", "interval", column))
    cdef _Batch b = _Batch(batch)
    cdef int64_t n = b.n, s, i
    cdef Column x
    b.column(column, &x)
    seg = b.segments()
    cdef const int64_t[::1] c_seg = seg
    cdef int64_t c_nseg = seg.shape[0] - 1
    values = mask_buffer(n, out, np.float64)
    valid = np.zeros((n + 7) // 8, np.uint8)
    cdef double[::1] c_out = values
    cdef uint8_t[::1] c_valid = valid
    cdef Bits bx = _bits(&x, n)
    cdef bint direct = x.kind == K_F64
    cdef const double* px = _f64(&x)
    cdef double cur, prev
    cdef int ok, prev_ok
    with nogil:
        for s in range(c_nseg):
            if c_seg[s] < c_seg[s + 1]:
                c_out[c_seg[s]] = 0.0  # first of a segment: null
            prev_ok = 0
            prev = 0.0
            for i in range(c_seg[s], c_seg[s + 1]):
                cur = px[i] if direct else col_f64(&x, i)
                ok = bit(bx, i)
                if ok & prev_ok:
                    c_out[i] = log(cur / prev) if c_log else cur / prev - 1.0
                    c_valid[i >> 3] |= 1 << (i & 7)
                else:
                    c_out[i] = 0.0
                prev_ok = ok
                prev = cur
    return float_array(values, valid)


def returns(data, *, column="close", out=None):
    """``x[i] / x[i-1] - 1`` per (symbol, interval) segment; null first row / null inputs.

    ``out`` (float64, at least as long as the data) receives the values and backs the
    returned array without a copy."""
    return _returns(data, column, False, out)


def log_returns(data, *, column="close", out=None):
    """``log(x[i] / x[i-1])`` per (symbol, interval) segment; null first row / null inputs.

    ``out`` as for :func:`returns`."""
    return _returns(data, column, True, out)


# ---------------------------------------------------------------------------------------
# resample

cdef inline int64_t _floor_to(int64_t t, int64_t width, int64_t origin) noexcept nogil:
    cdef int64_t d = t - origin
    cdef int64_t q = d / width
    if d % width < 0:
        q -= 1
    return q * width + origin


cdef inline void _set(uint8_t* bm, int64_t i) noexcept nogil:
    bm[i >> 3] |= 1 << (i & 7)


cdef inline int _get(const uint8_t* bm, int64_t i) noexcept nogil:
    return (bm[i >> 3] >> (i & 7)) & 1


ctypedef struct Grid:
    const int64_t* edges      # calendar bucket starts (sorted), or NULL for the fixed grid
    int64_t nedges
    int64_t width
    int64_t origin


cdef inline void _bucket(const Grid* g, int64_t t, int64_t* start, int64_t* end) noexcept nogil:
    """The bucket [start, end) holding t; one division or binary search per bucket, not
    per row (rows inside the current bucket only compare with end)."""
    cdef int64_t lo, hi, mid
    if g.edges == NULL:
        # the bucket right after the previous one (any segment: the grid is global) needs
        # no division; start == end only before the first bucket
        if start[0] != end[0] and t >= end[0] and t - end[0] < g.width:
            start[0] = end[0]
            end[0] = start[0] + g.width
            return
        start[0] = _floor_to(t, g.width, g.origin)
        end[0] = start[0] + g.width
        return
    # largest k with edges[k] <= t (the edges span every ts by construction)
    lo = 0
    hi = g.nedges - 1
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if g.edges[mid] <= t:
            lo = mid
        else:
            hi = mid - 1
    start[0] = g.edges[lo]
    end[0] = g.edges[lo + 1] if lo + 1 < g.nedges else INT64_MAX


cdef inline bint _range_valid(const Column* c, int64_t i, int64_t count) noexcept nogil:
    return c.validity == NULL or _all_set(c.validity, i + c.offset, count)


cdef inline bint _max_of(const double* p, Bits b, bint full, int64_t i, int64_t j,
                         bint want_max, double* out) noexcept nogil:
    """Max (or min) of the present values of rows [i, j); NaN when one of them is NaN (as
    numpy's max/min); False when none is present."""
    cdef int64_t r
    cdef double acc = 0.0, x, x1, x2, x3, a1, a2, a3
    cdef int nan = 0
    cdef bint has = False
    if full:
        # four independent accumulators: the compare/select chains overlap
        acc = a1 = a2 = a3 = p[i]
        r = i
        if want_max:
            while r + 4 <= j:
                x, x1, x2, x3 = p[r], p[r + 1], p[r + 2], p[r + 3]
                nan |= (x != x) | (x1 != x1) | (x2 != x2) | (x3 != x3)
                acc = x if x > acc else acc
                a1 = x1 if x1 > a1 else a1
                a2 = x2 if x2 > a2 else a2
                a3 = x3 if x3 > a3 else a3
                r += 4
            while r < j:
                x = p[r]
                nan |= x != x
                acc = x if x > acc else acc
                r += 1
            acc = a1 if a1 > acc else acc
            acc = a2 if a2 > acc else acc
            acc = a3 if a3 > acc else acc
        else:
            while r + 4 <= j:
                x, x1, x2, x3 = p[r], p[r + 1], p[r + 2], p[r + 3]
                nan |= (x != x) | (x1 != x1) | (x2 != x2) | (x3 != x3)
                acc = x if x < acc else acc
                a1 = x1 if x1 < a1 else a1
                a2 = x2 if x2 < a2 else a2
                a3 = x3 if x3 < a3 else a3
                r += 4
            while r < j:
                x = p[r]
                nan |= x != x
                acc = x if x < acc else acc
                r += 1
            acc = a1 if a1 < acc else acc
            acc = a2 if a2 < acc else acc
            acc = a3 if a3 < acc else acc
        out[0] = NAN if nan else acc
        return True
    for r in range(i, j):
        if bit(b, r):
            x = p[r]
            nan |= x != x
            if not has:
                acc = x
                has = True
            elif want_max:
                acc = x if x > acc else acc
            else:
                acc = x if x < acc else acc
    if has:
        out[0] = NAN if nan else acc
    return has


cdef inline void _hlv_full(const double* ph, const double* pl, const int64_t* pv, int64_t i,
                           int64_t j, double* hh, double* ll, int64_t* vs) noexcept nogil:
    """Max high, min low (NaN propagates) and summed volume of rows [i, j), none null: one
    pass over the three columns, two accumulators each so the chains overlap."""
    cdef double h0 = ph[i], h1 = ph[i], l0 = pl[i], l1 = pl[i], x, y
    cdef int64_t v0 = 0, v1 = 0, r = i
    cdef int nan = 0
    while r + 2 <= j:
        x = ph[r]
        y = ph[r + 1]
        nan |= (x != x) | (y != y)
        h0 = x if x > h0 else h0
        h1 = y if y > h1 else h1
        x = pl[r]
        y = pl[r + 1]
        nan |= ((x != x) | (y != y)) << 1
        l0 = x if x < l0 else l0
        l1 = y if y < l1 else l1
        v0 += pv[r]
        v1 += pv[r + 1]
        r += 2
    if r < j:
        x = ph[r]
        y = pl[r]
        nan |= (x != x) | ((y != y) << 1)
        h0 = x if x > h0 else h0
        l0 = y if y < l0 else l0
        v0 += pv[r]
    h0 = h1 if h1 > h0 else h0
    l0 = l1 if l1 < l0 else l0
    hh[0] = NAN if nan & 1 else h0
    ll[0] = NAN if nan & 2 else l0
    vs[0] = v0 + v1


cdef inline bint _sum_of(const int64_t* p, Bits b, bint full, int64_t i, int64_t j,
                         int64_t* out) noexcept nogil:
    cdef int64_t r, acc = 0
    cdef bint has = full
    if full:
        for r in range(i, j):
            acc += p[r]
    else:
        for r in range(i, j):
            if bit(b, r):
                acc += p[r]
                has = True
    out[0] = acc
    return has


def resample(data, *, to, tz=None):
    """Aggregate bars into ``to`` buckets per (symbol, interval) segment."""
    iv = parse_interval(to)
    batch = prepare(data, RESAMPLE_COLUMNS, ("adj_close", "source"))
    cdef _Batch b = _Batch(batch)
    cdef int64_t n = b.n
    edges = calendar_edges(batch.column("ts"), iv, tz)
    cdef Grid grid
    cdef const int64_t[::1] c_edges
    grid.edges = NULL
    grid.nedges = 0
    grid.width = iv.width if iv.width else 1
    grid.origin = iv.origin
    if edges is not None:
        c_edges = edges
        grid.edges = &c_edges[0]
        grid.nedges = edges.shape[0]
    cdef Column ts, o, h, lo, c, a, vol
    b.column("ts", &ts)
    b.column("open", &o)
    b.column("high", &h)
    b.column("low", &lo)
    b.column("close", &c)
    b.column("volume", &vol)
    cdef bint has_adj = b.has("adj_close")
    if has_adj:
        b.column("adj_close", &a)
    else:
        a = c
    seg = b.segments()
    cdef const int64_t[::1] c_seg = seg
    cdef int64_t c_nseg = seg.shape[0] - 1
    cdef Bits bt = _bits(&ts, n)
    cdef bint ts_nulls = ts.validity != NULL
    cdef const int64_t* pt = _i64(&ts)
    cdef int64_t s, i, j, k = 0, start = 0, end = 0, prev_t = 0
    cdef bint started, unsorted = False
    cdef int64_t hi_
    # without null ts, pass 1 also notes where each bucket starts (row and ts): capacity
    # n + 1, of which only the pages actually written cost memory
    cdef int64_t[::1] c_bstart, c_bts
    if not ts_nulls:
        bstart = np.empty(n + 1, np.int64)
        bts = np.empty(n + 1, np.int64)
        c_bstart = bstart
        c_bts = bts
    # pass 1: count the buckets (and check the order) so outputs are allocated exactly
    with nogil:
        for s in range(c_nseg):
            if not ts_nulls:
                # no null ts: find the buckets and check the order in the same scan (a row
                # that opens a bucket has ts >= end > every earlier ts)
                i = c_seg[s]
                hi_ = c_seg[s + 1]
                while i < hi_:
                    _bucket(&grid, pt[i], &start, &end)
                    c_bstart[k] = i
                    c_bts[k] = start
                    k += 1
                    i += 1
                    while i < hi_ and pt[i] < end:
                        unsorted |= pt[i] < pt[i - 1]
                        i += 1
                if unsorted:
                    break
                continue
            started = False
            for i in range(c_seg[s], c_seg[s + 1]):
                if ts_nulls and not bit(bt, i):
                    continue
                if started and pt[i] < prev_t:
                    unsorted = True
                    break
                if not started or pt[i] >= end:
                    _bucket(&grid, pt[i], &start, &end)
                    k += 1
                    started = True
                prev_t = pt[i]
            if unsorted:
                break
    if unsorted:
        raise ValueError("resample needs ts ascending within each (symbol, interval); "
                         "run normalize() first")
    if not ts_nulls:
        c_bstart[k] = n  # the end of the last bucket
    out_ts = np.empty(k, np.int64)
    first = np.empty(k, np.int64)
    fl = {name: np.empty(k, np.float64) for name in ("open", "high", "low", "close", "adj")}
    out_vol = np.zeros(k, np.int64)
    nb = (k + 7) // 8
    bm = {name: np.zeros(nb + 1, np.uint8)
          for name in ("open", "high", "low", "close", "adj", "volume")}
    cdef int64_t[::1] c_ts = out_ts, c_first = first, c_vol = out_vol
    cdef double[::1] c_o = fl["open"], c_h = fl["high"], c_l = fl["low"]
    cdef double[::1] c_c = fl["close"], c_a = fl["adj"]
    cdef uint8_t[::1] m_o = bm["open"], m_h = bm["high"], m_l = bm["low"]
    cdef uint8_t[::1] m_c = bm["close"], m_a = bm["adj"], m_v = bm["volume"]
    cdef Bits bo = _bits(&o, n), bh = _bits(&h, n), bl = _bits(&lo, n), bc = _bits(&c, n)
    cdef Bits ba = _bits(&a, n), bv = _bits(&vol, n)
    cdef VCols v  # only the bitmaps, for range checks
    v.nmaps = 0
    cdef const Column* cols[7]
    cols[0] = &ts
    cols[1] = &o
    cols[2] = &h
    cols[3] = &lo
    cols[4] = &c
    cols[5] = &a
    cols[6] = &vol
    cdef int q
    for q in range(7):
        if cols[q].validity != NULL:
            v.maps[v.nmaps] = cols[q].validity
            v.moff[v.nmaps] = cols[q].offset
            v.nmaps += 1
    cdef const double* po = _f64(&o)
    cdef const double* ph = _f64(&h)
    cdef const double* pl = _f64(&lo)
    cdef const double* pc_ = _f64(&c)
    cdef const double* pa_ = _f64(&a)
    cdef const int64_t* pv = _i64(&vol)
    cdef int64_t g = -1, r, vsum
    cdef double x, y, hh, ll
    # pass 2: first open, max high, min low, last close / adj_close, summed volume; nulls
    # are skipped, NaN propagates into high/low (as numpy's max/min)
    if k:
        with nogil:
            for s in range(c_nseg):
                i = c_seg[s]
                while i < c_seg[s + 1]:
                    if ts_nulls and not bit(bt, i):
                        i += 1
                        continue
                    if ts_nulls:
                        _bucket(&grid, pt[i], &start, &end)
                        j = i + 1
                        while j < c_seg[s + 1] and (not bit(bt, j) or pt[j] < end):
                            j += 1
                    else:
                        # bucket g + 1 starts at row i (pass 1 found it), ends at the next
                        start = c_bts[g + 1]
                        j = c_bstart[g + 2]
                    g += 1
                    c_ts[g] = start
                    c_first[g] = i
                    if not _block_valid(&v, i, j - i) and _range_valid(&ts, i, j - i):
                        # every ts present but some field null: column by column, each
                        # straight unless that column has a null in the bucket
                        r = i
                        while r < j and not bit(bo, r):
                            r += 1
                        if r < j:
                            c_o[g] = po[r]
                            _set(&m_o[0], g)
                        if _max_of(ph, bh, _range_valid(&h, i, j - i), i, j, True, &x):
                            c_h[g] = x
                            _set(&m_h[0], g)
                        if _max_of(pl, bl, _range_valid(&lo, i, j - i), i, j, False, &x):
                            c_l[g] = x
                            _set(&m_l[0], g)
                        r = _last_valid(bc, i, j)
                        if r >= i:
                            c_c[g] = pc_[r]
                            _set(&m_c[0], g)
                        if has_adj:
                            r = _last_valid(ba, i, j)
                            if r >= i:
                                c_a[g] = pa_[r]
                                _set(&m_a[0], g)
                        if _sum_of(pv, bv, _range_valid(&vol, i, j - i), i, j, &vsum):
                            c_vol[g] = vsum
                            _set(&m_v[0], g)
                        i = j
                        continue
                    if _block_valid(&v, i, j - i):
                        # no nulls in the bucket: straight reductions (NaN propagates)
                        _hlv_full(ph, pl, pv, i, j, &hh, &ll, &vsum)
                        c_o[g] = po[i]
                        c_h[g] = hh
                        c_l[g] = ll
                        c_c[g] = pc_[j - 1]
                        c_a[g] = pa_[j - 1]
                        c_vol[g] = vsum
                        _set(&m_o[0], g)
                        _set(&m_h[0], g)
                        _set(&m_l[0], g)
                        _set(&m_c[0], g)
                        _set(&m_v[0], g)
                        if has_adj:
                            _set(&m_a[0], g)
                        i = j
                        continue
                    for r in range(i, j):
                        if not bit(bt, r):
                            continue
                        if bit(bo, r) and not _get(&m_o[0], g):
                            c_o[g] = po[r]
                            _set(&m_o[0], g)
                        if bit(bh, r):
                            x = ph[r]
                            if not _get(&m_h[0], g):
                                c_h[g] = x
                                _set(&m_h[0], g)
                            else:
                                y = c_h[g]
                                if y == y and (x > y or x != x):
                                    c_h[g] = x
                        if bit(bl, r):
                            x = pl[r]
                            if not _get(&m_l[0], g):
                                c_l[g] = x
                                _set(&m_l[0], g)
                            else:
                                y = c_l[g]
                                if y == y and (x < y or x != x):
                                    c_l[g] = x
                        if bit(bc, r):
                            c_c[g] = pc_[r]
                            _set(&m_c[0], g)
                        if has_adj and bit(ba, r):
                            c_a[g] = pa_[r]
                            _set(&m_a[0], g)
                        if bit(bv, r):
                            c_vol[g] += pv[r]
                            _set(&m_v[0], g)
                    i = j
    take = pa.Array.from_buffers(pa.int64(), k, [None, pa.py_buffer(first)])
    cols_out = {
        "symbol": batch.column("symbol").take(take),
        "interval": _repeat_str(iv.text, k),
        "ts": pa.Array.from_buffers(pa.timestamp("us", tz="UTC"), k,
                                    [None, pa.py_buffer(out_ts)]),
        "open": float_array(fl["open"], bm["open"]),
        "high": float_array(fl["high"], bm["high"]),
        "low": float_array(fl["low"], bm["low"]),
        "close": float_array(fl["close"], bm["close"]),
    }
    if has_adj:
        cols_out["adj_close"] = float_array(fl["adj"], bm["adj"])
    cols_out["volume"] = pa.Array.from_buffers(
        pa.int64(), k, [pa.py_buffer(bm["volume"]), pa.py_buffer(out_vol)])
    if b.has("source"):
        cols_out["source"] = batch.column("source").take(take)
    return pa.table(cols_out)


def _repeat_str(str text, int64_t k):
    """A string array holding ``text`` k times, built straight from two buffers."""
    raw = text.encode()
    offsets = np.arange(k + 1, dtype=np.int32) * np.int32(len(raw))
    return pa.Array.from_buffers(pa.string(), k,
                                 [None, pa.py_buffer(offsets), pa.py_buffer(raw * k)])


def _segments(data):
    """Start row of every (symbol, interval) run, then n (for tests and profiling)."""
    return _Batch(prepare(data, ("symbol", "interval"))).segments()
