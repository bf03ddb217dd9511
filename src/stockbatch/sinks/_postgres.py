"""PostgreSQL through the ADBC PostgreSQL driver (binary COPY under ``adbc_ingest``).

Append streams ~64k-row batches cast to the table's exact types (ADBC needs exact types and
encodes a whole batch before sending). Upserts have three strategies, all exact in their
counts and correct for inputs that mix new rows, stored rows and duplicates (last wins):

``on_conflict`` (ADVANCED)
    COPY into a temporary staging table, then one
    ``INSERT … SELECT … ON CONFLICT DO UPDATE … WHERE <row changed>`` whose
    ``RETURNING (xmax = 0)`` tells inserted from updated; unchanged rows are not rewritten.
``merge`` (selectable with ``upsert_strategy="merge"``)
    the same staging, then ``MERGE … WHEN MATCHED AND <changed> … WHEN NOT MATCHED …``.
``range`` (EXTREME, the default)
    per batch: the stored rows inside each (symbol, interval) range of the batch are read
    back (one indexed range scan) and compared with the batch in Arrow. Unchanged rows are
    skipped, new rows are COPYed straight into the table, and a range whose stored rows are
    all in the batch and of which some changed is deleted and COPYed again. Changed rows of
    ranges the batch does not fully cover (stored rows in between that the batch lacks) go
    through ``on_conflict``. A transaction-level advisory lock per table serialises
    ``range`` writers of the same table.

Measured here (PostgreSQL 15 on loopback, 2 cores; server-side part of 1e6 rows, half of
them conflicting and changed / unchanged): ON CONFLICT DO UPDATE 5.9 s / 6.8 s, MERGE
5.0 s / 2.5 s, UPDATE…FROM + INSERT…WHERE NOT EXISTS 6.4 s / 3.3 s, DELETE…USING + INSERT
3.8 s / 3.8 s, delete-range + INSERT 3.5 s / 3.9 s; a plain INSERT of 1e6 rows into the
empty keyed table 2.0 s. The ``range`` strategy does no staging copy at all and writes
nothing for unchanged rows; bench/test_ingest.py has the end-to-end figures.

Table names may be schema-qualified (``market.bars``), except temporary schemas
(``pg_temp``, ``pg_temp_N``, ``pg_toast_temp_N``: their tables vanish when the session ends)
and system schemas (``pg_catalog``, ``information_schema``, ``pg_toast``).

Durability: stockbatch does not change ``synchronous_commit`` or ``fsync``; with the server's
defaults (both on) ``COMMIT`` returns after the WAL record is flushed to disk, so a committed
chunk survives a crash of the server or the machine. A server run with
``synchronous_commit=off`` may lose the last few hundred milliseconds of commits on a crash
(never half a chunk); ``fsync=off`` gives no guarantee.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import adbc_driver_postgresql
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._arrow import array, fill_null, to_numpy
from .._errors import SinkError
from . import _adbc_conn, _sql
from ._adbc import AdbcSink
from ._base import Level
from ._batches import key_codes
from ._ddl import DIALECTS, SPECS, sql

__all__ = ["PostgresSink", "UPSERT_STRATEGIES"]

UPSERT_STRATEGIES = ("range", "on_conflict", "merge")


class PostgresSink(AdbcSink):
    """PostgreSQL database."""

    dialect = DIALECTS["postgresql"]
    target_batch_bytes = 4 << 20  # ~64k bars: 1.7-1.9x faster than whole tables (baselines)
    # each COPY streams 8k-row pieces: a 52k-row chunk sent as one piece was encoded whole
    # before the server saw a row (bench/test_ingest.py pg-copy-pieces, 52k bars: median
    # 262 vs 293 ms, min 242 vs 284; 1e6 rows, streamed as 64k-row batches already, gain nothing)
    copy_piece_rows = 8192
    default_level = Level.EXTREME
    # PostgreSQL holds a lock for every savepoint that wrote (released or rolled back) until
    # the transaction ends, from a lock table the whole server shares (~6,400 slots by
    # default): ~8k refused rows singled out in one transaction left other sessions "out of
    # shared memory". 4,096 tries single out ~2,000 refused rows of a chunk.
    split_tries = 4096

    def __init__(self, uri: str, *, upsert_strategy: str | None = None, **options: Any):
        from urllib.parse import urlparse

        if upsert_strategy is not None and upsert_strategy not in UPSERT_STRATEGIES:
            raise SinkError(
                f"unknown upsert_strategy {upsert_strategy!r}: use one of {UPSERT_STRATEGIES}"
            )
        self.upsert_strategy = upsert_strategy
        self._tls = threading.local()  # per-call state of the thread running an ingest
        self._conn_uri = uri
        password = urlparse(uri).password
        super().__init__(uri, secrets=[password] if password else [], **options)

    def _connect(self) -> Any:
        return _adbc_conn.connect(adbc_driver_postgresql.connect(self._conn_uri))

    def _time_index(self, table: str) -> str | None:
        # BRIN: a few pages per table; +15 % to 1e6-bar appends, nothing to upserts
        # (bench/test_layout.py; see Sink.create_time_index)
        _, _, bare = table.rpartition(".")
        if len(bare) > 57:
            return None
        d = self.dialect
        return sql(
            "CREATE INDEX IF NOT EXISTS {i} ON {t} USING brin ({ts})",
            i=d.quote(bare + "_ts_brin"),
            t=d.quote(table),
            ts=d.quote("ts"),
        )

    def _table_exists(self, conn: Any, table: str) -> bool:
        return self._query(
            conn, "SELECT to_regclass($1) IS NOT NULL", (self.dialect.quote(table),)
        )[0][0]

    def _columns(self, conn: Any, table: str) -> set[str]:
        return {
            r[0]
            for r in self._query(
                conn,
                "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) "
                "AND attnum > 0 AND NOT attisdropped",
                (self.dialect.quote(table),),
            )
        }

    def _schema_refusal(self, schema: str) -> str | None:
        if re.fullmatch(r"pg_(toast_)?temp(_\d+)?", schema):
            return (
                f"{schema} is PostgreSQL's temporary schema: its tables vanish when the "
                "session ends"
            )
        if schema in ("pg_catalog", "information_schema", "pg_toast"):
            return f"{schema} is a system schema"
        return None

    # -- EXTREME: deferred index work ---------------------------------------------------
    #: Smallest whole-table input written with the primary key dropped and rebuilt.
    defer_min_rows = 100_000

    def _defer(self, conn, table, kind, mode, level, rows) -> bool:
        """EXTREME, a whole in-memory input at least as large as the table: rows written
        to ``table`` are collected, and at the end the primary key is dropped, the rows are
        COPYed in one stream and the key is rebuilt by one sort (measured: 1e6 rows into
        an empty keyed table 1.78 s server-side with the key, 0.68 s + 0.49 s rebuild
        without). Duplicates then fail the rebuild, which rolls the whole call back."""
        self._tls.deferred = None
        if level is not Level.EXTREME or rows < self.defer_min_rows or mode == "insert_new":
            return False
        if mode == "upsert" and self._strategy(level) != "range":
            return False
        found = self._query(
            conn,
            sql(
                "SELECT c.conname, pg_get_constraintdef(c.oid), "
                "GREATEST(r.reltuples, pg_relation_size(r.oid) / 120)::bigint, "
                "EXISTS (SELECT 1 FROM pg_constraint f WHERE f.confrelid = r.oid) "
                "FROM pg_class r JOIN pg_constraint c ON c.conrelid = r.oid AND c.contype = 'p' "
                "WHERE r.oid = to_regclass({name})::oid",
                name=_literal(self.dialect.quote(table)),
            ),
        )
        if not found:
            return False
        conname, condef, reltuples, referenced = found[0]
        if referenced or reltuples > rows:
            return False
        self._tls.deferred = {"table": table, "conname": conname, "condef": condef, "batches": []}
        return True

    def _move(self, conn, table, batch, *, level, temporary=False) -> None:
        deferred = getattr(self._tls, "deferred", None)
        if deferred is not None and not temporary and table == deferred["table"]:
            deferred["batches"].append(self._target(conn, table, batch))
            return
        super()._move(conn, table, batch, level=level, temporary=temporary)

    def _finish(self, conn, table, kind, level) -> None:
        deferred = getattr(self._tls, "deferred", None)
        self._tls.deferred = None
        if deferred is None or not deferred["batches"]:
            return
        d = self.dialect
        qt = d.quote(table)
        self._exec(conn, "SET LOCAL maintenance_work_mem = '256MB'")
        self._exec(
            conn, sql("ALTER TABLE {t} DROP CONSTRAINT {c}", t=qt, c=d.quote(deferred["conname"]))
        )
        batches = deferred["batches"]
        db_schema, name = self._split_name(table)
        cur = conn.cursor()
        try:
            # ~64k-row batches again for COPY: ADBC encodes a whole batch before sending
            small = (
                part
                for b in batches
                for part in pa.Table.from_batches([b]).to_batches(
                    max_chunksize=self.recommend_batch_size(b.nbytes / max(b.num_rows, 1))
                )
            )
            cur.adbc_ingest(
                name,
                pa.RecordBatchReader.from_batches(batches[0].schema, small),
                mode="append",
                db_schema_name=db_schema,
            )
        finally:
            cur.close()
        batches.clear()
        self._exec(
            conn,
            sql(
                "ALTER TABLE {t} ADD CONSTRAINT {c} {def}",
                t=qt,
                c=d.quote(deferred["conname"]),
                **{"def": deferred["condef"]},
            ),
        )

    def _abandon(self) -> None:
        self._tls.deferred = None

    def _lock_table(self, conn: Any, table: str) -> bool:
        # concurrent CREATE TABLE IF NOT EXISTS races on pg_type; one creator at a time
        self._query(conn, sql("SELECT pg_advisory_xact_lock({k})", k=str(_lock_key(table))))
        return True

    def _clear_stage(self, conn: Any, stage: str) -> None:
        self._exec(conn, sql("TRUNCATE {s}", s=self.dialect.quote(stage)))

    def _strategy(self, level: Level) -> str:
        if self.upsert_strategy:
            return self.upsert_strategy
        return "range" if level is Level.EXTREME else "on_conflict"

    # -- upsert -------------------------------------------------------------------------
    def _upsert(self, conn, table, kind, batch, level) -> tuple[int, int, int]:
        strategy = self._strategy(level)
        if strategy == "range":
            return self._upsert_range(conn, table, kind, batch, level)
        if strategy == "merge":
            return super()._upsert(conn, table, kind, batch, level)
        return self._upsert_on_conflict(conn, table, kind, batch, level)

    def _merge_sql(self, table: str, stage: str, kind: str, *, update: bool) -> str:
        if not update or self._strategy(self.level) != "merge":
            return _sql.merge_on_conflict(self.dialect, table, stage, kind, update=update)
        d = self.dialect
        spec = SPECS[kind]
        sets = ", ".join(f"{d.quote(c)} = s.{d.quote(c)}" for c in spec.names if c not in spec.key)
        cols = ", ".join(d.quote(c) for c in spec.names)
        vals = ", ".join(f"s.{d.quote(c)}" for c in spec.names)
        return sql(
            "MERGE INTO {t} AS t USING {stage} AS s ON {on} WHEN MATCHED AND {changed} "
            "THEN UPDATE SET {sets} WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({vals})",
            on=_sql.key_join(d, "t", "s", kind),
            changed=_sql.changed(d, "t", "s", kind),
            sets=sets,
            cols=cols,
            vals=vals,
            t=d.quote(table),
            stage=d.quote(stage),
        )

    def _upsert_on_conflict(self, conn, table, kind, batch, level) -> tuple[int, int, int]:
        stage = self._stage(conn, kind, batch, level)
        stmt = sql(
            "WITH u AS ({merge} RETURNING (xmax = 0) AS ins) "
            "SELECT COUNT(*) FILTER (WHERE ins), COUNT(*) FILTER (WHERE NOT ins) FROM u",
            merge=_sql.merge_on_conflict(self.dialect, table, stage, kind, update=True),
        )
        ins, upd = self._query(conn, stmt)[0]
        return int(ins), int(upd), batch.num_rows - int(ins) - int(upd)

    def _upsert_range(self, conn, table, kind, batch, level) -> tuple[int, int, int]:
        d = self.dialect
        spec = SPECS[kind]
        key = list(spec.key)
        group = key[:-1]  # (symbol, interval) for bars, (symbol,) for quotes
        n = batch.num_rows
        # a computed integer, not a value from outside: parameterised statements are avoided
        # inside transaction blocks (see _adbc.AdbcSink._append_aux)
        self._query(conn, sql("SELECT pg_advisory_xact_lock({k})", k=str(_lock_key(table))))
        # range id of every row: the group columns as integer codes, made unique
        codes = key_codes(batch, tuple(group))
        combo = codes[0].astype(np.int64)
        for c in codes[1:]:
            combo = combo * (int(c.max()) + 2) + c
        _, first, row_gid = np.unique(combo, return_index=True, return_inverse=True)
        row_gid = row_gid.astype(np.int32)
        ts = to_numpy(batch.column("ts").cast(pa.int64()))
        lo = np.full(len(first), np.iinfo(np.int64).max)
        hi = np.full(len(first), np.iinfo(np.int64).min)
        np.minimum.at(lo, row_gid, ts)
        np.maximum.at(hi, row_gid, ts)
        ts_type = batch.schema.field("ts").type
        ranges = pa.table(
            [
                *(batch.column(g).take(array(first)) for g in group),
                array(np.arange(len(first), dtype=np.int32)),
                array(lo).cast(ts_type),
                array(hi).cast(ts_type),
            ],
            names=[*group, "gid", "lo", "hi"],
        )
        rname = f"_sb_ranges_{kind}"
        self._exec(
            conn,
            sql(
                "CREATE TEMPORARY TABLE IF NOT EXISTS {r} ({groups}, "
                "gid INTEGER, lo TIMESTAMPTZ, hi TIMESTAMPTZ)",
                r=d.quote(rname),
                groups=", ".join(f"{d.quote(g)} TEXT" for g in group),
            ),
        )
        self._clear_stage(conn, rname)
        cur = conn.cursor()
        try:
            cur.adbc_ingest(rname, ranges, mode="append", temporary=True)
        finally:
            cur.close()
        on = " AND ".join(f"t.{d.quote(g)} = r.{d.quote(g)}" for g in group)
        values = [c for c in spec.names if c not in key]
        # only the range id, ts and the values travel back: no key strings
        stored = self._query_arrow(
            conn,
            sql(
                "SELECT r.gid AS __gid, t.ts, {cols} FROM {t} t JOIN {r} r ON {on} "
                "AND t.ts BETWEEN r.lo AND r.hi",
                on=on,
                t=d.quote(table),
                r=d.quote(rname),
                cols=", ".join(f"t.{d.quote(c)}" for c in values),
            ),
        )
        if stored.num_rows == 0:
            self._move(conn, table, batch, level=level)
            return n, 0, 0
        # classify the batch against what is stored: both sides sorted together by (range
        # id, ts, side); keys are unique on each side, so a batch row directly followed by a
        # stored row of the same key is a hit (numpy, not Arrow's join: that one imports
        # pyarrow.dataset and pandas)
        m = stored.num_rows
        s_gid = to_numpy(stored.column("__gid").cast(pa.int32()))
        s_ts = to_numpy(stored.column("ts").cast(ts_type).cast(pa.int64()))
        gid_all = np.concatenate([row_gid, s_gid])
        ts_all = np.concatenate([ts, s_ts])
        order = np.lexsort((np.arange(n + m), ts_all, gid_all))
        a, b = order[:-1], order[1:]
        pair = (a < n) & (b >= n) & (gid_all[a] == gid_all[b]) & (ts_all[a] == ts_all[b])
        rows_hit, stored_hit = a[pair], b[pair] - n
        new = np.ones(n, bool)
        new[rows_hit] = False
        matched = np.zeros(m, bool)
        matched[stored_hit] = True
        changed = np.zeros(n, bool)
        if len(rows_hit):
            mine, theirs = batch.take(array(rows_hit)), stored.take(array(stored_hit))
            differs = np.zeros(len(rows_hit), bool)
            for name in values:
                differs |= to_numpy(_differs(mine.column(name), theirs.column(name)))
            changed[rows_hit[differs]] = True
        n_new, n_changed = int(new.sum()), int(changed.sum())
        n_same = n - n_new - n_changed
        if n_changed == 0:
            if n_new:
                self._move(conn, table, batch.take(array(np.flatnonzero(new))), level=level)
            return n_new, 0, n_same
        # ranges covered (no stored row missing from the batch) and with changes: rewrite
        uncovered = set(np.unique(s_gid[~matched]).tolist())
        rewrite = sorted(set(np.unique(row_gid[changed]).tolist()) - uncovered)
        is_rewrite = np.zeros(n, bool)
        if rewrite:
            self._clear_stage(conn, rname)
            cur = conn.cursor()
            try:
                cur.adbc_ingest(
                    rname,
                    ranges.filter(pc.is_in(ranges.column("gid"), array(rewrite, pa.int32()))),
                    mode="append",
                    temporary=True,
                )
            finally:
                cur.close()
            self._exec(
                conn,
                sql(
                    "DELETE FROM {t} t USING {r} r WHERE {on} AND t.ts BETWEEN r.lo AND r.hi",
                    on=on,
                    t=d.quote(table),
                    r=d.quote(rname),
                ),
            )
            # every batch row of a rewritten range goes in again
            is_rewrite = np.isin(row_gid, rewrite)
        direct = np.flatnonzero(new | is_rewrite)
        staged = np.flatnonzero(changed & ~is_rewrite)
        if len(direct):
            self._move(conn, table, batch.take(array(direct)), level=level)
        if len(staged):
            self._upsert_on_conflict(conn, table, kind, batch.take(array(staged)), level)
        return n_new, n_changed, n_same


def _literal(text: str) -> str:
    """A SQL string literal of an already validated, quoted identifier (no quotes inside
    but the identifier's own double quotes)."""
    if "'" in text or "\\" in text:
        raise SinkError("refusing to quote text with quotes or backslashes")
    return "'" + text + "'"


def _lock_key(table: str) -> int:
    import zlib

    return 0x5B000000_00000000 + zlib.crc32(table.encode())


def _differs(a: pa.ChunkedArray, b: pa.ChunkedArray) -> pa.ChunkedArray:
    """Null-safe, NaN-equal "a differs from b" (as PostgreSQL compares: NaN = NaN)."""
    ne = pc.not_equal(a, b)
    if pa.types.is_floating(a.type):
        both_nan = pc.and_(fill_null(pc.is_nan(a), False), fill_null(pc.is_nan(b), False))
        ne = pc.and_(ne, pc.invert(both_nan))
    one_null = pc.xor(pc.is_null(a), pc.is_null(b))
    return pc.or_(fill_null(ne, False), one_null)
