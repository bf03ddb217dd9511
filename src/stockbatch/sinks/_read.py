"""Reading tables back: rows of bars and quotes in the canonical schema (timestamps UTC,
trading dates), and of the auxiliary tables in theirs. Values are bound, never formatted
into SQL."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .._errors import SchemaError, SinkError
from .._time import micros_to_datetime, to_utc_micros
from ..schema import BARS, QUOTES, UTC_US, conform
from . import _aux, _meta, _sql
from ._batches import castable
from ._ddl import SPECS, sql

if TYPE_CHECKING:
    from ._tables import TableSink as Sink

__all__ = ["SCHEMAS", "read", "read_aux", "canonical", "time_option"]

#: The Arrow schema of each data kind.
SCHEMAS = {"bars": BARS, "quotes": QUOTES}


def time_option(name: str, value: Any) -> int:
    """``start=`` / ``end=`` as UTC microseconds, or ValueError naming the option."""
    try:
        return to_utc_micros(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(
            f"{name}={value!r} is not a time (a datetime, date or ISO 8601 text): {exc}"
        ) from None


def read(
    sink: Sink,
    *,
    table: str | None = None,
    kind: str | None = None,
    symbols: Iterable[str] | None = None,
    interval: str | None = None,
    start: Any = None,
    end: Any = None,
) -> pa.Table:
    """:meth:`Sink.read` (documented there)."""
    if kind is None:
        kind = "quotes" if table is not None and table == sink.tables["quotes"] else "bars"
    if kind in ("actions", "symbols", "indicators") and table is None:
        return read_aux(sink, kind, symbols=symbols, start=start, end=end)
    if kind not in SCHEMAS:
        raise SinkError(f"unknown kind {kind!r}: use 'bars', 'quotes', 'actions' or 'symbols'")
    table = sink.check_table(sink.tables[kind] if table is None else table)
    spec = SPECS[kind]
    d = sink.dialect
    where: list[str] = []
    params: list[Any] = []
    if symbols is not None:
        symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        if not symbols:
            return SCHEMAS[kind].empty_table()
        marks = _sql.placeholders(d, len(symbols), len(params))
        where.append(d.quote("symbol") + " IN (" + marks + ")")
        params += symbols
    if interval is not None and kind == "bars":
        where.append(d.quote("interval") + " = " + d.param(len(params)))
        params.append(interval)
    by_date = False
    for name, value, op in (("start", start, " >= "), ("end", end, " < ")):
        if value is None:
            continue
        day = _meta.date_bound(name, value) if kind == "bars" else None
        if day is not None:  # the exchange's day (trading date of daily bars)
            by_date = True
            where.append(d.quote("date") + op + d.param(len(params)))
            params.append(sink._bind_date(day))
        else:  # an instant (naive: UTC)
            where.append(d.quote("ts") + op + d.param(len(params)))
            params.append(sink._bind_ts(time_option(name, value)))
    cols = ", ".join(d.quote(c) for c in SCHEMAS[kind].names)
    stmt = sql(
        "SELECT {cols} FROM {t} {where} ORDER BY {keys}",
        t=d.quote(table),
        cols=cols,
        where="WHERE " + " AND ".join(where) if where else "",
        keys=", ".join(d.quote(k) for k in spec.key),
    )
    with sink._connection() as conn:
        try:
            if table not in sink._known:
                # SQLite would read a missing column's quoted name as a text literal
                sink._check_columns(conn, table, kind, "read")
            if by_date and table in sink._dateless:
                raise SchemaError(
                    f"read: table {table!r} has no 'date' column (a stockbatch 0.1 "
                    "layout), so it cannot be read by trading date: upgrade it in place "
                    "with `stockbatch migrate --db <uri>` (or pass start/end as "
                    "datetimes, UTC instants)",
                    {"date": f"missing from table {table!r}"},
                )
            out = sink._read_arrow(conn, stmt, params, kind)
        except sink._db_errors() as exc:
            sink._forget(table)
            raise SinkError(f"read from {table!r} failed: {sink._err(exc)}", table=table) from None
    if out.num_rows == 0:  # drivers type the columns of an empty result loosely
        return SCHEMAS[kind].empty_table()
    try:
        back = canonical(out, kind)
    except (pa.ArrowException, SchemaError) as exc:
        bad = [
            f.name
            for f in SCHEMAS[kind]
            if f.name in out.column_names and not castable(out.column(f.name), f.type)
        ]
        raise SchemaError(
            f"read: table {table!r} holds values that do not read as the "
            f"{kind} schema"
            + (f" in column {', '.join(map(repr, bad))}" if bad else "")
            + f": {exc}",
            {c: f"values of table {table!r} do not fit" for c in bad},
        ) from None
    sink._known.add(table)
    return back


def read_aux(
    sink: Sink,
    kind: str,
    *,
    symbols: Iterable[str] | None = None,
    start: Any = None,
    end: Any = None,
) -> pa.Table:
    """:meth:`Sink.read_aux` (documented there)."""
    if kind not in ("actions", "symbols", "indicators"):
        raise SinkError(
            f"unknown kind {kind!r}: use 'bars', 'quotes', 'actions', 'symbols' or 'indicators'"
        )
    d = sink.dialect
    where, params = [], []
    if symbols is not None:
        symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        if not symbols:
            return _meta.SCHEMAS[kind].empty_table()
        where.append(d.quote("symbol") + " IN (" + _sql.placeholders(d, len(symbols)) + ")")
        params += symbols
    for name, value, op in (("start", start, ">="), ("end", end, "<")):
        if value is None:
            continue
        if kind == "indicators":
            where.append(f"{d.quote('ts')} {op} {d.param(len(params))}")
            params.append(sink._bind_ts(time_option(name, value)))
            continue
        if kind != "actions":
            raise ValueError(f"{name}= selects actions by date; symbols rows have none")
        day = _meta.date_bound(name, value)
        if day is None:
            day = micros_to_datetime(time_option(name, value)).date()
        where.append(f"{d.quote('date')} {op} {d.param(len(params))}")
        params.append(sink._bind_date(day))
    table = sink.tables[kind]
    order = ", ".join(d.quote(k) for k in SPECS[kind].key)
    with sink._connection() as conn:
        try:
            if not sink._table_exists(conn, table):
                return _meta.SCHEMAS[kind].empty_table()
            return _aux.select_aux(
                sink,
                conn,
                kind,
                ("WHERE " + " AND ".join(where) if where else "") + " ORDER BY " + order,
                params,
            )
        except sink._db_errors() as exc:
            raise SinkError(f"read from {table!r} failed: {sink._err(exc)}", table=table) from None


def canonical(table: pa.Table, kind: str) -> pa.Table:
    schema = SCHEMAS[kind]
    cols = []
    for f in schema:
        col = table.column(f.name)
        if col.type != f.type and col.null_count == len(col):
            # a driver types an all-null column by guess (SQLite ADBC: int64)
            col = pa.nulls(len(col), f.type)
        elif pa.types.is_timestamp(f.type) and pa.types.is_integer(col.type):
            col = col.cast(pa.int64()).cast(UTC_US)
        elif pa.types.is_timestamp(f.type) and pa.types.is_timestamp(col.type):
            if col.type.tz is None:
                col = (
                    col.cast(pa.timestamp(col.type.unit))
                    .cast(pa.timestamp("us"))
                    .cast(pa.timestamp("us", tz="UTC"))
                )
            col = col.cast(UTC_US)
        cols.append(col)
    return conform(pa.Table.from_arrays(cols, names=schema.names), schema)
