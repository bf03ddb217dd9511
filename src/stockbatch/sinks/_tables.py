"""The table lifecycle of a sink: create (with the layout version recorded), upgrade, check
and drop tables, and write one batch by mode (append, upsert, insert_new)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from .._errors import SchemaError, SinkError
from . import _aux
from ._batches import dedup
from ._ddl import SPECS, check_name, sql
from ._dialect import DialectSink
from ._result import IngestResult, Level

__all__ = ["TableSink"]

log = logging.getLogger("stockbatch.sinks")


class TableSink(DialectSink):
    """:class:`DialectSink` plus what a sink does with whole tables."""

    #: The layout version this stockbatch writes (``stockbatch_meta.schema_version``):
    #: 1 = stockbatch 0.1 (no ``date`` on bars), 2 = trading dates, symbols, actions.
    SCHEMA_VERSION = 2

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

    def prepare(
        self,
        table: str | None = None,
        *,
        kind: str = "bars",
        mode: str = "create_append",
        aux: tuple[str, ...] = ("quarantine", "ingest_log", "symbols"),
    ) -> None:
        """Make ready, before any rows exist, what :meth:`ingest` into ``table`` by ``mode``
        will write: the table itself in the modes that create a missing one
        (``create_append``, ``upsert``, ``insert_new``; ``replace`` and ``create`` wait for
        rows, ``append`` only checks at ingest) and the auxiliary tables of the roles
        ``aux``, in one transaction. The pipeline calls it while the first answers are
        fetched, so that the first chunk does not pay for the DDL."""
        table = self.check_table(self.tables[kind] if table is None else table)
        make = mode in ("create_append", "upsert", "insert_new") and table not in self._known
        roles = [a for a in aux if self.tables[a] not in self._known]
        if not make and not roles:
            return
        with (
            self._write_lock,
            self._connection() as conn,
            self._translating("prepare", table, mode=mode),
        ):
            try:
                self._begin_ready(conn, table if make else None, kind, mode, roles, self.level)
                self._commit(conn)
            except BaseException:
                self._rollback_quietly(conn)
                raise
        if make:
            self._known.add(table)
        self._known.update(self.tables[a] for a in roles)

    def _begin_ready(
        self,
        conn: Any,
        table: str | None,
        kind: str,
        mode: str,
        roles: Iterable[str],
        level: Level,
    ) -> None:
        """Begin a write transaction with ``table`` (if given) prepared for ``mode`` and
        the tables of ``roles`` ready; where DDL commits (MariaDB) it is done first."""
        if not self.transactional_ddl:
            if table is not None:
                self._prepare_table(conn, table, kind, mode)
            for a in roles:
                self._ensure(conn, a, in_tx=False)
        self._begin_write(conn, level)
        if self.transactional_ddl:
            if table is not None:
                self._prepare_table(conn, table, kind, mode)
            for a in roles:
                self._ensure(conn, a, in_tx=True)

    def _ensure(self, conn: Any, kind: str, *, in_tx: bool) -> None:
        """Make the table of role ``kind`` exist in the current shape. The caller marks it
        known (``self._known``) once what it did is committed."""
        table = self.tables[kind]
        if table in self._known:
            return
        if kind == "quarantine":
            _aux.ensure_quarantine(self, conn, table, in_tx=in_tx)
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

    def drop_table(self, table: str) -> None:
        """Drop ``table`` if it exists (tests and ``replace`` use it)."""
        check_name(table)
        self._forget(table)
        with self._connection() as conn, self._translating("drop_table", table):
            self._exec(conn, sql("DROP TABLE IF EXISTS {t}", t=self.dialect.quote(table)))

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
        self,
        conn: Any,
        table: str,
        kind: str,
        batch: pa.RecordBatch,
        mode: str,
        level: Level,
        result: IngestResult,
        *,
        unique: bool = False,
    ) -> None:
        """Write ``batch`` into ``table`` by ``mode``, counting into ``result`` (inside the
        caller's transaction). ``unique``: the input was de-duplicated already."""
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
            kept = self._insert_new(conn, table, kind, batch, level)
            n_kept = sum(kept.values())
            result.add(written=batch.num_rows - n_kept, ignored=n_kept + dups)
            for sym, n in kept.items():
                result.kept_by_symbol[sym] = result.kept_by_symbol.get(sym, 0) + n
        else:
            self._move(conn, table, batch, level=level)
            result.add(written=batch.num_rows)
