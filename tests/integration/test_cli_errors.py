"""Every CLI subcommand over a table of bad inputs: each ends with exit 1 or 2 and a one-line
reason on stderr, never a traceback. Real files, real fixture server, real databases."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from stockbatch.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory, fixture_server):
    d = tmp_path_factory.mktemp("bad")
    (d / "not-a-db.db").write_bytes(b"this is not a database at all\n" * 10)
    duck = d / "real.duckdb"
    import duckdb

    duckdb.connect(str(duck)).close()
    (d / "copy-of-duckdb.db").write_bytes(duck.read_bytes())
    locked = d / "locked.db"
    sqlite3.connect(locked).close()
    good = d / "good.db"
    assert main(["ingest", "AAPL", "--db", str(good), "--base-url", fixture_server.url, "-q"]) == 0
    (d / "latin1.txt").write_bytes("AAPL\nN\xc9STL\n".encode("latin-1"))
    (d / "binary.txt").write_bytes(b"AAPL\0\0\0")
    (d / "huge.txt").write_bytes(b"AAPL " * (4 << 20))  # 20 MiB
    check = d / "check.db"
    with sqlite3.connect(check) as conn:  # a bars table with a CHECK no row passes
        conn.execute(
            "CREATE TABLE bars (symbol TEXT, interval TEXT, ts INTEGER, open REAL, "
            "high REAL, low REAL, close REAL CHECK (close < 0), adj_close REAL, "
            "volume INTEGER, source TEXT, PRIMARY KEY (symbol, interval, ts))"
        )
    return d


BAD = [
    # (argv with {d} for the folder and {url} for the fixture server, expected exit code)
    (["ingest", "AAPL", "--db", "/nonexistent/dir/x.db", "--base-url", "{url}"], 1),
    (["ingest", "AAPL", "--db", "{d}", "--base-url", "{url}"], 1),
    (["read", "--db", "{d}"], 1),
    (["ingest", "AAPL", "--db", "{d}/not-a-db.db", "--base-url", "{url}"], 1),
    (["ingest", "AAPL", "--db", "{d}/copy-of-duckdb.db", "--base-url", "{url}"], 1),
    (["ingest", "AAPL", "--db", "nosuchscheme://x", "--base-url", "{url}"], 1),
    (["ingest", "AAPL", "--db", "postgresql://nobody@127.0.0.1:1/x", "--base-url", "{url}"], 1),
    (["ingest", "AAPL", "--db", "{d}/t1.db", "--table", "temp.t", "--base-url", "{url}"], 2),
    (
        [
            "ingest",
            "AAPL",
            "--db",
            "{d}/t2.db",
            "--table",
            "x; DROP TABLE y",
            "--base-url",
            "{url}",
        ],
        2,
    ),
    (["ingest", "AAPL", "--db", "{d}/check.db", "--base-url", "{url}", "--period", "1y"], 1),
    (
        [
            "ingest",
            "AAPL",
            "--db",
            "{d}/t3.db",
            "--base-url",
            "http://127.0.0.1:1",
            "--timeout",
            "10",
        ],
        1,
    ),
    (["ingest", "AAPL", "--db", "{d}/t5.db", "--table", "bars_v", "--base-url", "{url}"], 2),
    (["read", "AAPL", "--db", "{d}/good.db", "--table", "bars_v"], 1),
    (["ingest", "AAPL", "--interval", "3h"], 2),
    (["ingest", "AAPL", "--interval", "5d"], 2),
    (["ingest", "AAPL", "--period", "7x"], 2),
    (["ingest", "AAPL", "--start", "yesterday"], 2),
    (["ingest", "AAPL", "--start", "2025-02-01", "--end", "2025-01-01"], 2),
    (["ingest", "AAPL", "--mode", "merge"], 2),
    (["ingest", "AAPL", "--concurrency", "0"], 2),
    (["ingest", "AAPL", "--indicators", "bogus7"], 2),
    (["ingest", "AAPL", "--indicators", "sma0"], 2),
    (["ingest", "AAPL", "--indicators", "macd0_26_9"], 2),
    (["ingest", "AAPL", "--indicators", "sma20,SMA20"], 2),
    (["ingest", "AAPL", "--timeout", "inf"], 2),
    (["ingest", "AAPL", "--period", "99999y"], 2),
    (["ingest", "AAPL", "--period", "1000000wk"], 2),
    (["ingest", "--symbols-file", "{d}/latin1.txt"], 2),
    (["ingest", "--symbols-file", "{d}/binary.txt"], 2),
    (["ingest", "--symbols-file", "{d}/huge.txt"], 2),
    (["ingest", "--symbols-file", "{d}/missing.txt"], 2),
    (["ingest"], 2),
    (["ingest", "A\nB"], 2),
    (["ingest", "AAPL", "--source", "alphavantage", "--db", "{d}/t4.db"], 1),
    (["demo", "--symbols", "0"], 2),
    (["demo", "--db", "/nonexistent/dir/demo.db", "--symbols", "3"], 1),
    (["read", "--db", "{d}/missing.db"], 1),
    (["read", "--db", "{d}/not-a-db.db"], 1),
    (["read", "--db", "{d}/copy-of-duckdb.db"], 1),
    (["read", "AAPL", "--db", "{d}/good.db", "--table", "sqlite_master"], 1),
    (["read", "AAPL", "--db", "{d}/good.db", "--table", "no_such_table"], 1),
    (["read", "AAPL", "--db", "{d}/good.db", "--table", "temp.t"], 1),
    (["read", "AAPL", "--db", "{d}/good.db", "--start", "nope"], 2),
    (["read", "AAPL", "--db", "{d}/good.db", "--limit", "-1"], 2),
    (["read", "AAPL", "--db", "{d}/good.db", "--interval", "3h"], 2),
    (["serve-fixture", "--fault", "bogus"], 2),
    (["serve-fixture", "--port", "-5"], 2),
    (["bench", "--bench-dir", "{d}/no-bench-here"], 2),
    (["nosuchcommand"], 2),
    (["ingest", "AAPL", "--bogus"], 2),
]


@pytest.mark.parametrize("argv, code", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_one_line_never_a_traceback(argv, code, files, fixture_server, capsys):
    args = [a.format(d=files, url=fixture_server.url) for a in argv]
    got = main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert got == code, err
    # a usage or start-up error is one line on stderr; a job whose symbols failed prints
    # its summary with the reasons
    reason = err if "error:" in err else out
    assert "error:" in err or ("failed" in out and "reason" in out), out + err
    assert all(len(line) < 600 for line in reason.splitlines())


def test_a_traceback_needs_debug(files, fixture_server):
    """The console script itself: one line without --debug; the trace with it."""
    base = [sys.executable, "-m", "stockbatch"]
    argv = ["read", "AAPL", "--db", f"{files}/good.db", "--table", "sqlite_master"]
    plain = subprocess.run(base + argv, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1


def test_a_symbols_file_with_a_byte_order_mark(files, fixture_server, tmp_path, capsys):
    """Excel's "CSV UTF-8" starts with a byte-order mark: it is not part of the first symbol."""
    (tmp_path / "bom.csv").write_bytes("\ufeffAAPL,MSFT\r\n".encode())
    db = tmp_path / "bom.db"
    argv = ["ingest", "-f", str(tmp_path / "bom.csv"), "--db", str(db), "--base-url"]
    assert main([*argv, fixture_server.url, "-q"]) == 0
    with sqlite3.connect(db) as conn:
        got = {s for (s,) in conn.execute("SELECT DISTINCT symbol FROM bars")}
    assert got == {"AAPL", "MSFT"}


