"""The sink's auxiliary tables, beside the data: the quarantine (rows refused, one per
content, counted), the ingest log, ``symbols`` (zones, first/last bar), ``actions``
(dividends, splits) and the exchange dates of bars. Functions over a sink, called inside the
transaction of the write they belong to."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from .._arrow import array, datetimes, pylist, table
from .._errors import SinkError
from .._time import known_zone
from ..schema import UTC_US
from . import _meta, _sql
from ._batches import as_utc, key_ranges
from ._ddl import SPECS, Dialect, sql
from ._result import Level

if TYPE_CHECKING:
    from ._tables import TableSink as Sink

__all__ = [
    "Q_OLD",
    "row_hash",
    "merge_old_quarantine",
    "check_meta",
    "ensure_quarantine",
    "quarantine_rows",
    "log_row",
    "in_chunks",
    "dated",
    "select_aux",
    "aux_canonical",
    "store_symbols",
    "store_actions",
    "upsert_rows",
]

log = logging.getLogger("stockbatch.sinks")

#: Columns of a quarantine table of stockbatch 0.1 (before row_hash/seen_count/last_seen).
Q_OLD = ("job_id", "target", "symbol", "ts", "reasons", "error", "row_json", "quarantined_at")


def row_hash(target: Any, row_json: Any, reasons: Any, error: Any) -> str:
    """The identity of a quarantine row: sha256 of (target, row, reasons, error)."""
    key = json.dumps([target or "", row_json or "", reasons or "", error or ""], ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()


def merge_old_quarantine(old: pa.Table) -> pa.Table:
    """Rows of a 0.1 quarantine table, one per (target, row, reasons, error): first
    ``quarantined_at``, ``last_seen`` the latest, ``seen_count`` how many, the job id of
    the latest."""
    at = datetimes(as_utc(old.column("quarantined_at")))
    ts = as_utc(old.column("ts"))
    cols = {
        c: old.column(c).to_pylist()
        for c in ("job_id", "target", "symbol", "reasons", "error", "row_json")
    }
    groups: dict[str, list] = {}
    for i in range(old.num_rows):
        h = row_hash(cols["target"][i], cols["row_json"][i], cols["reasons"][i], cols["error"][i])
        g = groups.get(h)
        when = at[i]
        if g is None:
            groups[h] = [i, 1, when, when, i]  # first row, count, first at, last at, last row
            continue
        g[1] += 1
        if when is not None and (g[2] is None or when < g[2]):
            g[2] = when
        if when is not None and (g[3] is None or when >= g[3]):
            g[3], g[4] = when, i
    firsts = array([g[0] for g in groups.values()], pa.int64())
    lasts = [g[4] for g in groups.values()]
    now = datetime.now(timezone.utc)

    def text(c):
        return array(cols[c], pa.string()).take(firsts)

    return pa.table(
        {
            "job_id": array([cols["job_id"][i] for i in lasts], pa.string()),
            "target": text("target"),
            "symbol": text("symbol"),
            "ts": ts.take(firsts),
            "reasons": text("reasons"),
            "error": text("error"),
            "row_json": text("row_json"),
            "quarantined_at": array([g[2] or now for g in groups.values()], UTC_US),
            "row_hash": array(list(groups), pa.string()),
            "seen_count": array([g[1] for g in groups.values()], pa.int64()),
            "last_seen": array([g[3] or now for g in groups.values()], UTC_US),
        }
    )


def check_meta(meta: Any, where: str = "meta=") -> dict:
    """``meta=`` of :meth:`Sink.ingest` (or the metadata the data carries, ``where`` says
    which) checked: symbol -> dict of text fields, a time zone Arrow knows, and events
    parsed into ``{"dividends": [[ts, amount], ...], "splits": [[ts, num, den], ...]}``;
    ValueError naming what is wrong otherwise."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ValueError(
            f"{where} must be a dict of symbol -> metadata dict, not {type(meta).__name__}"
        )
    out = {}
    for sym, m in meta.items():
        if not isinstance(sym, str) or not isinstance(m, dict):
            raise ValueError(f"{where} must map symbol text to a dict; got {sym!r}: {m!r}"[:300])
        m = dict(m)
        for field in ("timezone", "exchange", "currency", "instrument_type"):
            value = m.get(field)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{where}[{sym!r}][{field!r}] must be text, not {value!r}"[:300])
        zone = m.get("timezone")
        if zone and not known_zone(zone):
            raise ValueError(f"{where}[{sym!r}]: unknown time zone {zone!r}"[:300])
        ev = m.get("events")
        if isinstance(ev, (str, bytes)):
            try:
                ev = json.loads(ev)
            except ValueError:
                raise ValueError(f"{where}[{sym!r}]['events'] is not JSON") from None
        if ev is not None:
            m["events"] = _check_events(ev, f"{where}[{sym!r}]['events']")
        out[sym] = m
    return out


