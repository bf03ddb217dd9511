"""Unit tests of the sink machinery that needs no server: identifiers, SQL slots, dedup,
re-batching, redaction, time parsing, URI dispatch, levels, batch sizes, the pool (on real
sqlite3 connections)."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import date, datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from stockbatch import SinkError, sinks
from stockbatch._redact import redact
from stockbatch.schema import UTC_US
from stockbatch.sinks import _aux, _batches, _dbapi, _ddl
from stockbatch.sinks._pool import Pool


@pytest.mark.parametrize("name", ["bars", "_x", "Bars_2026", "market.bars", "a" * 63])
def test_valid_names(name):
    assert _ddl.check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        '"; DROP TABLE bars; --',
        "bars;",
        'a"b',
        "a`b",
        "a b",
        "1bars",
        "",
        "a" * 64,
        "a.b.c",
        "bars\n",
        "bärs",
        None,
        3,
    ],
)
def test_hostile_names_refused(name):
    with pytest.raises(SinkError, match="invalid table name"):
        _ddl.check_name(name)


def test_quote_per_dialect():
    assert _ddl.DIALECTS["postgresql"].quote("s.bars") == '"s"."bars"'
    assert _ddl.DIALECTS["mysql"].quote("bars") == "`bars`"
    with pytest.raises(SinkError):
        _ddl.DIALECTS["sqlite"].quote('x"; --')


def test_sql_fills_only_named_slots():
    out = _ddl.sql("SELECT {cols} FROM {t} WHERE a = '{not_a_slot'", t='"x"', cols="a, b")
    assert out == "SELECT a, b FROM \"x\" WHERE a = '{not_a_slot'"
    # replacement text is not scanned again
    assert _ddl.sql("{a} {b}", a="{b}", b="1") == "{b} 1"


@pytest.mark.parametrize(
    "days",
    [
        np.arange(20_000, 20_400),  # a batch's span: the per-day lookup
        np.arange(-719_162, 2_932_896, 997),  # 0001-01-01 .. 9999-12-31, spread: direct
    ],
    ids=["lookup", "direct"],
)
def test_sqlite_yyyymmdd_is_the_calendar_date(days):
    from stockbatch.sinks._sqlite import yyyymmdd

    col = pa.array(days.astype(np.int32)).cast(pa.date32())
    want = [d.year * 10_000 + d.month * 100 + d.day for d in col.to_pylist()]
    assert yyyymmdd(col).to_pylist() == want
    nulls = pa.array([date(2026, 11, 30), None, date(1969, 12, 31)])
    assert yyyymmdd(pa.chunked_array([nulls])).to_pylist() == [20261130, None, 19691231]
    assert yyyymmdd(pa.array([], pa.date32())).to_pylist() == []


def test_ddl_types():
    pg = _ddl.SPECS["bars"].create(_ddl.DIALECTS["postgresql"], "bars")
    assert '"ts" TIMESTAMPTZ NOT NULL' in pg and "DOUBLE PRECISION" in pg
    assert 'PRIMARY KEY ("symbol", "interval", "ts")' in pg
    lite = _ddl.SPECS["bars"].create(_ddl.DIALECTS["sqlite"], "bars")
    # a rowid table: DuckDB's SQLite attach counts rows by rowid
    assert '"ts" INT64_US_UTC NOT NULL' in lite and "WITHOUT ROWID" not in lite
    stage = _ddl.SPECS["bars"].create(_ddl.DIALECTS["sqlite"], "s", temporary=True, keyed=False)
    assert "PRIMARY KEY" not in stage and "NOT NULL" not in stage
    my = _ddl.SPECS["bars"].create(_ddl.DIALECTS["mysql"], "bars")
    assert "`symbol` VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL" in my
    assert "DATETIME(6)" in my


def test_kind_of():
    assert _ddl.kind_of(["symbol", "interval", "ts", "close"]) == "bars"
    assert _ddl.kind_of(["symbol", "ts", "price"]) == "quotes"
    with pytest.raises(SinkError):
        _ddl.kind_of(["a", "b"])


def _batch(keys, values):
    sym, ts = zip(*keys, strict=True)
    return pa.record_batch({"symbol": list(sym), "ts": list(ts), "v": values})


@pytest.mark.parametrize("keep", ["first", "last"])
def test_dedup_matches_a_dict_oracle(keep):
    rng = np.random.default_rng(3)
    keys = [(f"S{a}", int(b)) for a, b in rng.integers(0, 5, (400, 2))]
    values = list(range(400))
    out, dropped = _batches.dedup(_batch(keys, values), ("symbol", "ts"), keep=keep)
    oracle = {}
    for k, v in zip(keys, values, strict=True):
        if keep == "last" or k not in oracle:
            oracle[k] = v
    assert dropped == 400 - len(oracle)
    got = dict(
        zip(
            zip(out.column("symbol").to_pylist(), out.column("ts").to_pylist(), strict=True),
            out.column("v").to_pylist(),
            strict=True,
        )
    )
    assert got == oracle
    assert out.column("v").to_pylist() == sorted(oracle.values())  # input order kept


def test_dedup_without_duplicates_is_identity():
    b = _batch([("A", 1), ("A", 2), ("B", 1)], [1, 2, 3])
    out, dropped = _batches.dedup(b, ("symbol", "ts"), keep="last")
    assert dropped == 0 and out is b


def test_rechunk_sizes_and_content():
    parts = [
        pa.record_batch({"x": list(range(s, s + n))})
        for s, n in [(0, 5), (5, 300), (305, 1), (306, 0), (306, 94)]
    ]
    out = list(_batches.rechunk(parts, 128))
    assert [b.num_rows for b in out] == [128, 128, 128, 16]
    assert pa.Table.from_batches(out).column("x").to_pylist() == list(range(400))


def test_raw_batches_accepts_all_inputs():
    t = pa.table({"x": [1, 2, 3]})
    for data in [
        t,
        t.to_batches()[0],
        pa.RecordBatchReader.from_batches(t.schema, t.to_batches()),
        iter(t.to_batches()),
        [t, t],
        {"x": [1, 2, 3]},
    ]:
        rows = sum(b.num_rows for b in _batches.raw_batches(data))
        assert rows in (3, 6)


def test_redact():
    assert redact("postgresql://bob:hunter2@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redact("failed for hunter2 here", ["hunter2"]) == "failed for *** here"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"


def test_connect_dispatch(tmp_path):
    p = tmp_path / "a.db"
    for uri in [f"sqlite:///{p}", str(p), p]:
        with sinks.connect(uri) as s:
            assert type(s).__name__ == "SqliteSink" and s.path == str(p)
    with sinks.connect("duckdb:///" + str(tmp_path / "d.duckdb")) as s:
        assert type(s).__name__ == "DuckdbSink"
    with pytest.raises(SinkError, match="unknown sink URI scheme"):
        sinks.connect("oracle://x")
    s = sinks.connect("postgresql://u:pw@127.0.0.1:1/x")
    assert "pw" not in repr(s) and s.level is sinks.EXTREME
    s.close()


def test_levels_and_batch_size(tmp_path):
    assert sinks.Level.of("Basic") is sinks.BASIC
    with pytest.raises(SinkError):
        sinks.Level.of("turbo")
    with sinks.connect(tmp_path / "x.db", level="extreme") as s:
        assert s.level is sinks.EXTREME
        assert s.recommend_batch_size(68) == 61_440  # 4 MiB / 68 B, whole kilo-rows
        assert s.recommend_batch_size(10_000_000) == 4096
        assert s.recommend_batch_size(1) == 1 << 20
    with pytest.raises(SinkError, match="unknown table role"):
        sinks.connect(tmp_path / "x.db", tables={"bar": "x"})
    with pytest.raises(SinkError, match="invalid table name"):
        sinks.connect(tmp_path / "x.db", tables={"bars": "x; --"})


def test_ingest_result_accounting():
    r = sinks.IngestResult(table="bars", mode="upsert")
    r.add(written=3, updated=2, ignored=1)
    r.add(rejected=4)
    r.seconds = 2.0
    assert r.rows == 10 and r.rows_per_second == 5.0


# -- the pool, on real sqlite3 connections ------------------------------------------------
def _pool(tmp_path, **kw):
    path = str(tmp_path / "pool.db")
    made = []

    def factory():
        c = sqlite3.connect(path, check_same_thread=False)
        made.append(c)
        return c

    def check(c):
        c.execute("SELECT 1").fetchall()

    return Pool(factory, check=check, **kw), made


def test_pool_reuses_and_bounds(tmp_path):
    pool, made = _pool(tmp_path, max_size=2, timeout=0.2)
    a = pool.acquire()
    pool.release(a)
    assert pool.acquire() is a  # reused, not reopened
    b = pool.acquire()
    assert len(made) == 2 and pool.size == 2
    with pytest.raises(SinkError, match="no free connection"):
        pool.acquire()
    pool.release(a)
    pool.release(b)


def test_pool_health_check_replaces_dead_connections(tmp_path):
    pool, made = _pool(tmp_path, max_size=1)
    a = pool.acquire()
    pool.release(a)
    a.close()  # dies while idle (a server restart, a terminated backend)
    b = pool.acquire()
    assert b is not a and pool.reconnects == 1
    assert b.execute("SELECT 2").fetchall() == [(2,)]
    pool.release(b, broken=True)  # discarded, not kept
    assert pool.size == 0
    c = pool.acquire()
    assert c is not b
    pool.release(c)


def test_pool_waiters_are_served_in_threads(tmp_path):
    pool, made = _pool(tmp_path, max_size=2, timeout=10)
    in_use, peak, lock = [0], [0], threading.Lock()

    def work():
        for _ in range(20):
            with pool.connection() as c:
                with lock:
                    in_use[0] += 1
                    peak[0] = max(peak[0], in_use[0])
                c.execute("SELECT 1").fetchall()
                time.sleep(0.001)  # hold the connection so that others must wait
                with lock:
                    in_use[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2 and len(made) == 2
    pool.close()
    with pytest.raises(SinkError, match="closed"):
        pool.acquire()


def test_pool_connection_context_discards_dead_on_error(tmp_path):
    pool, _ = _pool(tmp_path, max_size=1)
    with pytest.raises(RuntimeError):
        with pool.connection() as c:
            c.close()
            raise RuntimeError("boom")
    assert pool.size == 0
    with pytest.raises(RuntimeError):
        with pool.connection() as c:
            raise RuntimeError("healthy connection kept")
    assert pool.size == 1


# -- issue 10: quarantine identity, upgrades of 0.1 tables, options, names ----------------
def test_row_hash_is_the_identity_of_a_rejection():
    h = _aux.row_hash("bars", '{"close": 1}', "high<low", "")
    assert h == _aux.row_hash("bars", '{"close": 1}', "high<low", None)
    assert (
        len(
            {
                h,
                _aux.row_hash("bars", '{"close": 1}', "high<low", "db error"),
                _aux.row_hash("quotes", '{"close": 1}', "high<low", ""),
                _aux.row_hash("bars", '{"close": 2}', "high<low", ""),
                _aux.row_hash("bars", '{"close": 1}', "nan", ""),
            }
        )
        == 5
    )


def test_merge_old_quarantine_counts_repeats():
    t = [datetime(2025, 1, 1, h, tzinfo=timezone.utc) for h in range(4)]
    old = pa.table(
        {
            "job_id": ["j0", "j1", "j2", "j0"],
            "target": ["bars"] * 4,
            "symbol": ["A", "A", "A", "B"],
            "ts": pa.array([0, 0, 0, 5], pa.int64()),
            "reasons": ["r", "r", "r", "r"],
            "error": ["", "", "", ""],
            "row_json": ['{"a": 1}'] * 3 + ['{"b": 1}'],
            "quarantined_at": pa.array([t[1], t[0], t[2], t[3]], UTC_US),
        }
    )
    m = {r["symbol"]: r for r in _aux.merge_old_quarantine(old).to_pylist()}
    assert (
        m["A"]["seen_count"],
        m["A"]["quarantined_at"],
        m["A"]["last_seen"],
        m["A"]["job_id"],
    ) == (3, t[0], t[2], "j2")
    assert (m["B"]["seen_count"], m["B"]["job_id"]) == (1, "j0")


def test_statement_is_cut_from_driver_errors():
    text = (
        "INVALID_ARGUMENT: [SQLite] Failed to prepare query: no such table: t "
        'query: SELECT "a" FROM "t"'
    )
    assert _dbapi.STATEMENT_TAIL.sub("", text) == (
        "INVALID_ARGUMENT: [SQLite] Failed to prepare query: no such table: t"
    )
    quoted = (
        'INVALID_ARGUMENT: [libpq] Failed to execute query \'INSERT INTO "x" ("a") '
        'SELECT "a" FROM "s" WHERE true ON CONFLICT ("a") DO NOTHING\': ERROR:  there '
        "is no unique or exclusion constraint matching the ON CONFLICT specification"
    )
    assert _dbapi.error_text(Exception(quoted)) == (
        "INVALID_ARGUMENT: [libpq] Failed to execute query: ERROR:  there is no unique or "
        "exclusion constraint matching the ON CONFLICT specification"
    )


def test_connect_options_and_forms(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="'bogus'"):
        sinks.connect(tmp_path / "x.db", bogus=1)
    with pytest.raises(ValueError, match="busy_timeout"):
        sinks.connect("postgresql://u@127.0.0.1:1/x", busy_timeout=3)
    monkeypatch.chdir(tmp_path)
    for uri, kind, path in [
        ("sqlite:rel.db", "SqliteSink", "rel.db"),
        ("sqlite:///rel.db", "SqliteSink", "rel.db"),
        ("sqlite:////abs/x.db", "SqliteSink", "/abs/x.db"),
        ("duckdb:rel.duckdb", "DuckdbSink", "rel.duckdb"),
        ("duckdb:///rel.duckdb", "DuckdbSink", "rel.duckdb"),
        ("duckdb:////abs/x.duckdb", "DuckdbSink", "/abs/x.duckdb"),
        ("new.duckdb", "DuckdbSink", "new.duckdb"),
        ("new.DDB", "DuckdbSink", "new.DDB"),
        ("new.db", "SqliteSink", "new.db"),
    ]:
        s = sinks.connect(uri)
        assert (type(s).__name__, s.path) == (kind, path), uri
        s.close()


def test_schema_qualified_names(tmp_path):
    for name in ("temp.t", "main.t", "other.t"):
        with pytest.raises(SinkError, match="refused"):
            sinks.connect(tmp_path / "x.db", tables={"bars": name})
    pg = sinks.connect("postgresql://u@127.0.0.1:1/x", tables={"bars": "market.bars"})
    assert pg.tables["bars"] == "market.bars"
    for name in (
        "pg_temp.t",
        "PG_TEMP_12.t",
        "pg_toast_temp_3.t",
        "pg_catalog.t",
        "information_schema.t",
    ):
        with pytest.raises(SinkError, match="temporary|system"):
            pg.check_table(name)
    pg.close()


def test_the_dialect_interface_is_declared_once():
    from stockbatch.sinks._adbc import AdbcSink
    from stockbatch.sinks._dialect import DialectSink
    from stockbatch.sinks._duckdb import DuckdbSink
    from stockbatch.sinks._mysql import MysqlSink
    from stockbatch.sinks._postgres import PostgresSink
    from stockbatch.sinks._sqlite import SqliteSink

    required = {
        "_connect",
        "_db_errors",
        "_table_exists",
        "_columns",
        "_move",
        "_stage",
        "_merge_quarantine",
    }
    assert DialectSink.__abstractmethods__ == required
    assert issubclass(sinks.Sink, DialectSink) and sinks.Sink.__abstractmethods__ == required
    # AdbcSink provides how rows move; the connection and the catalogue stay per database
    assert AdbcSink.__abstractmethods__ == {"_connect", "_table_exists", "_columns"}
    for cls in (SqliteSink, PostgresSink, DuckdbSink, MysqlSink):
        assert not cls.__abstractmethods__, cls
    with pytest.raises(TypeError, match="abstract"):
        sinks.Sink("sqlite:///x.db")

    class Half(sinks.Sink):  # forgot every hook but one
        def _connect(self):
            return None

    with pytest.raises(TypeError, match="_columns"):
        Half("x://")
