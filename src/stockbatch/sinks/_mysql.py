"""MariaDB / MySQL through PyMySQL and ``LOAD DATA LOCAL INFILE``.

Why not ADBC: there is no ADBC driver for MySQL or MariaDB (the arrow-adbc project ships
PostgreSQL, SQLite, Snowflake, BigQuery, Flight SQL and DuckDB's own). The fastest bulk path
these servers have is ``LOAD DATA LOCAL INFILE``: each ~256k-row Arrow batch is written as CSV
by ``pyarrow.csv`` (C++, no Python per row) to a temporary file that PyMySQL
(``local_infile=True``) streams to the server. A bound multi-row ``executemany`` (BASIC) is
several times slower.

Details that matter:
- ``LOAD DATA LOCAL`` turns errors (duplicate keys, bad values) into warnings and skips rows;
  every load is therefore checked (affected rows = batch rows, no warnings) and any
  shortfall raises, rolling the transaction back.
- NULL is written as an unquoted ``NULL`` with every valid value quoted, so the text
  ``"NULL"`` stays text; ``ESCAPED BY ''`` keeps backslashes literal.
- MariaDB's DOUBLE has no NaN or infinity: non-finite floats are stored as NULL.
- Timestamps live in ``DATETIME(6)`` holding UTC (``TIMESTAMP`` ends in 2038 and converts
  with the session zone); the session runs with ``time_zone = '+00:00'``.
- Text keys are ``VARCHAR(64) … COLLATE utf8mb4_bin``: full Unicode, byte-exact comparison
  like the other databases.
- Table names may name another database (``market.bars``), not a system one
  (``mysql``, ``information_schema``, ``performance_schema``, ``sys``).

Durability: InnoDB with the server's defaults (``innodb_flush_log_at_trx_commit=1``,
``sync_binlog=1``) flushes the redo log at every ``COMMIT``: a committed chunk survives a
crash of the server or the machine. Other settings (0 or 2) may lose about a second of
commits on a crash, never half a chunk. DDL commits implicitly here, so tables are created
(and quarantine/log tables upgraded) before a chunk's transaction starts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .._arrow import array, fill_null, pylist
from .._errors import SinkError
from .._time import micros_to_datetime
from . import _dbapi, _sql
from ._base import Level, Sink
from ._ddl import DIALECTS, SPECS, sql

__all__ = ["MysqlSink"]

try:
    import pymysql

    _PYMYSQL_ERROR: tuple = (pymysql.err.Error,)

    class _LoadRejected(pymysql.err.DataError):
        """LOAD DATA skipped or altered rows (it reports them only as warnings)."""
except ImportError:  # pragma: no cover - pymysql is an optional dependency
    pymysql = None
    _PYMYSQL_ERROR = ()

#: MariaDB/MySQL errors about the statement, the table or the server, not the rows: no such
#: table / column / database, access denied, a view or table that takes no inserts, read
#: only, disk or table full, lock wait, deadlock, server gone, syntax, no unique key
_NOT_ROWS_ERRNOS = frozenset(
    (1021, 1036, 1044, 1045, 1049, 1054, 1064, 1099, 1100, 1114, 1142, 1143, 1146, 1205)
    + (1213, 1288, 1290, 1356, 1471, 1792, 2003, 2006, 2013, 2055)
)

_CSV = pacsv.WriteOptions(include_header=False, quoting_style="all_valid", null_string="NULL")


class MysqlSink(Sink):
    """MariaDB or MySQL database (``mysql://`` / ``mariadb://``)."""

    dialect = DIALECTS["mysql"]
    target_batch_bytes = 16 << 20
    transactional_ddl = False

    def __init__(self, uri: str, *, tmpdir: str | None = None, **options: Any):
        if pymysql is None:
            raise SinkError("MariaDB/MySQL sinks need PyMySQL: pip install pymysql")
        u = urlparse(uri)
        self._params: dict[str, Any] = {
            "host": u.hostname or "127.0.0.1",
            "port": u.port or 3306,
            "user": unquote(u.username or "root"),
            "password": unquote(u.password or ""),
            "database": u.path.lstrip("/") or None,
        }
        self._tmpdir = tmpdir
        super().__init__(uri, secrets=[self._params["password"]], **options)

    def _connect(self) -> Any:
        return pymysql.connect(
            **self._params,
            charset="utf8mb4",
            local_infile=True,
            autocommit=True,
            init_command="SET time_zone = '+00:00'",
        )

    def _ping(self, conn: Any) -> None:
        conn.ping(reconnect=False)

    def _db_errors(self) -> tuple:
        return _PYMYSQL_ERROR

    def _refuses_rows(self, exc: BaseException) -> bool:
        # by error number: PyMySQL's classes say OperationalError for a failed CHECK (4025)
        # and a trigger's SIGNAL (1644) as for a lost connection
        if isinstance(exc, _LoadRejected):
            return True
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        return code not in _NOT_ROWS_ERRNOS if code is not None else super()._refuses_rows(exc)

    def _query_arrow(self, conn: Any, statement: str, params: Any = None) -> pa.Table:
        names, rows = _dbapi.run(
            conn, statement, params, lambda cur: ([c[0] for c in cur.description], cur.fetchall())
        )
        cols: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
        return pa.table({n: array(list(c)) for n, c in zip(names, cols, strict=True)})

    def _read_arrow(self, conn, stmt: str, params: list, kind: str) -> pa.Table:
        t = self._query_arrow(conn, stmt, params or None)
        spec = SPECS[kind]
        assert spec.schema is not None
        cols = []
        for f in spec.schema:
            col = t.column(f.name)
            if pa.types.is_null(col.type):
                col = (
                    col.cast(f.type)
                    if not pa.types.is_timestamp(f.type)
                    else col.cast(pa.timestamp("us"))
                )
            cols.append(col)
        return pa.table(cols, names=[f.name for f in spec.schema or ()])

    def _table_exists(self, conn: Any, table: str) -> bool:
        schema, _, name = table.rpartition(".")
        return bool(
            self._query(
                conn,
                "SELECT 1 FROM information_schema.tables WHERE table_schema = "
                "COALESCE(%s, DATABASE()) AND table_name = %s",
                (schema or None, name),
            )
        )

    def _columns(self, conn: Any, table: str) -> set[str]:
        schema, _, name = table.rpartition(".")
        return {
            r[0]
            for r in self._query(
                conn,
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "COALESCE(%s, DATABASE()) AND table_name = %s",
                (schema or None, name),
            )
        }

    def _widen_quarantine(self, conn: Any, table: str) -> None:
        d = self.dialect
        self._exec(
            conn,
            sql(
                "ALTER TABLE {t} "
                + ", ".join(
                    f"MODIFY {d.quote(c)} TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                    for c in SPECS["quarantine"].long_text
                ),
                t=d.quote(table),
            ),
        )

    def _schema_refusal(self, schema: str) -> str | None:
        if schema in ("mysql", "information_schema", "performance_schema", "sys"):
            return f"{schema} is a system database"
        return None

    def _merge_quarantine(self, conn: Any, table: str, q: pa.Table) -> None:
        # one multi-row INSERT … ON DUPLICATE KEY UPDATE (PyMySQL's executemany batches it)
        d = self.dialect
        cols = ", ".join(d.quote(c) for c in q.column_names)
        n, last, job = d.quote("seen_count"), d.quote("last_seen"), d.quote("job_id")
        stmt = sql(
            "INSERT INTO {t} ({cols}) VALUES ({marks}) ON DUPLICATE KEY UPDATE "
            "{n} = {n} + VALUES({n}), {last} = VALUES({last}), {job} = VALUES({job})",
            t=d.quote(table),
            cols=cols,
            marks=", ".join(["%s"] * q.num_columns),
            n=n,
            last=last,
            job=job,
        )
        rows = [tuple(self._bind_value(v) for v in r.values()) for r in pylist(q)]
        _dbapi.executemany(conn, stmt, rows)

    def _bind_ts(self, us: int) -> Any:
        return micros_to_datetime(us).replace(tzinfo=None)

    def _bind_value(self, v: Any) -> Any:
        if isinstance(v, datetime) and v.tzinfo is not None:
            return v.astimezone(timezone.utc).replace(tzinfo=None)
        return v

    def _prepare(self, batch: pa.RecordBatch, kind: str) -> pa.RecordBatch:
        cols = []
        for f, col in zip(batch.schema, batch.columns, strict=True):
            if pa.types.is_timestamp(f.type):
                col = col.cast(pa.timestamp("us"))  # UTC wall time for DATETIME(6)
            elif pa.types.is_floating(f.type) and col.null_count < len(col):
                finite = pc.is_finite(col)
                if not pc.all(fill_null(finite, True)).as_py():
                    col = pc.if_else(finite, col, pa.nulls(len(col), col.type))
            cols.append(col)
        return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)

    def _move(
        self, conn: Any, table: str, batch: pa.RecordBatch, *, level: Level, temporary: bool = False
    ) -> None:
        d = self.dialect
        if level is Level.BASIC:
            rows = [tuple(r.values()) for r in pylist(batch)]
            _dbapi.executemany(conn, _sql.insert_values(d, table, batch.schema.names), rows)
            return
        cols = ", ".join(d.quote(c) for c in batch.schema.names)
        cur = conn.cursor()
        try:
            fd, path = tempfile.mkstemp(prefix="stockbatch-", suffix=".csv", dir=self._tmpdir)
            try:
                with os.fdopen(fd, "wb") as fh:
                    pacsv.write_csv(batch, fh, _CSV)
                loaded = cur.execute(
                    sql(
                        "LOAD DATA LOCAL INFILE %s INTO TABLE {t} CHARACTER SET utf8mb4 "
                        "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                        "LINES TERMINATED BY '\\n' (" + cols + ")",
                        t=d.quote(table),
                    ),
                    (path,),
                )
                warnings = conn.show_warnings() if _warning_count(cur) else ()
            finally:
                os.unlink(path)
            if loaded != batch.num_rows or warnings:
                first = warnings[0][2] if warnings else ""
                # the statement is rolled back with the transaction: nothing of it stays
                raise _LoadRejected(
                    f"the database refused or altered rows (LOAD DATA took {loaded} of "
                    f"{batch.num_rows} rows"
                    + (f" with {len(warnings)} warning(s), first: {first})" if warnings else ")")
                )
        finally:
            cur.close()

    def _stage(self, conn: Any, kind: str, batch: pa.RecordBatch, level: Level) -> str:
        stage = self._stage_name(kind)
        d = self.dialect
        self._exec(
            conn, SPECS[kind].create(d, stage, if_not_exists=True, temporary=True, keyed=False)
        )
        self._exec(conn, sql("DELETE FROM {s}", s=d.quote(stage)))
        self._move(conn, stage, batch, level=level)
        return stage

    def _aux_ready(self, data: pa.Table) -> pa.Table:
        return pa.Table.from_batches([self._prepare(b, "") for b in data.to_batches()])

    def _upsert_row_sql(self, table: str, names: list, key: tuple) -> str:
        d = self.dialect
        return sql(
            "INSERT INTO {t} ({cols}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {sets}",
            t=d.quote(table),
            cols=", ".join(d.quote(c) for c in names),
            marks=", ".join(["%s"] * len(names)),
            sets=", ".join(f"{d.quote(c)} = VALUES({d.quote(c)})" for c in names if c not in key),
        )

    def _merge_sql(self, table: str, stage: str, kind: str, *, update: bool) -> str:
        d = self.dialect
        spec = SPECS[kind]
        cols = ", ".join(d.quote(c) for c in spec.names)
        if update:
            sets = ", ".join(
                f"{d.quote(c)} = VALUES({d.quote(c)})" for c in spec.names if c not in spec.key
            )
        else:  # a no-op update: conflicting rows are left as they are
            sets = "{t}." + d.quote(spec.key[0]) + " = {t}." + d.quote(spec.key[0])
        return sql(
            sql(
                "INSERT INTO {t} ({cols}) SELECT {cols} FROM {stage} "
                "ON DUPLICATE KEY UPDATE {sets}",
                t="{t}",
                stage="{stage}",
                cols=cols,
                sets=sets,
            ),
            t=d.quote(table),
            stage=d.quote(stage),
        )


def _warning_count(cur: Any) -> int:
    result = getattr(cur, "_result", None)
    return getattr(result, "warning_count", 0) if result is not None else 0
