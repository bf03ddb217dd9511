"""Technical indicators per (symbol, interval) segment: the pure-Python twin.

This module is the readable specification of ``stockbatch._ext.indicators``; both have the
same names and give the same results.

How every indicator runs
------------------------
1. The batch is sorted by (symbol, interval, ts). :func:`segments` finds the row boundaries
   of each (symbol, interval) run once; a batch without a ``symbol`` column is one series.
2. Inside a segment, a *missing* input (null, NaN or ±inf; for volatility also a price <= 0)
   ends a run. Each maximal run of present rows is computed on its own, exactly as TA-Lib
   computes a series that starts there — so a gap restarts the warm-up, and a value is never
   made up from across a gap.
3. The recurrences follow TA-Lib (seeds, Wilder smoothing, where output starts), written
   with the shortest dependency chain — e.g. ``avg * (p-1)/p + x/p`` rather than
   ``(avg * (p-1) + x) / p`` — which changes results by ~1e-16 relative. Window sums slide
   but are recomputed every 1024 rows and after a cancellation (see :func:`_slide`), so
   they never drift as TA-Lib's running SMA sum does; the Bollinger width is summed in a
   second pass over the window. The compiled kernels run exactly these operations, so
   both backends agree bit for bit. Warm-up rows and missing rows are null (their slot
   holds NaN); the outputs of one indicator share one validity bitmap.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["segments", "sma", "ema", "rsi", "macd", "bbands", "atr", "volatility", "vwap"]

US_PER_DAY = 86_400_000_000
RESUM = 1024  # running window sums are recomputed at least this often
CANCEL = 65536.0  # ... and when a departing value is this much larger than what is left


# ------------------------------------------------------------------ input and output


def _batch(data) -> pa.RecordBatch:
    if isinstance(data, pa.RecordBatch):
        return data
    if not hasattr(data, "__arrow_c_array__"):
        raise TypeError(
            f"expected a record batch exporting __arrow_c_array__, got {type(data).__name__}"
        )
    return pa.record_batch(data)


def _values(batch: pa.RecordBatch, name: str, *, positive: bool = False):
    """(float values as a list, present flags as a list) of a numeric column."""
    if name not in batch.schema.names:
        raise KeyError(f"column {name!r} is missing")
    col = batch.column(name)
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        raise TypeError(f"column {name!r} holds strings; a numeric column is needed")
    if pa.types.is_timestamp(t):
        col = col.cast(pa.int64())
    x = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    ok = np.isfinite(x)
    if col.null_count:
        ok &= col.is_valid().to_numpy(zero_copy_only=False)
    if positive:
        ok &= np.where(ok, x, 1.0) > 0
    return x.tolist(), ok.tolist()


def _check_period(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > 100_000_000:
        raise ValueError(f"{name} must be <= 100000000, got {value}")


def _check_segments(segs: Any, n: int) -> np.ndarray | None:
    if segs is None:
        return None
    arr = np.ascontiguousarray(segs, dtype=np.int64)
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise ValueError("segments must be a 1-d array of row boundaries [0, ..., n]")
    if arr[0] != 0 or arr[-1] != n:
        raise ValueError(f"segments must start at 0 and end at the row count {n}")
    if np.any(np.diff(arr) < 0):
        raise ValueError("segments must be non-decreasing")
    return arr


def _out_views(out: Any, nout: int, n: int) -> list[np.ndarray | None]:
    """The caller's buffers as float64 numpy views (None where a fresh one is wanted)."""
    if nout == 1:
        outs, names = [out], ["out"]
    elif out is None:
        outs, names = [None] * nout, ["out"] * nout
    else:
        if not isinstance(out, (tuple, list)) or len(out) != nout:
            raise TypeError(f"out must be a tuple of {nout} float64 buffers")
        outs, names = list(out), [f"out[{k}]" for k in range(nout)]
    views: list[np.ndarray | None] = []
    for o, what in zip(outs, names, strict=True):
        if o is None:
            views.append(None)
            continue
        try:
            mv = memoryview(o)
        except TypeError as exc:
            raise TypeError(
                f"{what} must be a writable, contiguous float64 buffer (e.g. numpy.empty(n))"
            ) from exc
        if mv.readonly or mv.format != "d" or not mv.c_contiguous or mv.ndim != 1:
            raise TypeError(
                f"{what} must be a writable, contiguous float64 buffer (e.g. numpy.empty(n))"
            )
        if len(mv) != n:  # 1-d: len is the element count
            raise ValueError(f"{what} has {len(mv)} elements; the data has {n} rows")
        views.append(np.frombuffer(o, dtype=np.float64))
    return views


