"""Pure-Python twin of ``stockbatch._ext.kernels``: the readable specification.

Same public names and behaviour as the compiled module, written with numpy and
pyarrow.compute. Rule definitions and null handling are documented in
:mod:`stockbatch._validation`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._arrow import float_array
from .._validation import (
    RESAMPLE_COLUMNS,
    RULES,
    VALIDATE_COLUMNS,
    NormalizeResult,
    Rule,
    ValidationReport,
    calendar_edges,
    mask_buffer,
    parse_interval,
    prepare,
)

__all__ = ["validate", "normalize", "resample", "returns", "log_returns"]

_I64_MIN = np.iinfo(np.int64).min


def _plain(arr: pa.Array) -> pa.Array:
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def _values(arr: pa.Array, fill=0) -> tuple[np.ndarray, np.ndarray]:
    """(values with nulls replaced by ``fill``, validity as bool)."""
    if pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.int64())
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), bool)
    return arr.fill_null(fill).to_numpy(zero_copy_only=False), valid


def _same_as_previous(arr: pa.Array) -> np.ndarray:
    """Row i equals row i-1 (nulls equal each other); False for row 0."""
    arr = _plain(arr)
    n = len(arr)
    same = np.zeros(n, bool)
    if n > 1:
        eq = pc.equal(arr[1:], arr[:-1]).fill_null(False).to_numpy(zero_copy_only=False)
        null = ~np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), bool)
        same[1:] = eq | (null[1:] & null[:-1])
    return same


def _segment_starts(batch: pa.RecordBatch) -> np.ndarray:
    """Start row of every (symbol, interval) run, then n."""
    n = batch.num_rows
    same = _same_as_previous(batch.column("symbol"))
    if "interval" in batch.schema.names:
        same &= _same_as_previous(batch.column("interval"))
    starts = np.flatnonzero(~same) if n else np.zeros(0, np.int64)
    return np.append(starts, n).astype(np.int64)


def _check_threshold(spike_threshold):
    if spike_threshold is None:
        return None
    thr = float(spike_threshold)
    if not math.isfinite(thr) or thr < 0:
        raise ValueError(f"spike_threshold must be a finite number >= 0, not {spike_threshold!r}")
    return thr


def validate(
    data: Any,
    *,
    rules: Rule = Rule.DEFAULT,
    spike_threshold: float | None = None,
    out: np.ndarray | None = None,
) -> ValidationReport:
    """Check every row against ``rules``; see :func:`stockbatch.validate`."""
    rules = Rule(rules)
    thr = _check_threshold(spike_threshold)
    if thr is None:
        rules &= ~Rule.PRICE_SPIKE
    batch = prepare(data, VALIDATE_COLUMNS, ("adj_close",))
    n = batch.num_rows
    mask = mask_buffer(n, out)
    bits = np.zeros(n, np.uint16)

    def flag(rule: Rule, rows: np.ndarray) -> None:
        if rule & rules:
            bits[rows] |= np.uint16(rule)

    col = {name: _values(batch.column(name)) for name in VALIDATE_COLUMNS[2:]}
    null = np.zeros(n, bool)
    for name in VALIDATE_COLUMNS:
        if name in col:
            null |= ~col[name][1]
        else:
            null |= ~np.asarray(batch.column(name).is_valid().to_numpy(zero_copy_only=False), bool)
    flag(Rule.NULL_FIELD, null)

    prices = ["open", "high", "low", "close"]
    if "adj_close" in batch.schema.names:
        prices.append("adj_close")
        col["adj_close"] = _values(batch.column("adj_close"))
    ok = {}
    for name in prices:
        x, present = col[name]
        finite = np.isfinite(x)
        flag(Rule.NON_FINITE, present & ~finite)
        ok[name] = present & finite
        flag(Rule.NON_POSITIVE_PRICE, ok[name] & (x <= 0))
    o, h, lo, c = (col[k][0] for k in ("open", "high", "low", "close"))
    ok_o, ok_h, ok_l, ok_c = (ok[k] for k in ("open", "high", "low", "close"))
    flag(Rule.HIGH_INCONSISTENT, ok_h & ((ok_o & (h < o)) | (ok_c & (h < c)) | (ok_l & (h < lo))))
    flag(Rule.LOW_INCONSISTENT, ok_l & ((ok_o & (lo > o)) | (ok_c & (lo > c)) | (ok_h & (lo > h))))
    vol, vol_ok = col["volume"]
    flag(Rule.NEGATIVE_VOLUME, vol_ok & (vol < 0))

    if rules & (Rule.TS_NOT_INCREASING | Rule.DUPLICATE_TS | Rule.PRICE_SPIKE) and n:
        ts, ts_ok = col["ts"]
        ts = np.where(ts_ok, ts, _I64_MIN)
        starts = _segment_starts(batch)
        prev_max = np.full(n, _I64_MIN, np.int64)
        first = np.zeros(n, bool)
        first[starts[:-1]] = True
        for s, e in zip(starts[:-1], starts[1:], strict=True):
            # largest earlier non-null ts of the segment (INT64_MIN: none yet)
            prev_max[s + 1 : e] = np.maximum.accumulate(ts[s : e - 1])
        has_prev = ts_ok & (prev_max != _I64_MIN)
        flag(Rule.TS_NOT_INCREASING, has_prev & (ts < prev_max))
        flag(Rule.DUPLICATE_TS, has_prev & (ts == prev_max))
        if thr is not None:
            good = ok_c & (c > 0)
            spike = np.zeros(n, bool)
            with np.errstate(all="ignore"):
                ratio = np.abs(c[1:] / c[:-1] - 1.0)
            spike[1:] = good[1:] & good[:-1] & ~first[1:] & (ratio > thr)
            flag(Rule.PRICE_SPIKE, spike)

    mask[:] = bits
    counts = {str(r.name): int(np.count_nonzero(bits & np.uint16(r))) for r in RULES if r & rules}
    return ValidationReport(mask, counts, rules, pa.Table.from_batches([batch]))


# ---------------------------------------------------------------------------------------


def _sort_key(arr: pa.Array) -> pa.Array:
    """A sortable stand-in for a dictionary column: each value's rank in its dictionary."""
    if not pa.types.is_dictionary(arr.type):
        return arr
    ranks = pc.rank(arr.dictionary, sort_keys="ascending", tiebreaker="dense")
    return ranks.take(arr.indices)


