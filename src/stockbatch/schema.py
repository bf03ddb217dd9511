"""The canonical Arrow schemas, defined once, and :func:`conform` to reach them.

``BARS`` — one OHLCV bar per row, primary key (symbol, interval, ts)::

    symbol     string                 provider symbol, e.g. AAPL, 7203.T
    interval   string                 1m … 1d, 1wk, 1mo
    ts         timestamp[us, tz=UTC]  bar start; never naive, never ns
    open, high, low, close, adj_close  float64 (null where the provider sent null)
    volume     int64
    source     string                 provider name, for provenance

``QUOTES`` — one quote per row: symbol, ts, price, previous_close, change, change_percent,
volume, market_cap, currency, source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._arrow import array, fill_null, to_numpy, with_nulls_of
from ._errors import SchemaError

__all__ = ["BARS", "QUOTES", "BAR_KEY", "conform", "to_table", "PRICE_COLUMNS", "local_dates"]

UTC_US = pa.timestamp("us", tz="UTC")

BARS = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("interval", pa.string(), nullable=False),
        pa.field("ts", UTC_US, nullable=False),
        pa.field("open", pa.float64()),
        pa.field("high", pa.float64()),
        pa.field("low", pa.float64()),
        pa.field("close", pa.float64()),
        pa.field("adj_close", pa.float64()),
        pa.field("volume", pa.int64()),
        pa.field("source", pa.string()),
    ],
    metadata={b"stockbatch.schema": b"bars/1", b"stockbatch.key": b"symbol,interval,ts"},
)

QUOTES = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("ts", UTC_US, nullable=False),
        pa.field("price", pa.float64()),
        pa.field("previous_close", pa.float64()),
        pa.field("change", pa.float64()),
        pa.field("change_percent", pa.float64()),
        pa.field("volume", pa.int64()),
        pa.field("market_cap", pa.float64()),
        pa.field("currency", pa.string()),
        pa.field("source", pa.string()),
    ],
    metadata={b"stockbatch.schema": b"quotes/1", b"stockbatch.key": b"symbol,ts"},
)

BAR_KEY = ("symbol", "interval", "ts")
PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")

# Columns a caller may leave out: they are filled with nulls (or the keyword's value).
_OPTIONAL = {
    "bars/1": {"adj_close", "source", "interval"},  # interval only when interval= is given
    "quotes/1": {
        "previous_close",
        "change",
        "change_percent",
        "volume",
        "market_cap",
        "currency",
        "source",
    },
}

_MAX_EXACT_INT_IN_F64 = 2**53

# (the converted column, None) or (None, why it cannot be converted)
_Conformed = tuple[Any, None] | tuple[None, str]


def to_table(data: Any) -> pa.Table:
    """Turn any Arrow-exporting object (PyCapsule protocol), pandas frame or dict of lists
    into a ``pyarrow.Table`` without copying where the producer allows."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    if hasattr(data, "__arrow_c_array__"):
        return pa.Table.from_batches([pa.record_batch(data)])
    if isinstance(data, Mapping):
        return pa.table(dict(data))
    if type(data).__module__.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    if hasattr(data, "to_arrow"):  # DuckDB relations, older polars
        return to_table(data.to_arrow())
    raise TypeError(
        f"cannot read {type(data).__name__} as Arrow data: pass a pyarrow Table/RecordBatch, "
        "an object with __arrow_c_stream__/__arrow_c_array__ (polars, pandas, DuckDB) "
        "or a dict of lists"
    )


def _describe(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.unit}{', tz=' + t.tz if t.tz else ''}]"
    return str(t)


def _conform_string(col: pa.ChunkedArray, t: pa.DataType) -> _Conformed:
    if pa.types.is_dictionary(t):
        inner = t.value_type
        if not (
            pa.types.is_string(inner)
            or pa.types.is_large_string(inner)
            or pa.types.is_string_view(inner)
        ):
            return None, f"dictionary of {inner} is not a dictionary of strings"
        return pc.cast(col, pa.string()), None
    if (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_null(t)
    ):
        return col.cast(pa.string()), None
    return None, "expected a string column"


def _conform_float(col: pa.ChunkedArray, t: pa.DataType) -> _Conformed:
    if pa.types.is_floating(t) or pa.types.is_null(t):
        return col.cast(pa.float64()), None
    if pa.types.is_integer(t):
        if t.bit_width < 64:
            return col.cast(pa.float64()), None
        mm = pc.min_max(pc.abs(col) if pa.types.is_signed_integer(t) else col)
        if mm["max"].as_py() is not None and mm["max"].as_py() > _MAX_EXACT_INT_IN_F64:
            return None, "64-bit integers beyond 2**53 would lose precision as float64"
        return col.cast(pa.float64()), None
    if pa.types.is_decimal(t):
        return None, "decimals are not converted implicitly; cast to float64 first"
    return None, "expected a numeric column"


def _conform_int(col: pa.ChunkedArray, t: pa.DataType) -> _Conformed:
    if pa.types.is_integer(t) or pa.types.is_null(t):
        try:
            return col.cast(pa.int64()), None
        except pa.ArrowInvalid:
            return None, "uint64 values beyond the int64 range"
    if pa.types.is_floating(t):
        try:
            return col.cast(pa.int64(), safe=True), None
        except pa.ArrowInvalid:
            return None, "floating values with a fractional part (or out of int64 range)"
    return None, "expected an integer column"


