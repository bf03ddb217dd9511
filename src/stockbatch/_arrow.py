"""Arrow arrays built from numpy and Python values, and read back as numpy and Python
values, through their buffers.

Why not pyarrow's own conversions: ``pa.array``, ``pa.scalar``, ``Array.to_numpy``, a zoned
timestamp's ``as_py`` and ``Table.join`` ask, on their first use in a process, whether a value
is a pandas object, and that question imports pandas when it is installed (~0.3 s of CPU),
even for a numpy array or a list of strings. The ingest path converts here, so a first
``stockbatch.ingest`` imports no pandas the user did not import.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from ._time import micros_to_datetime, to_utc_micros

_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_INFERRED: dict[type, pa.DataType] = {
    bool: pa.bool_(),
    int: pa.int64(),
    float: pa.float64(),
    str: pa.string(),
    bytes: pa.binary(),
    date: pa.date32(),
}


def from_numpy(
    values: np.ndarray, type: pa.DataType | None = None, validity: np.ndarray | None = None
) -> pa.Array:
    """A primitive Arrow array over a one-dimensional numpy array (no copy when contiguous);
    ``type`` defaults to the array's own (e.g. ``timestamp[us, UTC]`` over int64 values),
    ``validity`` is a packed bitmap (None: no nulls)."""
    values = np.ascontiguousarray(values)
    if type is None:
        type = pa.from_numpy_dtype(values.dtype)
    bitmap = None if validity is None else pa.py_buffer(validity)
    return pa.Array.from_buffers(type, len(values), [bitmap, pa.py_buffer(values)])


def with_nulls_of(col: Any, type: pa.DataType, values: np.ndarray) -> pa.Array:
    """An Arrow array of ``type`` over ``values`` (no copy when contiguous), null where
    ``col`` (an array of the same length) is null."""
    valid = np.packbits(to_numpy(col.is_valid()), bitorder="little") if col.null_count else None
    return from_numpy(values, type, valid)


def float_array(values: np.ndarray, validity: np.ndarray | None = None) -> pa.Array:
    """float64 Arrow array over ``values`` (no copy); ``validity`` is a packed bitmap."""
    return from_numpy(values, pa.float64(), validity)


def bools(mask: np.ndarray) -> pa.BooleanArray:
    """A boolean Arrow array from a numpy bool array (bit-packed, as Arrow stores it)."""
    bits = np.packbits(np.asarray(mask, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(bits)])


def strings(values: Sequence[str]) -> pa.StringArray:
    """A string Arrow array (no nulls) from Python strings."""
    return _binary(list(values), pa.string(), None)


def array(values: Any, type: pa.DataType | None = None) -> pa.Array:
    """``pa.array(values, type)`` for a numpy array or a sequence of ``None``, bool, int,
    float, str, bytes, date and datetime values (naive unless ``type`` is a zoned
    timestamp); other values are handed to ``pa.array``. ``None`` is null."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "biuf":
        arr = bools(values) if values.dtype.kind == "b" else from_numpy(values)
        return arr if type is None or arr.type == type else arr.cast(type)
    values = list(values)
    if type is None:
        kinds = {v.__class__ for v in values if v is not None}
        if not kinds:
            return pa.nulls(len(values))
        kind = kinds.pop() if len(kinds) == 1 else None
        if kind is datetime and all(v.tzinfo is None for v in values if v is not None):
            type = pa.timestamp("us")
        elif (type := _INFERRED.get(kind)) is None:  # type: ignore[arg-type]
            return pa.array(values)
    if not _built(type):
        return pa.array(values, type)
    bitmap = None
    if any(v is None for v in values):
        valid = [v is not None for v in values]
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    if pa.types.is_string(type) or pa.types.is_binary(type):
        return _binary(values, type, bitmap)
    if pa.types.is_boolean(type):
        bits = np.packbits([bool(v) for v in values], bitorder="little")
        return pa.Array.from_buffers(type, len(values), [bitmap, pa.py_buffer(bits)])
    if pa.types.is_timestamp(type):
        values = [_ticks(v, type.unit) for v in values]
        dtype: Any = np.int64
    elif pa.types.is_date32(type):
        values = [_days(v) for v in values]
        dtype = np.int32
    else:
        dtype = type.to_pandas_dtype()
    data = np.array([0 if v is None else v for v in values], dtype=dtype)
    return pa.Array.from_buffers(type, len(values), [bitmap, pa.py_buffer(data)])


