"""What the layout of the bars table costs at ingest: the stored trading date, the time
index, the table's shape (issue 14: "ingest cost measured before and after").

Every peer is stockbatch itself writing the same 1e6 bars (100 symbols x 10,000 minutes,
dated in New York, Tokyo, Berlin and Sydney, with the provider metadata an ingest stores)
into a fresh table made before the timer starts; only the table differs:

- ``v0.1``: the layout before issue 14, no ``date`` column (written as it is, no date
  computed), no time index, and in SQLite ``WITHOUT ROWID`` as 0.1 made it: the "before".
- ``date``: today's layout: + the exchange trading date (SQLite: INTEGER YYYYMMDD; PostgreSQL:
  DATE) and, in PostgreSQL, the BRIN index on ``ts`` every new bars table gets: the "after".
- ``date-no-brin`` (PostgreSQL): the date without the BRIN index.
- ``date+btree``: + the B-tree on ``ts`` of ``create_time_index()`` (not built by default).
- ``date-without-rowid`` (SQLite): the key as a ``WITHOUT ROWID`` table (one B-tree) instead
  of today's rowid table + key index (DuckDB's SQLite attach cannot ``count(*)`` it).

Groups ``{sqlite,pg}-layout-append-N`` (append into an empty table) and
``{sqlite,pg}-layout-upsert-N`` (half of the rows stored already with other values).
``sqlite-page-size-N``: today's layout in files made with 4, 8, 16 (what stockbatch makes) or
32 KiB pages, append (N = 52k: a chunk the size the pipeline stores, 200 symbols; and 1e6).
``sqlite-date-repr-N``: the SQLite side of the date's representation alone — raw
``adbc_ingest`` of the same rows into keyed tables (today's rowid layout), the date column
computed from ``date32`` inside the timer as INTEGER YYYYMMDD, INTEGER days since 1970-01-01,
ISO text, or left out.

On a shared machine time the SQLite groups in CPU time as well
(``-k sqlite --benchmark-timer=time.process_time``): their wall times swing more than the
differences measured.

Run: ``STOCKBATCH_PG_URI=… PYTHONPATH=src python -m pytest bench/test_layout.py
--benchmark-only --benchmark-columns=min,median,max,rounds --benchmark-sort=name``.
"""

from __future__ import annotations

import os
import sqlite3

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from benchutil import sized
from test_ingest import _half_conflicts, bars, tag, with_int_ts

from stockbatch import sinks
from stockbatch.schema import local_dates
from stockbatch.sinks._ddl import DIALECTS, SPECS
from stockbatch.sinks._sqlite import PAGE_SIZE, yyyymmdd

PG = os.environ.get("STOCKBATCH_PG_URI")
N = 1_000_000
ROUNDS = 5
ZONES = ("America/New_York", "Asia/Tokyo", "Europe/Berlin", "Australia/Sydney")


def meta(data: pa.Table) -> dict:
    """Provider metadata of the symbols of ``data`` (what a real ingest passes)."""
    syms = pc.unique(data.column("symbol")).to_pylist()
    return {s: {"timezone": ZONES[i % len(ZONES)], "exchange": "X"} for i, s in enumerate(syms)}


def _execute(uri: str, statement: str) -> None:
    if uri.startswith("postgresql"):
        import psycopg

        with psycopg.connect(uri, autocommit=True) as c:
            c.execute(statement)
    else:
        with sqlite3.connect(uri) as c:
            c.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # as stockbatch makes its files
            c.execute(statement)
        c.close()


def _make(uri: str, name: str, layout: str, *, old: pa.Table | None = None) -> None:
    """A fresh bars table ``name`` of ``layout`` (holding ``old``)."""
    d = DIALECTS["postgresql" if uri.startswith("postgresql") else "sqlite"]
    with sinks.connect(uri, tables={"bars": name}) as s:
        if layout in ("date", "date-no-brin", "date+btree"):
            s.ensure_tables("bars")
            if layout == "date-no-brin":
                _execute(uri, f"DROP INDEX {d.quote(name + '_ts_brin')}")
            if layout == "date+btree":
                s.create_time_index()
        else:  # by hand: 0.1's table (WITHOUT ROWID in SQLite, as 0.1 made it), or today's
            # table WITHOUT ROWID
            ddl = SPECS["bars_0_1" if layout == "v0.1" else "bars"].create(d, name)
            if d.name == "sqlite":
                ddl += " WITHOUT ROWID"
            _execute(uri, ddl)
        if old is not None:
            s.ingest(old, mode="append", meta=meta(old))


