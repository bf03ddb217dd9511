"""SQLite through the ADBC SQLite driver (the embedded default).

Timestamps are stored as int64 microseconds since the epoch (UTC) in columns declared
``INT64_US_UTC``: ADBC ingests integers about 2x faster than ISO text, which also drops the
zone (baselines.md); :meth:`Sink.read` turns them back into ``timestamp[us, tz=UTC]``.
SQLite has no NaN: it stores a bound NaN as NULL (so NaN reads back as null).

Readable by every client: each table ``t`` stockbatch creates comes with a view ``t_v``
holding the same rows with timestamps as ISO 8601 UTC text (``bars_v.ts`` is
``2026-11-29T15:00:00.000Z``; the exact integer stays as ``ts_us``) and dates as
``YYYY-MM-DD`` text. The view costs nothing at ingest. In the tables, the bars' exchange
``date`` is an integer YYYYMMDD (``WHERE date = 20261130``), the cheapest form SQLite stores
that still reads as a date (bench/test_layout.py ``sqlite-date-repr``: ISO text costs more,
a day number as much and reads as nothing). The column costs 1e6-bar appends 6-8 %
(``sqlite-layout-append``): half the time-zone conversion (each zone converts only its own
rows), the rest writing an 11th column, which no representation avoids.

Keyed tables are rowid tables with the key as PRIMARY KEY (an index beside the rows), not
``WITHOUT ROWID``: DuckDB's SQLite attach reads by rowid (``count(*)`` fails on a ``WITHOUT
ROWID`` table, "no such column: ROWID") and splits its scans by rowid range. That costs
1e6-bar appends 7-10 %, upserts nothing measurable, and the file 27 % more
(bench/test_layout.py). Writes take ``BEGIN IMMEDIATE`` so that concurrent writers queue
instead of failing on a lock upgrade.

Waiting for another writer is bounded: ``busy_timeout`` (seconds, default 30; ``connect(uri,
busy_timeout=…)``). The wait is logged once at WARNING on the ``stockbatch.sinks`` logger
when it passes a few seconds, and ends with :class:`~stockbatch.SinkError` ("locked by
another writer") when the timeout is spent.

Table names carry no schema: ``temp.x`` would vanish with the connection, ``main.x`` is
``x``, and sinks attach no other database.

Durability: the default rollback journal with ``synchronous=FULL`` (SQLite's default, not
changed at any level): a committed chunk is fsynced to the file before ``COMMIT`` returns and
survives a crash of the process or of the machine (power loss included); an uncommitted one
is rolled back from the journal on the next open.

Levels, measured with 1e6 bars (bench/test_ingest.py): BASIC binds rows through
``executemany`` of a prepared INSERT in one transaction; ADVANCED ingests 64k-row Arrow
batches through ADBC (as fast as raw ``adbc_ingest`` into the same table). EXTREME adds only a
256 MiB page cache. Every new file gets 16 KiB pages (``PRAGMA page_size`` before its first
table; existing files keep theirs): appending a pipeline chunk (52k bars) ~10 % faster than
with 4 KiB pages (bench/test_layout.py ``sqlite-page-size``: median 96 vs 108 ms, min 93 vs
102); at 1e6 bars the difference is within the noise; the same file size. What else was
tried was slower or unsafe — WAL made bulk appends ~25 % slower (1.56 s vs 1.26 s),
``synchronous=OFF`` with an in-memory journal gained ~5 % but can corrupt the file on power
loss, and building the key's index after the rows was no faster than a ``WITHOUT ROWID``
table.
"""

from __future__ import annotations

import os
import time
from typing import Any

import adbc_driver_manager
import adbc_driver_sqlite
import numpy as np
import pyarrow as pa

from .._arrow import fill_null, to_numpy, with_nulls_of
from .._errors import SinkError
from . import _adbc_conn, _dbapi
from ._adbc import AdbcSink
from ._base import Level, log
from ._ddl import DIALECTS, SPECS, sql

__all__ = ["SqliteSink", "DEFAULT_BUSY_TIMEOUT"]