def _check_events(ev: Any, where: str) -> dict:
    """Dividends ``[ts, amount]`` and splits ``[ts, numerator, denominator]``: epoch
    seconds and numbers (or null)."""
    if not isinstance(ev, dict):
        raise ValueError(f"{where} must be a dict of dividends and splits")
    for name, width in (("dividends", 2), ("splits", 3)):
        items = ev.get(name, [])
        if not isinstance(items, list):
            raise ValueError(f"{where}[{name!r}] must be a list")
        for item in items:
            if not _event_ok(item, width):
                raise ValueError(
                    f"{where}[{name!r}]: {item!r} is not [epoch seconds"
                    + (", amount]" if width == 2 else ", numerator, denominator]")
                )
    return ev


def _event_ok(item: Any, width: int) -> bool:
    if not isinstance(item, list) or len(item) != width:
        return False
    ts, *values = item
    if isinstance(ts, bool) or not isinstance(ts, int):
        return False
    if not -(2**63) // 1_000_000 <= ts <= (2**63 - 1) // 1_000_000:  # as microseconds
        return False
    return all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values
    )


def reasons_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value)
    return str(value)


def json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return v


def ensure_quarantine(sink: Sink, conn: Any, table: str, *, in_tx: bool) -> None:
    """Create the quarantine table, or upgrade one of stockbatch 0.1: add ``row_hash``,
    ``seen_count``, ``last_seen``; merge its rows that repeat (same target, row,
    reasons and error) into one each, counted; build the unique index on the hash."""
    d = sink.dialect
    spec = SPECS["quarantine"]
    sink._create(conn, table, "quarantine", if_not_exists=True)
    have = sink._columns(conn, table)
    if "row_hash" in have:
        # a table of this version (created with UNIQUE (row_hash)): rows without a
        # hash exist only if an upgrade was cut short; one indexed probe. No CREATE
        # INDEX here: on PostgreSQL its SHARE lock, taken by two first calls at once,
        # deadlocks their inserts.
        if not sink._query(
            conn,
            sql(
                "SELECT 1 FROM {t} WHERE {h} IS NULL LIMIT 1",
                t=d.quote(table),
                h=d.quote("row_hash"),
            ),
        ):
            return
    for c in ("row_hash", "seen_count", "last_seen"):
        if c not in have:
            sink._add_column(conn, table, "quarantine", c)
    if "row_hash" not in have:
        sink._widen_quarantine(conn, table)
    sink._exec(conn, spec.unique_index(d, table))
    old = sink._query_arrow(
        conn,
        sql(
            "SELECT {cols} FROM {t} WHERE {h} IS NULL",
            t=d.quote(table),
            h=d.quote("row_hash"),
            cols=", ".join(d.quote(c) for c in Q_OLD),
        ),
    )
    if old.num_rows == 0:
        return
    merged = merge_old_quarantine(old)
    if not in_tx:
        sink._begin(conn)
    try:
        sink._exec(
            conn,
            sql("DELETE FROM {t} WHERE {h} IS NULL", t=d.quote(table), h=d.quote("row_hash")),
        )
        sink._merge_quarantine(conn, table, merged)
        if not in_tx:
            sink._commit(conn)
    except BaseException:
        if not in_tx:
            sink._rollback_quietly(conn)
        raise
    log.info(
        "quarantine table %s upgraded: %d rows merged into %d",
        table,
        old.num_rows,
        merged.num_rows,
    )