def _built(type: pa.DataType) -> bool:
    """The types :func:`array` builds itself."""
    t = pa.types
    return (
        t.is_string(type)
        or t.is_binary(type)
        or t.is_boolean(type)
        or t.is_timestamp(type)
        or t.is_date32(type)
        or t.is_integer(type)
        or t.is_floating(type)
    )


def table(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """``pa.Table.from_pylist(rows, schema)``: a missing key is null."""
    return pa.Table.from_arrays(
        [array([r.get(f.name) for r in rows], f.type) for f in schema], schema=schema
    )


def _binary(values: list, type: pa.DataType, bitmap: pa.Buffer | None) -> pa.Array:
    n = len(values)
    offsets = np.zeros(n + 1, dtype=np.int32)
    text = "".join(values) if bitmap is None and pa.types.is_string(type) else None
    if text is not None and text.isascii():  # the usual: one encode, lengths in characters
        data = text.encode("ascii")
        np.cumsum(np.fromiter(map(len, values), np.int64, n), out=offsets[1:])
    else:
        parts = [
            b"" if v is None else v.encode() if isinstance(v, str) else bytes(v) for v in values
        ]
        data = b"".join(parts)
        np.cumsum(np.fromiter(map(len, parts), np.int64, n), out=offsets[1:])
    return pa.Array.from_buffers(type, n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(data)])


def _ticks(v: Any, unit: str) -> int | None:
    """A datetime (naive = UTC, as pyarrow reads it) or an int (already in ``unit``), in
    ``unit`` since 1970."""
    if not isinstance(v, datetime):
        return v
    us = to_utc_micros(v)
    per = _PER_SECOND[unit]
    return us * (per // 1_000_000) if per >= 1_000_000 else us // (1_000_000 // per)


def _days(v: Any) -> int | None:
    if isinstance(v, datetime):
        v = v.date()
    return v.toordinal() - 719_163 if isinstance(v, date) else v


def scalar(value: Any, type: pa.DataType) -> pa.Scalar:
    """``pa.scalar(value, type)``, built without pyarrow's pandas probe."""
    return array([value], type)[0]


def fill_null(col: Any, value: Any) -> Any:
    """``col.fill_null(value)`` (an array or chunked array), without pyarrow's pandas probe."""
    return col.fill_null(scalar(value, col.type)) if col.null_count else col


def to_numpy(col: Any) -> np.ndarray:
    """``np.asarray(col)`` for a primitive array or chunked array: a view of its data buffer
    when it has no nulls (Arrow's own conversion imports pandas when installed)."""
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks != 1:
            parts = [to_numpy(c) for c in col.chunks]
            return np.concatenate(parts) if parts else to_numpy(pa.nulls(0, col.type))
        col = col.chunk(0)
    t = col.type
    if col.null_count or not (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_temporal(t)
        or pa.types.is_boolean(t)
    ):
        return col.to_numpy(zero_copy_only=False)
    if pa.types.is_boolean(t):
        bits = np.frombuffer(col.buffers()[1], np.uint8)
        return np.unpackbits(bits, bitorder="little")[col.offset : col.offset + len(col)].view(bool)
    if pa.types.is_integer(t):
        dtype = np.dtype(f"{'i' if pa.types.is_signed_integer(t) else 'u'}{t.bit_width // 8}")
    elif pa.types.is_floating(t):
        dtype = np.dtype(f"f{t.bit_width // 8}")
    elif pa.types.is_timestamp(t):
        dtype = np.dtype(f"datetime64[{t.unit}]")
    elif pa.types.is_date32(t):
        return to_numpy(col.view(pa.int32())).astype("datetime64[D]")
    else:
        return col.to_numpy(zero_copy_only=False)
    return np.frombuffer(col.buffers()[1], dtype, len(col), col.offset * dtype.itemsize)


def datetimes(col: Any) -> list[datetime | None]:
    """``col.to_pylist()`` of a timestamp column, as aware UTC datetimes (pyarrow's own
    conversion of a zoned timestamp asks whether pandas is installed)."""
    us = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
    return [None if v is None else micros_to_datetime(v) for v in us]


def values(col: Any) -> list[Any]:
    """``col.to_pylist()``, with a UTC timestamp column converted by :func:`datetimes`."""
    if pa.types.is_timestamp(col.type) and col.type.tz == "UTC":
        return datetimes(col)
    return col.to_pylist()


def pylist(table: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    """``table.to_pylist()``, with UTC timestamp columns converted by :func:`datetimes`."""
    cols = [values(col) for col in table.columns]
    names = table.column_names
    return [dict(zip(names, row, strict=True)) for row in zip(*cols, strict=True)]


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A record batch of ``schema`` with no rows."""
    return pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)