def normalize(data: Any, *, adjust: bool = False) -> NormalizeResult:
    """Sort by (symbol, interval, ts), drop duplicate keys (keep last), optionally adjust."""
    need = ("symbol", "interval", "ts") + (
        ("open", "high", "low", "close", "adj_close") if adjust else ()
    )
    batch = prepare(data, need)
    table = pa.Table.from_batches([batch])
    n = batch.num_rows
    keys = pa.table({k: _sort_key(batch.column(k)) for k in ("symbol", "interval", "ts")})
    order = pc.sort_indices(
        keys, sort_keys=[(k, "ascending", "at_end") for k in keys.column_names]
    ).to_numpy()
    was_unsorted = bool(n) and not np.array_equal(order, np.arange(n))
    if was_unsorted:
        table = table.take(pa.array(order))
    dropped = 0
    if n > 1:
        same = np.ones(n - 1, bool)
        for k in ("symbol", "interval", "ts"):
            arr = table.column(k).combine_chunks()
            same &= _same_as_previous(arr)[1:]
        dup = np.zeros(n, bool)
        dup[:-1] = same  # row i has the same key as row i+1: the later one wins
        dropped = int(dup.sum())
        if dropped:
            table = table.filter(pa.array(~dup))
    if adjust and table.num_rows:
        close, close_ok = _values(table.column("close").combine_chunks(), np.nan)
        adj, adj_ok = _values(table.column("adj_close").combine_chunks(), np.nan)
        with np.errstate(all="ignore"):
            factor = adj / close
        # rows without a usable (finite) factor keep their prices
        factor = np.where(close_ok & adj_ok & np.isfinite(factor), factor, 1.0)
        for name in ("open", "high", "low", "close"):
            arr = table.column(name).combine_chunks()
            x, x_ok = _values(arr, np.nan)
            with np.errstate(all="ignore"):
                y = x * factor
            table = table.set_column(
                table.schema.get_field_index(name), name, pa.array(y, pa.float64(), mask=~x_ok)
            )
    return NormalizeResult(table, dropped, was_unsorted)


# ---------------------------------------------------------------------------------------


