"""The pytest plugin (``stockbatch.testing.pytest_plugin``), as a user's test suite meets it:
real pytest runs in a child process (``pytester``) against the real fixture server and
databases."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import stockbatch as sb

pytest_plugins = ["pytester"]

SRC = Path(sb.__file__).resolve().parents[1]
PLUGIN = "stockbatch.testing.pytest_plugin"


@pytest.fixture
def user(pytester, monkeypatch):
    """A user's project: our source on the path, the plugin loaded as the entry point
    would load it (the venv's installed copy may be another checkout)."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    )

    from importlib.metadata import entry_points

    installed = any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))
    load = [] if installed else ["-p", PLUGIN]  # (loading it twice is an error)

    def run(*args: str):
        return pytester.runpytest_subprocess(*load, "-p", "no:cacheprovider", *args)

    return run


def test_the_entry_point_is_declared():
    """The installed distribution declares the plugin (what pytest itself looks up)."""
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("stockbatch") == PLUGIN


def test_inactive_unless_a_fixture_is_used(pytester, user):
    pytester.makepyfile("""
        import sys, threading

        def test_plain():
            # loaded (the package's import is all it costs), but nothing started or hooked
            assert "stockbatch.testing.pytest_plugin" in sys.modules
            assert "stockbatch.sinks" not in sys.modules
            assert "stockbatch.pipeline" not in sys.modules
            assert threading.active_count() == 1
    """)
    user().assert_outcomes(passed=1)
    import stockbatch.testing.pytest_plugin as plugin

    assert not [n for n in vars(plugin) if n.startswith("pytest_")]  # no hooks


def test_server_bars_and_database_fixtures(pytester, user):
    pytester.makepyfile("""
        import urllib.request
        import stockbatch

        def test_server(stockbatch_server):
            with urllib.request.urlopen(
                    f"{stockbatch_server.url}/v8/finance/chart/AAPL?range=5d&interval=1d") as r:
                assert r.status == 200 and b"AAPL" in r.read()

        def test_faults_are_cleared_after_the_test(stockbatch_faults):
            stockbatch_faults.add_fault("status", status=503)

        def test_no_fault_left(stockbatch_server):
            assert stockbatch.fetch(["MSFT"], base_url=stockbatch_server.url,
                                    period="5d").num_rows > 0

        def test_bars(stockbatch_bars):
            t = stockbatch_bars(symbols=3, bars=100, seed=7)
            assert t.num_rows == 300 and t.schema == stockbatch.BARS
            assert t.equals(stockbatch_bars(symbols=3, bars=100, seed=7))
            assert not t.equals(stockbatch_bars(symbols=3, bars=100, seed=8))
            assert stockbatch.validate(t).n_rejected == 0

        def test_db(stockbatch_db, stockbatch_server):
            assert stockbatch_db.rows() == 0
            r = stockbatch.ingest(["AAPL", "7203.T"], db=stockbatch_db.uri,
                                  base_url=stockbatch_server.url, period="1mo")
            assert r.success and stockbatch_db.rows() == r.rows_stored > 0
    """)
    kinds = 2 if os.environ.get("STOCKBATCH_PG_URI") else 1
    user("-q").assert_outcomes(passed=4 + kinds)


def test_race_puts_the_users_loop_and_stockbatch_in_one_group(pytester, user, tmp_path):
    # the README's example: a user's fetch-one-store-one loop against stockbatch.ingest
    pytester.makepyfile("""
        import json, sqlite3, urllib.request
        from stockbatch.testing.pytest_plugin import against_stockbatch

        def my_loop(symbols, base_url, db, period):
            con = sqlite3.connect(db.removeprefix("sqlite:///"))
            con.execute("CREATE TABLE IF NOT EXISTS bars (symbol, ts, close)")
            for s in symbols:
                url = f"{base_url}/v8/finance/chart/{s}?range={period}&interval=1d"
                res = json.load(urllib.request.urlopen(url))["chart"]["result"][0]
                closes = res["indicators"]["quote"][0]["close"]
                con.executemany("INSERT INTO bars VALUES (?, ?, ?)",
                                [(s, t, c) for t, c in zip(res["timestamp"], closes)])
            con.commit()
            con.close()

        @against_stockbatch(my_loop)
        def test_ingest_speed(stockbatch_race):
            assert stockbatch_race(symbols=20, period="6mo", rounds=2) > 0
    """)
    out = tmp_path / "bench.json"
    result = user("-q", f"--benchmark-json={out}")
    result.assert_outcomes(passed=2)
    runs = json.loads(out.read_text())["benchmarks"]
    assert sorted(b["param"] for b in runs) == ["my_loop", "stockbatch"]
    assert {b["group"] for b in runs} == {"test_ingest_speed"}
    assert all(b["stats"]["rounds"] == 2 and b["extra_info"]["symbols"] == 20 for b in runs)


def test_race_without_the_marker_says_what_to_do(pytester, user):
    pytester.makepyfile("""
        def test_x(stockbatch_race):
            stockbatch_race()
    """)
    result = user("-q")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*@against_stockbatch(your_function)*"])


@pytest.mark.skipif(sys.platform == "win32", reason="paths")
def test_bad_bars_arguments_are_value_errors():
    from stockbatch.testing.pytest_plugin import against_stockbatch, synthetic_bars

    with pytest.raises(ValueError, match="interval"):
        synthetic_bars(2, 5, interval="2d")
    with pytest.raises(ValueError, match="at least one"):
        synthetic_bars(0, 5)
    with pytest.raises(ValueError, match="taken"):
        against_stockbatch(print, name="stockbatch")