def test_read_into_a_closed_pipe_is_quiet(fixture_server, tmp_path):
    """`stockbatch read … | head`: the reader leaves early; no error, the exit of a process
    ended by SIGPIPE (141), as `cat` gives. (~1 MB of CSV: far more than a pipe holds, so the
    write meets the closed pipe.)"""
    db = tmp_path / "big.db"
    symbols = [f"S{i:04d}" for i in range(20)]
    argv = ["ingest", *symbols, "--db", str(db), "--base-url", fixture_server.url]
    assert main([*argv, "--period", "2y", "-q"]) == 0
    cmd = (
        f"{sys.executable} -m stockbatch read --db {db} --csv --limit 0 | head -1; "
        "exit ${PIPESTATUS[0]}"
    )
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith('"symbol"') and done.stderr == "", done.stderr
    assert done.returncode == 141


def test_an_impossible_period_is_refused_before_any_fetch():
    import stockbatch as sb

    with pytest.raises(ValueError, match="200 years"):
        sb.fetch(["AAPL"], period="99999y", base_url="http://127.0.0.1:1")


@pytest.mark.parametrize("command", ["ingest", "read"])
@pytest.mark.parametrize(
    "uri", ["sqlite://u:S3CRETpw@/nodir/x.db", "duckdb://u:S3CRETpw@/x.duckdb"]
)
def test_a_file_uri_with_a_password_is_refused_without_showing_it(command, uri, capsys):
    extra = ["--base-url", "http://127.0.0.1:1", "-q"] if command == "ingest" else []
    got = main([command, "AAPL", "--db", uri, *extra])
    out, err = capsys.readouterr()
    assert got == 1 and "names no host, user or password" in err
    assert "S3CRETpw" not in out + err


def test_a_directory_as_the_database_is_named_as_such(files, capsys):
    assert main(["read", "--db", str(files)]) == 1
    assert "is a directory, not a database file" in capsys.readouterr().err
