"""DuckDB through DuckDB's own ADBC driver (shipped inside the ``duckdb`` package: the
extension module exports ``duckdb_adbc_init``).

One ADBC database object is shared by the pool's connections (DuckDB locks its file per
database instance). DuckDB has no savepoints: with ``on_error="split"`` each good piece is
committed as it is isolated (the default mode stays all-or-nothing).
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
from ._adbc import AdbcSink
from ._base import Level
from ._ddl import DIALECTS, sql

__all__ = ["DuckdbSink", "duckdb_driver_path"]


def duckdb_driver_path() -> str:
    """Path of the shared library of the installed ``duckdb`` package (its ADBC driver)."""
    try:
        import duckdb
    except ImportError as exc:
        raise SinkError("DuckDB sinks need the duckdb package: pip install duckdb") from exc
    here = os.path.dirname(os.path.dirname(duckdb.__file__))
    found = glob.glob(os.path.join(here, "_duckdb*.so")) + glob.glob(
        os.path.join(here, "_duckdb*.pyd")) + glob.glob(
        os.path.join(os.path.dirname(duckdb.__file__), "*.so"))
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
        self._db = None
        self._db_lock = threading.Lock()
        super().__init__(f"duckdb:///{self.path}", **options)

    def _database(self) -> Any:
        with self._db_lock:
            if self._db is None:
                # shared, reference-counted: the file closes with the last connection
                self._db = dbapi._SharedDatabase(adbc_driver_manager.AdbcDatabase(
                    driver=duckdb_driver_path(), entrypoint="duckdb_adbc_init", path=self.path))
            return self._db

    def _connect(self) -> Any:
        db = self._database()
        return dbapi.Connection(db, adbc_driver_manager.AdbcConnection(db._db), autocommit=True)

    def _move(self, conn: Any, table: str, batch: pa.RecordBatch, *, level: Level,
              temporary: bool = False) -> None:
        if level is not Level.BASIC:
            return super()._move(conn, table, batch, level=level, temporary=temporary)
        # DuckDB's ADBC driver binds one row per execution only
        d = self.dialect
        stmt = sql("INSERT INTO {t} ({cols}) VALUES ({marks})", t=d.quote(table),
                   cols=", ".join(d.quote(c) for c in batch.schema.names),
                   marks=", ".join(d.param(i) for i in range(batch.num_columns)))
        cur = conn.cursor()
        try:
            for i in range(batch.num_rows):
                cur.execute(stmt, batch.slice(i, 1))
        finally:
            cur.close()

    def _table_exists(self, conn: Any, table: str) -> bool:
        schema, name = self._split_name(table)
        return bool(self._query(
            conn, "SELECT 1 FROM information_schema.tables WHERE table_name = $1 "
            "AND table_schema = COALESCE($2, current_schema())", (name, schema)))

    def close(self) -> None:
        super().close()
        with self._db_lock:
            if self._db is not None:
                self._db.close()  # drops the sink's reference
                self._db = None
