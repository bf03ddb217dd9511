"""The dialect-independent part of a sink: batching, modes, counts, atomicity, split,
quarantine, ingest log, reads. Dialects (``_sqlite``, ``_postgres``, ``_duckdb``, ``_mysql``)
supply how rows move and which SQL merges them.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import SchemaError, SinkError, StockbatchError
from .._redact import redact, uri_secrets
from ..schema import BARS, QUOTES, conform, to_table
from . import _ddl, _meta
from ._ddl import SPECS, check_name, kind_of, sql
from ._pool import Pool

__all__ = ["Level", "IngestResult", "Sink", "MODES", "DEFAULT_BATCH_ROWS"]

log = logging.getLogger("stockbatch.sinks")

MODES = ("append", "create", "replace", "create_append", "upsert", "insert_new")
DEFAULT_BATCH_ROWS = 65_536
_SCHEMAS = {"bars": BARS, "quotes": QUOTES}
UTC_US = pa.timestamp("us", tz="UTC")


class Level(enum.Enum):
    """How hard a sink works to move rows. Each level is a real, measured strategy.

    BASIC
        Bound ``executemany`` of a prepared INSERT, one transaction (the classic DB-API way;
        no bulk protocol).
    ADVANCED
        Bulk ingest per ~64k-row Arrow batch (ADBC COPY / bound Arrow batches / LOAD DATA);
        upserts through a staging table and one set-based ``INSERT … ON CONFLICT`` that skips
        unchanged rows.
    EXTREME
        Everything of ADVANCED plus what the database gains from: PostgreSQL upserts by
        read-compare-then-delete-range + COPY upserts and, for whole-table inputs at least
        as large as the target, primary-key work deferred to one rebuild (see
        :mod:`stockbatch.sinks._postgres`); SQLite a larger page cache only (WAL and
        ``synchronous=OFF`` measured slower or unsafe, see :mod:`stockbatch.sinks._sqlite`).
    """

    BASIC = "basic"
    ADVANCED = "advanced"
    EXTREME = "extreme"

    @classmethod
    def of(cls, value: Any) -> Level:
        if isinstance(value, Level):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise SinkError(f"unknown level {value!r}: use basic, advanced or extreme") from None


@dataclass
class IngestResult:
    """What one :meth:`Sink.ingest` call did.

    ``written`` new rows inserted; ``updated`` existing rows whose values changed;
    ``ignored`` input rows that changed nothing (duplicates superseded inside the input,
    rows identical to the stored ones, conflicts under ``insert_new``); ``rejected`` rows
    the database refused (``on_error="split"``), sent to the quarantine table with the
    database's error. ``written + updated + ignored + rejected`` equals the number of input
    rows.

    ``refused_by_symbol`` splits ``rejected`` per symbol (a row without a symbol counts
    under ``""``); ``refused_errors`` holds the database's first error per symbol
    (passwords redacted). ``quarantined`` counts the validation-rejected rows handed over
    with ``quarantine=`` and stored in the same transaction (a row quarantined before with
    the same reasons is counted here but kept once in the table, its ``seen_count``
    raised).
    """

    table: str
    mode: str
    written: int = 0
    updated: int = 0
    ignored: int = 0
    rejected: int = 0
    batches: int = 0
    seconds: float = 0.0
    job_id: str | None = None
    errors: list = field(default_factory=list)
    quarantined: int = 0
    refused_by_symbol: dict = field(default_factory=dict)
    refused_errors: dict = field(default_factory=dict)
    #: indicator values (``ingest(indicators=…)``) inserted / changed / unchanged
    indicators_written: int = 0
    indicators_updated: int = 0
    indicators_ignored: int = 0

    @property
    def rows(self) -> int:
        """Input rows accounted for."""
        return self.written + self.updated + self.ignored + self.rejected

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def add(self, written=0, updated=0, ignored=0, rejected=0) -> None:
        self.written += written
        self.updated += updated
        self.ignored += ignored
        self.rejected += rejected


# the statement ADBC appends to an error: "... query: SELECT ..." (SQL, not the reason)
_STATEMENT_TAIL = re.compile(
    r"\s+query(?: was)?:\s+(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|WITH|BEGIN|COMMIT|"
    r"ROLLBACK|SAVEPOINT|RELEASE|PRAGMA|MERGE|TRUNCATE)\b.*$",
    re.IGNORECASE | re.DOTALL,
)


def to_utc_micros(value: Any) -> int:
    """A datetime / date / ISO string / Arrow or pandas timestamp as UTC microseconds.
    Naive values are taken as UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, pa.Scalar):
        value = value.as_py()
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise SinkError(f"cannot read {value!r} as a time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _time_option(name: str, value: Any) -> int:
    try:
        return to_utc_micros(value)
    except (SinkError, ValueError, TypeError, OverflowError) as exc:
        raise ValueError(
            f"{name}={value!r} is not a time (a datetime, date or ISO 8601 text): {exc}"
        ) from None


def micros_to_datetime(us: int) -> datetime:
    return pa.scalar(us, pa.int64()).cast(UTC_US).as_py()


def _rechunk(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
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
                yield _concat(pending)
                pending, have = [], 0
    if pending:
        yield _concat(pending)


def _concat(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(parts) == 1:
        return parts[0]
    return pa.Table.from_batches(parts).combine_chunks().to_batches()[0]


def _raw_batches(data: Any) -> Iterator[pa.RecordBatch]:
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


def _key_codes(batch: pa.RecordBatch, key: tuple) -> list[np.ndarray]:
    """Each key column as integers (strings dictionary-encoded in first-seen order)."""
    out = []
    for k in key:
        col = batch.column(k)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pc.dictionary_encode(col).indices
        elif pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        out.append(np.asarray(col.fill_null(-1) if col.null_count else col))
    return out


def dedup(batch: pa.RecordBatch, key: tuple, *, keep: str) -> tuple[pa.RecordBatch, int]:
    """Drop rows whose key repeats inside ``batch``, keeping the ``"last"`` or ``"first"``
    occurrence; returns the batch (input order otherwise kept) and how many rows went.

    Sorted input (the usual: per symbol, by time) is recognised in one O(n) pass; otherwise
    a stable lexicographic sort of the integer-coded key finds the runs of equal keys."""
    n = batch.num_rows
    if n < 2:
        return batch, 0
    codes = _key_codes(batch, key)
    # strictly increasing keys (lexicographically) cannot repeat
    less = np.zeros(n - 1, bool)
    equal = np.ones(n - 1, bool)
    for c in codes:
        less |= equal & (c[:-1] < c[1:])
        equal &= c[:-1] == c[1:]
    if less.all():
        return batch, 0
    order = np.lexsort(codes[::-1])  # stable: equal keys stay in input order
    same_next = np.ones(n - 1, bool)
    for c in codes:
        cs = c[order]
        same_next &= cs[:-1] == cs[1:]
    if not same_next.any():
        return batch, 0
    keep_mask = np.ones(n, bool)
    if keep == "last":
        keep_mask[:-1] = ~same_next  # the last of each run of equal keys
    else:
        keep_mask[1:] = ~same_next  # the first of each run
    rows = np.sort(order[keep_mask])
    return batch.take(pa.array(rows)), n - len(rows)


def _castable(col: Any, to: pa.DataType) -> bool:
    if pa.types.is_timestamp(to) and (
        pa.types.is_integer(col.type) or pa.types.is_timestamp(col.type)
    ):
        return True
    try:
        col.cast(to)
        return True
    except pa.ArrowException:
        return False


def _row_hash(target: Any, row_json: Any, reasons: Any, error: Any) -> str:
    """The identity of a quarantine row: sha256 of (target, row, reasons, error)."""
    key = json.dumps([target or "", row_json or "", reasons or "", error or ""], ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()


#: Columns of a quarantine table of stockbatch 0.1 (before row_hash/seen_count/last_seen).
_Q_OLD = ("job_id", "target", "symbol", "ts", "reasons", "error", "row_json", "quarantined_at")


def _as_utc(col: Any) -> pa.ChunkedArray | pa.Array:
    """A time column as read back by any driver (int64 microseconds, naive UTC, zoned,
    all null) as ``timestamp[us, tz=UTC]``."""
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), UTC_US)
    if pa.types.is_integer(col.type):
        return col.cast(pa.int64()).cast(UTC_US)
    if pa.types.is_timestamp(col.type) and col.type.tz is None:
        return pc.cast(col, pa.timestamp("us"), safe=False).cast(UTC_US)
    return pc.cast(col, UTC_US, safe=False)


def _merge_old_quarantine(old: pa.Table) -> pa.Table:
    """Rows of a 0.1 quarantine table, one per (target, row, reasons, error): first
    ``quarantined_at``, ``last_seen`` the latest, ``seen_count`` how many, the job id of
    the latest."""
    at = _as_utc(old.column("quarantined_at")).to_pylist()
    ts = _as_utc(old.column("ts"))
    cols = {
        c: old.column(c).to_pylist()
        for c in ("job_id", "target", "symbol", "reasons", "error", "row_json")
    }
    groups: dict[str, list] = {}
    for i in range(old.num_rows):
        h = _row_hash(cols["target"][i], cols["row_json"][i], cols["reasons"][i], cols["error"][i])
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
    firsts = pa.array([g[0] for g in groups.values()], pa.int64())
    lasts = [g[4] for g in groups.values()]
    now = datetime.now(timezone.utc)

    def text(c):
        return pa.array(cols[c], pa.string()).take(firsts)

    return pa.table(
        {
            "job_id": pa.array([cols["job_id"][i] for i in lasts], pa.string()),
            "target": text("target"),
            "symbol": text("symbol"),
            "ts": ts.take(firsts),
            "reasons": text("reasons"),
            "error": text("error"),
            "row_json": text("row_json"),
            "quarantined_at": pa.array([g[2] or now for g in groups.values()], UTC_US),
            "row_hash": pa.array(list(groups), pa.string()),
            "seen_count": pa.array([g[1] for g in groups.values()], pa.int64()),
            "last_seen": pa.array([g[3] or now for g in groups.values()], UTC_US),
        }
    )


def _ranges(symbol: Any, ts: Any) -> tuple[list, list, list]:
    """(symbols, first ts, last ts) of a batch: one pass when it is grouped by symbol
    (the usual), a hash aggregation otherwise."""
    enc = pc.dictionary_encode(symbol)
    codes = np.asarray(enc.indices.fill_null(-1))
    us = np.asarray(ts.cast(pa.int64()).fill_null(0))
    names = enc.dictionary.to_pylist()
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    if len(starts) == len(names) and (enc.indices.null_count == 0 or -1 not in codes):
        order = np.argsort(codes[starts])
        los = np.minimum.reduceat(us, starts)[order]
        his = np.maximum.reduceat(us, starts)[order]
        return (
            names,
            pa.array(los).cast(UTC_US).to_pylist(),
            pa.array(his).cast(UTC_US).to_pylist(),
        )
    by = (
        pa.table({"symbol": symbol, "ts": ts})
        .group_by("symbol")
        .aggregate([("ts", "min"), ("ts", "max")])
    )
    return (
        by.column("symbol").to_pylist(),
        by.column("ts_min").to_pylist(),
        by.column("ts_max").to_pylist(),
    )


def _check_meta(meta: Any) -> dict:
    """``meta=`` of :meth:`Sink.ingest` checked: symbol -> dict, events parsed."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ValueError(
            f"meta= must be a dict of symbol -> metadata dict, not {type(meta).__name__}"
        )
    out = {}
    for sym, m in meta.items():
        if not isinstance(sym, str) or not isinstance(m, dict):
            raise ValueError(f"meta= must map symbol text to a dict; got {sym!r}: {m!r}")
        m = dict(m)
        ev = m.get("events")
        if isinstance(ev, (str, bytes)):
            try:
                m["events"] = json.loads(ev)
            except ValueError:
                raise ValueError(f"meta[{sym!r}]['events'] is not JSON") from None
        out[sym] = m
    return out


def _reasons_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value)
    return str(value)


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return v


class Sink:
    """A database that stores bars and quotes. Make one with :func:`stockbatch.sinks.connect`.

    Every :meth:`ingest` call runs in one transaction on one pooled connection: all of it is
    stored, or nothing (``SinkError`` with the reason). Use as a context manager or call
    :meth:`close`.
    """

    dialect: _ddl.Dialect
    #: Bytes per batch this database ingests best at (measured; see recommend_batch_size).
    target_batch_bytes = 4 << 20
    default_level = Level.ADVANCED
    #: CREATE/DROP TABLE take part in transactions (False for MariaDB, where DDL commits).
    transactional_ddl = True
    #: Rows per batch while classifying a whole input whose writes are deferred.
    deferred_batch_rows = 262_144
    #: Run this sink's ingest calls one at a time (databases with optimistic concurrency).
    serialize_writes = False

    def __init__(
        self,
        uri: str,
        *,
        pool_size: int = 4,
        pool_timeout: float = 60.0,
        level: Any = None,
        batch_rows: int | None = None,
        tables: dict | None = None,
        secrets: Iterable[str] = (),
    ):
        self._uri = uri
        # the URI's password in every spelling, and whatever else the caller says is secret
        self._secrets = tuple(s for s in (*secrets, *uri_secrets(uri)) if s)
        self.level = Level.of(level) if level is not None else self.default_level
        self._batch_rows = batch_rows
        self._row_bytes: float | None = None
        names = {
            "bars": "bars",
            "quotes": "quotes",
            "quarantine": "quarantine",
            "ingest_log": "ingest_log",
            "symbols": "symbols",
            "actions": "actions",
            "indicators": "indicators",
        }
        for k, v in (tables or {}).items():
            if k not in names:
                raise SinkError(f"unknown table role {k!r}: use {sorted(names)}")
            names[k] = self.check_table(v)
        self.tables = names
        self._schemas: dict[str, pa.Schema] = {}
        # tables known to exist in our shape (created, migrated or checked by this sink):
        # no catalogue query for them; forgotten on drop/replace and on any failure
        self._known: set[str] = set()
        # symbol -> exchange time zone (None: never reported; its bars are dated in UTC)
        self._zones: dict[str, str | None] = {}
        # bars tables without the date column (0.1 layout, see migrate())
        self._dateless: set[str] = set()
        # DuckDB aborts concurrent conflicting writers instead of queueing them: it gets a
        # real lock; the others queue in the database itself.
        self._write_lock = threading.Lock() if self.serialize_writes else nullcontext()
        self._pool = Pool(
            self._connect,
            check=self._ping,
            max_size=pool_size,
            timeout=pool_timeout,
            name=self.dialect.name,
        )

    # -- names ---------------------------------------------------------------------------
    def check_table(self, name: str) -> str:
        """``name`` if it is a valid table name for this database, else :class:`SinkError`.

        Names are letters, digits and underscores, optionally ``schema.table``. A schema
        whose tables vanish when the connection or session ends (SQLite ``temp``,
        PostgreSQL ``pg_temp`` / ``pg_temp_N``, DuckDB ``temp``) is refused: rows stored
        there would be reported stored and be gone after the job. System schemas are
        refused too; see each dialect's :meth:`_schema_refusal`.
        """
        check_name(name)
        schema, _, _ = name.rpartition(".")
        if schema:
            why = self._schema_refusal(schema.lower())
            if why:
                raise SinkError(f"table {name!r} refused: {why}", table=name)
        return name

    def _schema_refusal(self, schema: str) -> str | None:
        """Why tables in ``schema`` (lower case) are refused, or None if they are fine."""
        return None

    # -- plumbing each dialect provides -------------------------------------------------
    def _connect(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _ping(self, conn: Any) -> None:
        cur = conn.cursor()
        try:
            cur.execute("SELECT 1")
            cur.fetchall()
        finally:
            cur.close()

    def _db_errors(self) -> tuple:  # pragma: no cover - abstract
        raise NotImplementedError

    def _exec(self, conn: Any, statement: str, params: Any = None) -> int:
        """Run one statement; return the row count the driver reports (-1 if none)."""
        cur = conn.cursor()
        try:
            if params is None:
                cur.execute(statement)
            else:
                cur.execute(statement, params)
            return cur.rowcount
        finally:
            cur.close()

    def _query(self, conn: Any, statement: str, params: Any = None) -> list:
        cur = conn.cursor()
        try:
            if params is None:
                cur.execute(statement)
            else:
                cur.execute(statement, params)
            return cur.fetchall()
        finally:
            cur.close()

    def _query_arrow(self, conn: Any, statement: str, params: Any = None) -> pa.Table:
        cur = conn.cursor()
        try:
            if params is None:
                cur.execute(statement)
            else:
                cur.execute(statement, params)
            return cur.fetch_arrow_table()
        finally:
            cur.close()

    def _begin(self, conn: Any) -> None:
        self._exec(conn, "BEGIN")

    def _commit(self, conn: Any) -> None:
        self._exec(conn, "COMMIT")

    def _rollback(self, conn: Any) -> None:
        self._exec(conn, "ROLLBACK")

    def _table_exists(self, conn: Any, table: str) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _move(
        self, conn: Any, table: str, batch: pa.RecordBatch, *, level: Level, temporary: bool = False
    ) -> None:
        """Append ``batch`` (already cast to the table's types) into ``table``."""
        raise NotImplementedError  # pragma: no cover

    def _prepare(self, batch: pa.RecordBatch, kind: str) -> pa.RecordBatch:
        """Cast a canonical batch to the types this database's tables take."""
        return batch

    def _check_types(self, conn: Any, table: str, batch: pa.RecordBatch) -> None:
        """Raise :class:`SchemaError` naming the column if ``batch`` does not fit the
        column types of an existing ``table`` (staged upserts would otherwise let the
        database round or truncate silently)."""

    # -- public API ---------------------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {redact(self._uri, self._secrets)} level={self.level.value}>"
        )

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()

    def check(self) -> None:
        """Open (or take from the pool) one connection and give it back: raises
        :class:`SinkError` now, with the password redacted, if the database is unreachable."""
        with self._connection():
            pass

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A pooled connection; failing to open one raises SinkError (password redacted)."""
        try:
            conn = self._pool.acquire()
        except SinkError:
            raise
        except Exception as exc:  # noqa: BLE001 - any driver error while connecting
            raise SinkError(
                f"cannot connect to {redact(self._uri, self._secrets)}: {self._err(exc)}"
            ) from None
        broken = False
        try:
            yield conn
        except BaseException:
            try:
                self._ping(conn)
            except Exception:  # noqa: BLE001 - the connection died with the failure
                broken = True
            raise
        finally:
            self._pool.release(conn, broken=broken)

    @property
    def pool(self) -> Pool:
        return self._pool

    def recommend_batch_size(self, row_bytes: float | None = None) -> int:
        """Rows per batch for this database: ``target_batch_bytes`` (measured per database:
        ADBC encodes a whole batch before sending, ~4 MiB batches were fastest for
        PostgreSQL) divided by the row width — the one given, else the average measured on
        the data ingested so far, else 68 bytes (an OHLCV bar) — within 4k…1M rows."""
        width = row_bytes or self._row_bytes or 68.0
        rows = int(self.target_batch_bytes // max(width, 1.0))
        return max(4096, min(1 << 20, rows // 1024 * 1024 or 4096))

    def _err(self, exc: BaseException) -> str:
        """The database's message, one line, without the statement the ADBC drivers append
        (``… query: SELECT …``), passwords redacted, at most 500 characters."""
        msg = str(exc).strip().splitlines()
        text = " ".join(line.strip() for line in msg[:3]) if msg else type(exc).__name__
        text = _STATEMENT_TAIL.sub("", text)
        return redact(text, self._secrets)[:500]

    def ensure_tables(self, *kinds: str, conn: Any = None) -> None:
        """Create the tables of ``kinds`` (default: all four) if missing, and bring
        ``quarantine`` / ``ingest_log`` tables of earlier versions up to date (columns
        added, duplicate quarantine rows merged, unique index built)."""
        kinds = kinds or ("bars", "quotes", "quarantine", "ingest_log")
        for k in kinds:
            if k not in self.tables:
                raise SinkError(f"unknown table role {k!r}: use {sorted(self.tables)}")
        if conn is not None:
            for k in kinds:
                self._ensure(conn, k, in_tx=False)
            return
        with self._connection() as c, self._translating("ensure_tables", None):
            for k in kinds:
                self._ensure(c, k, in_tx=False)
                self._known.add(self.tables[k])

    def _ensure(self, conn: Any, kind: str, *, in_tx: bool) -> None:
        """Make the table of role ``kind`` exist in the current shape. The caller marks it
        known (``self._known``) once what it did is committed."""
        table = self.tables[kind]
        if table in self._known:
            return
        if kind == "quarantine":
            self._ensure_quarantine(conn, table, in_tx=in_tx)
        elif kind == "ingest_log":
            self._create(conn, table, kind, if_not_exists=True)
            if "rows_refused" not in self._columns(conn, table):
                self._add_column(conn, table, kind, "rows_refused")
        else:
            self._create(conn, table, kind, if_not_exists=True)

    def _add_column(self, conn: Any, table: str, kind: str, column: str) -> None:
        d = self.dialect
        # IF NOT EXISTS: two sinks may upgrade the same table at once (SQLite writers are
        # serialised by BEGIN IMMEDIATE and lack the clause)
        guard = "" if d.name == "sqlite" else "IF NOT EXISTS "
        self._exec(
            conn,
            sql(
                "ALTER TABLE {t} ADD COLUMN " + guard + "{col}",
                t=d.quote(table),
                col=SPECS[kind].column_sql(d, column),
            ),
        )

    def _ensure_quarantine(self, conn: Any, table: str, *, in_tx: bool) -> None:
        """Create the quarantine table, or upgrade one of stockbatch 0.1: add ``row_hash``,
        ``seen_count``, ``last_seen``; merge its rows that repeat (same target, row,
        reasons and error) into one each, counted; build the unique index on the hash."""
        d = self.dialect
        spec = SPECS["quarantine"]
        self._create(conn, table, "quarantine", if_not_exists=True)
        have = self._columns(conn, table)
        if "row_hash" in have:
            # a table of this version (created with UNIQUE (row_hash)): rows without a
            # hash exist only if an upgrade was cut short; one indexed probe. No CREATE
            # INDEX here: on PostgreSQL its SHARE lock, taken by two first calls at once,
            # deadlocks their inserts.
            if not self._query(
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
                self._add_column(conn, table, "quarantine", c)
        if "row_hash" not in have:
            self._widen_quarantine(conn, table)
        self._exec(conn, spec.unique_index(d, table))
        old = self._query_arrow(
            conn,
            sql(
                "SELECT {cols} FROM {t} WHERE {h} IS NULL",
                t=d.quote(table),
                h=d.quote("row_hash"),
                cols=", ".join(d.quote(c) for c in _Q_OLD),
            ),
        )
        if old.num_rows == 0:
            return
        merged = _merge_old_quarantine(old)
        if not in_tx:
            self._begin(conn)
        try:
            self._exec(
                conn,
                sql("DELETE FROM {t} WHERE {h} IS NULL", t=d.quote(table), h=d.quote("row_hash")),
            )
            self._merge_quarantine(conn, table, merged)
            if not in_tx:
                self._commit(conn)
        except BaseException:
            if not in_tx:
                self._rollback_quietly(conn)
            raise
        log.info(
            "quarantine table %s upgraded: %d rows merged into %d",
            table,
            old.num_rows,
            merged.num_rows,
        )

    def _widen_quarantine(self, conn: Any, table: str) -> None:
        """Give the text columns of an upgraded 0.1 quarantine table room for long rows and
        errors (MariaDB: they were VARCHAR(255))."""

    def _columns(self, conn: Any, table: str) -> set[str]:  # pragma: no cover - abstract
        """Column names of ``table`` (empty if it does not exist)."""
        raise NotImplementedError

    def _create(self, conn: Any, table: str, kind: str, *, if_not_exists: bool) -> None:
        if if_not_exists and self._table_exists(conn, table):
            return
        if self._lock_table(conn, table) and if_not_exists and self._table_exists(conn, table):
            return  # another writer created it while we waited
        self._exec(conn, SPECS[kind].create(self.dialect, table, if_not_exists=if_not_exists))
        if kind == "bars":
            index = self._time_index(table)
            if index:
                self._exec(conn, index)
        if kind == "bars":  # a table of this layout: say so in the database
            self._create(conn, "stockbatch_meta", "stockbatch_meta", if_not_exists=True)
            self._exec(
                conn,
                self._upsert_row_sql("stockbatch_meta", ["key", "value"], ("key",)),
                ("schema_version", str(self.SCHEMA_VERSION)),
            )

    def create_time_index(self, table: str | None = None) -> None:
        """Build a B-tree index on the bars' ``ts`` (if missing): "every symbol between
        t0 and t1" becomes an index range scan (the primary key starts with the symbol).

        Not built by default: rows arrive symbol by symbol, so the index takes them in
        random order — measured in bench/test_layout.py (1e6 bars, 100 symbols) it makes
        appends 2.1x slower in SQLite and 1.7x in PostgreSQL. Build it after a bulk load
        (once, sorted: fast). PostgreSQL bars tables get a BRIN index on ``ts`` when
        created (a few pages, +15 % to appends; effective when bars arrive in time order,
        the daily update); DuckDB needs none (its zone maps prune by ts)."""
        table = self.check_table(table or self.tables["bars"])
        d = self.dialect
        _, _, bare = table.rpartition(".")
        stmt = sql(
            "CREATE INDEX IF NOT EXISTS {i} ON {t} ({ts})",
            i=d.quote(bare + "_ts"),
            t=d.quote(table),
            ts=d.quote("ts"),
        )
        with self._connection() as conn, self._translating("create_time_index", table):
            self._exec(conn, stmt)

    def _time_index(self, table: str) -> str | None:
        """The index on ``ts`` a new bars table gets (None: none; see
        :meth:`create_time_index`)."""
        return None

    def drop_table(self, table: str) -> None:
        """Drop ``table`` if it exists (tests and ``replace`` use it)."""
        check_name(table)
        self._forget(table)
        with self._connection() as conn, self._translating("drop_table", table):
            self._exec(conn, sql("DROP TABLE IF EXISTS {t}", t=self.dialect.quote(table)))

    def _forget(self, *tables: str) -> None:
        for t in tables:
            self._known.discard(t)
            self._dateless.discard(t)
            self._schemas.pop(t, None)

    @contextmanager
    def _translating(self, what: str, table: str | None, *, mode: str | None = None):
        """Turn driver and Arrow exceptions into :class:`SinkError` / :class:`SchemaError`
        naming ``table`` (typed errors pass through)."""
        try:
            yield
        except StockbatchError:
            raise
        except pa.ArrowException as exc:
            raise SchemaError(
                f"{what}: the values do not fit table {table!r}: "
                f"{redact(str(exc), self._secrets)[:300]}"
            ) from None
        except (*self._db_errors(), OSError) as exc:
            where = f" of {table!r}" if table else ""
            raise SinkError(
                f"{what}{where} failed: {self._err(exc)}", table=table, mode=mode
            ) from None

    def ingest(
        self,
        data: Any,
        *,
        table: str | None = None,
        kind: str | None = None,
        mode: str = "append",
        on_error: str = "raise",
        job_id: str | None = None,
        source: str | None = None,
        level: Any = None,
        batch_rows: int | None = None,
        quarantine: pa.Table | None = None,
        meta: dict | None = None,
        indicators: pa.Table | None = None,
    ) -> IngestResult:
        """Store ``data`` in ``table``, all or nothing.

        Parameters
        ----------
        data : pyarrow Table, RecordBatch, RecordBatchReader, or iterable of batches/tables
            In the canonical ``BARS`` or ``QUOTES`` schema (safe widenings are applied by
            :func:`stockbatch.conform`). Streamed in batches of ``batch_rows`` rows (default
            :meth:`recommend_batch_size`); the whole input is never materialised.
        table : str, optional
            Target table; default the sink's ``bars`` / ``quotes`` table. ``schema.table``
            is accepted where the database has schemas, except temporary and system
            schemas (SQLite takes no schema at all: see :meth:`check_table`).
        kind : {"bars", "quotes"}, optional
            Schema of the data; guessed from its columns when omitted.
        mode : str
            ``append`` (table must exist; a key conflict fails), ``create`` (create the table,
            fail if it exists), ``replace`` (drop and create), ``create_append`` (create if
            missing, then append), ``upsert`` (insert new keys, update changed rows, skip
            identical ones; last duplicate in the input wins), ``insert_new`` (insert new
            keys, ignore conflicts; first duplicate wins). ``upsert`` / ``insert_new`` create
            the table if missing.
        on_error : {"raise", "split"}
            ``raise``: any failure rolls everything back and raises :class:`SinkError`.
            ``split``: a failing batch is bisected until the bad rows are isolated; they go
            to the quarantine table with the database's error, the rest is stored
            (``rejected``, ``refused_by_symbol``, ``refused_errors`` of the result).
        job_id, source : str, optional
            With ``job_id`` a row goes to the ingest log in the same transaction: rows
            written, updated, ignored, ``rows_rejected`` (the ``quarantine=`` rows) and
            ``rows_refused`` (rows the database refused).
        level : Level or str, optional
            Override the sink's optimisation level for this call.
        quarantine : pyarrow.Table, optional
            Rows validation rejected (bars/quotes columns plus ``reasons``, as
            ``stockbatch.validate(...).rejected`` gives), stored in the quarantine table in
            the same transaction as ``data``, in bulk; counted in ``quarantined``.
        meta : dict, optional
            Provider metadata per symbol: ``{"7203.T": {"timezone": "Asia/Tokyo",
            "exchange": "JPX", "currency": "JPY", "instrument_type": "EQUITY",
            "events": {...}}}`` (what :func:`stockbatch.sinks._meta.meta_from_batch` reads
            from a decoded batch). Bars get their ``date`` in the symbol's zone (else the
            zone stored in the ``symbols`` table, else UTC); the ``symbols`` table is
            updated and ``events`` (dividends, splits) are upserted into ``actions``, all
            in the same transaction.
        indicators : pyarrow.Table, optional
            Indicator values beside the bar key (``symbol``, ``interval``, ``ts`` and one
            column per indicator, as :func:`stockbatch.indicators.compute` adds them),
            upserted into the ``indicators`` table (one row per bar and indicator name) in
            the same transaction; counted in ``indicators_written`` / ``_updated`` /
            ``_ignored``.

        Returns
        -------
        IngestResult
        """
        if mode not in MODES:
            raise SinkError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
        if on_error not in ("raise", "split"):
            raise SinkError(f"unknown on_error {on_error!r}: use 'raise' or 'split'")
        if batch_rows is not None and (not isinstance(batch_rows, int) or batch_rows < 1):
            raise ValueError(f"batch_rows must be a positive integer, not {batch_rows!r}")
        if quarantine is not None and not isinstance(quarantine, pa.Table):
            try:
                quarantine = to_table(quarantine)
            except StockbatchError:
                raise
            except Exception as exc:  # noqa: BLE001 - any unreadable input
                raise SchemaError(
                    f"quarantine= must be a pyarrow Table of rejected rows, "
                    f"not {type(quarantine).__name__}: {exc}"
                ) from None
        lvl = Level.of(level) if level is not None else self.level
        t0 = time.perf_counter()
        started = datetime.now(timezone.utc)
        rows = batch_rows or self._batch_rows
        it = _raw_batches(data)
        first = next(it, None)
        if first is None:
            first_batches: list = []
            kind = kind or ("quotes" if table == self.tables["quotes"] else "bars")
        else:
            first_batches = [first]
            kind = kind or kind_of(first.schema.names)
            if kind not in _SCHEMAS:
                raise SinkError(f"unknown kind {kind!r}: use 'bars' or 'quotes'")
            if rows is None:
                width = first.nbytes / max(first.num_rows, 1)
                rows = self.recommend_batch_size(width)
        table = self.check_table(self.tables[kind] if table is None else table)
        schema = _SCHEMAS[kind]

        known = data.num_rows if isinstance(data, (pa.Table, pa.RecordBatch)) else None
        pending: Iterator[pa.RecordBatch] = itertools.chain(first_batches, it)
        unique = False  # True once the whole input was de-duplicated up front

        def batches(src: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
            for b in _rechunk(src, size):
                t = conform(b, schema)
                yield from t.to_batches() if t.num_rows else ()

        result = IngestResult(table=table, mode=mode, job_id=job_id)
        quarantining = quarantine is not None and quarantine.num_rows > 0
        meta = _check_meta(meta)
        for sym, m in meta.items():
            if m.get("timezone"):
                self._zones[sym] = m["timezone"]
        has_events = any(m.get("events") for m in meta.values())
        seen: dict[str, tuple[Any, Any]] = {}
        aux = (
            (["quarantine"] if on_error == "split" or quarantining else [])
            + (["ingest_log"] if job_id is not None else [])
            + (["symbols"] if kind == "bars" else [])
            + (["actions"] if has_events else [])
        )
        values = None
        if indicators is not None:
            values = _meta.indicators_long(to_table(indicators))
            if values.num_rows:
                aux.append("indicators")
        with self._write_lock, self._connection() as conn:
            try:
                if not self.transactional_ddl:  # MariaDB: DDL commits, so do it first
                    self._prepare_table(conn, table, kind, mode)
                    for a in aux:
                        self._ensure(conn, a, in_tx=False)
                self._begin_write(conn, lvl)
                if self.transactional_ddl:
                    self._prepare_table(conn, table, kind, mode)
                    for a in aux:
                        self._ensure(conn, a, in_tx=True)
                # a bars table of the 0.1 layout is written without the date column
                wkind = "bars_0_1" if kind == "bars" and table in self._dateless else kind
                if (
                    on_error == "raise"
                    and known
                    and self._defer(conn, table, wkind, mode, lvl, known)
                ):
                    # a whole in-memory table written with deferred index work: duplicates
                    # are resolved across the whole input first (rows written later are
                    # not visible to the reads of later batches)
                    whole = conform(data, schema)
                    if mode in ("upsert", "insert_new"):
                        whole, dups = dedup(
                            whole.combine_chunks().to_batches()[0] if whole.num_rows else whole,
                            SPECS[wkind].key,
                            keep="last" if mode == "upsert" else "first",
                        )
                        result.add(ignored=dups)
                    pending = _raw_batches(whole)
                    unique = mode in ("upsert", "insert_new")
                    # the rows are written at the end anyway: classify in fewer, larger
                    # batches (fewer round trips and joins)
                    rows = max(rows or DEFAULT_BATCH_ROWS, self.deferred_batch_rows)
                for batch in batches(pending, rows or DEFAULT_BATCH_ROWS):
                    if kind == "bars":
                        batch = self._dated(
                            conn, batch, seen, with_date=table not in self._dateless
                        )
                    self._row_bytes = batch.nbytes / max(batch.num_rows, 1)
                    result.batches += 1
                    if on_error == "split":
                        self._write_split(conn, table, wkind, batch, mode, lvl, result, job_id)
                    else:
                        self._write(conn, table, wkind, batch, mode, lvl, result, unique=unique)
                self._finish(conn, table, wkind, lvl)
                if kind == "bars" and (seen or meta):
                    self._store_symbols(conn, seen, meta, source)
                if has_events:
                    self._store_actions(conn, meta, source)
                if values is not None and values.num_rows:
                    self._store_indicators(conn, values, lvl, result)
                if quarantining:
                    result.quarantined = self._quarantine_rows(
                        conn, quarantine, job_id=job_id, target=table, reasons=None, error=""
                    )
                result.seconds = time.perf_counter() - t0
                if job_id is not None:
                    self._log(
                        conn,
                        job_id=job_id,
                        source=source,
                        target=table,
                        mode=mode,
                        written=result.written,
                        updated=result.updated,
                        ignored=result.ignored,
                        rejected=result.quarantined,
                        refused=result.rejected,
                        started=started,
                    )
                self._commit(conn)
            except BaseException as exc:
                self._abandon()
                self._rollback_quietly(conn)
                self._forget(table, *(self.tables[a] for a in aux))
                if isinstance(exc, SinkError | SchemaError):
                    raise
                if isinstance(exc, pa.ArrowException):
                    raise SchemaError(
                        f"ingest into {table!r} ({mode}) failed and was rolled "
                        f"back: the data does not fit the table: "
                        f"{redact(str(exc), self._secrets)[:300]}"
                    ) from None
                if isinstance(exc, StockbatchError) or not isinstance(
                    exc, (*self._db_errors(), OSError)
                ):
                    raise
                raise SinkError(
                    f"ingest into {table!r} ({mode}) failed and was rolled back: {self._err(exc)}",
                    table=table,
                    mode=mode,
                ) from None
        self._known.add(table)
        self._known.update(self.tables[a] for a in aux)
        result.seconds = time.perf_counter() - t0
        return result

    def _defer(self, conn: Any, table: str, kind: str, mode: str, level: Level, rows: int) -> bool:
        """Decide (and prepare) deferred index work for a whole in-memory input of
        ``rows`` rows; True when the dialect will write the rows in :meth:`_finish`."""
        return False

    def _finish(self, conn: Any, table: str, kind: str, level: Level) -> None:
        """Complete deferred work of this call, inside its transaction."""

    def _abandon(self) -> None:
        """Forget deferred work of a failed call."""

    def _lock_table(self, conn: Any, table: str) -> bool:
        """Serialise creators of ``table`` until the transaction ends (if the database can);
        True when a lock was taken."""
        return False

    def _rollback_quietly(self, conn: Any) -> None:
        try:
            self._rollback(conn)
        except Exception:  # noqa: BLE001 - a dead connection rolls back on the server
            pass

    def _begin_write(self, conn: Any, level: Level) -> None:
        self._begin(conn)

    def _prepare_table(self, conn: Any, table: str, kind: str, mode: str) -> None:
        if mode == "replace":
            self._forget(table)
            self._exec(conn, sql("DROP TABLE IF EXISTS {t}", t=self.dialect.quote(table)))
            self._create(conn, table, kind, if_not_exists=False)
        elif mode == "create":
            if table in self._known or self._table_exists(conn, table):
                raise SinkError(
                    f"table {table!r} exists (mode='create'); use 'create_append', "
                    "'append' or 'replace'",
                    table=table,
                    mode=mode,
                )
            self._create(conn, table, kind, if_not_exists=False)
        elif table in self._known:
            return  # created or seen by this sink: no catalogue query per call
        elif self._table_exists(conn, table):
            self._check_columns(conn, table, kind, f"ingest ({mode})")
        elif mode in ("create_append", "upsert", "insert_new"):
            self._create(conn, table, kind, if_not_exists=True)
        else:
            raise SinkError(
                f"table {table!r} does not exist (mode='append'): create it with "
                "ensure_tables() or use mode='create_append'",
                table=table,
                mode=mode,
            )

    def _check_columns(self, conn: Any, table: str, kind: str, what: str) -> None:
        """SinkError if ``table`` does not exist, SchemaError naming the columns of the
        ``kind`` schema it lacks."""
        have = self._columns(conn, table)
        if not have:
            raise SinkError(f"{what}: table {table!r} does not exist", table=table)
        missing = [c for c in SPECS[kind].names if c not in have]
        if kind == "bars" and missing == ["date"]:
            # a bars table of stockbatch 0.1 (or made by hand): written and read as it is;
            # reading by trading date needs `stockbatch migrate`
            if table not in self._dateless:
                log.warning(
                    "table %s has no 'date' column (stockbatch 0.1 layout): rows are "
                    "stored without their trading date; run `stockbatch migrate` "
                    "to upgrade it",
                    table,
                )
            self._dateless.add(table)
            return
        if missing:
            raise SchemaError(
                f"{what}: table {table!r} is not a {kind} table: it has no column "
                + ", ".join(repr(c) for c in missing),
                {c: f"missing from table {table!r}" for c in missing},
            )

    def _write(
        self, conn, table, kind, batch, mode, level, result, *, unique: bool = False
    ) -> None:
        batch = self._prepare(batch, kind)
        self._check_types(conn, table, batch)
        key = SPECS[kind].key
        if unique:  # the whole input was de-duplicated already
            dups = 0
            if mode == "upsert":
                ins, upd, same = self._upsert(conn, table, kind, batch, level)
                result.add(written=ins, updated=upd, ignored=same)
                return
        if mode == "upsert":
            batch, dups = dedup(batch, key, keep="last")
            ins, upd, same = self._upsert(conn, table, kind, batch, level)
            result.add(written=ins, updated=upd, ignored=same + dups)
        elif mode == "insert_new":
            batch, dups = dedup(batch, key, keep="first")
            ins = self._insert_new(conn, table, kind, batch, level)
            result.add(written=ins, ignored=batch.num_rows - ins + dups)
        else:
            self._move(conn, table, batch, level=level)
            result.add(written=batch.num_rows)

    # -- on_error="split" ---------------------------------------------------------------
    def _savepoint(self, conn) -> None:
        if self.dialect.savepoints:
            self._exec(conn, "SAVEPOINT sb_split")
        # without savepoints (DuckDB) what is stored so far is committed: the split mode
        # then keeps every good piece, as it promises, at the price of per-piece commits.
        else:
            self._commit(conn)
            self._begin(conn)

    def _release(self, conn) -> None:
        if self.dialect.savepoints:
            self._exec(conn, "RELEASE SAVEPOINT sb_split")

    def _rollback_to(self, conn) -> None:
        if self.dialect.savepoints:
            self._exec(conn, "ROLLBACK TO SAVEPOINT sb_split")
        else:
            self._rollback(conn)
            self._begin(conn)

    def _write_split(self, conn, table, kind, batch, mode, level, result, job_id) -> None:
        """Bisect a failing batch down to the single rows the database refuses; those go to
        the quarantine table (one bulk write per batch) with the database's error, counted
        per symbol."""
        stack = [batch]
        refused: list[pa.RecordBatch] = []
        errors: list[str] = []
        while stack:
            part = stack.pop()
            self._savepoint(conn)
            sub = IngestResult(table=table, mode=mode)
            try:
                self._write(conn, table, kind, part, mode, level, sub)
            except self._db_errors() as exc:
                self._rollback_to(conn)
                if part.num_rows == 1:
                    err = self._err(exc)
                    refused.append(part)
                    errors.append(err)
                    sym = (
                        part.column("symbol")[0].as_py() if "symbol" in part.schema.names else None
                    )
                    sym = "" if sym is None else str(sym)
                    result.add(rejected=1)
                    result.errors.append(err)
                    result.refused_by_symbol[sym] = result.refused_by_symbol.get(sym, 0) + 1
                    result.refused_errors.setdefault(sym, err)
                else:
                    half = part.num_rows // 2
                    stack.append(part.slice(half))
                    stack.append(part.slice(0, half))
                continue
            self._release(conn)
            result.add(sub.written, sub.updated, sub.ignored, sub.rejected)
        if refused:
            rows = pa.Table.from_batches(refused)
            if "date" in rows.column_names:  # derived from ts: not part of the input row
                rows = rows.drop_columns(["date"])
            self._quarantine_rows(
                conn, rows, job_id=job_id, target=table, reasons=None, error=errors
            )

    # -- quarantine and log -------------------------------------------------------------
    def quarantine(
        self,
        rejected: Any,
        *,
        job_id: str | None = None,
        reasons: Any = None,
        target: str | None = None,
        error: str = "",
    ) -> int:
        """Store rejected rows with their reasons, job id and time (one transaction, in
        bulk); return how many rows were handed over.

        ``rejected`` is a table of bars/quotes; its ``reasons`` column (as the validate
        kernel's rejected table carries: text, list of text, or anything printable) is used
        unless ``reasons`` (one text for all rows, or a sequence per row) is given.

        The table keeps one row per (target, row content, reasons, error): storing a row
        again raises its ``seen_count`` and moves ``last_seen`` and ``job_id`` (the first
        ``quarantined_at`` stays), so re-running a job does not grow the table.
        :meth:`ingest` takes the same rows with ``quarantine=`` and stores them in the
        transaction of the data.
        """
        try:
            table = to_table(rejected)
        except StockbatchError:
            raise
        except Exception as exc:  # noqa: BLE001 - any unreadable input
            raise SchemaError(f"quarantine: cannot read the rejected rows: {exc}") from None
        qt = self.tables["quarantine"]
        with self._connection() as conn:
            try:
                if not self.transactional_ddl:
                    self._ensure(conn, "quarantine", in_tx=False)
                self._begin(conn)
                if self.transactional_ddl:
                    self._ensure(conn, "quarantine", in_tx=True)
                n = self._quarantine_rows(
                    conn, table, job_id=job_id, target=target or "", reasons=reasons, error=error
                )
                self._commit(conn)
            except BaseException as exc:
                self._rollback_quietly(conn)
                self._forget(qt)
                if isinstance(exc, StockbatchError):
                    raise
                if isinstance(exc, pa.ArrowException):
                    raise SchemaError(
                        f"quarantine into {qt!r} failed and was rolled back: "
                        f"{redact(str(exc), self._secrets)[:300]}"
                    ) from None
                if isinstance(exc, (*self._db_errors(), OSError)):
                    raise SinkError(
                        f"quarantine into {qt!r} failed and was rolled back: {self._err(exc)}",
                        table=qt,
                    ) from None
                raise
        self._known.add(qt)
        return n

    def _quarantine_rows(
        self, conn, table: pa.Table, *, job_id, target, reasons, error: Any
    ) -> int:
        """Merge ``table``'s rows into the quarantine table (inside the caller's
        transaction); ``error`` is one text or one per row. Returns ``table.num_rows``."""
        n = table.num_rows
        if n == 0:
            return 0
        if reasons is None and "reasons" in table.column_names:
            texts = [_reasons_text(v) for v in table.column("reasons").to_pylist()]
        elif reasons is None or isinstance(reasons, str):
            texts = [reasons or ""] * n
        else:
            texts = [_reasons_text(v) for v in reasons]
            if len(texts) != n:
                raise SinkError(f"{len(texts)} reasons for {n} rejected rows")
        errors = (
            [error or ""] * n
            if error is None or isinstance(error, str)
            else [e or "" for e in error]
        )
        body = table.drop_columns([c for c in ("reasons",) if c in table.column_names])
        rows = body.to_pylist()
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
            json.dumps({k: _json_value(v) for k, v in r.items()}, ensure_ascii=False) for r in rows
        ]
        # one row per (target, row, reasons, error), counted
        first: dict[str, int] = {}
        seen: dict[str, int] = {}
        for i in range(n):
            h = _row_hash(target, row_json[i], texts[i], errors[i])
            if h in first:
                seen[h] += 1
            else:
                first[h] = i
                seen[h] = 1
        take = pa.array(list(first.values()), pa.int64())
        now = datetime.now(timezone.utc)
        m = len(first)
        q = pa.table(
            {
                "job_id": pa.array([job_id] * m, pa.string()),
                "target": pa.array([target] * m, pa.string()),
                "symbol": symbol.take(take),
                "ts": ts.take(take),
                "reasons": pa.array(texts, pa.string()).take(take),
                "error": pa.array(errors, pa.string()).take(take),
                "row_json": pa.array(row_json, pa.string()).take(take),
                "quarantined_at": pa.array([now] * m, UTC_US),
                "row_hash": pa.array(list(first), pa.string()),
                "seen_count": pa.array(list(seen.values()), pa.int64()),
                "last_seen": pa.array([now] * m, UTC_US),
            }
        )
        self._merge_quarantine(conn, self.tables["quarantine"], q)
        return n

    def _merge_quarantine(self, conn, table: str, q: pa.Table) -> None:
        """Insert the rows of ``q`` (columns of the quarantine table, ``row_hash`` unique
        within ``q``); a hash already stored adds ``seen_count`` and takes ``last_seen`` and
        ``job_id``."""
        raise NotImplementedError  # pragma: no cover

    def _append_aux(self, conn, table: str, data: pa.Table) -> None:
        """Append a small table of ours (quarantine, log) with bound values."""
        d = self.dialect
        cols = ", ".join(d.quote(c) for c in data.column_names)
        marks = ", ".join(d.param(i) for i in range(data.num_columns))
        stmt = sql(
            "INSERT INTO {t} ({cols}) VALUES ({marks})", t=d.quote(table), cols=cols, marks=marks
        )
        rows = [tuple(self._bind_value(v) for v in r.values()) for r in data.to_pylist()]
        cur = conn.cursor()
        try:
            cur.executemany(stmt, rows)
        finally:
            cur.close()

    def _bind_value(self, v: Any) -> Any:
        return v

    def log_ingest(
        self,
        *,
        job_id: str,
        source: str | None = None,
        target: str | None = None,
        mode: str | None = None,
        written: int = 0,
        updated: int = 0,
        ignored: int = 0,
        rejected: int = 0,
        refused: int = 0,
        started: datetime | None = None,
        finished: datetime | None = None,
    ) -> None:
        """Write one row to the ingest log (its own transaction). ``rejected``: rows
        validation rejected (quarantined); ``refused``: rows the database refused."""
        lt = self.tables["ingest_log"]
        with self._connection() as conn:
            try:
                if not self.transactional_ddl:
                    self._ensure(conn, "ingest_log", in_tx=False)
                self._begin(conn)
                if self.transactional_ddl:
                    self._ensure(conn, "ingest_log", in_tx=True)
                self._log(
                    conn,
                    job_id=job_id,
                    source=source,
                    target=target,
                    mode=mode,
                    written=written,
                    updated=updated,
                    ignored=ignored,
                    rejected=rejected,
                    refused=refused,
                    started=started,
                    finished=finished,
                )
                self._commit(conn)
            except BaseException as exc:
                self._rollback_quietly(conn)
                self._forget(lt)
                if isinstance(exc, (*self._db_errors(), OSError, pa.ArrowException)):
                    raise SinkError(
                        f"ingest log write into {lt!r} failed: {self._err(exc)}", table=lt
                    ) from None
                raise
        self._known.add(lt)

    def _log(
        self,
        conn,
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
        now = datetime.now(timezone.utc)
        row = pa.table(
            {
                "job_id": pa.array([job_id], pa.string()),
                "source": pa.array([source], pa.string()),
                "target": pa.array([target], pa.string()),
                "mode": pa.array([mode], pa.string()),
                "rows_written": pa.array([written], pa.int64()),
                "rows_updated": pa.array([updated], pa.int64()),
                "rows_ignored": pa.array([ignored], pa.int64()),
                "rows_rejected": pa.array([rejected], pa.int64()),
                "rows_refused": pa.array([refused], pa.int64()),
                "started": pa.array([started or now], UTC_US),
                "finished": pa.array([finished or now], UTC_US),
            }
        )
        self._append_aux(conn, self.tables["ingest_log"], row)

    # -- trading dates, symbols, corporate actions (see _meta) ----------------------------
    def _in_chunks(self, values: list, size: int = 500) -> Iterator[tuple[list, str]]:
        """``values`` in slices, each with its ``(?, ?, …)`` placeholder list."""
        d = self.dialect
        for i in range(0, len(values), size):
            part = values[i : i + size]
            yield part, "(" + ", ".join(d.param(j) for j in range(len(part))) + ")"

    def _dated(
        self, conn: Any, batch: pa.RecordBatch, seen: dict, *, with_date: bool = True
    ) -> pa.RecordBatch:
        """``batch`` with its ``date`` column (exchange-local day of ``ts``); records each
        symbol's first and last ``ts`` in ``seen``."""
        sym, ts = batch.column("symbol"), batch.column("ts")
        names, los, his = _ranges(sym, ts)
        for s, lo, hi in zip(names, los, his, strict=True):
            if s is None:  # the database refuses it (NOT NULL)
                continue
            old = seen.get(s)
            seen[s] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
        if not with_date:
            return batch
        missing = [s for s in names if s is not None and s not in self._zones]
        if missing:
            self._load_zones(conn, missing)
        return batch.append_column("date", _meta.local_dates(sym, ts, self._zones))

    def _load_zones(self, conn: Any, symbols: list[str]) -> None:
        d = self.dialect
        for part, marks in self._in_chunks(symbols):
            for sym, zone in self._query(
                conn,
                sql(
                    "SELECT {s}, {z} FROM {t} WHERE {s} IN {marks}",
                    marks=marks,
                    t=d.quote(self.tables["symbols"]),
                    s=d.quote("symbol"),
                    z=d.quote("timezone"),
                ),
                tuple(part),
            ):
                self._zones[sym] = zone
        for sym in symbols:
            self._zones.setdefault(sym, None)

    def _select_aux(self, conn: Any, kind: str, where: str, params: list) -> pa.Table:
        d = self.dialect
        stmt = sql(
            "SELECT {cols} FROM {t} {where}",
            where=where,
            t=d.quote(self.tables[kind]),
            cols=", ".join(d.quote(c) for c in SPECS[kind].names),
        )
        return self._aux_canonical(self._query_arrow(conn, stmt, params or None), kind)

    def _aux_canonical(self, t: pa.Table, kind: str) -> pa.Table:
        """Rows of an aux table as read by any driver, in its Arrow schema."""
        schema = _meta.SCHEMAS[kind]
        cols = []
        for f in schema:
            col = t.column(f.name) if t.num_rows else pa.array([], f.type)
            if pa.types.is_timestamp(f.type):
                col = _as_utc(col)
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

    def _store_symbols(self, conn: Any, seen: dict, meta: dict, source: str | None) -> None:
        """Upsert the ``symbols`` rows of this ingest (inside its transaction)."""
        d = self.dialect
        t = self.tables["symbols"]
        syms = sorted(set(seen) | set(meta))
        existing: list[dict] = []
        for part, marks in self._in_chunks(syms):
            where = sql("WHERE {s} IN {marks}", s=d.quote("symbol"), marks=marks)
            existing += self._select_aux(conn, "symbols", where, list(part)).to_pylist()
        # a set-based upsert through a staging table (no DELETE: its gap locks deadlock
        # concurrent writers on MariaDB; no row-by-row statements: 500 symbols took 3 s
        # on PostgreSQL)
        rows = _meta.merge_symbols(existing, seen, meta, source)
        if rows:
            self._upsert_rows(conn, "symbols", t, pa.Table.from_pylist(rows, schema=_meta.SYMBOLS))

    def _upsert_rows(self, conn: Any, kind: str, table: str, data: pa.Table) -> None:
        """Upsert ``data`` (keys unique) into the aux table ``table`` of role ``kind``:
        staged in bulk, merged by one statement."""
        for batch in self._aux_ready(data).combine_chunks().to_batches():
            stage = self._stage(conn, kind, batch, Level.ADVANCED)
            self._exec(conn, self._merge_sql(table, stage, kind, update=True))

    def _aux_ready(self, data: pa.Table) -> pa.Table:
        """An aux table's rows cast to the types this database's staging takes."""
        return data

    def _upsert_row_sql(self, table: str, names: list, key: tuple) -> str:
        """One row's ``INSERT … ON CONFLICT (key) DO UPDATE`` (every other column)."""
        d = self.dialect
        cols = ", ".join(d.quote(c) for c in names)
        marks = ", ".join(d.param(i) for i in range(len(names)))
        sets = ", ".join(f"{d.quote(c)} = excluded.{d.quote(c)}" for c in names if c not in key)
        return sql(
            "INSERT INTO {t} ({cols}) VALUES ({marks}) ON CONFLICT ({keys}) DO UPDATE SET {sets}",
            t=d.quote(table),
            cols=cols,
            marks=marks,
            keys=", ".join(d.quote(k) for k in key),
            sets=sets,
        )

    def _store_indicators(
        self, conn: Any, values: pa.Table, level: Level, result: IngestResult
    ) -> None:
        """Upsert indicator values (long rows) through the bars' staged upsert."""
        t = self.tables["indicators"]
        sub = IngestResult(table=t, mode="upsert")
        for batch in _rechunk(values.to_batches(), DEFAULT_BATCH_ROWS):
            self._write(conn, t, "indicators", batch, "upsert", level, sub)
        result.indicators_written += sub.written
        result.indicators_updated += sub.updated
        result.indicators_ignored += sub.ignored

    def _store_actions(self, conn: Any, meta: dict, source: str | None) -> None:
        """Upsert the dividends and splits of ``meta`` into ``actions`` (by symbol, date)."""
        t = self.tables["actions"]
        parts = [
            _meta.actions_from_events(sym, m["events"], self._zones.get(sym), source)
            for sym, m in sorted(meta.items())
            if m.get("events")
        ]
        parts = [p for p in parts if p.num_rows]
        if not parts:
            return
        self._upsert_rows(conn, "actions", t, pa.concat_tables(parts))

    def _bind_date(self, value: date) -> Any:
        return value

    #: The layout version this stockbatch writes (``stockbatch_meta.schema_version``):
    #: 1 = stockbatch 0.1 (no ``date`` on bars), 2 = trading dates, symbols, actions.
    SCHEMA_VERSION = 2

    def migrate(self, *, symbols_per_step: int = 200) -> dict[str, str]:
        """Upgrade this sink's tables of stockbatch 0.1 in place (``stockbatch migrate``):
        the bars table gets its ``date`` column (rows copied, by symbol, into a table of the
        current layout that then takes the old one's name, in the zone the ``symbols``
        table knows, else UTC: the next upsert with provider metadata corrects those
        dates), the ``symbols`` table is filled from the bars, quarantine and ingest log
        are brought up to date, and the layout version is recorded in ``stockbatch_meta``.
        Returns what was done per table. Running it again changes nothing."""
        bars = self.tables["bars"]
        done: dict[str, str] = {}
        with self._connection() as conn, self._translating("migrate", bars):
            have = self._columns(conn, bars)
        if not have:
            done[bars] = "absent"
        elif "date" in have:
            done[bars] = "current"
        else:
            done[bars] = self._migrate_bars(bars, symbols_per_step)
        self.ensure_tables("quarantine", "ingest_log", "symbols", "actions")
        self._record_version()
        return done

    def _migrate_bars(self, bars: str, step: int) -> str:
        d = self.dialect
        schema, _, bare = bars.rpartition(".")
        new = check_name(
            (bars if len(bare) <= 53 else bars[: len(bars) - len(bare) + 53]) + "_sb_migr"
        )
        self.drop_table(new)
        with self._connection() as conn, self._translating("migrate", bars):
            syms = [
                r[0]
                for r in self._query(
                    conn,
                    sql(
                        "SELECT DISTINCT {s} FROM {t} ORDER BY {s}",
                        s=d.quote("symbol"),
                        t=d.quote(bars),
                    ),
                )
            ]
        self._forget(bars)
        self.ensure_tables("symbols")
        rows = 0
        self.ingest(BARS.empty_table(), table=new, kind="bars", mode="create_append")
        for i in range(0, len(syms), step):
            part = self.read(table=bars, kind="bars", symbols=syms[i : i + step])
            rows += self.ingest(part, table=new, kind="bars", mode="append").written
        with self._connection() as conn, self._translating("migrate", bars):
            self._exec(conn, sql("DROP TABLE {t}", t=d.quote(bars)))
            self._exec(conn, sql("ALTER TABLE {n} RENAME TO {b}", n=d.quote(new), b=d.quote(bare)))
            self._after_rename(conn, new, bars)
        self._forget(bars, new)
        return f"upgraded: {rows} rows given their trading date"

    def _after_rename(self, conn: Any, old: str, new: str) -> None:
        """Dialect clean-up after a migrated table took its name."""

    def _record_version(self) -> None:
        meta = "stockbatch_meta"
        with self._connection() as conn, self._translating("migrate", meta):
            self._create(conn, meta, "stockbatch_meta", if_not_exists=True)
            self._begin(conn)
            try:
                self._exec(
                    conn,
                    self._upsert_row_sql(meta, ["key", "value"], ("key",)),
                    ("schema_version", str(self.SCHEMA_VERSION)),
                )
                self._commit(conn)
            except BaseException:
                self._rollback_quietly(conn)
                raise

    def schema_version(self) -> int | None:
        """The layout version recorded in ``stockbatch_meta`` (None: never recorded; a
        database of stockbatch 0.1, or one this version created without migrating)."""
        d = self.dialect
        with self._connection() as conn, self._translating("schema_version", None):
            if not self._table_exists(conn, "stockbatch_meta"):
                return None
            rows = self._query(
                conn,
                sql(
                    "SELECT {v} FROM {t} WHERE {k} = {p}",
                    p=d.param(0),
                    v=d.quote("value"),
                    t=d.quote("stockbatch_meta"),
                    k=d.quote("key"),
                ),
                ("schema_version",),
            )
        return int(rows[0][0]) if rows else None

    def read_aux(
        self, kind: str, *, symbols: Iterable[str] | None = None, start: Any = None, end: Any = None
    ) -> pa.Table:
        """Rows of the ``actions``, ``symbols`` or ``indicators`` table, ordered by key;
        ``start``/``end`` (``end`` exclusive) select actions by exchange date, indicator
        values by ``ts`` (UTC instants)."""
        if kind not in ("actions", "symbols", "indicators"):
            raise SinkError(
                f"unknown kind {kind!r}: use 'bars', 'quotes', 'actions', 'symbols' or 'indicators'"
            )
        d = self.dialect
        where, params = [], []
        if symbols is not None:
            symbols = [symbols] if isinstance(symbols, str) else list(symbols)
            if not symbols:
                return _meta.SCHEMAS[kind].empty_table()
            where.append(
                d.quote("symbol")
                + " IN ("
                + ", ".join(d.param(i) for i in range(len(symbols)))
                + ")"
            )
            params += symbols
        for name, value, op in (("start", start, ">="), ("end", end, "<")):
            if value is None:
                continue
            if kind == "indicators":
                where.append(f"{d.quote('ts')} {op} {d.param(len(params))}")
                params.append(self._bind_ts(_time_option(name, value)))
                continue
            if kind != "actions":
                raise ValueError(f"{name}= selects actions by date; symbols rows have none")
            day = _meta.date_bound(name, value)
            if day is None:
                day = micros_to_datetime(_time_option(name, value)).date()
            where.append(f"{d.quote('date')} {op} {d.param(len(params))}")
            params.append(self._bind_date(day))
        table = self.tables[kind]
        order = ", ".join(d.quote(k) for k in SPECS[kind].key)
        with self._connection() as conn:
            try:
                if not self._table_exists(conn, table):
                    return _meta.SCHEMAS[kind].empty_table()
                return self._select_aux(
                    conn,
                    kind,
                    ("WHERE " + " AND ".join(where) if where else "") + " ORDER BY " + order,
                    params,
                )
            except self._db_errors() as exc:
                raise SinkError(
                    f"read from {table!r} failed: {self._err(exc)}", table=table
                ) from None

    # -- reads --------------------------------------------------------------------------
    def read(
        self,
        *,
        table: str | None = None,
        kind: str | None = None,
        symbols: Iterable[str] | None = None,
        interval: str | None = None,
        start: Any = None,
        end: Any = None,
    ) -> pa.Table:
        """Rows of ``table`` in the canonical schema (timestamps UTC), ordered by key.

        ``start`` is inclusive, ``end`` exclusive. A date (``datetime.date`` or text
        ``YYYY-MM-DD``) selects bars by their stored ``date``: the exchange's trading date
        of daily and longer bars, the exchange-local day of intraday bars. A datetime or
        ISO text with a time is a UTC instant (naive: UTC) compared with ``ts``. Values
        are bound, never formatted into SQL. ``kind="actions"`` / ``"symbols"`` read
        those tables (:meth:`read_aux`).

        Raises
        ------
        SinkError
            The table does not exist, or the database failed.
        SchemaError
            The table lacks a column of the ``kind`` schema, or holds values that cannot be
            read as its type (the column is named).
        """
        if kind is None:
            kind = "quotes" if table is not None and table == self.tables["quotes"] else "bars"
        if kind in ("actions", "symbols", "indicators") and table is None:
            return self.read_aux(kind, symbols=symbols, start=start, end=end)
        if kind not in _SCHEMAS:
            raise SinkError(f"unknown kind {kind!r}: use 'bars', 'quotes', 'actions' or 'symbols'")
        table = self.check_table(self.tables[kind] if table is None else table)
        spec = SPECS[kind]
        d = self.dialect
        where: list[str] = []
        params: list[Any] = []
        if symbols is not None:
            symbols = [symbols] if isinstance(symbols, str) else list(symbols)
            if not symbols:
                return _SCHEMAS[kind].empty_table()
            marks = ", ".join(d.param(len(params) + i) for i in range(len(symbols)))
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
                params.append(self._bind_date(day))
            else:  # an instant (naive: UTC)
                where.append(d.quote("ts") + op + d.param(len(params)))
                params.append(self._bind_ts(_time_option(name, value)))
        cols = ", ".join(d.quote(c) for c in _SCHEMAS[kind].names)
        stmt = sql(
            "SELECT {cols} FROM {t} {where} ORDER BY {keys}",
            t=d.quote(table),
            cols=cols,
            where="WHERE " + " AND ".join(where) if where else "",
            keys=", ".join(d.quote(k) for k in spec.key),
        )
        with self._connection() as conn:
            try:
                if table not in self._known:
                    # SQLite would read a missing column's quoted name as a text literal
                    self._check_columns(conn, table, kind, "read")
                if by_date and table in self._dateless:
                    raise SchemaError(
                        f"read: table {table!r} has no 'date' column (a stockbatch 0.1 "
                        "layout), so it cannot be read by trading date: upgrade it in place "
                        "with `stockbatch migrate --db <uri>` (or pass start/end as "
                        "datetimes, UTC instants)",
                        {"date": f"missing from table {table!r}"},
                    )
                out = self._read_arrow(conn, stmt, params, kind)
            except self._db_errors() as exc:
                self._forget(table)
                raise SinkError(
                    f"read from {table!r} failed: {self._err(exc)}", table=table
                ) from None
        if out.num_rows == 0:  # drivers type the columns of an empty result loosely
            return _SCHEMAS[kind].empty_table()
        try:
            back = self._canonical(out, kind)
        except (pa.ArrowException, SchemaError) as exc:
            bad = [
                f.name
                for f in _SCHEMAS[kind]
                if f.name in out.column_names and not _castable(out.column(f.name), f.type)
            ]
            raise SchemaError(
                f"read: table {table!r} holds values that do not read as the "
                f"{kind} schema"
                + (f" in column {', '.join(map(repr, bad))}" if bad else "")
                + f": {exc}",
                {c: f"values of table {table!r} do not fit" for c in bad},
            ) from None
        self._known.add(table)
        return back

    def _bind_ts(self, us: int) -> Any:
        return micros_to_datetime(us)

    def _read_arrow(self, conn, stmt: str, params: list, kind: str) -> pa.Table:
        return self._query_arrow(conn, stmt, params or None)

    def _canonical(self, table: pa.Table, kind: str) -> pa.Table:
        schema = _SCHEMAS[kind]
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

    # -- merge helpers shared by the SQL dialects ---------------------------------------
    def _stage_name(self, kind: str) -> str:
        return f"_sb_stage_{kind}"

    def _stage(self, conn, kind: str, batch: pa.RecordBatch, level: Level) -> str:
        """Fill the connection's temporary staging table of ``kind`` with ``batch``."""
        raise NotImplementedError  # pragma: no cover

    def _key_join(self, a: str, b: str, kind: str) -> str:
        d = self.dialect
        return " AND ".join(f"{a}.{d.quote(k)} = {b}.{d.quote(k)}" for k in SPECS[kind].key)

    def _changed(self, a: str, b: str, kind: str) -> str:
        d = self.dialect
        spec = SPECS[kind]
        return (
            "("
            + " OR ".join(
                d.differs(f"{a}.{d.quote(c)}", f"{b}.{d.quote(c)}")
                for c in spec.names
                if c not in spec.key
            )
            + ")"
        )

    def _count_existing(self, conn, table: str, stage: str, kind: str) -> tuple[int, int]:
        """(rows of the stage whose key is stored, of which values differ)."""
        d = self.dialect
        stmt = sql(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN {changed} THEN 1 ELSE 0 END), 0) "
            "FROM {stage} s JOIN {t} t ON {on}",
            changed=self._changed("s", "t", kind),
            on=self._key_join("s", "t", kind),
            stage=d.quote(stage),
            t=d.quote(table),
        )
        existing, changed = self._query(conn, stmt)[0]
        return int(existing), int(changed)

    def _upsert(self, conn, table, kind, batch, level) -> tuple[int, int, int]:
        """Generic staged upsert: returns (inserted, updated, unchanged)."""
        stage = self._stage(conn, kind, batch, level)
        existing, changed = self._count_existing(conn, table, stage, kind)
        self._exec(conn, self._merge_sql(table, stage, kind, update=True))
        return batch.num_rows - existing, changed, existing - changed

    def _insert_new(self, conn, table, kind, batch, level) -> int:
        stage = self._stage(conn, kind, batch, level)
        existing, _ = self._count_existing(conn, table, stage, kind)
        self._exec(conn, self._merge_sql(table, stage, kind, update=False))
        return batch.num_rows - existing

    def _merge_sql(self, table: str, stage: str, kind: str, *, update: bool) -> str:
        """INSERT … SELECT … ON CONFLICT for SQLite/PostgreSQL/DuckDB."""
        d = self.dialect
        spec = SPECS[kind]
        cols = ", ".join(d.quote(c) for c in spec.names)
        keys = ", ".join(d.quote(k) for k in spec.key)
        head = (
            "INSERT INTO {t} ({cols}) SELECT {cols} FROM {stage} WHERE true ON CONFLICT ({keys}) "
        )
        if not update:
            return sql(
                head + "DO NOTHING", t=d.quote(table), stage=d.quote(stage), cols=cols, keys=keys
            )
        sets = ", ".join(
            f"{d.quote(c)} = excluded.{d.quote(c)}" for c in spec.names if c not in spec.key
        )
        # the target is named by its quoted name inside the WHERE of DO UPDATE
        changed = self._changed("{t}", "excluded", kind)
        return sql(
            sql(
                head + "DO UPDATE SET {sets} WHERE {changed}",
                t="{t}",
                stage="{stage}",
                cols=cols,
                keys=keys,
                sets=sets,
                changed=changed,
            ),
            t=d.quote(table),
            stage=d.quote(stage),
        )
