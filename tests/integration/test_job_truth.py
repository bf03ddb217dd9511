"""Counts are the database's truth: rows a database refuses are never reported stored, the
ingest log says per chunk what was written, quarantined and refused, and re-running a job
adds no duplicate quarantine rows. Real SQLite and PostgreSQL, real fixture server."""

from __future__ import annotations

import re
import sqlite3
import uuid

import pyarrow.compute as pc
import pytest

import stockbatch as sb
from stockbatch.cli import main

SYMS = ["AAPL", "MSFT", "7203.T", "6758.T", "S0001"]  # the fixture sends some null bars
COLUMNS = (
    "symbol TEXT NOT NULL, interval TEXT NOT NULL, ts {ts} NOT NULL, open {f}, "
    "high {f}, low {f}, close {f} {check}, adj_close {f}, volume BIGINT, source TEXT, "
    "PRIMARY KEY (symbol, interval, ts)"
)


def _sqlite_bars(db, check: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE bars (" + COLUMNS.format(ts="INT64_US_UTC", f="REAL", check=check) + ")"
        )


def _sqlite_counts(db) -> tuple[dict[str, int], dict[str, int], list[tuple]]:
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        bars = dict(conn.execute("SELECT symbol, count(*) FROM bars GROUP BY symbol"))
        quarantined = (
            dict(conn.execute("SELECT symbol, count(*) FROM quarantine GROUP BY symbol"))
            if "quarantine" in tables
            else {}
        )
        log = conn.execute(
            "SELECT rows_written, rows_updated, rows_ignored, rows_rejected, "
            "rows_refused FROM ingest_log"
        ).fetchall()
    return bars, quarantined, log


def test_rows_refused_by_a_check_are_not_reported_stored(fixture_server, tmp_path):
    db = tmp_path / "refuse-all.db"
    _sqlite_bars(db, "CHECK (close < 0)")
    r = sb.ingest(["AAPL"], db=db, base_url=fixture_server.url, period="1y")
    o = r.symbols["AAPL"]
    assert not r.success
    assert o.status == "refused" and o.rows == 0 and o.refused > 200
    assert o.quarantined == o.refused + 0 and "CHECK" in o.error.upper()
    bars, quarantined, log = _sqlite_counts(db)
    assert bars == {} and quarantined == {"AAPL": o.quarantined}
    assert sum(row[4] for row in log) == o.refused  # rows_refused
    assert sum(row[0] for row in log) == 0  # rows_written


def test_a_check_refusing_some_rows_splits_exactly(fixture_server, tmp_path):
    db = tmp_path / "refuse-some.db"
    _sqlite_bars(db, "CHECK (close < 150)")
    r = sb.ingest(SYMS, db=db, base_url=fixture_server.url, period="1y")
    bars, quarantined, log = _sqlite_counts(db)
    assert any(o.refused for o in r.symbols.values())
    assert not r.success
    for s, o in r.symbols.items():
        assert o.rows == bars.get(s, 0)
        assert o.quarantined == quarantined.get(s, 0)
    assert r.rows_stored == sum(bars.values())
    assert sum(row[0] + row[1] + row[2] for row in log) == r.rows_stored
    assert sum(row[3] for row in log) == r.rows_rejected - r.rows_refused
    assert sum(row[4] for row in log) == r.rows_refused


def test_cli_says_refused_and_exits_1(fixture_server, tmp_path, capsys):
    db = tmp_path / "cli.db"
    _sqlite_bars(db, "CHECK (close < 0)")
    code = main(
        ["ingest", "AAPL", "--db", str(db), "--base-url", fixture_server.url, "--period", "1y"]
    )
    out, _ = capsys.readouterr()
    assert code == 1
    assert "refused by the database" in out
    assert re.search(r"rows stored\s*\S\s*0\s", out), out


def test_ingest_log_counts_validation_rejects_per_chunk(fixture_server, tmp_path):
    db = tmp_path / "log.db"
    r = sb.ingest(SYMS, db=db, base_url=fixture_server.url, period="1y")
    assert r.success
    _, quarantined, log = _sqlite_counts(db)
    assert r.rows_rejected == sum(quarantined.values()) > 0  # the fixture sends null bars
    assert sum(row[3] for row in log) == r.rows_rejected
    assert sum(row[0] for row in log) == r.rows_stored