def _returns(data: Any, column: str, log: bool, out: np.ndarray | None) -> pa.Array:
    batch = prepare(data, ("symbol", "interval", column))
    n = batch.num_rows
    values = mask_buffer(n, out, np.float64)
    x, ok = _values(batch.column(column), 0)
    x = x.astype(np.float64)
    out = np.zeros(n, np.float64)
    valid = np.zeros(n, bool)
    if n > 1:
        with np.errstate(all="ignore"):
            ratio = x[1:] / x[:-1]
            out[1:] = np.log(ratio) if log else ratio - 1.0
        valid[1:] = ok[1:] & ok[:-1]
        valid[_segment_starts(batch)[:-1]] = False
    out[~valid] = 0.0
    values[:] = out
    return float_array(values, np.packbits(valid, bitorder="little"))


def returns(data: Any, *, column: str = "close", out: np.ndarray | None = None) -> pa.Array:
    """``x[i] / x[i-1] - 1`` per (symbol, interval) segment; null first row / null inputs.

    ``out`` (float64, at least as long as the data) receives the values and backs the
    returned array without a copy."""
    return _returns(data, column, False, out)


def log_returns(data: Any, *, column: str = "close", out: np.ndarray | None = None) -> pa.Array:
    """``log(x[i] / x[i-1])`` per (symbol, interval) segment; null first row / null inputs.

    ``out`` as for :func:`returns`."""
    return _returns(data, column, True, out)


# ---------------------------------------------------------------------------------------


def resample(data: Any, *, to: str, tz: str | None = None) -> pa.Table:
    """Aggregate bars into ``to`` buckets per (symbol, interval) segment."""
    iv = parse_interval(to)
    batch = prepare(data, RESAMPLE_COLUMNS, ("adj_close", "source"))
    n = batch.num_rows
    ts_arr = batch.column("ts")
    ts, ts_ok = _values(ts_arr)
    edges = calendar_edges(ts_arr, iv, tz)
    if edges is None:  # the fixed UTC grid
        starts = (ts - iv.origin) // iv.width * iv.width + iv.origin
    else:  # calendar buckets: edges[k] <= ts < edges[k + 1]
        starts = edges[np.clip(np.searchsorted(edges, ts, side="right") - 1, 0, None)]
    seg = np.zeros(n, np.int64)
    seg_starts = _segment_starts(batch)
    seg[seg_starts[1:-1]] = 1
    seg = np.cumsum(seg)
    rows = np.flatnonzero(ts_ok)  # rows with a null ts cannot be placed: skipped
    for s, e in zip(seg_starts[:-1], seg_starts[1:], strict=True):
        t = ts[s:e][ts_ok[s:e]]
        if np.any(t[1:] < t[:-1]):
            raise ValueError(
                "resample needs ts ascending within each (symbol, interval); run normalize() first"
            )
    # a new bucket wherever the segment or the bucket start changes
    new = np.ones(len(rows), bool)
    if len(rows) > 1:
        new[1:] = (seg[rows[1:]] != seg[rows[:-1]]) | (starts[rows[1:]] != starts[rows[:-1]])
    group = np.cumsum(new) - 1
    k = int(new.sum())
    first_row = rows[new]

    def gather(name, how):
        x, ok = _values(batch.column(name), 0)
        res = np.zeros(k, x.dtype)
        has = np.zeros(k, bool)
        for g, r in zip(group, rows, strict=True):
            if not ok[r]:
                continue
            v = x[r]
            if not has[g]:
                res[g] = v
                has[g] = True
            elif how == "last":
                res[g] = v
            elif how in ("max", "min") and (v != v or res[g] != res[g]):
                res[g] = np.nan  # NaN propagates, as in numpy's max/min
            elif how == "max":
                res[g] = max(res[g], v)
            elif how == "min":
                res[g] = min(res[g], v)
            elif how == "sum":
                res[g] += v
        return pa.array(res, mask=~has)

    cols = {
        "symbol": batch.column("symbol").take(pa.array(first_row)),
        "interval": pa.array([iv.text] * k, pa.string()),
        "ts": pa.array(starts[first_row], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "open": gather("open", "first"),
        "high": gather("high", "max"),
        "low": gather("low", "min"),
        "close": gather("close", "last"),
    }
    if "adj_close" in batch.schema.names:
        cols["adj_close"] = gather("adj_close", "last")
    cols["volume"] = gather("volume", "sum")
    if "source" in batch.schema.names:
        cols["source"] = batch.column("source").take(pa.array(first_row))
    return pa.table(cols)