def quarantine_rows(
    sink: Sink, conn, table: pa.Table, *, job_id, target, reasons, error: Any
) -> int:
    """Merge ``table``'s rows into the quarantine table (inside the caller's
    transaction); ``error`` is one text or one per row. Returns ``table.num_rows``."""
    n = table.num_rows
    if n == 0:
        return 0
    if reasons is None and "reasons" in table.column_names:
        texts = [reasons_text(v) for v in table.column("reasons").to_pylist()]
    elif reasons is None or isinstance(reasons, str):
        texts = [reasons or ""] * n
    else:
        texts = [reasons_text(v) for v in reasons]
        if len(texts) != n:
            raise SinkError(f"{len(texts)} reasons for {n} rejected rows")
    errors = (
        [error or ""] * n if error is None or isinstance(error, str) else [e or "" for e in error]
    )
    body = table.drop_columns([c for c in ("reasons",) if c in table.column_names])
    rows = pylist(body)
    ts = (
        pc.cast(body.column("ts"), UTC_US, safe=False)
        if "ts" in body.column_names and pa.types.is_timestamp(body.column("ts").type)
        else pa.nulls(n, UTC_US)
    )
    symbol = (
        body.column("symbol").cast(pa.string())
        if "symbol" in body.column_names
        else pa.nulls(n, pa.string())
    )
    target = target or ""
    row_json = [
        json.dumps({k: json_value(v) for k, v in r.items()}, ensure_ascii=False) for r in rows
    ]
    # one row per (target, row, reasons, error), counted
    first: dict[str, int] = {}
    seen: dict[str, int] = {}
    for i in range(n):
        h = row_hash(target, row_json[i], texts[i], errors[i])
        if h in first:
            seen[h] += 1
        else:
            first[h] = i
            seen[h] = 1
    take = array(list(first.values()), pa.int64())
    now = datetime.now(timezone.utc)
    m = len(first)
    q = pa.table(
        {
            "job_id": array([job_id] * m, pa.string()),
            "target": array([target] * m, pa.string()),
            "symbol": symbol.take(take),
            "ts": ts.take(take),
            "reasons": array(texts, pa.string()).take(take),
            "error": array(errors, pa.string()).take(take),
            "row_json": array(row_json, pa.string()).take(take),
            "quarantined_at": array([now] * m, UTC_US),
            "row_hash": array(list(first), pa.string()),
            "seen_count": array(list(seen.values()), pa.int64()),
            "last_seen": array([now] * m, UTC_US),
        }
    )
    sink._merge_quarantine(conn, sink.tables["quarantine"], q)
    return n


def log_row(
    sink: Sink,
    conn: Any,
    *,
    job_id,
    source,
    target,
    mode,
    written=0,
    updated=0,
    ignored=0,
    rejected=0,
    refused=0,
    started=None,
    finished=None,
) -> None:
    """Append one ingest log row (inside the caller's transaction)."""
    now = datetime.now(timezone.utc)
    row = pa.table(
        {
            "job_id": array([job_id], pa.string()),
            "source": array([source], pa.string()),
            "target": array([target], pa.string()),
            "mode": array([mode], pa.string()),
            "rows_written": array([written], pa.int64()),
            "rows_updated": array([updated], pa.int64()),
            "rows_ignored": array([ignored], pa.int64()),
            "rows_rejected": array([rejected], pa.int64()),
            "rows_refused": array([refused], pa.int64()),
            "started": array([started or now], UTC_US),
            "finished": array([finished or now], UTC_US),
        }
    )
    sink._append_aux(conn, sink.tables["ingest_log"], row)


def in_chunks(d: Dialect, values: list, size: int = 500) -> Iterator[tuple[list, str]]:
    """``values`` in slices, each with its ``(?, ?, …)`` placeholder list."""
    for i in range(0, len(values), size):
        part = values[i : i + size]
        yield part, "(" + _sql.placeholders(d, len(part)) + ")"


def dated(
    sink: Sink, conn: Any, batch: pa.RecordBatch, seen: dict, *, with_date: bool = True
) -> pa.RecordBatch:
    """``batch`` with its ``date`` column (exchange-local day of ``ts``); records each
    symbol's first and last ``ts`` in ``seen``."""
    sym, ts = batch.column("symbol"), batch.column("ts")
    names, los, his = key_ranges(sym, ts)
    for s, lo, hi in zip(names, los, his, strict=True):
        if s is None:  # the database refuses it (NOT NULL)
            continue
        old = seen.get(s)
        seen[s] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    if not with_date:
        return batch
    missing = [s for s in names if s is not None and s not in sink._zones]
    if missing:
        load_zones(sink, conn, missing)
    return batch.append_column("date", _meta.local_dates(sym, ts, sink._zones))