def test_rerunning_a_job_adds_no_duplicate_quarantine_rows(fixture_server, tmp_path):
    db = tmp_path / "again.db"
    first = sb.ingest(SYMS, db=db, base_url=fixture_server.url, period="1y")
    _, q1, _ = _sqlite_counts(db)
    for _ in range(2):
        again = sb.ingest(SYMS, db=db, base_url=fixture_server.url, period="1y")
        assert again.rows_rejected == first.rows_rejected
    bars, q3, log = _sqlite_counts(db)
    assert q3 == q1
    assert sum(bars.values()) == first.rows_stored
    with sqlite3.connect(db) as conn:
        assert conn.execute(
            "SELECT min(seen_count), max(seen_count) FROM quarantine"
        ).fetchone() == (3, 3)


@pytest.mark.postgres
def test_postgres_check_refusals_are_exact(fixture_server, pg_uri):
    import adbc_driver_postgresql.dbapi as pg

    table = f"bars_truth_{uuid.uuid4().hex[:8]}"
    with pg.connect(pg_uri) as conn, conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE {table} ("
            + COLUMNS.format(ts="timestamptz", f="double precision", check="CHECK (close < 150)")
            + ")"
        )
        conn.commit()
    try:
        r = sb.ingest(SYMS, db=pg_uri, base_url=fixture_server.url, period="1y", table=table)
        back = sb.read(pg_uri, table=table)
        stored = {s: back.filter(pc.equal(back["symbol"], s)).num_rows for s in SYMS}
        assert any(o.refused for o in r.symbols.values()) and not r.success
        for s, o in r.symbols.items():
            assert o.rows == stored[s]
        assert r.rows_stored == back.num_rows
    finally:
        with pg.connect(pg_uri) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            conn.commit()


@pytest.mark.postgres
def test_postgres_integer_column_is_a_sink_error_not_a_raw_one(fixture_server, pg_uri):
    import adbc_driver_postgresql.dbapi as pg

    table = f"bars_int_{uuid.uuid4().hex[:8]}"
    with pg.connect(pg_uri) as conn, conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE {table} ("
            + COLUMNS.format(ts="timestamptz", f="double precision", check="").replace(
                "close double precision", "close INTEGER"
            )
            + ")"
        )
        conn.commit()
    try:
        r = sb.ingest(["AAPL"], db=pg_uri, base_url=fixture_server.url, table=table)
        o = r.symbols["AAPL"]
        assert o.status == "failed" and isinstance(o.exception, sb.SchemaError)
        assert "'close'" in o.error and table in o.error
    finally:
        with pg.connect(pg_uri) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            conn.commit()


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"])
def test_insert_new_counts_only_the_rows_it_wrote(fixture_server, tmp_path, db_kind, request):
    """``insert_new`` over stored bars writes only the new keys: the rest are ``kept`` as
    they were stored, not counted in ``rows``; ingest_log agrees."""
    if db_kind == "sqlite":
        db = str(tmp_path / "keep.db")
        table = "bars"
    else:
        db = request.getfixturevalue("pg_uri")
        table = f"bars_keep_{uuid.uuid4().hex[:8]}"
    try:
        first = sb.ingest(
            ["AAPL", "MSFT"], db=db, base_url=fixture_server.url, period="1mo", table=table
        )
        assert first.success and first.rows_stored > 30
        wider = sb.ingest(
            ["AAPL", "MSFT"],
            db=db,
            base_url=fixture_server.url,
            period="3mo",
            table=table,
            mode="insert_new",
        )
        back = sb.read(db, table=table)
        for s in ("AAPL", "MSFT"):
            o, before = wider.symbols[s], first.symbols[s]
            assert o.kept == before.rows and o.rows > 0, o
            assert before.rows + o.rows == back.filter(pc.equal(back["symbol"], s)).num_rows
        assert wider.rows_kept == first.rows_stored
        assert "kept as stored (insert_new)" in wider.summary()
        again = sb.ingest(
            ["AAPL"],
            db=db,
            base_url=fixture_server.url,
            period="3mo",
            table=table,
            mode="insert_new",
        )
        assert again.rows_stored == 0 and again.symbols["AAPL"].kept > 0
        assert again.symbols["AAPL"].status == "stored"
    finally:
        if db_kind == "postgresql":
            with sb.sinks.connect(db) as sink:
                for t in (table,):
                    sink.drop_table(t)


def test_an_error_names_the_mode_the_job_was_given(fixture_server, tmp_path):
    """A job's ``append`` stores through the sink's ``create_append``: the message says
    ``append``, what the user asked for."""
    db = tmp_path / "mode.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE other (a INTEGER)")
    r = sb.ingest(["AAPL"], db=db, base_url=fixture_server.url, table="other", mode="append")
    err = r.symbols["AAPL"].error
    assert "ingest (append): table 'other' is not a bars table" in err, err
