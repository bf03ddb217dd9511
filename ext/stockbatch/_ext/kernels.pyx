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
from libc.stdint cimport INT64_MIN, int64_t, uint8_t, uint16_t
from libc.string cimport memcmp

from stockbatch._ext.arrow cimport (
    ArrowArray, ArrowSchema, Column, batch_column, col_f64, col_str, col_valid,
    import_capsules, K_F64, segment_starts,
)

from stockbatch._validation import (
    RESAMPLE_COLUMNS, RULES, VALIDATE_COLUMNS, NormalizeResult, Rule, ValidationReport,
    bucket_starts, float_array, mask_buffer, parse_interval, prepare,
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
            c_k = segment_starts(&c_sym, c_pint, c_n, &v[0])
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
        a = c  # stand-in, masked out below
    seg = b.segments()
    cdef const int64_t[::1] c_seg = seg
    cdef int64_t c_nseg = seg.shape[0] - 1
    cdef uint16_t[::1] c_mask = mask
    cdef int64_t[::1] c_hist = hist
    cdef Bits bs = _bits(&sym, n), bi = _bits(&itv, n), bt = _bits(&ts, n)
    cdef Bits bo = _bits(&o, n), bh = _bits(&h, n), bl = _bits(&lo, n), bc = _bits(&c, n)
    cdef Bits ba = _bits(&a, n), bv = _bits(&vol, n)
    cdef const double* po = _f64(&o)
    cdef const double* ph = _f64(&h)
    cdef const double* pl = _f64(&lo)
    cdef const double* pc_ = _f64(&c)
    cdef const double* pa_ = _f64(&a)
    cdef const int64_t* pv = _i64(&vol)
    cdef const int64_t* pt = _i64(&ts)
    cdef int adj_on = 1 if has_adj else 0
    cdef bint spike_on = c_thr >= 0
    cdef int64_t s, i, t, t_max
    cdef int vs, vt, vo, vh, vl, vc, va, vv, fo, fh, fl, fc, fa, has_max, good, prev_good
    cdef double xo, xh, xl, xc, xa, prev_c
    cdef unsigned m
    with nogil:
        for s in range(c_nseg):
            has_max = 0
            t_max = INT64_MIN
            prev_good = 0
            prev_c = 1.0
            for i in range(c_seg[s], c_seg[s + 1]):
                vs = bit(bs, i) & bit(bi, i)
                vt = bit(bt, i)
                vo = bit(bo, i)
                vh = bit(bh, i)
                vl = bit(bl, i)
                vc = bit(bc, i)
                va = bit(ba, i) & adj_on
                vv = bit(bv, i)
                xo = po[i]
                xh = ph[i]
                xl = pl[i]
                xc = pc_[i]
                xa = pa_[i]
                # finite and present: the only values that take part in comparisons
                fo = vo & isfinite(xo)
                fh = vh & isfinite(xh)
                fl = vl & isfinite(xl)
                fc = vc & isfinite(xc)
                fa = va & isfinite(xa)
                m = (vs & vt & vo & vh & vl & vc & vv) ^ 1                     # NULL_FIELD
                m |= ((vo ^ fo) | (vh ^ fh) | (vl ^ fl) | (vc ^ fc) | (va ^ fa)) << 1
                m |= ((fo & (xo <= 0)) | (fh & (xh <= 0)) | (fl & (xl <= 0))
                      | (fc & (xc <= 0)) | (fa & (xa <= 0))) << 2
                m |= (fh & ((fo & (xh < xo)) | (fc & (xh < xc)) | (fl & (xh < xl)))) << 3
                m |= (fl & ((fo & (xl > xo)) | (fc & (xl > xc)) | (fh & (xl > xh)))) << 4
                m |= (vv & (pv[i] < 0)) << 5
                # against the largest earlier ts of the segment (nulls skipped)
                t = pt[i]
                vt = vt & has_max
                m |= (vt & (t < t_max)) << 6
                m |= (vt & (t == t_max)) << 7
                if bit(bt, i):
                    if t > t_max or not has_max:
                        t_max = t
                    has_max = 1
                if spike_on:
                    good = fc & (xc > 0)
                    if good & prev_good:
                        m |= (fabs(xc / prev_c - 1.0) > c_thr) << 8
                    prev_good = good
                    prev_c = xc
                m &= c_rules
                c_mask[i] = <uint16_t>m
                if m:
                    c_hist[m] += 1
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


cdef inline int _cmp_key(const Column* sym, const Column* itv, const Column* ts,
                         int64_t i, int64_t j) noexcept nogil:
    cdef int r = _cmp_str(sym, i, j)
    cdef bint vi, vj
    cdef int64_t ti, tj
    if r:
        return r
    r = _cmp_str(itv, i, j)
    if r:
        return r
    vi = col_valid(ts, i)
    vj = col_valid(ts, j)
    if not vi or not vj:
        return (not vi) - (not vj)
    ti = (<const int64_t*>ts.values)[i + ts.offset]
    tj = (<const int64_t*>ts.values)[j + ts.offset]
    return (ti > tj) - (ti < tj)


cdef int64_t _scan_keys(_Batch b, uint8_t* keep):
    """-1 when the rows are out of (symbol, interval, ts) order, else the number of rows
    whose key equals the next row's (with keep != NULL their bits are cleared)."""
    cdef Column sym, itv, ts
    cdef int64_t n = b.n, i, dups = 0
    cdef int r
    b.column("symbol", &sym)
    b.column("interval", &itv)
    b.column("ts", &ts)
    with nogil:
        for i in range(1, n):
            r = _cmp_key(&sym, &itv, &ts, i - 1, i)
            if r > 0:
                dups = -1
                break
            if r == 0:
                dups += 1
                if keep != NULL:
                    keep[(i - 1) >> 3] &= ~(1 << ((i - 1) & 7))
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

cdef object _returns(object data, str column, bint c_log):
    batch = prepare(data, ("symbol", "interval", column))
    cdef _Batch b = _Batch(batch)
    cdef int64_t n = b.n, s, i
    cdef Column x
    b.column(column, &x)
    seg = b.segments()
    cdef const int64_t[::1] c_seg = seg
    cdef int64_t c_nseg = seg.shape[0] - 1
    values = np.empty(n, np.float64)
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


def returns(data, *, column="close"):
    """``x[i] / x[i-1] - 1`` per (symbol, interval) segment; null first row / null inputs."""
    return _returns(data, column, False)


def log_returns(data, *, column="close"):
    """``log(x[i] / x[i-1])`` per (symbol, interval) segment; null first row / null inputs."""
    return _returns(data, column, True)


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


def resample(data, *, to, tz=None):
    """Aggregate bars into ``to`` buckets per (symbol, interval) segment."""
    iv = parse_interval(to)
    batch = prepare(data, RESAMPLE_COLUMNS, ("adj_close", "source"))
    cdef _Batch b = _Batch(batch)
    cdef int64_t n = b.n
    starts = bucket_starts(batch.column("ts"), iv, tz)
    cdef const int64_t[::1] c_starts
    cdef const int64_t* p_starts = NULL
    if starts is not None and n:
        c_starts = starts
        p_starts = &c_starts[0]
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
    cdef int64_t width = iv.width if iv.width else 1, origin = iv.origin
    cdef Bits bt = _bits(&ts, n)
    cdef const int64_t* pt = _i64(&ts)
    cdef int64_t s, i, k = 0, cur = 0, bk, prev_t = 0
    cdef bint started, unsorted = False
    # pass 1: count the buckets (and check the order) so outputs are allocated exactly
    with nogil:
        for s in range(c_nseg):
            started = False
            for i in range(c_seg[s], c_seg[s + 1]):
                if not bit(bt, i):
                    continue
                bk = p_starts[i] if p_starts != NULL else _floor_to(pt[i], width, origin)
                if not started or bk != cur:
                    if started and pt[i] < prev_t:
                        unsorted = True
                    k += 1
                    cur = bk
                    started = True
                elif pt[i] < prev_t:
                    unsorted = True
                prev_t = pt[i]
            if unsorted:
                break
    if unsorted:
        raise ValueError("resample needs ts ascending within each (symbol, interval); "
                         "run normalize() first")
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
    cdef const double* po = _f64(&o)
    cdef const double* ph = _f64(&h)
    cdef const double* pl = _f64(&lo)
    cdef const double* pc_ = _f64(&c)
    cdef const double* pa_ = _f64(&a)
    cdef const int64_t* pv = _i64(&vol)
    cdef int64_t g = -1
    cdef double x, y
    # pass 2: first open, max high, min low, last close / adj_close, summed volume; nulls
    # are skipped, NaN propagates into high/low (as numpy's max/min)
    if k:
        with nogil:
            for s in range(c_nseg):
                started = False
                for i in range(c_seg[s], c_seg[s + 1]):
                    if not bit(bt, i):
                        continue
                    bk = p_starts[i] if p_starts != NULL else _floor_to(pt[i], width, origin)
                    if not started or bk != cur:
                        g += 1
                        cur = bk
                        started = True
                        c_ts[g] = bk
                        c_first[g] = i
                    if bit(bo, i) and not _get(&m_o[0], g):
                        c_o[g] = po[i]
                        _set(&m_o[0], g)
                    if bit(bh, i):
                        x = ph[i]
                        if not _get(&m_h[0], g):
                            c_h[g] = x
                            _set(&m_h[0], g)
                        else:
                            y = c_h[g]
                            if y == y and (x > y or x != x):
                                c_h[g] = x
                    if bit(bl, i):
                        x = pl[i]
                        if not _get(&m_l[0], g):
                            c_l[g] = x
                            _set(&m_l[0], g)
                        else:
                            y = c_l[g]
                            if y == y and (x < y or x != x):
                                c_l[g] = x
                    if bit(bc, i):
                        c_c[g] = pc_[i]
                        _set(&m_c[0], g)
                    if has_adj and bit(ba, i):
                        c_a[g] = pa_[i]
                        _set(&m_a[0], g)
                    if bit(bv, i):
                        c_vol[g] += pv[i]
                        _set(&m_v[0], g)
    take = pa.Array.from_buffers(pa.int64(), k, [None, pa.py_buffer(first)])
    cols = {
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
        cols["adj_close"] = float_array(fl["adj"], bm["adj"])
    cols["volume"] = pa.Array.from_buffers(pa.int64(), k,
                                           [pa.py_buffer(bm["volume"]), pa.py_buffer(out_vol)])
    if b.has("source"):
        cols["source"] = batch.column("source").take(take)
    return pa.table(cols)


def _repeat_str(str text, int64_t k):
    """A string array holding ``text`` k times, built straight from two buffers."""
    raw = text.encode()
    offsets = np.arange(k + 1, dtype=np.int32) * np.int32(len(raw))
    return pa.Array.from_buffers(pa.string(), k,
                                 [None, pa.py_buffer(offsets), pa.py_buffer(raw * k)])