#: Bytes per page of the files this sink creates (see the module docstring).
PAGE_SIZE = 16384
#: Seconds a write waits for another writer's lock by default.
DEFAULT_BUSY_TIMEOUT = 30.0
#: Seconds SQLite's own busy handler waits per try; between tries we log and check the
#: deadline.
_SLICE = 0.5

_SQLITE_MAGIC = b"SQLite format 3\x00"


def file_kind(path: str) -> str | None:
    """What the file at ``path`` holds by its first bytes: ``"sqlite"``, ``"duckdb"``,
    ``"empty"`` (or missing), or None (something else)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return "empty"
    if not head:
        return "empty"
    if head == _SQLITE_MAGIC:
        return "sqlite"
    if head[8:12] == b"DUCK":
        return "duckdb"
    return None


def missing_dir(path: str, scheme: str) -> str | None:
    """A message if the directory of the database file ``path`` does not exist, or if
    ``path`` is a directory itself."""
    if path in ("", ":memory:") or path.startswith("file:"):
        return None
    if os.path.isdir(path):
        return (
            f"cannot connect to {uri_for(scheme, path)}: {path!r} is a directory, not a "
            "database file (name a file in it, e.g. " + os.path.join(path, "stockbatch.db") + ")"
        )
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(parent):
        return None
    msg = (
        f"cannot connect to {uri_for(scheme, path)}: directory "
        f"{os.path.dirname(path) or parent!r} does not exist"
    )
    if not os.path.isabs(path):
        msg += (
            f" (the path is relative to {os.getcwd()!r}; in {scheme}:///path the path is "
            f"relative, {scheme}:////path is absolute)"
        )
    return msg


def uri_for(scheme: str, path: str) -> str:
    """The URI that opens ``path`` (three slashes and a relative path, or four and an
    absolute one)."""
    return f"{scheme}:///{path}"


def yyyymmdd(col: Any) -> pa.Array:
    """A date32 column as integers YYYYMMDD, by integer arithmetic on the day numbers
    (H. Hinnant's civil_from_days; casting through text or calendar kernels was the
    largest cost of the date column), done once per distinct day of a batch's span and
    looked up per row (a batch spans few days: 27 ms -> ~4 ms per 1e6 rows)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    days = to_numpy(fill_null(col.cast(pa.int32()), 0))
    if len(days) and int(days.max()) - int(days.min()) < len(days):
        lo = days.min()
        out = _civil(np.arange(lo, days.max() + 1, dtype=np.int32))[days - lo]
    else:
        out = _civil(days)
    return with_nulls_of(col, pa.int64(), out.astype(np.int64, copy=False))


