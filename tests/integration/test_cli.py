"""The ``stockbatch`` command, end to end: real fixture server on loopback, real SQLite files,
``main([...])`` in-process (output through capsys) and real child processes for
``python -m stockbatch``."""

from __future__ import annotations

import io
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import stockbatch as sb
from stockbatch.cli import demo_symbols, main

SRC = Path(sb.__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def _counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT symbol, count(*) FROM bars GROUP BY symbol"))


def ingest(server, db, *args: str) -> int:
    """``stockbatch ingest ARGS --db DB --base-url SERVER``, in-process; its exit code."""
    return main(["ingest", *args, "--db", str(db), "--base-url", server.url])


def _summary_value(text: str, label: str) -> int:
    m = re.search(rf"{re.escape(label)}\s*\S\s*([\d,]+)", text)
    assert m, f"{label!r} not in summary:\n{text}"
    return int(m.group(1).replace(",", ""))


@pytest.fixture(scope="module")
def stored_db(fixture_server, tmp_path_factory):
    """One database with AAPL, MSFT and 7203.T (3 months of daily bars), made by the CLI."""
    db = tmp_path_factory.mktemp("cli") / "three.db"
    code = ingest(fixture_server, db, "AAPL", "MSFT", "7203.T", "--period", "3mo", "-q")
    assert code == 0
    return db


# -- ingest --------------------------------------------------------------------------------


def test_ingest_three_symbols_exit_0_and_rows_in_db(fixture_server, tmp_path, capsys):
    db = tmp_path / "a.db"
    code = ingest(
        fixture_server,
        db,
        "AAPL",
        "MSFT",
        "7203.T",
        "--period",
        "6mo",
        "--indicators",
        "sma20,rsi14",
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    counts = _counts(db)
    assert set(counts) == {"AAPL", "MSFT", "7203.T"}
    assert all(100 <= n <= 140 for n in counts.values()), counts  # ~6 months of weekdays
    assert _summary_value(out, "symbols stored") == 3
    assert _summary_value(out, "symbols failed") == 0
    rejected = _summary_value(out, "rows rejected (quarantined)")
    assert _summary_value(out, "rows stored") == sum(counts.values())
    with sqlite3.connect(db) as conn:  # the job made its quarantine table before any rows
        quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert quarantined == rejected
    for stage in ("fetch ms", "transform ms", "validate ms", "store ms", "analyze ms"):
        assert stage in out
    assert "3/3" in err  # the progress bar's final state
    # idempotent: the same command again stores the same rows, no duplicates
    assert ingest(fixture_server, db, "AAPL", "MSFT", "7203.T", "--period", "6mo", "-q") == 0
    assert _counts(db) == counts
    assert capsys.readouterr().out == ""  # --quiet prints nothing when all went well


def test_ingest_unknown_symbol_exit_1_others_stored(fixture_server, tmp_path, capsys):
    db = tmp_path / "b.db"
    code = ingest(fixture_server, db, "AAPL", "UNKNOWNZZ", "MSFT", "--period", "1mo")
    out, err = capsys.readouterr()
    assert code == 1
    assert set(_counts(db)) == {"AAPL", "MSFT"}
    assert _summary_value(out, "symbols stored") == 2
    assert _summary_value(out, "symbols failed") == 1
    assert "UNKNOWNZZ" in out and "SymbolNotFound" in out
    assert "Traceback" not in out + err


def test_ingest_quiet_reports_failures_on_stderr(fixture_server, tmp_path, capsys):
    db = tmp_path / "q.db"
    code = ingest(fixture_server, db, "AAPL", "INVALID1", "-q", "--period", "5d")
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert re.search(r"^failed INVALID1: .*SymbolNotFound", err, re.M)
    assert set(_counts(db)) == {"AAPL"}


def test_ingest_quiet_prints_no_alert(fixture_server, tmp_path):
    """An alert is no failure: --quiet prints nothing for it (a whole process, so that
    logging's own last-resort handler would show a stray one)."""
    argv = ["ingest", "AAPL", "-q", "--db", str(tmp_path / "q.db"), "--base-url"]
    argv += [fixture_server.url, "--alert", "rss_mb=1"]  # over 1 MiB at once: it fires
    done = subprocess.run(
        [sys.executable, "-m", "stockbatch", *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stderr


def test_ingest_symbols_file_and_start_end(fixture_server, tmp_path, capsys):
    listing = tmp_path / "symbols.txt"
    listing.write_text("# portfolio\nAAPL, MSFT\n7203.T   6758.T  # Tokyo\n\nAAPL\n")
    db = tmp_path / "f.db"
    code = ingest(
        fixture_server,
        db,
        "--symbols-file",
        str(listing),
        "NVDA",
        "--start",
        "2026-01-05",
        "--end",
        "2026-02-02",
    )
    assert code == 0, capsys.readouterr().err
    counts = _counts(db)
    assert set(counts) == {"AAPL", "MSFT", "7203.T", "6758.T", "NVDA"}
    back = sb.read(str(db), ["AAPL"])
    days = {t.date().isoformat() for t in back["ts"].to_pylist()}
    assert min(days) >= "2026-01-05" and max(days) < "2026-02-02"
    assert counts["AAPL"] == 20  # weekdays in [Jan 5, Feb 2)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ingest"], "no symbols"),
        (["ingest", "AAPL", "--period", "3x"], "bad period"),
        (["ingest", "AAPL", "--start", "2026-02-30"], "bad date"),
        (["ingest", "AAPL", "--start", "2026-01-01", "--period", "1y"], "not allowed with"),
        (["ingest", "AAPL", "--period", "1y", "--end", "2026-01-01"], "--end goes with --start"),
        (["ingest", "AAPL", "--start", "2026-05-01", "--end", "2026-04-01"], "is not after start"),
        (["ingest", "AAPL", "--mode", "merge"], "invalid choice"),
        (["ingest", "AAPL", "--source", "bloomberg"], "invalid choice"),
        (["ingest", "AAPL", "--interval", "7m"], "invalid choice"),
        (["ingest", "AAPL", "--indicators", "sma20,foo7"], "unknown indicator spec 'foo7'"),
        (["ingest", "AAPL", "--symbols-file", "/nonexistent/symbols.txt"], "cannot read symbols"),
        (["ingest", "AAPL", "--concurrency", "0"], "must be at least 1"),
        (["ingest", "AA PL"], "invalid symbol"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_usage_errors_exit_2(argv, message, fixture_server, tmp_path, capsys):
    db = tmp_path / "never.db"
    argv = argv + (
        ["--db", str(db), "--base-url", fixture_server.url] if argv[:1] == ["ingest"] else []
    )
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert message in err
    assert "Traceback" not in err
    assert not db.exists()  # nothing was fetched or stored


def test_unreachable_database_exit_1_one_line_no_password(fixture_server, tmp_path, capsys):
    before = fixture_server.hits("chart", "AMZN")
    code = ingest(fixture_server, "postgresql://bob:s3cretpw@127.0.0.1:1/x", "AMZN")
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stockbatch ingest: error: cannot connect")
    assert "s3cretpw" not in err and "bob:***@" in err
    assert fixture_server.hits("chart", "AMZN") == before  # refused before fetching

    code = ingest(fixture_server, tmp_path / "no" / "such" / "dir.db", "AAPL")
    err = capsys.readouterr().err
    assert code == 1 and "cannot connect" in err and len(err.strip().splitlines()) == 1

    assert main(["ingest", "AAPL", "--db", "oracle://u:pw9@h/x"]) == 1
    err = capsys.readouterr().err
    assert "unknown sink URI scheme" in err and "pw9" not in err


def test_provider_error_before_start_exit_1(fixture_server, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ALPHAVANTAGE_API_KEY", raising=False)
    code = ingest(fixture_server, tmp_path / "av.db", "AAPL", "--source", "alphavantage")
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines() == [err.strip()] and "no API key" in err
    assert "Traceback" not in err


def test_ingest_alphavantage_key_never_printed(fixture_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", "k3yZZsecret")
    db = tmp_path / "av.db"
    code = ingest(
        fixture_server,
        db,
        "AAPL",
        "7203.T",
        "UNKNOWNAV",
        "--source",
        "alphavantage",
        "--period",
        "1mo",
    )
    out, err = capsys.readouterr()
    assert code == 1  # UNKNOWNAV
    assert "k3yZZsecret" not in out + err and "UNKNOWNAV" in out
    with sqlite3.connect(db) as conn:
        rows = dict(
            conn.execute(
                "SELECT symbol, count(*) FROM bars WHERE source = 'alphavantage' GROUP BY symbol"
            )
        )
    assert set(rows) == {"AAPL", "7203.T"} and min(rows.values()) >= 15


# -- read ----------------------------------------------------------------------------------


def _csv(text: str) -> pa.Table:
    return pacsv.read_csv(
        io.BytesIO(text.encode()),
        convert_options=pacsv.ConvertOptions(
            column_types={"ts": pa.timestamp("us", tz="UTC"), "volume": pa.int64()}
        ),
    )


def test_read_csv_matches_db(stored_db, capsys):
    assert main(["read", "AAPL", "7203.T", "--db", str(stored_db), "--csv"]) == 0
    got = _csv(capsys.readouterr().out)
    want = sb.read(str(stored_db), ["AAPL", "7203.T"])
    assert got.num_rows == want.num_rows > 100
    assert got.column_names == want.column_names
    for name in ("symbol", "interval", "ts", "volume", "source"):
        assert got[name].to_pylist() == want[name].to_pylist(), name
    for name in ("open", "high", "low", "close", "adj_close"):
        assert got[name].to_pylist() == pytest.approx(want[name].to_pylist(), rel=1e-12)
    with sqlite3.connect(stored_db) as conn:
        n = conn.execute("SELECT count(*) FROM bars WHERE symbol IN ('AAPL', '7203.T')")
        assert n.fetchone()[0] == got.num_rows


def test_read_csv_limit_keeps_latest_per_symbol(stored_db, capsys):
    assert main(["read", "--db", str(stored_db), "--csv", "--limit", "3"]) == 0
    got = _csv(capsys.readouterr().out)
    full = sb.read(str(stored_db))
    assert got.num_rows == 9
    for sym in ("AAPL", "MSFT", "7203.T"):
        want = [r["ts"] for r in full.to_pylist() if r["symbol"] == sym][-3:]
        assert [r["ts"] for r in got.to_pylist() if r["symbol"] == sym] == want


def test_read_table(stored_db, capsys):
    assert main(["read", "MSFT", "--db", str(stored_db), "--limit", "2"]) == 0
    out = capsys.readouterr().out
    last = sb.read(str(stored_db), "MSFT").to_pylist()[-2:]
    assert "2 of " in out and "interval 1d" in out
    for row in last:
        assert row["ts"].strftime("%Y-%m-%d %H:%M") in out
        assert f"{row['close']:.2f}" in out or f"{row['close']:.4f}" in out
    assert "AAPL" not in out


def test_read_window_and_partly_missing_symbols(stored_db, capsys):
    stored = sb.read(str(stored_db), "AAPL")["ts"].to_pylist()
    start, end = stored[10], stored[20]  # daily bars at 05:00 UTC (New York midnight)
    assert (
        main(
            [
                "read",
                "AAPL",
                "--db",
                str(stored_db),
                "--csv",
                "--interval",
                "1d",
                "--start",
                start.isoformat(),
                "--end",
                end.isoformat(),
            ]
        )
        == 0
    )
    got = _csv(capsys.readouterr().out)
    assert got["ts"].to_pylist() == stored[10:20]  # start inclusive, end exclusive
    # one symbol stored, one not: the stored one is shown, the exit code says 1
    assert main(["read", "MSFT", "NOPE", "--db", str(stored_db), "--csv", "--limit", "1"]) == 1
    out, err = capsys.readouterr()
    assert _csv(out)["symbol"].to_pylist() == ["MSFT"]
    assert "no bars for NOPE" in err


def test_read_without_symbols_shows_overview(stored_db, capsys):
    assert main(["read", "--db", str(stored_db)]) == 0
    out = capsys.readouterr().out
    assert "3 series" in out
    for sym, n in _counts(stored_db).items():
        assert re.search(rf"^\s*{re.escape(sym)}\s+1d\s+{n}\s", out, re.M), (sym, out)


def test_read_without_database_exit_1(tmp_path, capsys):
    missing = tmp_path / "missing.db"
    assert main(["read", "AAPL", "--db", str(missing)]) == 1
    err = capsys.readouterr().err
    assert "no database at" in err and "stockbatch demo" in err
    assert not missing.exists()  # reading does not create an empty database


def test_read_unknown_symbol_exit_1(stored_db, capsys):
    assert main(["read", "ZZZZ", "--db", str(stored_db)]) == 1
    assert "no bars for ZZZZ" in capsys.readouterr().err


# -- demo ----------------------------------------------------------------------------------


def test_demo_symbols_deterministic_and_mixed():
    syms = demo_symbols(500)
    assert len(syms) == len(set(syms)) == 500
    assert syms == demo_symbols(500) and demo_symbols(20) == syms[:20]
    assert syms[0] == "AAPL"
    tokyo = [s for s in syms if s.endswith(".T")]
    assert 50 <= len(tokyo) <= 150
    assert all(re.fullmatch(r"[A-Z]{1,5}|\d{4}\.T", s) for s in syms)
    assert not any(s.startswith(("UNKNOWN", "INVALID")) for s in syms)


def test_demo_offline_into_tmp_db(tmp_path, capsys):
    db = tmp_path / "demo.db"
    assert main(["demo", "--symbols", "20", "--db", str(db)]) == 0
    out, err = capsys.readouterr()
    counts = _counts(db)
    assert set(counts) == set(demo_symbols(20))
    assert all(240 <= n <= 262 for n in counts.values()), counts  # 1y of weekdays, minus
    assert _summary_value(out, "symbols stored") == 20  # quarantined rows
    assert f"stockbatch read AAPL --db {db}" in out
    assert "sb.read(" in out
    assert "20/20" in err


# -- serve-fixture, python -m stockbatch ---------------------------------------------------


def test_serve_fixture_subprocess_answers_then_stops():
    proc = subprocess.Popen(
        [sys.executable, "-m", "stockbatch", "serve-fixture", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert m, line + proc.stderr.read() if proc.poll() is not None else line
        r = httpx.get(
            f"{m.group(0)}/v8/finance/chart/AAPL",
            params={"range": "5d", "interval": "1d"},
            timeout=10,
        )
        assert r.status_code == 200
        result = r.json()["chart"]["result"][0]
        assert result["meta"]["symbol"] == "AAPL" and len(result["timestamp"]) >= 3
    finally:
        proc.terminate()
        code = proc.wait(timeout=15)
    assert code == 0  # SIGTERM is a clean stop


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert f"stockbatch {sb.__version__}" in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("ingest", "demo", "serve-fixture", "read", "bench"):
        assert command in out
    done = subprocess.run(
        [sys.executable, "-m", "stockbatch", "serve-fixture", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert done.returncode == 0 and "--fault" in done.stdout


# -- bench ---------------------------------------------------------------------------------


def test_bench_without_bench_dir_is_a_clear_error(tmp_path, monkeypatch, capsys):
    assert main(["bench", "--bench-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "is not a directory" in err and "source checkout" in err
    monkeypatch.chdir(tmp_path)
    assert main(["bench"]) == 2
    assert "no bench/ directory" in capsys.readouterr().err
    assert not (tmp_path / "bench" / "report").exists()


def test_bench_runs_pytest_and_writes_report(tmp_path):
    pytest.importorskip("pytest_benchmark")
    pytest.importorskip("matplotlib")
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "test_tiny.py").write_text(
        "def test_sum_stockbatch(benchmark):\n"
        "    benchmark.group = 'tiny'\n"
        "    assert benchmark(sum, range(100)) == 4950\n\n"
        "def test_sum_large(benchmark):\n"
        "    benchmark.group = 'tiny'\n"
        "    assert benchmark(sum, range(10_000)) == 49_995_000\n\n"
        "def test_not_a_benchmark():\n"
        "    assert True\n"
    )
    out = tmp_path / "report"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stockbatch",
            "bench",
            "--quick",
            "--bench-dir",
            str(bench),
            "--out",
            str(out),
            "-k",
            "sum",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--benchmark-max-time=0.1" in done.stderr  # the command is shown
    assert "1 passed" not in done.stdout and len(done.stdout.splitlines()) < 10  # short
    assert (out / "bench.json").stat().st_size > 0
    assert (out / ".gitignore").read_text().splitlines()[-1] == "*"
    md = (out / "benchmarks.md").read_text()
    assert md.startswith("# stockbatch benchmarks\n\n**Quick run**")
    assert "sum_stockbatch" in md and "sum_large" in md
    assert (out / "bench-other.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_touches_no_database_it_was_not_given():
    """Without STOCKBATCH_PG_URI / STOCKBATCH_MYSQL_URI, bench/conftest.py skips every
    PostgreSQL / MariaDB benchmark, whatever default URI a benchmark file has."""
    root = SRC.parent
    if not (root / "bench" / "conftest.py").exists():
        pytest.skip("no source checkout")
    env = {
        k: v for k, v in _env().items() if k not in ("STOCKBATCH_PG_URI", "STOCKBATCH_MYSQL_URI")
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "bench/test_pipeline.py",
            "bench/test_ingest.py",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "--benchmark-disable",
            "-k",
            "(daily and stockbatch-10-postgresql) or mysql_append or pg_upsert",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "passed" not in done.stdout.splitlines()[-1]
    assert "STOCKBATCH_PG_URI is not set: no PostgreSQL benchmark" in done.stdout
    assert "test_ingest.py" in done.stdout and "STOCKBATCH_MYSQL_URI" in done.stdout


def test_read_limit_applies_to_actions(fixture_server, tmp_path, capsys):
    db = tmp_path / "act.db"
    syms = ["AAPL", "MSFT", "7203.T", "KO"]
    argv = ["ingest", *syms, "--db", str(db), "--base-url", fixture_server.url]
    assert main([*argv, "--period", "10y", "-q"]) == 0
    assert main(["read", "--db", str(db), "--kind", "actions", "--csv"]) == 0
    every = pacsv.read_csv(io.BytesIO(capsys.readouterr().out.encode()))["symbol"].to_pylist()
    assert main(["read", "--db", str(db), "--kind", "actions", "--csv", "--limit", "1"]) == 0
    latest = pacsv.read_csv(io.BytesIO(capsys.readouterr().out.encode()))["symbol"].to_pylist()
    assert len(every) > len(set(every)) and sorted(latest) == sorted(set(every))


def test_read_finds_a_symbol_spelled_as_it_was_ingested(fixture_server, tmp_path, capsys):
    """`ingest aapl` stores Yahoo's AAPL; `read aapl` finds it."""
    db = str(tmp_path / "case.db")
    assert main(["ingest", "aapl", "--db", db, "--base-url", fixture_server.url, "-q"]) == 0
    capsys.readouterr()
    assert main(["read", "aapl", "--db", db, "--csv", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert pacsv.read_csv(io.BytesIO(out.encode()))["symbol"].to_pylist() == ["AAPL", "AAPL"]
