"""What SQLite, PostgreSQL and DuckDB share: they all speak ADBC.

Connections run in autocommit mode and transactions are driven with explicit
``BEGIN``/``COMMIT``/``SAVEPOINT``: the ADBC PostgreSQL driver refuses every statement
(even ``ROLLBACK TO SAVEPOINT``) once a statement failed inside a driver-managed transaction,
which would make ``on_error="split"`` impossible.
"""

from __future__ import annotations

from typing import Any

import adbc_driver_manager
import pyarrow as pa

from .._errors import SchemaError
from . import _dbapi, _sql
from ._base import Level, Sink
from ._ddl import SPECS, sql

__all__ = ["AdbcSink"]


class AdbcSink(Sink):
    """Sink over an ADBC DB-API connection."""

    #: Ask the driver for the table's Arrow schema (SQLite's driver guesses it from the
    #: stored values, so the SQLite sink relies on its own DDL instead).
    lookup_schema = True
    #: Rows per piece of a bulk ingest streamed to the driver (None: one batch, one piece).
    copy_piece_rows: int | None = None

    def _db_errors(self) -> tuple:
        return (adbc_driver_manager.Error,)

    def _split_name(self, table: str) -> tuple[str | None, str]:
        schema, _, name = table.rpartition(".")
        return (schema or None), name

    def _target(self, conn: Any, table: str, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Cast ``batch`` to the exact Arrow types of ``table`` (ADBC append needs exact
        types); the table's schema is looked up once per sink."""
        schema = self._schemas.get(table)
        if schema is None and not self.lookup_schema:
            return batch
        if schema is None:
            db_schema, name = self._split_name(table)
            try:
                schema = conn.adbc_get_table_schema(name, db_schema_filter=db_schema)
            except adbc_driver_manager.Error:
                return batch
            self._schemas[table] = schema
        if (
            all(
                f.name in batch.schema.names and batch.schema.field(f.name).type == f.type
                for f in schema
            )
            and len(schema) == batch.num_columns
        ):
            return batch
        cols = []
        for f in schema:
            if f.name not in batch.schema.names:
                cols.append(pa.nulls(batch.num_rows, f.type))
                continue
            col = batch.column(f.name)
            if col.type != f.type:
                try:
                    col = self._cast(col, f.type)
                except pa.ArrowException as exc:
                    raise SchemaError(
                        f"column {f.name!r} of table {table!r} holds {f.type} but the data "
                        f"is {col.type}: {exc}",
                        {f.name: f"table {table!r} stores {f.type}; the data is {col.type}"},
                    ) from None
            cols.append(col)
        return pa.RecordBatch.from_arrays(cols, names=schema.names)

    def _check_types(self, conn: Any, table: str, batch: pa.RecordBatch) -> None:
        if self.lookup_schema:
            self._target(conn, table, batch)  # raises SchemaError naming the column

    def _cast(self, col: pa.Array, to: pa.DataType) -> pa.Array:
        if pa.types.is_timestamp(col.type) and pa.types.is_integer(to):
            return col.cast(pa.int64())  # int64 microseconds since the epoch, UTC
        if pa.types.is_timestamp(col.type) and pa.types.is_timestamp(to):
            return col.cast(pa.timestamp("us", tz=to.tz)).cast(to)
        return col.cast(to)

    def _move(
        self, conn: Any, table: str, batch: pa.RecordBatch, *, level: Level, temporary: bool = False
    ) -> None:
        if level is Level.BASIC:  # one prepared INSERT bound to the whole batch
            stmt = _sql.insert_values(self.dialect, table, batch.schema.names)
            _dbapi.executemany(conn, stmt, batch)
            return
        db_schema, name = self._split_name(table)
        if not temporary:
            batch = self._target(conn, table, batch)
        data: Any = batch
        piece = self.copy_piece_rows
        if piece and batch.num_rows > piece:
            # a stream of pieces: the driver sends each piece as soon as it is encoded, so
            # the server inserts while the next is encoded (a whole batch is encoded first)
            data = pa.RecordBatchReader.from_batches(
                batch.schema, pa.Table.from_batches([batch]).to_batches(max_chunksize=piece)
            )
        cur = conn.cursor()
        try:
            cur.adbc_ingest(
                name, data, mode="append", db_schema_name=db_schema, temporary=temporary
            )
        finally:
            cur.close()

    def _append_aux(self, conn: Any, table: str, data: pa.Table) -> None:
        # COPY / bound Arrow ingest: the ADBC PostgreSQL driver ends an explicit transaction
        # block around parameterised DML in autocommit mode, so no bound INSERT here.
        for batch in self._aux_prepare(data).to_batches():
            self._move(conn, table, batch, level=Level.ADVANCED)

    def _aux_prepare(self, data: pa.Table) -> pa.Table:
        return data

    def _merge_quarantine(self, conn: Any, table: str, q: pa.Table) -> None:
        # COPY / Arrow ingest into a temporary stage, then one set-based merge on the hash
        d = self.dialect
        stage = self._stage_name("quarantine")
        self._exec(
            conn,
            SPECS["quarantine"].create(d, stage, if_not_exists=True, temporary=True, keyed=False),
        )
        self._clear_stage(conn, stage)
        for batch in self._aux_prepare(q).to_batches():
            self._move(conn, stage, batch, level=Level.ADVANCED, temporary=True)
        cols = ", ".join(d.quote(c) for c in q.column_names)
        qt = d.quote(table)
        self._exec(
            conn,
            sql(
                "INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} WHERE true ON CONFLICT ({h}) "
                "DO UPDATE SET {n} = {t}.{n} + excluded.{n}, {last} = excluded.{last}, "
                "{job} = excluded.{job}",
                t=qt,
                s=d.quote(stage),
                cols=cols,
                h=d.quote("row_hash"),
                n=d.quote("seen_count"),
                last=d.quote("last_seen"),
                job=d.quote("job_id"),
            ),
        )

    def _stage(self, conn: Any, kind: str, batch: pa.RecordBatch, level: Level) -> str:
        stage = self._stage_name(kind)
        d = self.dialect
        self._exec(
            conn, SPECS[kind].create(d, stage, if_not_exists=True, temporary=True, keyed=False)
        )
        self._clear_stage(conn, stage)
        self._move(conn, stage, batch, level=level, temporary=level is not Level.BASIC)
        return stage

    def _clear_stage(self, conn: Any, stage: str) -> None:
        self._exec(conn, sql("DELETE FROM {s}", s=self.dialect.quote(stage)))
