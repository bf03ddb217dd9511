"""The public face of a sink: :class:`Sink`, what :func:`stockbatch.sinks.connect` returns.

Its rooms: :mod:`._dialect` (the abstract dialect interface and DB-API plumbing),
:mod:`._tables` (table lifecycle, one batch written by mode), :mod:`._run` (one ingest call),
:mod:`._aux` (quarantine, ingest log, symbols, actions), :mod:`._read`, :mod:`._migrate`,
:mod:`._sql` (SQL text), :mod:`._batches` (Arrow helpers), :mod:`._result` (results and
levels). Dialects (``_sqlite``, ``_postgres``, ``_duckdb``, ``_mysql``) supply how rows move
and which SQL merges them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from contextlib import nullcontext
from datetime import datetime
from typing import Any

import pyarrow as pa

from .._errors import SchemaError, SinkError, StockbatchError
from .._redact import redact, uri_secrets
from .._types import MODES
from ..schema import to_table
from . import _aux, _migrate, _read
from ._batches import DEFAULT_BATCH_ROWS
from ._pool import Pool
from ._result import IngestResult, Level
from ._run import IngestRun
from ._tables import TableSink

__all__ = ["Level", "IngestResult", "Sink", "MODES", "DEFAULT_BATCH_ROWS"]

log = logging.getLogger("stockbatch.sinks")  # the sinks' logger (the dialects log to it too)


class Sink(TableSink):
    """A database that stores bars and quotes. Make one with :func:`stockbatch.sinks.connect`.

    Every :meth:`ingest` call runs in one transaction on one pooled connection: all of it is
    stored, or nothing (``SinkError`` with the reason). Use as a context manager or call
    :meth:`close`.
    """

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
        self._row_bytes = None
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
        self._schemas = {}
        self._known = set()
        self._zones = {}
        self._dateless = set()
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
            (``rejected``, ``refused_by_symbol``, ``refused_errors`` of the result). An
            error about the table rather than the rows is raised at once; PostgreSQL stops
            after :attr:`split_tries`. DuckDB has no savepoints: there each try commits what
            the call wrote before it.
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
            in the same transaction. Default: what ``data`` carries itself, the
            ``stockbatch.meta`` schema metadata of :func:`stockbatch.fetch`'s tables (kept
            by ``validate``), or a decoder's keys on one symbol's batch.
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
        return IngestRun(
            self,
            data,
            table=table,
            kind=kind,
            mode=mode,
            on_error=on_error,
            job_id=job_id,
            source=source,
            level=level,
            batch_rows=batch_rows,
            quarantine=quarantine,
            meta=meta,
            indicators=indicators,
        ).run()

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
                n = _aux.quarantine_rows(
                    self,
                    conn,
                    table,
                    job_id=job_id,
                    target=target or "",
                    reasons=reasons,
                    error=error,
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
                _aux.log_row(
                    self,
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
        return _read.read(
            self, table=table, kind=kind, symbols=symbols, interval=interval, start=start, end=end
        )

    def read_aux(
        self, kind: str, *, symbols: Iterable[str] | None = None, start: Any = None, end: Any = None
    ) -> pa.Table:
        """Rows of the ``actions``, ``symbols`` or ``indicators`` table, ordered by key;
        ``start``/``end`` (``end`` exclusive) select actions by exchange date, indicator
        values by ``ts`` (UTC instants)."""
        return _read.read_aux(self, kind, symbols=symbols, start=start, end=end)

    def migrate(self, *, symbols_per_step: int = 200) -> dict[str, str]:
        """Upgrade this sink's tables of stockbatch 0.1 in place (``stockbatch migrate``):
        the bars table gets its ``date`` column (rows copied, by symbol, into a table of the
        current layout that then takes the old one's name, in the zone the ``symbols``
        table knows, else UTC: the next upsert with provider metadata corrects those
        dates), the ``symbols`` table is filled from the bars, quarantine and ingest log
        are brought up to date, and the layout version is recorded in ``stockbatch_meta``.
        Returns what was done per table. Running it again changes nothing."""
        return _migrate.migrate(self, symbols_per_step)

    def schema_version(self) -> int | None:
        """The layout version recorded in ``stockbatch_meta`` (None: never recorded; a
        database of stockbatch 0.1, or one this version created without migrating)."""
        return _migrate.schema_version(self)