def _finish(values: list[list[float]], valid: list[bool], views: list) -> list[pa.Array]:
    """Arrow arrays over the values, sharing one validity bitmap (None when all valid)."""
    n = len(valid)
    nvalid = sum(valid)
    bitmap = None
    if nvalid != n:
        bitmap = pa.array(valid, pa.bool_()).buffers()[1]
    arrays = []
    for vals, view in zip(values, views, strict=True):
        if view is None:
            view = np.array(vals, dtype=np.float64)
        else:
            view[:] = vals
        arrays.append(
            pa.Array.from_buffers(
                pa.float64(), n, [bitmap, pa.py_buffer(view)], null_count=n - nvalid
            )
        )
    return arrays


# ------------------------------------------------------------------ segments and runs


def segments(batch) -> np.ndarray:
    """Row boundaries of the (symbol, interval) runs: int64 array ``[0, ..., len(batch)]``.

    A batch without a ``symbol`` column is one series. ValueError when ``ts`` decreases
    inside a run (the rows are not sorted)."""
    batch = _batch(batch)
    n = batch.num_rows
    if n == 0:
        return np.array([0], dtype=np.int64)
    if "symbol" not in batch.schema.names:
        bounds = np.array([0, n], dtype=np.int64)
        _check_order(batch, bounds)
        return bounds
    change = np.zeros(n - 1, dtype=bool)
    for name in ("symbol", "interval"):
        if name not in batch.schema.names:
            continue
        col = batch.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        a, b = col.slice(1), col.slice(0, n - 1)
        eq = pc.equal(a, b)
        both_null = pc.and_(pc.is_null(a), pc.is_null(b))
        same = pc.if_else(pc.is_null(eq), both_null, eq)
        change |= ~same.to_numpy(zero_copy_only=False)
    bounds = np.concatenate([[0], np.flatnonzero(change) + 1, [n]]).astype(np.int64)
    _check_order(batch, bounds)
    return bounds


def _check_order(batch: pa.RecordBatch, bounds: np.ndarray) -> None:
    """ValueError when ts decreases inside a segment (null ts are skipped)."""
    if "ts" not in batch.schema.names:
        return
    col = batch.column("ts")
    if not (pa.types.is_timestamp(col.type) or col.type == pa.int64()):
        return
    rows = np.flatnonzero(col.is_valid().to_numpy(zero_copy_only=False))
    ts = col.cast(pa.int64()).fill_null(0).to_numpy()[rows]
    seg = np.searchsorted(bounds, rows, side="right")
    down = (ts[1:] < ts[:-1]) & (seg[1:] == seg[:-1])
    if down.any():
        bad = int(rows[1:][down][0])
        raise ValueError(
            f"rows are not sorted by (symbol, interval, ts): ts decreases at row {bad}; "
            "sort them first (stockbatch.normalize does)"
        )


def _runs(ok: list[bool], segs):
    """Maximal runs [a, b) of present rows inside each segment."""
    for k in range(len(segs) - 1):
        i, e = int(segs[k]), int(segs[k + 1])
        while i < e:
            while i < e and not ok[i]:
                i += 1
            a = i
            while i < e and ok[i]:
                i += 1
            if i > a:
                yield a, i


def _prepare(batch, out, segs, nout):
    batch = _batch(batch)
    n = batch.num_rows
    segs = _check_segments(segs, n)
    if segs is None:
        segs = segments(batch)
    views = _out_views(out, nout, n)
    return batch, n, segs, views


# ------------------------------------------------------------------ indicators


def _window_sum(x, lo: int, hi: int) -> float:
    total = 0.0
    for k in range(lo, hi):
        total += x[k]
    return total


def _slide(x, total: float, i: int, p: int, age: int) -> float:
    """The window sum of rows i-p+2..i from that of rows i-p+1..i-1 (total).

    Add the new value minus the departing one, and recompute from scratch every RESUM
    rows and after a cancellation, so rounding from long-gone or much larger values never
    accumulates (TA-Lib's running sum drifts)."""
    out = total + (x[i] - x[i - p + 1])
    if age % RESUM == 0 or abs(x[i - p + 1]) > CANCEL * abs(out):
        return _window_sum(x, i - p + 2, i + 1)
    return out