def _conform_ts(col: pa.ChunkedArray, t: pa.DataType, tz: str | None, truncate: bool) -> _Conformed:
    if pa.types.is_date(t):
        if tz is None:
            return None, "dates carry no time zone: pass tz= (the exchange's zone) to place them"
        col = col.cast(pa.timestamp("s"))
        t = col.type
    if not pa.types.is_timestamp(t):
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return None, "timestamps as text are not parsed implicitly; parse them first"
        return None, "expected a timestamp column (integers have no unit: cast them first)"
    if t.tz is None:
        if tz is None:
            return None, "naive timestamps need an explicit tz= (the zone they were recorded in)"
        try:
            col = pc.assume_timezone(col, tz, ambiguous="raise", nonexistent="raise")
        except pa.ArrowInvalid as exc:
            return None, f"cannot place naive timestamps in {tz}: {exc}"
    if t.unit == "ns" and not truncate:
        try:
            return col.cast(UTC_US), None
        except pa.ArrowInvalid:
            return None, (
                "nanosecond timestamps that are not whole microseconds; "
                "pass truncate=True to drop the sub-microsecond part"
            )
    return col.cast(UTC_US, safe=not truncate), None


def conform(
    data: Any,
    schema: pa.Schema = BARS,
    *,
    tz: str | None = None,
    truncate: bool = False,
    interval: str | None = None,
    source: str | None = None,
) -> pa.Table:
    """Return ``data`` as a table of exactly ``schema`` (column order, types), copying only
    what must change.

    Accepted: anything exporting Arrow through PyCapsules (pyarrow, polars, pandas via
    pyarrow, DuckDB) and dicts of lists. Safe widenings are applied: int32→int64,
    float32→float64, small ints→float64, ns→us when lossless, large_string / string_view /
    dictionary→string, any time zone→UTC. Extra columns are dropped.

    Parameters
    ----------
    tz : str, optional
        Zone in which naive timestamps (or dates) were recorded, e.g. ``"America/New_York"``.
    truncate : bool
        Allow dropping sub-microsecond parts of nanosecond timestamps.
    interval, source : str, optional
        Values for the ``interval`` / ``source`` columns when the data has none.

    Raises
    ------
    SchemaError
        Naming every offending column, its type and why it was refused.
    """
    table = to_table(data)
    kind = schema.metadata.get(b"stockbatch.schema", b"").decode() if schema.metadata else ""
    optional = _OPTIONAL.get(kind, set())
    fill = {"interval": interval, "source": source}
    problems: dict[str, str] = {}
    columns = []
    n = table.num_rows
    for field in schema:
        name = field.name
        if name not in table.column_names:
            value = fill.get(name)
            if name in optional and (name != "interval" or value is not None):
                columns.append(array([value] * n, field.type))
                continue
            problems[name] = "missing required column" + (
                " (or pass interval=)" if name == "interval" else ""
            )
            continue
        col = table.column(name)
        t = col.type
        if t == field.type:
            columns.append(col)
            continue
        target = field.type
        if pa.types.is_string(target):
            out, why = _conform_string(col, t)
        elif pa.types.is_floating(target):
            out, why = _conform_float(col, t)
        elif pa.types.is_integer(target):
            out, why = _conform_int(col, t)
        elif pa.types.is_timestamp(target):
            out, why = _conform_ts(col, t, tz, truncate)
        else:  # pragma: no cover - schemas only use the types above
            out, why = None, f"no conversion to {target}"
        if why:
            problems[name] = f"{_describe(t)}: {why}"
        else:
            columns.append(out)
    if problems:
        lines = "\n".join(f"  - {name}: {why}" for name, why in problems.items())
        raise SchemaError(
            f"data does not fit the {kind or 'target'} schema "
            f"({len(problems)} column{'s' if len(problems) > 1 else ''}):\n{lines}",
            problems,
        )
    return pa.Table.from_arrays(columns, schema=schema)


def local_dates(
    symbol: pa.Array | pa.ChunkedArray,
    ts: pa.Array | pa.ChunkedArray,
    zones: Mapping[str, str | None],
) -> pa.Array:
    """The exchange-local calendar day (``date32``) of each ``ts``, in the zone of its
    symbol (``zones``; a symbol missing or None there is dated in UTC)."""
    if isinstance(symbol, pa.ChunkedArray):
        symbol = symbol.combine_chunks()
    ts = ts.cast(UTC_US)
    if isinstance(ts, pa.ChunkedArray):
        ts = ts.combine_chunks()
    utc = ts.cast(pa.timestamp("us")).cast(pa.date32())
    codes = pc.dictionary_encode(symbol)
    # "UTC" first: rows of unknown (or null) symbols keep their UTC day
    zone_of = ["UTC"] + [zones.get(s) or "UTC" for s in codes.dictionary.to_pylist()]
    distinct = list(dict.fromkeys(zone_of))
    if len(distinct) == 1:
        return utc
    if len(distinct) == 2 and not codes.null_count:
        if all(z != "UTC" for z in zone_of[1:]):  # one zone for every row
            return _in_zone(ts, distinct[1])
    # each zone converts only its own rows: the time-zone conversion is the costly part,
    # and a batch holds symbols of several exchanges (O(rows), not O(rows x zones))
    zone_code = np.array([distinct.index(z) for z in zone_of], dtype=np.int32)
    row_zone = zone_code[to_numpy(fill_null(codes.indices, -1)).astype(np.int64) + 1]
    out = to_numpy(fill_null(utc.cast(pa.int32()), 0)).copy()
    for k, zone in enumerate(distinct[1:], start=1):
        rows = np.flatnonzero(row_zone == k)
        if len(rows):
            local = _in_zone(ts.take(array(rows)), zone)
            out[rows] = to_numpy(fill_null(local.cast(pa.int32()), 0))
    return with_nulls_of(ts, pa.date32(), out)


def _in_zone(ts: pa.Array, zone: str) -> pa.Array:
    """The calendar day of each UTC instant of ``ts`` in ``zone``."""
    return pc.local_timestamp(ts.cast(pa.timestamp("us", tz=zone))).cast(pa.date32())
