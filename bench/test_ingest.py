"""Ingest benchmarks: stockbatch sinks against the usual ways of writing bars to a database.

Groups (peers side by side, every round on a fresh table made before the timer starts):

- ``sqlite-append-N``: stockbatch (three levels) vs raw ``adbc_ingest`` of int64 timestamps
  into the same keyed table (and into a table ADBC creates, no key), stdlib ``sqlite3``
  ``executemany``, ``polars.write_database(engine="adbc")``, ``pandas.to_sql``.
- ``pg-append-N``: stockbatch vs psycopg binary COPY (numpy-encoded, 64k-row chunks) into
  the same keyed table, raw ``adbc_ingest`` of a 64k-batch reader, polars, pandas (1e5).
- ``pg-copy-pieces-N``: a chunk the size the pipeline stores (52k bars: 200 symbols x 1y)
  appended by stockbatch in one COPY sent as one encoded piece, or streamed in 8k-row pieces
  (the default), beside psycopg's binary COPY.
- ``pg-upsert-N``: 1e6 rows, half of them stored already with other values; stockbatch's
  ``range`` / ``on_conflict`` / ``merge`` strategies vs the naive ADBC staging table +
  ``INSERT … SELECT … ON CONFLICT DO UPDATE``. ``pg-reupsert-N``: the same input again
  (every row unchanged).
- ``sqlite-upsert-N``, ``duckdb-append-N``, ``mysql-append-N``: the other databases.
- ``rss-stream``: peak RSS growth while 1e7 rows stream in (opt-in:
  ``STOCKBATCH_BENCH_RSS=1``; measured in a child process).

Run: ``STOCKBATCH_PG_URI=… STOCKBATCH_MYSQL_URI=… PYTHONPATH=src python -m pytest
bench/test_ingest.py --benchmark-only --benchmark-columns=min,median,rounds
--benchmark-sort=name``.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from benchutil import sized

from stockbatch import sinks
from stockbatch.schema import BARS

PG = os.environ.get("STOCKBATCH_PG_URI")
MY = os.environ.get("STOCKBATCH_MYSQL_URI")
SIZES = [100_000, 1_000_000]
BATCH = 65_536
_CACHE: dict = {}


def bars(n: int, *, seed: int = 0, nsym: int = 100, start: int = 0, bump: float = 0.0):
    """n seeded OHLCV bars: nsym symbols x n/nsym consecutive minutes."""
    key = (n, seed, nsym, start, bump)
    if key not in _CACHE:
        rng = np.random.default_rng(seed)
        per = max(n // nsym, 1)
        n = per * nsym
        sym = np.repeat(np.array([f"SYM{i:04d}" for i in range(nsym)], dtype=object), per)
        ts = (
            1_700_000_000 + np.tile(np.arange(start, start + per, dtype=np.int64), nsym) * 60
        ) * 1_000_000
        close = rng.random(n) * 100 + 10 + bump
        _CACHE[key] = pa.Table.from_arrays(
            [
                pa.array(sym, pa.string()),
                pa.array(np.full(n, "1m", dtype=object), pa.string()),
                pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
                pa.array(close - 0.5),
                pa.array(close + 1.0),
                pa.array(close - 1.0),
                pa.array(close),
                pa.array(close),
                pa.array(rng.integers(0, 10**7, n)),
                pa.array(np.full(n, "bench", dtype=object), pa.string()),
            ],
            schema=BARS,
        )
    return _CACHE[key]


def with_int_ts(t: pa.Table) -> pa.Table:
    return t.set_column(2, "ts", t.column("ts").cast(pa.int64()))


def tag() -> str:
    return "bench_" + uuid.uuid4().hex[:10]


def run(benchmark, fn, setup, rounds=3):
    benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)


# -- SQLite --------------------------------------------------------------------------------
@pytest.fixture
def sqlite_path(tmp_path):
    return str(tmp_path / "bench.db")


# the peers write the canonical columns by name (stockbatch's bars tables also hold the
# exchange trading date, which stockbatch computes and the peers leave NULL)
_COLS = ", ".join(BARS.names)


def _fresh_sqlite(path, name):
    with sinks.connect(path, tables={"bars": name}) as s:
        s.ensure_tables("bars")


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(
    "peer",
    [
        "stockbatch-basic",
        "stockbatch-advanced",
        "stockbatch-extreme",
        "adbc_ingest-int64-keyed",
        "adbc_ingest-int64-nokey",
        "sqlite3-executemany",
        "polars-adbc",
        "pandas-to_sql",
    ],
)
def test_sqlite_append(benchmark, sqlite_path, peer, n):
    if peer == "pandas-to_sql" and n > 100_000:
        pytest.skip("pandas.to_sql at 1e6 rows takes minutes; measured at 1e5")
    n = sized(n)
    data = bars(n)
    benchmark.group = f"sqlite-append-{n:.0e}"
    state = {}

    def setup():
        state["t"] = tag()
        if peer != "adbc_ingest-int64-nokey" and not peer.startswith(("polars", "pandas")):
            _fresh_sqlite(sqlite_path, state["t"])
        return (), {}

    def go():
        t = state["t"]
        if peer.startswith("stockbatch"):
            level = peer.split("-")[1]
            with sinks.connect(sqlite_path, level=level, tables={"bars": t}) as s:
                r = s.ingest(data, mode="append")
            assert r.written == data.num_rows
        elif peer.startswith("adbc_ingest"):
            import adbc_driver_sqlite.dbapi as ad

            with ad.connect(sqlite_path) as c, c.cursor() as cur:
                cur.adbc_ingest(
                    t, with_int_ts(data), mode="append" if "keyed" in peer else "create"
                )
                c.commit()
        elif peer == "sqlite3-executemany":
            rows = with_int_ts(data).to_pylist()
            con = sqlite3.connect(sqlite_path)
            with con:
                con.executemany(
                    f'INSERT INTO "{t}" ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)',
                    (tuple(r.values()) for r in rows),
                )
            con.close()
        elif peer == "polars-adbc":
            import adbc_driver_sqlite.dbapi as ad
            import polars as pl

            with ad.connect(sqlite_path) as c:
                pl.from_arrow(data).write_database(t, c, engine="adbc", if_table_exists="append")
                c.commit()
        else:
            import sqlalchemy as sa

            eng = sa.create_engine(f"sqlite:///{sqlite_path}")
            data.to_pandas().to_sql(t, eng, index=False, chunksize=10_000)
            eng.dispose()

    run(benchmark, go, setup)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("peer", ["stockbatch", "sqlite3-executemany-on-conflict"])
def test_sqlite_upsert(benchmark, sqlite_path, peer, n):
    n = sized(n)
    old, new = _half_conflicts(n)
    benchmark.group = f"sqlite-upsert-{n:.0e}"
    state = {}

    def setup():
        state["t"] = tag()
        with sinks.connect(sqlite_path, tables={"bars": state["t"]}) as s:
            s.ingest(old, mode="create_append")
        return (), {}

    def go():
        t = state["t"]
        if peer == "stockbatch":
            with sinks.connect(sqlite_path, tables={"bars": t}) as s:
                r = s.ingest(new, mode="upsert")
            assert r.written + r.updated == new.num_rows
        else:
            con = sqlite3.connect(sqlite_path)
            with con:
                con.executemany(
                    f'INSERT INTO "{t}" ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT '
                    "(symbol, interval, ts) DO UPDATE SET open=excluded.open, "
                    "high=excluded.high, low=excluded.low, close=excluded.close, "
                    "adj_close=excluded.adj_close, volume=excluded.volume, "
                    "source=excluded.source",
                    (tuple(r.values()) for r in with_int_ts(new).to_pylist()),
                )
            con.close()

    run(benchmark, go, setup)


def _half_conflicts(n: int):
    """(stored, input): the input's first half per symbol is stored with other values."""
    new = bars(n, seed=1)
    per = new.num_rows // 100
    old = bars(n // 2, seed=2, bump=1.0)  # same symbols, first per/2 minutes of each
    assert old.num_rows * 2 == new.num_rows and per % 2 == 0
    return old, new


# -- PostgreSQL ----------------------------------------------------------------------------
needs_pg = pytest.mark.skipif(not PG, reason="STOCKBATCH_PG_URI not set")

_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds


def pg_binary_copy_chunks(table: pa.Table, rows: int = BATCH):
    """PostgreSQL binary COPY rows of ``table`` (BARS), encoded with numpy, per chunk."""
    for batch in table.to_batches(max_chunksize=rows):
        n = batch.num_rows
        fields = []  # (sizes incl. 4-byte header, writer)
        for col in batch.columns:
            valid = ~np.asarray(col.is_null())
            if pa.types.is_string(col.type):
                offs = np.frombuffer(col.buffers()[1], np.int32)[col.offset : col.offset + n + 1]
                data = np.frombuffer(col.buffers()[2], np.uint8)
                lens = np.where(valid, np.diff(offs), 0)
                fields.append((4 + lens, ("str", offs, data, lens, valid)))
            else:
                if pa.types.is_timestamp(col.type):
                    vals = col.cast(pa.int64()).to_numpy(zero_copy_only=False) - _PG_EPOCH_US
                    vals = vals.astype(">i8")
                elif pa.types.is_floating(col.type):
                    vals = col.to_numpy(zero_copy_only=False).astype(">f8")
                else:
                    vals = col.fill_null(0).to_numpy().astype(">i8")
                fields.append((np.where(valid, 12, 4), ("fix", vals, valid)))
        size = 2 + sum(f[0] for f in fields)
        starts = np.zeros(n, np.int64)
        np.cumsum(size[:-1], out=starts[1:])
        out = np.zeros(int(size.sum()), np.uint8)
        ar2 = np.arange(2)
        out[starts[:, None] + ar2] = np.frombuffer(struct.pack(">h", len(fields)), np.uint8)
        pos = starts + 2
        ar4, ar8 = np.arange(4), np.arange(8)
        for sizes, spec in fields:
            if spec[0] == "fix":
                _, vals, valid = spec
                hdr = np.where(valid, 8, -1).astype(">i4").view(np.uint8).reshape(n, 4)
                out[pos[:, None] + ar4] = hdr
                p = pos[valid] + 4
                out[p[:, None] + ar8] = vals[valid].view(np.uint8).reshape(-1, 8)
            else:
                _, offs, data, lens, valid = spec
                hdr = np.where(valid, lens, -1).astype(">i4").view(np.uint8).reshape(n, 4)
                out[pos[:, None] + ar4] = hdr
                total = int(lens.sum())
                if total:
                    within = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
                    out[np.repeat(pos + 4, lens) + within] = data[
                        np.repeat(offs[:-1], lens) + within
                    ]
            pos = pos + sizes
        yield out.tobytes()


def psycopg_binary_copy(table: str, data: pa.Table) -> None:
    """The hand-written peer: psycopg's binary COPY of numpy-encoded 64k-row chunks."""
    import psycopg

    with psycopg.connect(PG) as c, c.cursor() as cur:
        with cur.copy(f'COPY "{table}" ({_COLS}) FROM STDIN (FORMAT BINARY)') as cp:
            cp.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
            for chunk in pg_binary_copy_chunks(data):
                cp.write(chunk)
            cp.write(struct.pack(">h", -1))


def _pg_fresh(name, *, old=None):
    with sinks.connect(PG, tables={"bars": name}) as s:
        s.ensure_tables("bars")
        if old is not None:
            s.ingest(old, mode="append")


def _pg_drop(name):
    with sinks.connect(PG) as s:
        s.drop_table(name)


@needs_pg
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(
    "peer",
    [
        "stockbatch",
        "stockbatch-basic",
        "psycopg-binary-copy",
        "adbc_ingest-reader64k",
        "polars-adbc",
        "pandas-to_sql",
    ],
)
def test_pg_append(benchmark, peer, n):
    if peer in ("pandas-to_sql", "stockbatch-basic") and n > 100_000:
        pytest.skip("row-at-a-time peers are measured at 1e5")
    n = sized(n)
    data = bars(n)
    benchmark.group = f"pg-append-{n:.0e}"
    names: list = []

    def setup():
        names.append(tag())
        if not peer.startswith(("polars", "pandas")):
            _pg_fresh(names[-1])
        return (), {}

    def go():
        t = names[-1]
        if peer.startswith("stockbatch"):
            level = "basic" if peer.endswith("basic") else None
            with sinks.connect(PG, tables={"bars": t}, level=level) as s:
                r = s.ingest(data, mode="append")
            assert r.written == data.num_rows
        elif peer == "psycopg-binary-copy":
            psycopg_binary_copy(t, data)
        elif peer == "adbc_ingest-reader64k":
            import adbc_driver_postgresql.dbapi as ap

            with ap.connect(PG) as c, c.cursor() as cur:
                cur.adbc_ingest(
                    t,
                    pa.RecordBatchReader.from_batches(BARS, data.to_batches(max_chunksize=BATCH)),
                    mode="append",
                )
                c.commit()
        elif peer == "polars-adbc":
            import polars as pl

            pl.from_arrow(data).write_database(t, PG, engine="adbc")
        else:
            import sqlalchemy as sa

            eng = sa.create_engine(PG.replace("postgresql://", "postgresql+psycopg://"))
            data.to_pandas().to_sql(t, eng, index=False, chunksize=10_000)
            eng.dispose()

    try:
        run(benchmark, go, setup)
    finally:
        for t in names:
            _pg_drop(t)


@needs_pg
@pytest.mark.parametrize(
    "peer", ["stockbatch-one-piece", "stockbatch-8k-pieces", "psycopg-binary-copy"]
)
def test_pg_copy_pieces(benchmark, peer):
    data = bars(sized(52_000), nsym=200)
    benchmark.group = f"pg-copy-pieces-{data.num_rows:.0e}"
    names: list = []

    def setup():
        names.append(tag())
        _pg_fresh(names[-1])
        return (), {}

    def go():
        t = names[-1]
        if peer == "psycopg-binary-copy":
            psycopg_binary_copy(t, data)
            return
        with sinks.connect(PG, tables={"bars": t}) as s:
            if peer == "stockbatch-one-piece":
                s.copy_piece_rows = None
            assert s.ingest(data, mode="append").written == data.num_rows

    try:
        run(benchmark, go, setup, rounds=21)
    finally:
        for t in names:
            _pg_drop(t)


@needs_pg
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(
    "peer",
    ["stockbatch-range", "stockbatch-on_conflict", "stockbatch-merge", "naive-staging-on-conflict"],
)
@pytest.mark.parametrize("again", [False, True], ids=["half-conflicts", "all-unchanged"])
def test_pg_upsert(benchmark, peer, n, again):
    n = sized(n)
    old, new = _half_conflicts(n)
    benchmark.group = f"pg-{'reupsert' if again else 'upsert'}-{n:.0e}"
    names: list = []

    def setup():
        names.append(tag())
        _pg_fresh(names[-1], old=new if again else old)
        return (), {}

    def go():
        t = names[-1]
        if peer.startswith("stockbatch"):
            with sinks.connect(PG, tables={"bars": t}, upsert_strategy=peer.split("-")[1]) as s:
                r = s.ingest(new, mode="upsert")
            assert r.rows == new.num_rows
        else:
            import adbc_driver_postgresql.dbapi as ap

            st = "stage_" + t
            with ap.connect(PG) as c, c.cursor() as cur:
                cur.adbc_ingest(
                    st,
                    pa.RecordBatchReader.from_batches(BARS, new.to_batches(max_chunksize=BATCH)),
                    mode="create",
                    temporary=True,
                )
                cur.execute(
                    f'INSERT INTO "{t}" ({_COLS}) SELECT * FROM "{st}" ON CONFLICT (symbol, interval, ts) '
                    "DO UPDATE SET open=excluded.open, high=excluded.high, low=excluded.low, "
                    "close=excluded.close, adj_close=excluded.adj_close, "
                    "volume=excluded.volume, source=excluded.source"
                )
                c.commit()

    try:
        run(benchmark, go, setup)
    finally:
        for t in names:
            _pg_drop(t)


# -- DuckDB and MariaDB --------------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("peer", ["stockbatch", "duckdb-python-arrow-insert"])
def test_duckdb_append(benchmark, tmp_path, peer, n):
    n = sized(n)
    data = bars(n)
    path = str(tmp_path / "bench.duckdb")
    benchmark.group = f"duckdb-append-{n:.0e}"
    state = {}

    def setup():
        state["t"] = tag()
        with sinks.connect("duckdb:///" + path, tables={"bars": state["t"]}) as s:
            s.ensure_tables("bars")
        return (), {}

    def go():
        t = state["t"]
        if peer == "stockbatch":
            with sinks.connect("duckdb:///" + path, tables={"bars": t}) as s:
                assert s.ingest(data, mode="append").written == data.num_rows
        else:
            import duckdb

            con = duckdb.connect(path)
            con.register("src", data)
            con.execute(f'INSERT INTO "{t}" ({_COLS}) SELECT * FROM src')
            con.close()

    run(benchmark, go, setup)


@pytest.mark.skipif(not MY, reason="STOCKBATCH_MYSQL_URI not set")
@pytest.mark.parametrize("n", [100_000])
@pytest.mark.parametrize(
    "peer", ["stockbatch-load-data", "stockbatch-basic-executemany", "pandas-to_sql"]
)
def test_mysql_append(benchmark, peer, n):
    n = sized(n)
    data = bars(n)
    benchmark.group = f"mysql-append-{n:.0e}"
    names: list = []

    def setup():
        names.append(tag())
        if peer != "pandas-to_sql":
            with sinks.connect(MY, tables={"bars": names[-1]}) as s:
                s.ensure_tables("bars")
        return (), {}

    def go():
        t = names[-1]
        if peer.startswith("stockbatch"):
            level = "basic" if "basic" in peer else None
            with sinks.connect(MY, tables={"bars": t}, level=level) as s:
                assert s.ingest(data, mode="append").written == data.num_rows
        else:
            import sqlalchemy as sa

            eng = sa.create_engine(MY.replace("mysql://", "mysql+pymysql://"))
            frame = data.to_pandas()
            frame["ts"] = frame["ts"].dt.tz_localize(None)
            frame.to_sql(t, eng, index=False, chunksize=10_000)
            eng.dispose()

    try:
        run(benchmark, go, setup)
    finally:
        with sinks.connect(MY) as s:
            for t in names:
                s.drop_table(t)


# -- memory: 1e7 rows from a stream --------------------------------------------------------
_RSS_CHILD = r"""
import resource, sys, numpy as np, pyarrow as pa
from stockbatch import sinks
from stockbatch.schema import BARS
uri, n, table = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def stream(n, rows=65536):
    rng = np.random.default_rng(0)
    sym = pa.array(np.repeat(np.array([f"S{i:03d}" for i in range(100)], dtype=object),
                             rows // 100 + 1)[:rows], pa.string())
    for i, start in enumerate(range(0, n, rows)):
        k = min(rows, n - start)
        ts = (1_700_000_000 + np.arange(start, start + k, dtype=np.int64) * 60) * 1_000_000
        c = rng.random(k) * 100
        yield pa.RecordBatch.from_arrays([sym.slice(0, k), pa.array(np.full(k, "1m", dtype=object)),
            pa.array(ts).cast(pa.timestamp("us", tz="UTC")), pa.array(c), pa.array(c + 1),
            pa.array(c - 1), pa.array(c), pa.array(c), pa.array(rng.integers(0, 9, k)),
            pa.array(np.full(k, "x", dtype=object))], schema=BARS)
with sinks.connect(uri, tables={"bars": table}) as s:
    s.ensure_tables("bars")
    next(iter(stream(65536)))  # warm imports before the baseline
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = s.ingest(stream(n), mode="append")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s.drop_table(table)
print(r.written, (peak - base) / 1024, r.seconds)
"""


@pytest.mark.skipif(
    os.environ.get("STOCKBATCH_BENCH_RSS") != "1", reason="opt-in: STOCKBATCH_BENCH_RSS=1"
)
@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_rss_stream_1e7(benchmark, tmp_path, target):
    if target == "postgresql" and not PG:
        pytest.skip("STOCKBATCH_PG_URI not set")
    n = sized(10_000_000)
    uri = str(tmp_path / "rss.db") if target == "sqlite" else PG
    benchmark.group = "rss-stream"
    out = {}

    def go():
        res = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD, uri, str(n), tag()],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
        )
        written, mb, secs = res.stdout.split()
        out.update(written=int(written), rss_growth_mb=float(mb), seconds=float(secs))

    benchmark.pedantic(go, rounds=1, iterations=1)
    benchmark.extra_info.update(out)
    print(f"\n{target}: {out}")
    assert out["written"] == n