def sma(batch, period, *, column="close", out=None, segments=None):
    """Simple moving average; first value at row period-1 of each run (TA-Lib SMA)."""
    _check_period("period", period, 1)
    batch, n, segs, views = _prepare(batch, out, segments, 1)
    x, ok = _values(batch, column)
    o = [math.nan] * n
    valid = [False] * n
    inv = 1.0 / period
    for a, b in _runs(ok, segs):
        if b - a < period:
            continue
        total = _window_sum(x, a, a + period - 1)
        for i in range(a + period - 1, b):
            o[i] = (total + x[i]) * inv
            valid[i] = True
            total = _slide(x, total, i, period, i - a)
    return _finish([o], valid, views)[0]


def ema(batch, period, *, column="close", out=None, segments=None):
    """Exponential moving average seeded by the SMA of the first period values (TA-Lib EMA)."""
    _check_period("period", period, 1)
    batch, n, segs, views = _prepare(batch, out, segments, 1)
    x, ok = _values(batch, column)
    o = [math.nan] * n
    valid = [False] * n
    k = 2.0 / (period + 1)
    for a, b in _runs(ok, segs):
        if b - a < period:
            continue
        prev = 0.0
        for i in range(a, a + period):
            prev += x[i]
        prev = prev / period
        o[a + period - 1] = prev
        valid[a + period - 1] = True
        for i in range(a + period, b):
            prev = prev * (1.0 - k) + x[i] * k  # = (x - prev) * k + prev
            o[i] = prev
            valid[i] = True
    return _finish([o], valid, views)[0]


def _rsi_value(gain: float, loss: float) -> float:
    t = gain + loss
    if t == 0.0:  # no change at all in the window: 0, as TA-Lib
        return 0.0
    return 100.0 * (gain / t)


def rsi(batch, period, *, column="close", out=None, segments=None):
    """Wilder's RSI; first value at row period of each run (TA-Lib RSI)."""
    _check_period("period", period, 1)
    batch, n, segs, views = _prepare(batch, out, segments, 1)
    x, ok = _values(batch, column)
    o = [math.nan] * n
    valid = [False] * n
    keep, w = (period - 1) / period, 1.0 / period
    for a, b in _runs(ok, segs):
        if b - a <= period:
            continue
        gain = loss = 0.0
        for i in range(a + 1, a + period + 1):
            d = x[i] - x[i - 1]
            if d < 0:
                loss -= d
            else:
                gain += d
        loss /= period
        gain /= period
        o[a + period] = _rsi_value(gain, loss)
        valid[a + period] = True
        for i in range(a + period + 1, b):
            d = x[i] - x[i - 1]
            # Wilder: avg * (p - 1) / p + change / p
            gain = gain * keep + (d if d > 0.0 else 0.0) * w
            loss = loss * keep + (-d if d < 0.0 else 0.0) * w
            o[i] = _rsi_value(gain, loss)
            valid[i] = True
    return _finish([o], valid, views)[0]


def macd(batch, fast, slow, signal, *, column="close", out=None, segments=None):
    """MACD line, signal and histogram (TA-Lib MACD); returns a 3-tuple of arrays.

    Both EMAs start at row slow-1 of a run (the fast one seeded by the SMA of the fast
    values ending there); the signal is the EMA of the MACD line seeded by its first
    ``signal`` values; all three outputs start at (slow - 1) + (signal - 1)."""
    _check_period("fast", fast, 1)
    _check_period("slow", slow, 1)
    _check_period("signal", signal, 1)
    if slow < fast:
        fast, slow = slow, fast  # as TA-Lib does
    batch, n, segs, views = _prepare(batch, out, segments, 3)
    x, ok = _values(batch, column)
    om, os_, oh = [math.nan] * n, [math.nan] * n, [math.nan] * n
    valid = [False] * n
    kf, ks, kg = 2.0 / (fast + 1), 2.0 / (slow + 1), 2.0 / (signal + 1)
    for a, b in _runs(ok, segs):
        t0 = a + slow - 1
        start = t0 + signal - 1
        if b <= start:
            continue
        es = 0.0
        for i in range(a, t0 + 1):
            es += x[i]
        es = es / slow
        ef = 0.0
        for i in range(t0 + 1 - fast, t0 + 1):
            ef += x[i]
        ef = ef / fast
        m = ef - es
        msum = s = 0.0
        for i in range(t0, b):
            if i > t0:
                ef = ef * (1.0 - kf) + x[i] * kf
                es = es * (1.0 - ks) + x[i] * ks
                m = ef - es
            if i < start:
                msum += m
                continue
            if i == start:
                msum += m
                s = msum / signal
            else:
                s = s * (1.0 - kg) + m * kg
            om[i], os_[i], oh[i] = m, s, m - s
            valid[i] = True
    return tuple(_finish([om, os_, oh], valid, views))