def _civil(days: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 as int64 YYYYMMDD (proleptic Gregorian)."""
    z = days.astype(np.int64) + 719_468
    era = np.floor_divide(z, 146_097)
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year * 10_000 + month * 100 + day


def readable_view(table: str, kind: str) -> str | None:
    """``CREATE VIEW IF NOT EXISTS <table>_v``: the rows of ``table`` with every timestamp
    as ISO 8601 UTC text (``2026-11-29T15:00:00.000Z``, millisecond precision, what
    ``datetime()`` and every client read as a time) and the raw microseconds beside it as
    ``<column>_us``; None when the name would pass 63 characters."""
    if len(table) > 61:
        return None
    d = DIALECTS["sqlite"]
    cols = []
    for name, logical, _ in SPECS[kind].columns:
        q = d.quote(name)
        if logical == "ts":
            # whole seconds (floored) and milliseconds (truncated) apart: '%f' of a float
            # rounds 15:59:59.9996 up to the next second, and so maybe the next day
            us = f"(({q} % 1000000) + 1000000) % 1000000"
            cols.append(
                f"strftime('%Y-%m-%dT%H:%M:%S', ({q} - {us}) / 1000000, 'unixepoch')"
                f" || printf('.%03dZ', {us} / 1000) AS {q}"
            )
            cols.append(f"{q} AS {d.quote(name + '_us')}")
        elif logical == "date":
            cols.append(
                f"CASE WHEN {q} IS NOT NULL THEN printf('%04d-%02d-%02d', {q} / 10000, "
                f"{q} / 100 % 100, {q} % 100) END AS {q}"
            )
        else:
            cols.append(q)
    return sql(
        "CREATE VIEW IF NOT EXISTS {v} AS SELECT {cols} FROM {t}",
        v=d.quote(table + "_v"),
        cols=", ".join(cols),
        t=d.quote(table),
    )


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    if _dbapi.about_rows(text):  # a trigger's message may say anything
        return False
    return "database is locked" in text or "sqlite_busy" in text or "database is busy" in text


class SqliteSink(AdbcSink):
    """SQLite file database."""

    dialect = DIALECTS["sqlite"]
    target_batch_bytes = 4 << 20
    lookup_schema = False

    def __init__(self, path: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, **options: Any):
        try:
            busy = float(busy_timeout)
        except (TypeError, ValueError):
            busy = -1.0
        if not busy >= 0:
            raise ValueError(f"busy_timeout must be a number of seconds >= 0, not {busy_timeout!r}")
        self.path = os.fspath(path)
        self.busy_timeout = busy
        super().__init__(uri_for("sqlite", self.path), **options)

    def _connect(self) -> Any:
        problem = missing_dir(self.path, "sqlite")
        if problem:
            raise SinkError(problem)
        kind = file_kind(self.path) if self.path != ":memory:" else "empty"
        if kind not in ("sqlite", "empty"):
            hint = (
                f" (looks like DuckDB: use {uri_for('duckdb', self.path)})"
                if kind == "duckdb"
                else ""
            )
            raise SinkError(
                f"cannot connect to {self._uri}: {self.path!r} is not a SQLite database{hint}"
            )
        conn = _adbc_conn.connect(adbc_driver_sqlite.connect(self.path))
        cur = conn.cursor()
        try:
            ms = int(min(self.busy_timeout, _SLICE) * 1000)
            cur.execute(f"PRAGMA busy_timeout = {ms:d}")
            if kind == "empty":
                cur.execute(f"PRAGMA page_size = {PAGE_SIZE:d}")
            if self.level is Level.EXTREME:
                cur.execute("PRAGMA cache_size = -262144")
        finally:
            cur.close()
        return conn

    # every statement that may wait for another writer's lock (BEGIN IMMEDIATE, COMMIT,
    # DDL outside a transaction, reads during another's commit) waits in bounded slices
    def _patiently(self, run, *args) -> Any:
        started = time.monotonic()
        warned = False
        while True:
            try:
                return run(*args)
            except adbc_driver_manager.Error as exc:
                if not _is_busy(exc):
                    raise
                waited = time.monotonic() - started
                if waited >= self.busy_timeout:
                    raise SinkError(
                        f"SQLite database {self.path!r} is locked by another writer: gave up "
                        f"after {waited:.1f} s (busy_timeout={self.busy_timeout:g} s; "
                        "connect(uri, busy_timeout=…) waits longer)"
                    ) from None
                if not warned and waited >= min(3.0, self.busy_timeout / 2):
                    warned = True
                    log.warning(
                        "SQLite database %s is locked by another writer: waiting up "
                        "to %g s (busy_timeout)",
                        self.path,
                        self.busy_timeout,
                    )

    def _exec(self, conn: Any, statement: str, params: Any = None) -> int:
        return self._patiently(super()._exec, conn, statement, params)

    def _query(self, conn: Any, statement: str, params: Any = None) -> list:
        return self._patiently(super()._query, conn, statement, params)

    def _query_arrow(self, conn: Any, statement: str, params: Any = None) -> pa.Table:
        return self._patiently(super()._query_arrow, conn, statement, params)

    def _begin(self, conn: Any) -> None:
        self._exec(conn, "BEGIN IMMEDIATE")

    def check_table(self, name: str) -> str:
        """As every sink's, and a name ending in ``_v`` is refused: that is the readable
        view made beside each table (a table ``bars_v`` would silently stand in for it)."""
        name = super().check_table(name)
        if name.lower().endswith("_v"):
            raise SinkError(
                f"table {name!r} refused: names ending in _v are the readable views "
                "stockbatch makes beside SQLite tables (bars_v for bars)",
                table=name,
            )
        return name

    def _schema_refusal(self, schema: str) -> str | None:
        if schema == "temp":
            return (
                "SQLite's temp schema is private to one connection: its tables vanish "
                "when the connection closes; name the table without a schema"
            )
        return (
            "SQLite table names take no schema here (main.x is x; sinks attach no other database)"
        )

    def _create(self, conn: Any, table: str, kind: str, *, if_not_exists: bool) -> None:
        super()._create(conn, table, kind, if_not_exists=if_not_exists)
        view = readable_view(table, kind)
        if view:
            self._exec(conn, view)

    def drop_table(self, table: str) -> None:
        super().drop_table(table)
        if len(table) <= 61:
            with self._connection() as conn:
                self._exec(conn, sql("DROP VIEW IF EXISTS {v}", v=self.dialect.quote(table + "_v")))

    def _after_rename(self, conn: Any, old: str, new: str) -> None:
        # the view made with the migrated table follows its rename: replace it by the
        # view of its new name
        for name in (old + "_v", new + "_v"):
            if len(name) <= 63:
                self._exec(conn, sql("DROP VIEW IF EXISTS {v}", v=self.dialect.quote(name)))
        view = readable_view(new, "bars")
        if view:
            self._exec(conn, view)

    def _table_exists(self, conn: Any, table: str) -> bool:
        return bool(
            self._query(
                conn, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            )
        )

    def _columns(self, conn: Any, table: str) -> set[str]:
        return {r[0] for r in self._query(conn, "SELECT name FROM pragma_table_info(?)", (table,))}

    def _prepare(self, batch: pa.RecordBatch, kind: str) -> pa.RecordBatch:
        # cast ts to int64 microseconds: the type of the INT64_US_UTC column; the date
        # to ISO 'YYYY-MM-DD' text
        i = batch.schema.get_field_index("ts")
        batch = batch.set_column(i, "ts", batch.column(i).cast(pa.int64()))
        j = batch.schema.get_field_index("date")
        if j >= 0:
            batch = batch.set_column(j, "date", yyyymmdd(batch.column(j)))
        return batch

    def _aux_prepare(self, data: pa.Table) -> pa.Table:
        for i, f in enumerate(data.schema):
            if pa.types.is_timestamp(f.type):
                data = data.set_column(i, f.name, data.column(i).cast(pa.int64()))
            elif pa.types.is_date(f.type):
                data = data.set_column(i, f.name, yyyymmdd(data.column(i)))
        return data

    def _aux_ready(self, data: pa.Table) -> pa.Table:
        return self._aux_prepare(data)

    def _bind_date(self, value: Any) -> Any:
        return value.year * 10_000 + value.month * 100 + value.day

    def _bind_ts(self, us: int) -> Any:
        return us

    def _merge_quarantine(self, conn: Any, table: str, q: pa.Table) -> None:
        # SQLite binds a whole Arrow batch to one prepared upsert: no staging table
        d = self.dialect
        n, last, job = d.quote("seen_count"), d.quote("last_seen"), d.quote("job_id")
        stmt = sql(
            "INSERT INTO {t} ({cols}) VALUES ({marks}) ON CONFLICT ({h}) DO UPDATE SET "
            "{n} = {t}.{n} + excluded.{n}, {last} = excluded.{last}, "
            "{job} = excluded.{job}",
            t=d.quote(table),
            cols=", ".join(d.quote(c) for c in q.column_names),
            marks=", ".join(["?"] * q.num_columns),
            h=d.quote("row_hash"),
            n=n,
            last=last,
            job=job,
        )
        cur = conn.cursor()
        try:
            for batch in self._aux_prepare(q).combine_chunks().to_batches():
                cur.executemany(stmt, batch)
        finally:
            cur.close()