def load_zones(sink: Sink, conn: Any, symbols: list[str]) -> None:
    d = sink.dialect
    for part, marks in in_chunks(sink.dialect, symbols):
        for sym, zone in sink._query(
            conn,
            sql(
                "SELECT {s}, {z} FROM {t} WHERE {s} IN {marks}",
                marks=marks,
                t=d.quote(sink.tables["symbols"]),
                s=d.quote("symbol"),
                z=d.quote("timezone"),
            ),
            tuple(part),
        ):
            sink._zones[sym] = zone
    for sym in symbols:
        sink._zones.setdefault(sym, None)


def select_aux(sink: Sink, conn: Any, kind: str, where: str, params: list) -> pa.Table:
    d = sink.dialect
    stmt = sql(
        "SELECT {cols} FROM {t} {where}",
        where=where,
        t=d.quote(sink.tables[kind]),
        cols=", ".join(d.quote(c) for c in SPECS[kind].names),
    )
    return aux_canonical(sink._query_arrow(conn, stmt, params or None), kind)


def aux_canonical(t: pa.Table, kind: str) -> pa.Table:
    """Rows of an aux table as read by any driver, in its Arrow schema."""
    schema = _meta.SCHEMAS[kind]
    cols = []
    for f in schema:
        col = t.column(f.name) if t.num_rows else array([], f.type)
        if pa.types.is_timestamp(f.type):
            col = as_utc(col)
        elif pa.types.is_date(f.type) and pa.types.is_integer(col.type):  # YYYYMMDD
            col = pc.strptime(col.cast(pa.string()), "%Y%m%d", "s").cast(pa.date32())
        elif pa.types.is_date(f.type) and not pa.types.is_date(col.type):
            col = (
                col.cast(pa.string()).cast(pa.timestamp("s")).cast(pa.date32())
                if not pa.types.is_null(col.type)
                else col.cast(pa.date32())
            )
        else:
            col = col.cast(f.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def store_symbols(sink: Sink, conn: Any, seen: dict, meta: dict, source: str | None) -> None:
    """Upsert the ``symbols`` rows of this ingest (inside its transaction)."""
    d = sink.dialect
    t = sink.tables["symbols"]
    syms = sorted(set(seen) | set(meta))
    existing: list[dict] = []
    for part, marks in in_chunks(sink.dialect, syms):
        where = sql("WHERE {s} IN {marks}", s=d.quote("symbol"), marks=marks)
        existing += pylist(select_aux(sink, conn, "symbols", where, list(part)))
    # a set-based upsert through a staging table (no DELETE: its gap locks deadlock
    # concurrent writers on MariaDB; no row-by-row statements: 500 symbols took 3 s
    # on PostgreSQL)
    rows = _meta.merge_symbols(existing, seen, meta, source)
    if rows:
        upsert_rows(sink, conn, "symbols", t, table(rows, _meta.SYMBOLS))


def upsert_rows(sink: Sink, conn: Any, kind: str, table: str, data: pa.Table) -> None:
    """Upsert ``data`` (keys unique) into the aux table ``table`` of role ``kind``:
    staged in bulk, merged by one statement."""
    for batch in sink._aux_ready(data).combine_chunks().to_batches():
        stage = sink._stage(conn, kind, batch, Level.ADVANCED)
        sink._exec(conn, sink._merge_sql(table, stage, kind, update=True))


def store_actions(sink: Sink, conn: Any, meta: dict, source: str | None) -> None:
    """Upsert the dividends and splits of ``meta`` into ``actions`` (by symbol, date)."""
    t = sink.tables["actions"]
    events = {sym: m["events"] for sym, m in meta.items() if m.get("events")}
    if not events:
        return
    rows = _meta.actions_table(events, {s: sink._zones.get(s) for s in events}, source)
    if rows.num_rows:
        upsert_rows(sink, conn, "actions", t, rows)
