"""Arrow batch helpers of the sinks: re-batching any input to a row budget, de-duplicating
by key, per-symbol time ranges, and reading back driver-typed time columns."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._arrow import array, datetimes, fill_null, to_numpy
from .._time import micros_to_datetime
from ..schema import UTC_US, to_table

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "rechunk",
    "raw_batches",
    "key_codes",
    "dedup",
    "unique_rows",
    "key_runs",
    "castable",
    "as_utc",
    "key_ranges",
]

#: Rows per batch when neither the caller nor the measured row width says otherwise.
DEFAULT_BATCH_ROWS = 65_536


def rechunk(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Yield batches of about ``rows`` rows: big ones sliced, small ones combined."""
    pending: list[pa.RecordBatch] = []
    have = 0
    for b in batches:
        if b.num_rows == 0:
            continue
        offset = 0
        while offset < b.num_rows:
            take = min(rows - have, b.num_rows - offset)
            pending.append(b.slice(offset, take))
            have += take
            offset += take
            if have >= rows:
                yield concat(pending)
                pending, have = [], 0
    if pending:
        yield concat(pending)


def concat(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(parts) == 1:
        return parts[0]
    return pa.Table.from_batches(parts).combine_chunks().to_batches()[0]


def raw_batches(data: Any) -> Iterator[pa.RecordBatch]:
    if isinstance(data, pa.RecordBatch):
        yield data
    elif isinstance(data, pa.Table):
        yield from data.to_batches()
    elif isinstance(data, pa.RecordBatchReader):
        yield from data
    elif hasattr(data, "__arrow_c_stream__") and not hasattr(data, "__iter__"):
        yield from pa.RecordBatchReader.from_stream(data)
    elif (
        isinstance(data, Iterable)
        and not isinstance(data, (dict, str, bytes))
        and not type(data).__module__.startswith(("pandas", "polars"))
    ):
        for item in data:
            if isinstance(item, pa.RecordBatch):
                yield item
            else:
                yield from to_table(item).to_batches()
    else:
        yield from to_table(data).to_batches()


def key_codes(batch: pa.RecordBatch, key: tuple) -> list[np.ndarray]:
    """Each key column as integers (strings dictionary-encoded in first-seen order)."""
    out = []
    for k in key:
        col = batch.column(k)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pc.dictionary_encode(col).indices
        elif pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        out.append(to_numpy(fill_null(col, -1)))
    return out


def dedup(batch: pa.RecordBatch, key: tuple, *, keep: str) -> tuple[pa.RecordBatch, int]:
    """Drop rows whose key repeats inside ``batch``, keeping the ``"last"`` or ``"first"``
    occurrence; returns the batch (input order otherwise kept) and how many rows went."""
    kept = unique_rows(batch, key, keep=keep)
    if kept is None:
        return batch, 0
    rows = np.flatnonzero(kept)
    return batch.take(array(rows)), batch.num_rows - len(rows)


def unique_rows(batch: pa.RecordBatch, key: tuple, *, keep: str) -> np.ndarray | None:
    """Which rows of ``batch`` to keep so that no key repeats (the ``"last"`` or ``"first"``
    of each run of equal keys), as a boolean mask; None when no key repeats.

    Sorted input (the usual: per symbol, by time) is recognised in one O(n) pass; otherwise
    a stable lexicographic sort of the integer-coded key finds the runs of equal keys."""
    n = batch.num_rows
    if n < 2:
        return None
    codes = key_codes(batch, key)
    # strictly increasing keys (lexicographically) cannot repeat
    less = np.zeros(n - 1, bool)
    equal = np.ones(n - 1, bool)
    for c in codes:
        less |= equal & (c[:-1] < c[1:])
        equal &= c[:-1] == c[1:]
    if less.all():
        return None
    order, same_next = key_runs(codes)
    if not same_next.any():
        return None
    keep_sorted = np.ones(n, bool)
    if keep == "last":
        keep_sorted[:-1] = ~same_next  # the last of each run of equal keys
    else:
        keep_sorted[1:] = ~same_next  # the first of each run
    kept = np.zeros(n, bool)
    kept[order[keep_sorted]] = True
    return kept


def key_runs(codes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The rows in key order (a stable sort of :func:`key_codes`: equal keys stay in input
    order) and, for each row in that order but the last, whether the next has its key."""
    order = np.lexsort(codes[::-1])
    same_next = np.ones(len(order) - 1, bool)
    for c in codes:
        cs = c[order]
        same_next &= cs[:-1] == cs[1:]
    return order, same_next


def castable(col: Any, to: pa.DataType) -> bool:
    if pa.types.is_timestamp(to) and (
        pa.types.is_integer(col.type) or pa.types.is_timestamp(col.type)
    ):
        return True
    try:
        col.cast(to)
        return True
    except pa.ArrowException:
        return False


def as_utc(col: Any) -> pa.ChunkedArray | pa.Array:
    """A time column as read back by any driver (int64 microseconds, naive UTC, zoned,
    all null) as ``timestamp[us, tz=UTC]``."""
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), UTC_US)
    if pa.types.is_integer(col.type):
        return col.cast(pa.int64()).cast(UTC_US)
    if pa.types.is_timestamp(col.type) and col.type.tz is None:
        return pc.cast(col, pa.timestamp("us"), safe=False).cast(UTC_US)
    return pc.cast(col, UTC_US, safe=False)


def key_ranges(symbol: Any, ts: Any) -> tuple[list, list, list]:
    """(symbols, first ts, last ts) of a batch: one pass when it is grouped by symbol
    (the usual), a hash aggregation otherwise."""
    enc = pc.dictionary_encode(symbol)
    codes = to_numpy(fill_null(enc.indices, -1))
    us = to_numpy(fill_null(ts.cast(pa.int64()), 0))
    names = enc.dictionary.to_pylist()
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    if len(starts) == len(names) and (enc.indices.null_count == 0 or -1 not in codes):
        order = np.argsort(codes[starts])
        los = np.minimum.reduceat(us, starts)[order]
        his = np.maximum.reduceat(us, starts)[order]
        return (
            names,
            [micros_to_datetime(v) for v in los.tolist()],
            [micros_to_datetime(v) for v in his.tolist()],
        )
    by = (
        pa.table({"symbol": symbol, "ts": ts})
        .group_by("symbol")
        .aggregate([("ts", "min"), ("ts", "max")])
    )
    return (
        by.column("symbol").to_pylist(),
        datetimes(by.column("ts_min")),
        datetimes(by.column("ts_max")),
    )
