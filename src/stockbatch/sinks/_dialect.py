"""The dialect interface of a sink, declared once: the hooks each database provides
(abstract: how to connect, which exceptions are its errors, what the catalogue says, how
rows move, how a staging table is filled and quarantine rows merged) and those with a
default most share, beside the DB-API plumbing every room of the sink uses.

The SQLite, PostgreSQL and DuckDB sinks implement it over ADBC (:mod:`._adbc`), MariaDB over
PyMySQL (:mod:`._mysql`). The rooms built on it: :mod:`._tables` (table lifecycle, one batch
written by mode), :mod:`._aux` (quarantine, ingest log, symbols, actions, trading dates),
:mod:`._read`, :mod:`._run` (one ingest call), :mod:`._migrate`; :class:`~._base.Sink` is
the public face.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date
from typing import Any

import pyarrow as pa

from .._arrow import pylist
from .._errors import SchemaError, SinkError, StockbatchError
from .._redact import redact
from .._time import micros_to_datetime
from . import _dbapi, _ddl, _sql
from ._ddl import check_name
from ._pool import Pool
from ._result import Level

__all__ = ["DialectSink"]


class DialectSink(abc.ABC):
    """What a database must provide (the abstract methods) and may change (the hooks with
    a default), plus the plumbing built on them. Not used directly: see :class:`~._base.Sink`.
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
    #: The most writes ``on_error="split"`` tries in one ingest call to single out the rows
    #: the database refuses (None: no limit); past it the call fails with the database's
    #: error. Each try is a savepoint.
    split_tries: int | None = None

    # the state every room shares, set by Sink.__init__
    _uri: str
    _secrets: tuple[str, ...]
    level: Level
    tables: dict[str, str]
    _pool: Pool
    _write_lock: threading.Lock | AbstractContextManager[None]
    _batch_rows: int | None
    _row_bytes: float | None
    #: table -> its Arrow schema as the driver reports it (looked up once)
    _schemas: dict[str, pa.Schema]
    #: tables known to exist in our shape (created, migrated or checked by this sink): no
    #: catalogue query for them; forgotten on drop/replace and on any failure
    _known: set[str]
    #: symbol -> exchange time zone (None: never reported; its bars are dated in UTC)
    _zones: dict[str, str | None]
    #: bars tables without the date column (0.1 layout, see migrate())
    _dateless: set[str]

    # -- what each database must provide ------------------------------------------------
    @abc.abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection (autocommit; transactions are explicit statements)."""

    @abc.abstractmethod
    def _db_errors(self) -> tuple:
        """The driver's exception classes (turned into SinkError with the reason)."""

    @abc.abstractmethod
    def _table_exists(self, conn: Any, table: str) -> bool:
        """Whether ``table`` exists (a catalogue query)."""

    @abc.abstractmethod
    def _columns(self, conn: Any, table: str) -> set[str]:
        """Column names of ``table`` (empty if it does not exist)."""

    @abc.abstractmethod
    def _move(
        self, conn: Any, table: str, batch: pa.RecordBatch, *, level: Level, temporary: bool = False
    ) -> None:
        """Append ``batch`` (already cast to the table's types) into ``table``."""

    @abc.abstractmethod
    def _stage(self, conn: Any, kind: str, batch: pa.RecordBatch, level: Level) -> str:
        """Fill the connection's temporary staging table of ``kind`` with ``batch``; its name."""

    @abc.abstractmethod
    def _merge_quarantine(self, conn: Any, table: str, q: pa.Table) -> None:
        """Insert the rows of ``q`` (columns of the quarantine table, ``row_hash`` unique
        within ``q``); a hash already stored adds ``seen_count`` and takes ``last_seen`` and
        ``job_id``."""

    # -- hooks with a default -------------------------------------------------------------
    def _ping(self, conn: Any) -> None:
        """Raise if ``conn`` is dead (the pool's health check on checkout)."""
        _dbapi.fetchall(conn, "SELECT 1")

    def _schema_refusal(self, schema: str) -> str | None:
        """Why tables in ``schema`` (lower case) are refused, or None if they are fine."""
        return None

    def _prepare(self, batch: pa.RecordBatch, kind: str) -> pa.RecordBatch:
        """Cast a canonical batch to the types this database's tables take."""
        return batch

    def _check_types(self, conn: Any, table: str, batch: pa.RecordBatch) -> None:
        """Raise :class:`SchemaError` naming the column if ``batch`` does not fit the
        column types of an existing ``table`` (staged upserts would otherwise let the
        database round or truncate silently)."""
        return None

    def _time_index(self, table: str) -> str | None:
        """The index on ``ts`` a new bars table gets (None: none; see
        :meth:`create_time_index`)."""
        return None

    def _lock_table(self, conn: Any, table: str) -> bool:
        """Serialise creators of ``table`` until the transaction ends (if the database can);
        True when a lock was taken."""
        return False

    def _begin_write(self, conn: Any, level: Level) -> None:
        self._begin(conn)

    def _defer(self, conn: Any, table: str, kind: str, mode: str, level: Level, rows: int) -> bool:
        """Decide (and prepare) deferred index work for a whole in-memory input of
        ``rows`` rows; True when the dialect will write the rows in :meth:`_finish`."""
        return False

    def _finish(self, conn: Any, table: str, kind: str, level: Level) -> None:
        """Complete deferred work of this call, inside its transaction."""
        return None

    def _abandon(self) -> None:
        """Forget deferred work of a failed call."""
        return None

    def _widen_quarantine(self, conn: Any, table: str) -> None:
        """Give the text columns of an upgraded 0.1 quarantine table room for long rows and
        errors (MariaDB: they were VARCHAR(255))."""
        return None

    def _after_rename(self, conn: Any, old: str, new: str) -> None:
        """Dialect clean-up after a migrated table took its name."""
        return None

    def _bind_ts(self, us: int) -> Any:
        return micros_to_datetime(us)

    def _bind_date(self, value: date) -> Any:
        return value

    def _bind_value(self, v: Any) -> Any:
        return v

    def _aux_ready(self, data: pa.Table) -> pa.Table:
        """An aux table's rows cast to the types this database's staging takes."""
        return data

    def _read_arrow(self, conn, stmt: str, params: list, kind: str) -> pa.Table:
        return self._query_arrow(conn, stmt, params or None)

    def _stage_name(self, kind: str) -> str:
        return f"_sb_stage_{kind}"

    def _upsert(self, conn, table, kind, batch, level) -> tuple[int, int, int]:
        """Generic staged upsert: returns (inserted, updated, unchanged)."""
        stage = self._stage(conn, kind, batch, level)
        existing, changed = self._count_existing(conn, table, stage, kind)
        self._exec(conn, self._merge_sql(table, stage, kind, update=True))
        return batch.num_rows - existing, changed, existing - changed

    def _insert_new(self, conn, table, kind, batch, level) -> dict:
        """Insert the rows of ``batch`` whose key is not stored; returns the others (left as
        stored) counted per symbol."""
        stage = self._stage(conn, kind, batch, level)
        kept = self._existing_by_symbol(conn, table, stage, kind)
        self._exec(conn, self._merge_sql(table, stage, kind, update=False))
        return kept

    def _existing_by_symbol(self, conn, table: str, stage: str, kind: str) -> dict:
        """{symbol: rows of the stage whose key is stored}."""
        rows = self._query(conn, _sql.existing_by_symbol(self.dialect, table, stage, kind))
        return {sym: int(n) for sym, n in rows}

    def _count_existing(self, conn, table: str, stage: str, kind: str) -> tuple[int, int]:
        """(rows of the stage whose key is stored, of which values differ)."""
        existing, changed = self._query(
            conn, _sql.count_existing(self.dialect, table, stage, kind)
        )[0]
        return int(existing), int(changed)

    def _merge_sql(self, table: str, stage: str, kind: str, *, update: bool) -> str:
        """The statement that merges ``stage`` into ``table`` (default: ON CONFLICT)."""
        return _sql.merge_on_conflict(self.dialect, table, stage, kind, update=update)

    def _upsert_row_sql(self, table: str, names: list, key: tuple) -> str:
        """One row's upsert by ``key`` (default: ON CONFLICT … DO UPDATE)."""
        return _sql.upsert_row(self.dialect, table, names, key)

    def _append_aux(self, conn, table: str, data: pa.Table) -> None:
        """Append a small table of ours (quarantine, log) with bound values."""
        rows = [tuple(self._bind_value(v) for v in r.values()) for r in pylist(data)]
        _dbapi.executemany(conn, _sql.insert_values(self.dialect, table, data.column_names), rows)

    # -- plumbing -----------------------------------------------------------------------
    # every statement of every room goes through these three (SQLite waits out a busy lock
    # around them)
    def _exec(self, conn: Any, statement: str, params: Any = None) -> int:
        """Run one statement; return the row count the driver reports (-1 if none)."""
        return _dbapi.execute(conn, statement, params)

    def _query(self, conn: Any, statement: str, params: Any = None) -> list:
        return _dbapi.fetchall(conn, statement, params)

    def _query_arrow(self, conn: Any, statement: str, params: Any = None) -> pa.Table:
        return _dbapi.fetch_arrow(conn, statement, params)

    def _begin(self, conn: Any) -> None:
        self._exec(conn, "BEGIN")

    def _commit(self, conn: Any) -> None:
        self._exec(conn, "COMMIT")

    def _rollback(self, conn: Any) -> None:
        self._exec(conn, "ROLLBACK")

    def _rollback_quietly(self, conn: Any) -> None:
        try:
            self._rollback(conn)
        except Exception:  # noqa: BLE001 - a dead connection rolls back on the server
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

    def _err(self, exc: BaseException) -> str:
        """The database's message, one line, without the statement, passwords redacted."""
        return _dbapi.error_text(exc, self._secrets)

    def _refuses_rows(self, exc: BaseException) -> bool:
        """Whether ``exc`` is about the rows written (a constraint, a value, a trigger that
        refused them), so that halving the batch finds them; False when it is about the
        table or the database (a view as target, no unique key for ON CONFLICT, a full disk,
        a lost connection), which every row would meet."""
        return _dbapi.refuses_rows(exc)

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

    def _forget(self, *tables: str) -> None:
        for t in tables:
            self._known.discard(t)
            self._dateless.discard(t)
            self._schemas.pop(t, None)

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
