"""DuckDB through DuckDB's own ADBC driver (shipped inside the ``duckdb`` package: the
extension module exports ``duckdb_adbc_init``).

One ADBC database object is shared by the pool's connections (DuckDB locks its file per
database instance). DuckDB has no savepoints: with ``on_error="split"`` each good piece is
committed as it is isolated (the default mode stays all-or-nothing).

Paths follow the same rule as ``sqlite:``: ``duckdb:///rel.duckdb`` is relative to the
working directory, ``duckdb:////abs/path.duckdb`` absolute (SQLAlchemy's convention);
``duckdb:rel.duckdb`` and a bare path ending ``.duckdb`` / ``.ddb`` work too. Tables in the
``temp`` schema (gone with the connection) and in system schemas are refused.

Durability: DuckDB writes a committed transaction to its write-ahead log and syncs it before
``COMMIT`` returns (checkpoints move it into the file later): a committed chunk survives a
crash of the process or the machine and is replayed from the ``.wal`` file on the next open.
With ``on_error="split"`` each isolated good piece is committed on its own (no savepoints).
"""

from __future__ import annotations

import glob
import os
import threading
from typing import Any

import adbc_driver_manager
import adbc_driver_manager.dbapi as dbapi
import pyarrow as pa

from .._errors import SinkError
from . import _sql
from ._adbc import AdbcSink
from ._base import Level
from ._ddl import DIALECTS
from ._sqlite import file_kind, missing_dir, uri_for

__all__ = ["DuckdbSink", "duckdb_driver_path"]


def duckdb_driver_path() -> str:
    """Path of the shared library of the installed ``duckdb`` package (its ADBC driver)."""
    try:
        import duckdb
    except ImportError as exc:
        raise SinkError("DuckDB sinks need the duckdb package: pip install duckdb") from exc
    here = os.path.dirname(os.path.dirname(duckdb.__file__))
    found = (
        glob.glob(os.path.join(here, "_duckdb*.so"))
        + glob.glob(os.path.join(here, "_duckdb*.pyd"))
        + glob.glob(os.path.join(os.path.dirname(duckdb.__file__), "*.so"))
    )
    if not found:
        raise SinkError("cannot find the DuckDB shared library that holds its ADBC driver")
    return found[0]


class DuckdbSink(AdbcSink):
    """DuckDB file (or ``:memory:``) database."""

    dialect = DIALECTS["duckdb"]
    target_batch_bytes = 16 << 20
    serialize_writes = True

    def __init__(self, path: str, **options: Any):
        self.path = os.fspath(path)
        self._db: Any = None  # the shared ADBC database, opened on first connect
        self._db_lock = threading.Lock()
        super().__init__(uri_for("duckdb", self.path), **options)

    def _database(self) -> Any:
        with self._db_lock:
            if self._db is None:
                # shared, reference-counted: the file closes with the last connection
                self._db = dbapi._SharedDatabase(
                    adbc_driver_manager.AdbcDatabase(
                        driver=duckdb_driver_path(), entrypoint="duckdb_adbc_init", path=self.path
                    )
                )
            return self._db

    def _connect(self) -> Any:
        if self._db is None and self.path != ":memory:":
            problem = missing_dir(self.path, "duckdb")
            if problem:
                raise SinkError(problem)
            kind = file_kind(self.path)
            if kind == "sqlite":
                raise SinkError(
                    f"cannot connect to {self._uri}: {self.path!r} is not a "
                    f"DuckDB database (looks like SQLite: use "
                    f"{uri_for('sqlite', self.path)})"
                )
        db = self._database()
        return dbapi.Connection(db, adbc_driver_manager.AdbcConnection(db._db), autocommit=True)

    def _move(
        self, conn: Any, table: str, batch: pa.RecordBatch, *, level: Level, temporary: bool = False
    ) -> None:
        if level is not Level.BASIC:
            return super()._move(conn, table, batch, level=level, temporary=temporary)
        # DuckDB's ADBC driver binds one row per execution only
        stmt = _sql.insert_values(self.dialect, table, batch.schema.names)
        cur = conn.cursor()
        try:
            for i in range(batch.num_rows):
                cur.execute(stmt, batch.slice(i, 1))
        finally:
            cur.close()

    def _table_exists(self, conn: Any, table: str) -> bool:
        schema, name = self._split_name(table)
        return bool(
            self._query(
                conn,
                "SELECT 1 FROM information_schema.tables WHERE table_name = $1 "
                "AND table_schema = COALESCE($2, current_schema())",
                (name, schema),
            )
        )

    def _columns(self, conn: Any, table: str) -> set[str]:
        schema, name = self._split_name(table)
        return {
            r[0]
            for r in self._query(
                conn,
                "SELECT column_name FROM information_schema.columns WHERE table_name = $1 "
                "AND table_schema = COALESCE($2, current_schema())",
                (name, schema),
            )
        }

    def _schema_refusal(self, schema: str) -> str | None:
        if schema == "temp":
            return (
                "DuckDB's temp schema lives as long as one connection: its tables vanish "
                "when the connection closes"
            )
        if schema in ("system", "pg_catalog", "information_schema"):
            return f"{schema} is a system schema"
        return None

    def close(self) -> None:
        super().close()
        with self._db_lock:
            if self._db is not None:
                self._db.close()  # drops the sink's reference
                self._db = None
