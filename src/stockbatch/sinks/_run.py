"""One :meth:`Sink.ingest` call as an object: its options checked and its state set in
``__init__``, then :meth:`IngestRun.run` writes everything in one transaction: the data
(batch by batch, or bisected with ``on_error="split"``), then the auxiliary rows (symbols,
actions, indicator values, quarantine, ingest log), and commits or rolls back whole."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .. import _arrow
from .._errors import SchemaError, SinkError, StockbatchError
from .._redact import redact
from .._types import MODES
from ..schema import conform, to_table
from . import _aux, _meta, _sql
from ._batches import DEFAULT_BATCH_ROWS, as_utc, dedup, raw_batches, rechunk, unique_rows
from ._ddl import SPECS, kind_of, sql
from ._read import SCHEMAS
from ._result import IngestResult, Level

if TYPE_CHECKING:
    from ._base import Sink

__all__ = ["IngestRun"]

#: Modes that insert every row as it is (a stored key is refused by the database).
_APPENDING = ("append", "create", "create_append", "replace")
#: How SQLite, PostgreSQL, MariaDB/MySQL and DuckDB word a unique-key violation.
_DUPLICATE_KEY = re.compile(r"unique constraint|duplicate (key|entry)|primary key", re.I)


def _key_values(col: Any) -> list:
    """A key column's values, comparable whatever the driver read them as (timestamps as
    UTC microseconds)."""
    if pa.types.is_timestamp(col.type) or pa.types.is_integer(col.type):
        return as_utc(col).cast(pa.int64()).to_pylist()
    return col.cast(pa.string()).to_pylist()


class IngestRun:
    """The arguments of one ingest call, checked, and what it has done so far."""

    def __init__(
        self,
        sink: Sink,
        data: Any,
        *,
        table: str | None,
        kind: str | None,
        mode: str,
        on_error: str,
        job_id: str | None,
        source: str | None,
        level: Any,
        batch_rows: int | None,
        quarantine: Any,
        meta: dict | None,
        indicators: Any,
    ):
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
        self.sink = sink
        self.mode = mode
        self.on_error = on_error
        self.job_id = job_id
        self.source = source
        self.level = Level.of(level) if level is not None else sink.level
        self.t0 = time.perf_counter()
        self.started = datetime.now(timezone.utc)
        self.rows = batch_rows or sink._batch_rows
        it = raw_batches(data)
        first = next(it, None)
        if first is None:
            kind = kind or ("quotes" if table == sink.tables["quotes"] else "bars")
        else:
            kind = kind or kind_of(first.schema.names)
            if kind not in SCHEMAS:
                raise SinkError(f"unknown kind {kind!r}: use 'bars' or 'quotes'")
            if self.rows is None:
                self.rows = sink.recommend_batch_size(first.nbytes / max(first.num_rows, 1))
        self.kind = kind
        self.table = sink.check_table(sink.tables[kind] if table is None else table)
        #: the kind the rows are written as: a bars table of the 0.1 layout has no date
        self.wkind = kind
        self.schema = SCHEMAS[kind]
        self.data = data
        #: rows of a whole in-memory input (None: a stream)
        self.known = data.num_rows if isinstance(data, (pa.Table, pa.RecordBatch)) else None
        self.pending: Iterator[pa.RecordBatch] = itertools.chain(
            [] if first is None else [first], it
        )
        self.unique = False  # True once the whole input was de-duplicated up front
        self.tries = 0  # split mode's writes so far (Sink.split_tries)
        self.result = IngestResult(table=self.table, mode=mode, job_id=job_id)
        self.quarantine = quarantine
        self.quarantining = quarantine is not None and quarantine.num_rows > 0
        # meta= wins; else what the data carries (sb.fetch's tables, a decoder's batch),
        # kept for the symbols the data turns out to hold (see _write_aux)
        self.carried = meta is None
        if self.carried:
            self.meta = _aux.check_meta(_meta.carried(data, first), "stockbatch.meta")
        else:
            self.meta = _aux.check_meta(meta)
        for sym, m in self.meta.items():
            if m.get("timezone"):
                sink._zones[sym] = m["timezone"]
        self.has_events = any(m.get("events") for m in self.meta.values())
        #: symbol -> (first ts, last ts) of the bars written
        self.seen: dict[str, tuple[Any, Any]] = {}
        self.values = None if indicators is None else _meta.indicators_long(to_table(indicators))
        #: the auxiliary tables this call writes
        self.aux = (
            (["quarantine"] if on_error == "split" or self.quarantining else [])
            + (["ingest_log"] if job_id is not None else [])
            + (["symbols"] if kind == "bars" else [])
            + (["actions"] if self.has_events else [])
            + (["indicators"] if self.values is not None and self.values.num_rows else [])
        )

    def run(self) -> IngestResult:
        """Write it all in one transaction; all of it is stored, or nothing."""
        sink = self.sink
        with sink._write_lock, sink._connection() as conn:
            try:
                self._open(conn)
                self._write_data(conn)
                sink._finish(conn, self.table, self.wkind, self.level)
                self._write_aux(conn)
                sink._commit(conn)
            except BaseException as exc:
                error = self._rolled_back(conn, exc)
                if error is None:
                    raise
                raise error from None
        sink._known.add(self.table)
        sink._known.update(sink.tables[a] for a in self.aux)
        self.result.seconds = time.perf_counter() - self.t0
        return self.result

    def _open(self, conn: Any) -> None:
        """Begin the transaction with every table this call writes ready."""
        sink = self.sink
        sink._begin_ready(conn, self.table, self.kind, self.mode, self.aux, self.level)
        if self.kind == "bars" and self.table in sink._dateless:
            self.wkind = "bars_0_1"

    def _write_data(self, conn: Any) -> None:
        sink, result, mode = self.sink, self.result, self.mode
        rows = self.rows
        if (
            self.on_error == "raise"
            and self.known
            and sink._defer(conn, self.table, self.wkind, mode, self.level, self.known)
        ):
            # a whole in-memory table written with deferred index work: duplicates are
            # resolved across the whole input first (rows written later are not visible to
            # the reads of later batches)
            whole = conform(self.data, self.schema)
            if mode in ("upsert", "insert_new"):
                whole, dups = dedup(
                    whole.combine_chunks().to_batches()[0] if whole.num_rows else whole,
                    SPECS[self.wkind].key,
                    keep="last" if mode == "upsert" else "first",
                )
                result.add(ignored=dups)
            self.pending = raw_batches(whole)
            self.unique = mode in ("upsert", "insert_new")
            # the rows are written at the end anyway: classify in fewer, larger batches
            # (fewer round trips and joins)
            rows = max(rows or DEFAULT_BATCH_ROWS, sink.deferred_batch_rows)
        dated = self.table not in sink._dateless
        for b in rechunk(self.pending, rows or DEFAULT_BATCH_ROWS):
            t = conform(b, self.schema)
            for batch in t.to_batches() if t.num_rows else ():
                if self.kind == "bars":
                    batch = _aux.dated(sink, conn, batch, self.seen, with_date=dated)
                sink._row_bytes = batch.nbytes / max(batch.num_rows, 1)
                result.batches += 1
                if self.on_error == "split":
                    self._write_split(conn, batch)
                else:
                    sink._write(
                        conn,
                        self.table,
                        self.wkind,
                        batch,
                        mode,
                        self.level,
                        result,
                        unique=self.unique,
                    )

    def _write_aux(self, conn: Any) -> None:
        sink, result = self.sink, self.result
        meta = self.meta
        if self.carried:  # a filtered sb.fetch table still carries every symbol's metadata
            meta = {s: m for s, m in meta.items() if s in self.seen}
        if self.kind == "bars" and (self.seen or meta):
            _aux.store_symbols(sink, conn, self.seen, meta, self.source)
        if self.has_events:
            _aux.store_actions(sink, conn, meta, self.source)
        if self.values is not None and self.values.num_rows:
            self._write_indicators(conn, self.values)
        if self.quarantining:
            result.quarantined = _aux.quarantine_rows(
                sink,
                conn,
                self.quarantine,
                job_id=self.job_id,
                target=self.table,
                reasons=None,
                error="",
            )
        result.seconds = time.perf_counter() - self.t0
        if self.job_id is not None:
            _aux.log_row(
                sink,
                conn,
                job_id=self.job_id,
                source=self.source,
                target=self.table,
                mode=self.mode,
                written=result.written,
                updated=result.updated,
                ignored=result.ignored,
                rejected=result.quarantined,
                refused=result.rejected,
                started=self.started,
            )

    def _write_indicators(self, conn: Any, values: pa.Table) -> None:
        """Upsert indicator values (long rows) through the bars' staged upsert."""
        sink, result = self.sink, self.result
        t = sink.tables["indicators"]
        sub = IngestResult(table=t, mode="upsert")
        for batch in rechunk(values.to_batches(), DEFAULT_BATCH_ROWS):
            sink._write(conn, t, "indicators", batch, "upsert", self.level, sub)
        result.indicators_written += sub.written
        result.indicators_updated += sub.updated
        result.indicators_ignored += sub.ignored

    def _rolled_back(self, conn: Any, exc: BaseException) -> BaseException | None:
        """Roll back after ``exc``; the typed error to raise instead (None: raise ``exc``)."""
        sink, table, mode = self.sink, self.table, self.mode
        sink._abandon()
        sink._rollback_quietly(conn)
        sink._forget(table, *(sink.tables[a] for a in self.aux))
        if isinstance(exc, SinkError | SchemaError):
            return None
        if isinstance(exc, pa.ArrowException):
            return SchemaError(
                f"ingest into {table!r} ({mode}) failed and was rolled "
                f"back: the data does not fit the table: "
                f"{redact(str(exc), sink._secrets)[:300]}"
            )
        if isinstance(exc, StockbatchError) or not isinstance(exc, (*sink._db_errors(), OSError)):
            return None
        return SinkError(
            f"ingest into {table!r} ({mode}) failed and was rolled back: {sink._err(exc)}",
            table=table,
            mode=mode,
        )

    # -- on_error="split" ---------------------------------------------------------------
    def _savepoint(self, conn: Any) -> None:
        sink = self.sink
        if sink.dialect.savepoints:
            sink._exec(conn, "SAVEPOINT sb_split")
        # without savepoints (DuckDB) what is stored so far is committed: the split mode
        # then keeps every good piece, as it promises, at the price of per-piece commits.
        else:
            sink._commit(conn)
            sink._begin(conn)

    def _release(self, conn: Any) -> None:
        if self.sink.dialect.savepoints:
            self.sink._exec(conn, "RELEASE SAVEPOINT sb_split")

    def _rollback_to(self, conn: Any, exc: BaseException | None = None) -> None:
        """Undo what followed the savepoint. When the database has already rolled back the
        whole transaction after ``exc`` (SQLite after a full disk: "no such savepoint"),
        ``exc`` is raised: it, not the failed rollback, is what went wrong."""
        sink = self.sink
        try:
            if sink.dialect.savepoints:
                sink._exec(conn, "ROLLBACK TO SAVEPOINT sb_split")
            else:
                sink._rollback(conn)
                sink._begin(conn)
        except sink._db_errors():
            if exc is None:
                raise
            raise exc from None

    def _stored_keys(self, conn: Any, part: pa.RecordBatch, exc: BaseException) -> Any:
        """After the database refused ``part`` for a duplicate key in an appending mode: which
        of its rows have a key already stored (one staged lookup), so that they are refused
        together instead of bisected down one by one (appending a stored year again was
        ~100k statements). None when this does not apply."""
        sink, kind = self.sink, self.wkind
        if self.mode not in _APPENDING or not _DUPLICATE_KEY.search(str(exc)):
            return None
        key = SPECS[kind].key
        d = sink.dialect
        try:
            stage = sink._stage(conn, kind, sink._prepare(part, kind), self.level)
            found = sink._query_arrow(
                conn,
                sql(
                    "SELECT {cols} FROM {s} s JOIN {t} t ON {on}",
                    cols=", ".join(f"s.{d.quote(k)}" for k in key),
                    s=d.quote(stage),
                    t=d.quote(self.table),
                    on=_sql.key_join(d, "s", "t", kind),
                ),
            )
        except sink._db_errors():  # the lookup failed: bisect as before
            self._rollback_to(conn)
            return None
        stored = set(zip(*(_key_values(found.column(i)) for i in range(len(key))), strict=True))
        rows = zip(*(_key_values(part.column(k)) for k in key), strict=True)
        return np.fromiter((r in stored for r in rows), bool, part.num_rows)

    def _duplicate_text(self, *, twice: bool = False) -> str:
        key = ", ".join(SPECS[self.wkind].key)
        if twice:
            return f"INTEGRITY: a row with this key ({key}) comes earlier in the same data"
        return f"INTEGRITY: a row with this key ({key}) is already stored in {self.table!r}"

    def _write_split(self, conn: Any, batch: pa.RecordBatch) -> None:
        """Store ``batch`` but the rows the database refuses; those go to the quarantine
        table (one bulk write per batch) with the database's error, counted per symbol.

        The refused rows are found first: each part is written under a savepoint that is
        then rolled back, whether it was taken or not (a piece kept at once held its locks
        to the end of the transaction: PostgreSQL keeps ~1 lock per try anyway, so it stops
        after ``Sink.split_tries``). A part the database refuses is halved down to its
        single rows (rows whose key is already stored are found by one lookup instead; a key
        given twice in ``batch`` is refused before). An error about the table or the
        database, not the rows (a view as target, no unique key for ON CONFLICT, a full
        disk) is raised at once: every row would meet it. Then the other rows are written
        together."""
        sink, result, table, mode = self.sink, self.result, self.table, self.mode
        refused: list[pa.RecordBatch] = []
        errors: list[str] = []

        def refuse(rows: pa.RecordBatch, err: str) -> None:
            refused.append(rows)
            errors.extend([err] * rows.num_rows)
            result.add(rejected=rows.num_rows)
            result.errors.extend([err] * rows.num_rows)
            syms = (
                rows.column("symbol").to_pylist()
                if "symbol" in rows.schema.names
                else [None] * rows.num_rows
            )
            for sym in syms:
                sym = "" if sym is None else str(sym)
                result.refused_by_symbol[sym] = result.refused_by_symbol.get(sym, 0) + 1
                result.refused_errors.setdefault(sym, err)

        if mode in _APPENDING:
            first = unique_rows(batch, SPECS[self.wkind].key, keep="first")
            if first is not None:
                refuse(batch.filter(_arrow.bools(~first)), self._duplicate_text(twice=True))
                batch = batch.filter(_arrow.bools(first))
        for _ in range(3):  # a writer beside us may refuse again what a probe let pass
            good = self._probe(conn, batch, refuse)
            if not good:
                break
            whole = pa.Table.from_batches(good).combine_chunks().to_batches()[0]
            self._savepoint(conn)
            sub = IngestResult(table=table, mode=mode)
            try:
                sink._write(conn, table, self.wkind, whole, mode, self.level, sub)
            except sink._db_errors() as exc:
                self._rollback_to(conn, exc)
                batch = whole
                continue
            self._release(conn)
            result.add(sub.written, sub.updated, sub.ignored, sub.rejected)
            for sym, n in sub.kept_by_symbol.items():
                result.kept_by_symbol[sym] = result.kept_by_symbol.get(sym, 0) + n
            break
        else:
            raise SinkError(
                f"ingest into {table!r} ({mode}): rows that were stored alone were refused "
                "together three times",
                table=table,
                mode=mode,
            )
        if refused:
            rows = pa.Table.from_batches(refused)
            if "date" in rows.column_names:  # derived from ts: not part of the input row
                rows = rows.drop_columns(["date"])
            _aux.quarantine_rows(
                sink, conn, rows, job_id=self.job_id, target=table, reasons=None, error=errors
            )

    def _probe(self, conn: Any, batch: pa.RecordBatch, refuse: Any) -> list[pa.RecordBatch]:
        """The parts of ``batch`` the database takes (each written, then rolled back); the
        rows it refuses go to ``refuse`` with its error."""
        sink = self.sink
        stack, good = [batch], []
        while stack:
            part = stack.pop()
            self.tries += 1
            if sink.split_tries is not None and self.tries > sink.split_tries:
                first = self.result.errors[0] if self.result.errors else "?"
                raise SinkError(
                    f"ingest into {self.table!r} ({self.mode}): the database refused rows "
                    f"in more places than {sink.split_tries} tries can single out in one "
                    f"transaction; the first refusal: {first}",
                    table=self.table,
                    mode=self.mode,
                )
            self._savepoint(conn)
            try:
                probe = IngestResult(table=self.table, mode=self.mode)
                sink._write(conn, self.table, self.wkind, part, self.mode, self.level, probe)
            except sink._db_errors() as exc:
                self._rollback_to(conn, exc)
                if not sink._refuses_rows(exc):
                    raise
                if part.num_rows == 1:
                    refuse(part, sink._err(exc))
                    continue
                stored = self._stored_keys(conn, part, exc)
                if stored is not None and stored.any():
                    refuse(part.filter(_arrow.bools(stored)), self._duplicate_text())
                    if not stored.all():
                        stack.append(part.filter(_arrow.bools(~stored)))
                    continue
                half = part.num_rows // 2
                stack.append(part.slice(half))
                stack.append(part.slice(0, half))
                continue
            self._rollback_to(conn)
            good.append(part)
        return good