BB_RESHIFT = 64  # Bollinger shifted sums are recomputed around x[i] this often


def _two_pass_ss(x, lo: int, hi: int, mid: float) -> float:
    """Sum of (x - mid)^2 over rows lo..hi-1: full groups of four rows go to lanes 0..3
    in turn, the remaining rows to lane 0 (as the compiled loop)."""
    lanes = [0.0, 0.0, 0.0, 0.0]
    full = lo + ((hi - lo) // 4) * 4
    for k in range(lo, hi):
        d = x[k] - mid
        lanes[(k - lo) % 4 if k < full else 0] += d * d
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])


def bbands(batch, period, nbdev, *, column="close", out=None, segments=None):
    """Bollinger bands (upper, middle, lower) around the SMA (TA-Lib BBANDS, matype SMA).

    The middle band is the SMA; the width is ``nbdev`` population standard deviations of
    the window. The variance comes from sliding sums of ``x - ref`` (``ref`` a recent
    value, renewed every BB_RESHIFT rows with the sums recomputed), so ``Q/p - (S/p)^2``
    cancels little; where it still cancels heavily (flat windows) the window is summed
    again around the middle band in two passes, which is exact."""
    _check_period("period", period, 1)
    nbdev = float(nbdev)
    if not math.isfinite(nbdev) or nbdev < 0:
        raise ValueError(f"nbdev must be a finite number >= 0, got {nbdev}")
    batch, n, segs, views = _prepare(batch, out, segments, 3)
    x, ok = _values(batch, column)
    up, mid_, lo_ = [math.nan] * n, [math.nan] * n, [math.nan] * n
    valid = [False] * n
    inv = 1.0 / period
    for a, b in _runs(ok, segs):
        if b - a < period:
            continue
        total = _window_sum(x, a, a + period - 1)
        ref = ss = qq = peak = 0.0  # peak: the largest qq since the sums were rebuilt
        for i in range(a + period - 1, b):
            mid = (total + x[i]) * inv
            total = _slide(x, total, i, period, i - a)
            lo = i - period + 1
            if (i - a - period + 1) % BB_RESHIFT == 0:
                ref, ss, qq = x[i], 0.0, 0.0
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
                peak = max(peak, qq)
            var = (qq - ss * ss * inv) * inv
            if not var > peak * inv * 2.0**-20:  # heavy cancellation (against the peak)
                var = _two_pass_ss(x, lo, i + 1, mid) * inv
            t = math.sqrt(var) * nbdev
            up[i], mid_[i], lo_[i] = mid + t, mid, mid - t
            valid[i] = True
    return tuple(_finish([up, mid_, lo_], valid, views))


def _true_range(h, lo, c, i) -> float:
    g = h[i] - lo[i]
    v2 = abs(c[i - 1] - h[i])
    v3 = abs(c[i - 1] - lo[i])
    g = v2 if v2 > g else g
    return v3 if v3 > g else g


def atr(batch, period, *, out=None, segments=None):
    """Average true range of high, low, close (TA-Lib ATR); first value at row period.

    The first value is the mean of the first ``period`` true ranges (which start at the
    second row of a run), then Wilder's smoothing; period 1 is the true range itself."""
    _check_period("period", period, 1)
    batch, n, segs, views = _prepare(batch, out, segments, 1)
    h, okh = _values(batch, "high")
    lo, okl = _values(batch, "low")
    c, okc = _values(batch, "close")
    ok = [p and q and r for p, q, r in zip(okh, okl, okc, strict=True)]
    o = [math.nan] * n
    valid = [False] * n
    for a, b in _runs(ok, segs):
        if b - a <= period:
            continue
        if period == 1:
            for i in range(a + 1, b):
                o[i] = _true_range(h, lo, c, i)
                valid[i] = True
            continue
        prev = 0.0
        for i in range(a + 1, a + period + 1):
            prev += _true_range(h, lo, c, i)
        prev = prev / period
        o[a + period] = prev
        valid[a + period] = True
        keep, w = (period - 1) / period, 1.0 / period
        for i in range(a + period + 1, b):
            prev = prev * keep + _true_range(h, lo, c, i) * w  # Wilder smoothing
            o[i] = prev
            valid[i] = True
    return _finish([o], valid, views)[0]


