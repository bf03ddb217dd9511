"""The queries of README's "Reading the data from other tools", run as written (only the
day and the file name are swapped for ones the fixture data has) with psql, sqlite3,
DuckDB, pandas and polars against tables stockbatch wrote."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest

import stockbatch
from stockbatch import sinks

README = Path(__file__).resolve().parents[2] / "README.md"
SYMBOLS = ["7203.T", "AAPL", "SAP.DE"]


def blocks() -> dict[str, str]:
    text = README.read_text()
    section = text.split("## Reading the data from other tools", 1)[1].split("\n## ", 1)[0]
    out = {}
    for label, code in re.findall(r"\n([^\n]+):\n\n```\w+\n(.*?)```", section, re.S):
        out[label.split()[0].lower()] = code
    return out


def statements(code: str) -> list[str]:
    return [s.strip() for s in code.split(";") if s.strip()]


def last_tokyo_day(db) -> str:
    ts = stockbatch.read(db, ["7203.T"]).column("ts")[-1].as_py()
    return ts.astimezone(ZoneInfo("Asia/Tokyo")).date().isoformat()


@pytest.fixture(scope="module")
def sqlite_db(fixture_server, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("readme") / "stockbatch.db")
    assert stockbatch.ingest(
        SYMBOLS, db=path, base_url=fixture_server.url, period="1y", indicators="sma20"
    ).success
    return path


def test_readme_has_every_client():
    assert {"psql", "sqlite3", "duckdb", "pandas", "mariadb"} <= set(blocks())


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="no sqlite3 CLI")
def test_sqlite3_queries(sqlite_db):
    day = last_tokyo_day(sqlite_db)
    for stmt in statements(blocks()["sqlite3"]):
        out = subprocess.run(
            ["sqlite3", "-bail", sqlite_db, stmt.replace("2026-11-30", day)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.strip(), stmt
    out = subprocess.run(
        ["sqlite3", sqlite_db, statements(blocks()["sqlite3"])[0].replace("2026-11-30", day)],
        capture_output=True,
        text=True,
    ).stdout
    assert f"7203.T|{day}|" in out  # Tokyo's bar, by its own trading date


def test_pandas_and_polars(sqlite_db, tmp_path):
    day = last_tokyo_day(sqlite_db)
    code = (
        blocks()["pandas"]
        .replace("stockbatch.db", sqlite_db)
        .replace("2026-11-30", day)
        .replace("2026-11-01", day)
    )
    env: dict = {}
    exec(compile(code, "README", "exec"), env)
    df, pl_df, bars = env["df"], env["pl_df"], env["bars"]
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]" or "UTC" in str(df["ts"].dtype)
    assert (df["date"] >= day).all() and "7203.T" in set(df["symbol"])
    assert str(pl_df.schema["date"]) == "Date" and pl_df.height > 0
    assert bars.height == 1


def test_duckdb_queries(fixture_server, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    path = str(tmp_path / "readme.duckdb")
    assert stockbatch.ingest(
        SYMBOLS, db=f"duckdb:///{path}", base_url=fixture_server.url, period="3mo"
    ).success
    day = last_tokyo_day(f"duckdb:///{path}")
    con = duckdb.connect(path, read_only=True)
    try:
        for stmt in statements(blocks()["duckdb"]):
            rows = con.execute(stmt.replace("2026-11-30", day)).fetchall()
            assert rows, stmt
        rows = con.execute(statements(blocks()["duckdb"])[0].replace("2026-11-30", day)).fetchall()
        assert "7203.T" in {r[0] for r in rows}
    finally:
        con.close()


def test_sqlite_tables_answer_duckdbs_rowid_queries(sqlite_db):
    # what DuckDB's SQLite attach sends for count(*) and to split a scan (its source:
    # sqlite_scanner.cpp, sqlite_db.cpp), against every table stockbatch made
    con = sqlite3.connect(sqlite_db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert {"bars", "symbols", "indicators", "stockbatch_meta"} <= set(tables)
        for t in tables:
            n = con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
            assert len(con.execute(f'SELECT ROWID FROM "{t}"').fetchall()) == n, t
            lo, hi = con.execute(f'SELECT MIN(ROWID), MAX(ROWID) FROM "{t}"').fetchone()
            assert n == 0 or (lo >= 1 and hi >= lo + n - 1), t
    finally:
        con.close()


def test_duckdb_attaches_the_sqlite_file(sqlite_db):
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    try:
        try:
            con.execute("LOAD sqlite")
        except duckdb.Error as exc:
            pytest.skip(
                f"DuckDB {duckdb.__version__} has no sqlite extension here: INSTALL sqlite "
                f"downloads it from DuckDB's site ({str(exc).splitlines()[0][:120]})"
            )
        day = last_tokyo_day(sqlite_db)
        code = blocks()["duckdb's"].replace("stockbatch.db", sqlite_db)
        code = code.replace("20261130", day.replace("-", ""))
        results = [
            con.execute(stmt).fetchall()
            for stmt in statements(code)
            if not stmt.startswith(("INSTALL", "LOAD"))
        ]
        lite = sqlite3.connect(sqlite_db)
        (stored,) = lite.execute("SELECT count(*) FROM bars").fetchone()
        lite.close()
        assert results[1] == [(stored,)]  # count(*) of the attached bars table
        rows = results[2]
        assert "7203.T" in {r[0] for r in rows} and {str(r[2]) for r in rows} == {day}
    finally:
        con.close()


@pytest.mark.skipif(shutil.which("psql") is None, reason="no psql")
def test_psql_queries(pg_uri, fixture_server):
    schema = f"sbreadme_{uuid.uuid4().hex[:8]}"
    tables = {
        k: f"{schema}.{k}"
        for k in ("bars", "symbols", "actions", "quarantine", "ingest_log", "quotes")
    }
    with sinks.connect(pg_uri, tables=tables) as sink:
        with sink._connection() as conn:
            sink._exec(conn, f'CREATE SCHEMA "{schema}"')
        try:
            assert stockbatch.ingest(
                SYMBOLS, db=sink, base_url=fixture_server.url, period="3mo"
            ).success
            day = last_tokyo_day(sink)
            env = dict(os.environ, PGOPTIONS=f"-c search_path={schema}")
            for stmt in statements(blocks()["psql"]):
                out = subprocess.run(
                    [
                        "psql",
                        pg_uri,
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-At",
                        "-c",
                        stmt.replace("2026-11-30", day),
                    ],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                ).stdout
                assert out.strip(), stmt
            first = subprocess.run(
                [
                    "psql",
                    pg_uri,
                    "-At",
                    "-c",
                    statements(blocks()["psql"])[0].replace("2026-11-30", day),
                ],
                capture_output=True,
                text=True,
                env=env,
            ).stdout
            assert f"7203.T|{day}|" in first
        finally:
            with sink._connection() as conn:
                sink._exec(conn, f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.skipif(shutil.which("mariadb") is None, reason="no mariadb client")
def test_mariadb_queries(mysql_uri, fixture_server):
    import pymysql

    url = urlsplit(mysql_uri)
    host, port, user = url.hostname or "127.0.0.1", str(url.port or 3306), url.username or "root"
    db = f"sbreadme_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(host=host, port=int(port), user=user, password=url.password or "")
    try:
        admin.cursor().execute(f"CREATE DATABASE {db}")
        uri = mysql_uri.rsplit("/", 1)[0] + f"/{db}"
        assert stockbatch.ingest(SYMBOLS, db=uri, base_url=fixture_server.url, period="3mo").success
        day = last_tokyo_day(uri)
        login = ["mariadb", "-h", host, "-P", port, "-u", user, "-B", "-N", db]
        env = dict(os.environ, MYSQL_PWD=url.password or "")
        for stmt in statements(blocks()["mariadb"]):
            out = subprocess.run(
                [*login, "-e", stmt.replace("2026-11-30", day)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            ).stdout
            rows = [line.split("\t") for line in out.strip().splitlines()]
            assert ["7203.T", "1d", day] in [r[:3] for r in rows], (stmt, out)
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
        admin.close()