def _layout_bench(benchmark, uri: str, layout: str, what: str, drop: bool) -> None:
    n = sized(N)
    if what == "append":
        old, new = None, bars(n)
    else:
        old, new = _half_conflicts(n)
    info = meta(new)
    names: list = []

    def setup():
        names.append(tag())
        _make(uri, names[-1], layout, old=old)
        return (), {}

    def go():
        with sinks.connect(uri, tables={"bars": names[-1]}) as s:
            r = s.ingest(new, mode=what, meta=info)
        assert r.written + r.updated == new.num_rows

    try:
        benchmark.pedantic(go, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    finally:
        if drop:
            with sinks.connect(uri) as s:
                for t in names:
                    s.drop_table(t)


@pytest.mark.parametrize("what", ["append", "upsert"])
@pytest.mark.parametrize("layout", ["v0.1", "date", "date-without-rowid", "date+btree"])
def test_sqlite_layout(benchmark, tmp_path, layout, what):
    benchmark.group = f"sqlite-layout-{what}-{sized(N):.0e}"
    _layout_bench(benchmark, str(tmp_path / "layout.db"), layout, what, drop=False)


@pytest.mark.skipif(not PG, reason="STOCKBATCH_PG_URI not set")
@pytest.mark.parametrize("what", ["append", "upsert"])
@pytest.mark.parametrize("layout", ["v0.1", "date", "date-no-brin", "date+btree"])
def test_pg_layout(benchmark, layout, what):
    benchmark.group = f"pg-layout-{what}-{sized(N):.0e}"
    _layout_bench(benchmark, PG, layout, what, drop=True)


@pytest.mark.parametrize("n", [52_000, N], ids=["pipeline-chunk", "1e6"])
@pytest.mark.parametrize("page", [4096, 8192, 16384, 32768])
def test_sqlite_page_size(benchmark, tmp_path, page, n):
    n = sized(n)
    new = bars(n, nsym=200 if n < N else 100)  # a chunk of the pipeline: 200 symbols
    info = meta(new)
    benchmark.group = f"sqlite-page-size-{n:.0e}"
    paths: list = []

    def setup():
        paths.append(str(tmp_path / f"{tag()}.db"))
        with sqlite3.connect(paths[-1]) as c:
            c.execute(f"PRAGMA page_size = {page}")
            c.execute("CREATE TABLE made (x)")  # the file exists with its page size
        c.close()
        _make(paths[-1], "bars", "date")
        return (), {}

    def go():
        with sinks.connect(paths[-1]) as s:
            assert s.ingest(new, mode="append", meta=info).written == new.num_rows

    benchmark.pedantic(
        go, setup=setup, rounds=ROUNDS if n >= N else 21, iterations=1, warmup_rounds=0
    )


# the date's representations in SQLite: declared type and the column from date32
_REPR = {
    "none": None,
    "int-yyyymmdd": ("INTEGER", yyyymmdd),
    "int-days": ("INTEGER", lambda col: col.cast(pa.int32()).cast(pa.int64())),
    "text-iso": ("TEXT", lambda col: col.cast(pa.string())),
}


@pytest.mark.parametrize("rep", list(_REPR))
def test_sqlite_date_repr(benchmark, tmp_path, rep):
    n = sized(N)
    data = with_int_ts(bars(n))
    zones = {s: m["timezone"] for s, m in meta(data).items()}
    dates = local_dates(data.column("symbol"), bars(n).column("ts"), zones)
    path = str(tmp_path / "repr.db")
    benchmark.group = f"sqlite-date-repr-{n:.0e}"
    state = {}

    def setup():
        state["t"] = t = tag()
        cols = [f'"{c}" {DIALECTS["sqlite"].types[lg]}' for c, lg, _ in SPECS["bars_0_1"].columns]
        if _REPR[rep]:
            cols.append(f'"date" {_REPR[rep][0]}')
        con = sqlite3.connect(path)
        con.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        con.execute(f'CREATE TABLE "{t}" ({", ".join(cols)}, PRIMARY KEY (symbol, interval, ts))')
        con.close()
        return (), {}

    def go():
        import adbc_driver_sqlite.dbapi as ad

        out = data if not _REPR[rep] else data.append_column("date", _REPR[rep][1](dates))
        with ad.connect(path) as c, c.cursor() as cur:
            cur.adbc_ingest(state["t"], out, mode="append")
            c.commit()

    benchmark.pedantic(go, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=0)