def volatility(batch, period, *, ddof=1, annualize=None, column="close", out=None, segments=None):
    """Rolling std (ddof) of the last ``period`` log returns, times sqrt(annualize) if given.

    Log returns are ``log(x[i] / x[i-1])``; prices <= 0 count as missing. The first value
    is at row ``period`` of a run (it needs period + 1 prices). The variance comes from
    sliding sums, with an exact two-pass sum where they cancel heavily (as :func:`bbands`):
    where m2 is below 2**-20 of the largest sum of squares since the sums were last rebuilt
    (once big returns leave the window, the sum of squares itself is rounding residue)."""
    _check_period("period", period, 1)
    _check_period("ddof", ddof, 0)
    if ddof >= period:
        raise ValueError(f"period must exceed ddof ({ddof}), got {period}")
    scale = 1.0
    if annualize is not None:
        annualize = float(annualize)
        if not math.isfinite(annualize) or annualize <= 0:
            raise ValueError(f"annualize must be a positive number, got {annualize}")
        scale = math.sqrt(annualize)
    batch, n, segs, views = _prepare(batch, out, segments, 1)
    x, ok = _values(batch, column, positive=True)
    o = [math.nan] * n
    valid = [False] * n
    inv = 1.0 / period
    for a, b in _runs(ok, segs):
        if b - a <= period:
            continue
        r = [math.log(x[i] / x[i - 1]) for i in range(a + 1, b)]  # r[i - a - 1]
        ref = ss = qq = peak = 0.0
        for i in range(a + period, b):
            window = r[i - a - period : i - a]  # oldest first
            if (i - a - period) % BB_RESHIFT == 0:
                ref, ss, qq = window[-1], 0.0, 0.0
                for v in window:
                    d = v - ref
                    ss += d
                    qq += d * d
                peak = qq
            else:
                d = window[-1] - ref
                dq = r[i - a - period - 1] - ref  # the departing return
                ss += d - dq
                qq += d * d - dq * dq
                peak = max(peak, qq)
            m2 = qq - ss * ss * inv
            if not m2 > peak * 2.0**-20:  # heavy cancellation: two passes, exact
                total = 0.0
                for v in window:
                    total += v
                mean = total / period
                m2 = 0.0
                for v in window:
                    m2 += (v - mean) * (v - mean)
            o[i] = math.sqrt(m2 / (period - ddof)) * scale
            valid[i] = True
    return _finish([o], valid, views)[0]


def vwap(batch, *, day=None, out=None, segments=None):
    """Volume-weighted average of the typical price (high + low + close) / 3, reset per day.

    ``day`` gives each row's session-day key (int64); by default the UTC day of ``ts``.
    A row with a missing price, volume or ts is null and adds nothing; a row is null while
    its day's cumulative volume is 0."""
    batch, n, segs, views = _prepare(batch, out, segments, 1)
    h, okh = _values(batch, "high")
    lo, okl = _values(batch, "low")
    c, okc = _values(batch, "close")
    v, okv = _values(batch, "volume")
    if "ts" not in batch.schema.names:
        raise KeyError("column 'ts' is missing")
    ts_col = batch.column("ts")
    if not (pa.types.is_timestamp(ts_col.type) or pa.types.is_integer(ts_col.type)):
        raise TypeError("column 'ts' must be a timestamp (or integer) column")
    ts_ok = ts_col.is_valid().to_numpy(zero_copy_only=False).tolist()
    if day is None:
        ts = ts_col.cast(pa.int64()).fill_null(0).to_numpy()
        days = (ts // US_PER_DAY).tolist()  # numpy's // floors, like the compiled kernel
    else:
        days = np.ascontiguousarray(day, dtype=np.int64)
        if days.shape[0] != n:
            raise ValueError(f"day has {days.shape[0]} keys; the data has {n} rows")
        days = days.tolist()
    o = [math.nan] * n
    valid = [False] * n
    for k in range(len(segs) - 1):
        cur = None
        cpv = cv = 0.0
        for i in range(int(segs[k]), int(segs[k + 1])):
            if not (ts_ok[i] and okh[i] and okl[i] and okc[i] and okv[i]):
                continue
            if days[i] != cur:
                cur, cpv, cv = days[i], 0.0, 0.0
            cpv += (h[i] + lo[i] + c[i]) / 3.0 * v[i]
            cv += v[i]
            if cv != 0.0:
                o[i] = cpv / cv
                valid[i] = True
    return _finish([o], valid, views)[0]
