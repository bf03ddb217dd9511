"""End to end, fetch to stored: stockbatch against the yfinance ways of doing it.

Two servers, every group on both (peers in the same group, one run):

  fixture   ``stockbatch.testing.FixtureServer(process=True, now=FIXED_NOW)``: its own process
            (it does not share the client's GIL), Yahoo's chart API on loopback
  replay    ``replay_server.ReplayServer``: a plain asyncio HTTP/1.1 keep-alive server (its
            own process) answering from memory with responses captured from the fixture
            server; one unmeasured round per peer and job records what the peer asks for,
            then the server is frozen (an unrecorded request is a 502 and fails the case).
            Its groups carry the suffix " [replay server]", so the ratios can be checked
            against a server the project did not write.

yfinance 1.7 is pointed at the same server (chart/quoteSummary base URLs, cookie and crumb
skipped, every request outside the server refused), so every peer fetches the same bytes.
Every job asks for explicit windows ending at ``e2e_peers.FIXED_NOW`` (Wednesday 2026-11-18,
after the US close) and the fixture server runs on that clock: nothing depends on the day or
the hour the benchmarks run.

Groups:

  e2e <db> 1y daily x<N>         N = 10, 50, 200, 2,000 symbols, one year of daily bars each;
                                 warm: the peers run in this process, after other groups
  e2e <db> 30d 1m x200           200 symbols x 30 days of one-minute bars (Yahoo serves at most
                                 8 days of 1m per request, so every peer asks in 8-day windows)
  e2e sqlite 1y daily x200 first-call
                                 each round a fresh interpreter that has made the imports a
                                 user's script makes (``import stockbatch``; ``import yfinance,
                                 pandas``) times the first job alone
  e2e sqlite 1y daily x200 whole-process
                                 each round the wall time of a whole process: the
                                 ``stockbatch ingest`` CLI for stockbatch, ``python
                                 e2e_peers.py whole …`` (imports + job) for the peers

Peers (``e2e_peers.py``):
  naive_loop       ``yfinance.Ticker(s).history()`` + ``DataFrame.to_sql`` per symbol
  download_to_sql  ``yfinance.download(threads=True)`` + one ``to_sql`` of the long frame
  download_adbc    ``yfinance.download`` + ``polars.write_database(engine="adbc")``
  stockbatch       ``stockbatch.ingest`` (engine: concurrent fetch, validate, ADBC ingest)

Databases: SQLite (a fresh file per round) and PostgreSQL at STOCKBATCH_PG_URI (default
postgresql://postgres@127.0.0.1:5432/test; its groups are skipped when unreachable, failed
under CI=true). pandas reaches PostgreSQL through SQLAlchemy + psycopg, polars through ADBC.

The slow peers only run where they finish in reasonable time: the naive loop and the two
download peers up to 200 symbols (``STOCKBATCH_BENCH_PEER_MAX`` raises the cap; the naive loop
at 2,000 symbols takes minutes a round); on the replay server the yfinance peers' 1m jobs only
with ``STOCKBATCH_BENCH_REPLAY_SLOW=1`` (their recording round takes minutes).
``--benchmark-disable`` (CI) runs 10 symbols (1m: 3 symbols x 2 days; cold groups: stockbatch
and download_to_sql) and skips the bigger groups.

Peak RSS (skipped with ``STOCKBATCH_BENCH_NO_RSS=1``): for 200 and 2,000 symbols (SQLite,
daily, fixture server) each peer that runs there is repeated once in a fresh child process
that imports everything, warms up on two symbols, resets the kernel's high-water mark
(``/proc/self/clear_refs``), runs the job and reads ``VmHWM``: the figure is the job's peak
RSS above the process's resident size just before it (``peak_rss_mb``), with the whole
process's peak next to it (``process_peak_mb``).

Each benchmark stores ``rows`` (rows in the table after the round) so the report shows rows/s.
Run:

    PYTHONPATH=src python -m pytest bench/test_pipeline.py --benchmark-only \
        --benchmark-columns=min,median,rounds --benchmark-sort=name --benchmark-json=e2e.json
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
from benchutil import PG_URI, need_postgres, quick
from e2e_peers import (
    FIXED_NOW,
    PEERS,
    TABLES,
    Target,
    cli_command,
    daily_spec,
    make_symbols,
    minute_spec,
    run_peer,
)
from replay_server import ReplayServer

import stockbatch
from stockbatch.testing import FixtureServer
from stockbatch.testing._yfinance import yfinance_at

PEER_MAX = int(os.environ.get("STOCKBATCH_BENCH_PEER_MAX", "200"))
#: Also record and replay the slow peers' 1m jobs (a capture round of minutes each).
REPLAY_SLOW = os.environ.get("STOCKBATCH_BENCH_REPLAY_SLOW") == "1"
#: Skip the peak-RSS children (a run that only wants the timings).
NO_RSS = os.environ.get("STOCKBATCH_BENCH_NO_RSS") == "1"
SIZES = (10, 50, 200, 2000)
RSS_SIZES = (200, 2000)
SERVERS = ("fixture", "replay")
MINUTE_SYMBOLS = 3 if quick() else 200
MINUTE_DAYS = 2 if quick() else 30
COLD_N = 10 if quick() else 200
BENCH_DIR = Path(__file__).resolve().parent
SRC_DIR = Path(stockbatch.__file__).resolve().parents[1]

warnings.filterwarnings("ignore", module="yfinance")


# -- peak RSS in a child process ---------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        m = re.search(rf"^{field}:\s+(\d+) kB", fh.read(), re.M)
    return int(m.group(1)) if m else 0


def child_main(spec_json: str) -> None:
    """Entry point of the RSS child: warm up, reset the high-water mark, run, report."""
    import gc

    job = json.loads(spec_json)
    base, peer, db_path = job["base_url"], job["peer"], job["db_path"]
    patch = contextlib.nullcontext() if peer == "stockbatch" else yfinance_at(base)
    with patch:
        warm = Target("sqlite", db_path + ".warm")
        run_peer(peer, make_symbols(2), warm, job["spec"], base)
        warm.reset([])
        target = Target("sqlite", db_path)
        target.reset([])
        gc.collect()
        baseline = _status_kb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset VmHWM to the current RSS
            reset = True
        except OSError:
            reset = False
        run_peer(peer, make_symbols(job["n"]), target, job["spec"], base)
        peak = _status_kb("VmHWM")
        rows = target.count(TABLES[peer])
        target.reset([])
    print(json.dumps({"baseline_kb": baseline, "peak_kb": peak, "hwm_reset": reset, "rows": rows}))


def measure_rss(peer: str, n: int, spec: dict, base_url: str, tmp: Path) -> dict:
    job = {
        "peer": peer,
        "n": n,
        "spec": spec,
        "base_url": base_url,
        "db_path": str(tmp / f"rss-{peer}-{n}.db"),
    }
    code = (
        "import sys; sys.path[:0] = [sys.argv[1]]; import test_pipeline as t; "
        "t.child_main(sys.argv[2])"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"RSS child failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if not out["hwm_reset"]:
        warnings.warn("could not reset VmHWM: peak RSS includes the warm-up", stacklevel=2)
    return out


# -- servers ---------------------------------------------------------------------------------


class Served:
    """One benchmark server as the tests see it: its URL, its kind, what was recorded."""

    def __init__(self, kind: str, url: str, replay: ReplayServer | None = None):
        self.kind = kind
        self.url = url
        self.replay = replay
        self.recorded: set[tuple] = set()

    @property
    def suffix(self) -> str:
        return "" if self.kind == "fixture" else " [replay server]"

    def ensure_recorded(self, peer: str, n: int, spec: dict, target: Target) -> None:
        """Replay server: one unmeasured round of ``peer`` records what it asks for (the
        requests do not depend on the database, so one recording serves every target)."""
        key = (peer, n, json.dumps(spec, sort_keys=True))
        if self.replay is None or key in self.recorded:
            return
        self.replay.record()
        table = TABLES[peer]
        target.reset([table])
        run_peer(peer, make_symbols(n), target, spec, self.url)
        target.reset([table])
        self.replay.freeze()
        self.recorded.add(key)

    def check(self, benchmark) -> None:
        if self.replay is None:
            return
        stats = self.replay.stats()
        assert stats["misses"] == 0, f"the replay server was asked for unrecorded targets: {stats}"
        benchmark.extra_info["replayed_responses"] = stats["responses"]


@pytest.fixture(scope="module")
def fixture_served():
    with FixtureServer(process=True, now=FIXED_NOW) as srv:
        yield Served("fixture", srv.url)


@pytest.fixture(scope="module")
def replay_served(fixture_served):
    with ReplayServer(fixture_served.url) as srv:
        yield Served("replay", srv.url, srv)


@pytest.fixture
def server(request):
    """The server of this case (``fixture`` or ``replay``), yfinance pointed at it."""
    served = request.getfixturevalue(f"{request.param}_served")
    have_yf = importlib.util.find_spec("yfinance") is not None
    with yfinance_at(served.url) if have_yf else contextlib.nullcontext():
        yield served


def _select_1(uri: str) -> None:
    import psycopg  # the pandas peer's driver

    with psycopg.connect(uri, connect_timeout=3) as con:
        con.execute("SELECT 1")


@pytest.fixture(scope="module")
def pg_target():
    need_postgres(_select_1)
    return Target("postgresql", PG_URI)


@pytest.fixture
def target(request, tmp_path):
    if request.param == "sqlite":
        return Target("sqlite", str(tmp_path / "bench.db"))
    return request.getfixturevalue("pg_target")


def _rounds(peer: str, n: int, kind: str) -> int:
    if peer == "stockbatch":
        return 7 if n <= 200 and kind == "daily" else 3
    if kind == "minute" or n >= 200:
        return 1
    return 3 if n <= 50 else 1


def _skip_reason(peer: str, n: int, kind: str, db: str, server: str) -> str | None:
    if quick() and n > 10:
        return "quick mode (--benchmark-disable): 10 symbols only"
    if peer != "stockbatch" and n > PEER_MAX:
        return f"{peer} at {n} symbols takes minutes a round (STOCKBATCH_BENCH_PEER_MAX)"
    if kind == "minute" and db == "postgresql" and peer == "naive_loop" and not quick():
        return "naive loop of 1m bars into PostgreSQL: several minutes a round"
    if (
        kind == "minute"
        and server == "replay"
        and peer != "stockbatch"
        and not quick()
        and not REPLAY_SLOW
    ):
        return (
            "1m jobs of the yfinance peers on the replay server: the recording round "
            "takes minutes (STOCKBATCH_BENCH_REPLAY_SLOW=1)"
        )
    return None


def _peer_imports(peer: str) -> None:
    if peer != "stockbatch":
        for lib in ("yfinance", "pandas", "polars", "sqlalchemy"):
            pytest.importorskip(lib)


def _bench(benchmark, peer, symbols, target, spec, server, group):
    n = len(symbols)
    reason = _skip_reason(peer, n, spec["kind"], target.db, server.kind)
    if reason:
        pytest.skip(reason)
    _peer_imports(peer)
    benchmark.group = group + server.suffix
    if peer == "naive_loop":
        benchmark.extra_info["reference"] = True
    table = TABLES[peer]
    server.ensure_recorded(peer, n, spec, target)

    def setup():
        target.reset([table])
        return (peer, symbols, target, spec, server.url), {}

    benchmark.pedantic(
        run_peer, setup=setup, rounds=_rounds(peer, n, spec["kind"]), iterations=1, warmup_rounds=0
    )
    rows = target.count(table)
    assert rows > 0, f"{peer} stored nothing"
    benchmark.extra_info["rows"] = rows
    server.check(benchmark)
    target.reset([table])
    return rows


# -- first call and whole process: fresh interpreters ------------------------------------------


def _child_env() -> dict:
    """The children's environment: stockbatch from this tree, and bytecode cached as for an
    installed package (PYTHONDONTWRITEBYTECODE would make every child compile stockbatch's
    modules again, while the peers' come compiled from site-packages)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
    return env


def _job(peer: str, n: int, target: Target, spec: dict, base_url: str) -> str:
    return json.dumps(
        {
            "peer": peer,
            "n": n,
            "db": target.db,
            "where": target.where,
            "spec": spec,
            "base_url": base_url,
        }
    )


class _FirstCall:
    """A child that has imported what a user's script imports and waits for the word."""

    def __init__(self, job: str):
        # stderr to a file: the peers' warnings would fill a pipe nobody reads mid-run
        self.err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "e2e_peers.py"), "first", job],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            env=_child_env(),
        )
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.fail("did not get ready")

    def fail(self, what: str):
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.err.seek(0)
        raise RuntimeError(f"first-call child {what}:\n{self.err.read()[-3000:]}")

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "done":
            self.fail("failed")

    def wait(self) -> None:
        self.proc.stdin.close()
        if self.proc.wait(timeout=120) != 0:
            self.fail("exited with an error")
        self.err.close()


def _whole(peer: str, n: int, target: Target, spec: dict, base_url: str, symfile: str) -> None:
    if peer == "stockbatch":
        cmd = cli_command(symfile, target, spec, base_url)
    else:
        cmd = [
            sys.executable,
            str(BENCH_DIR / "e2e_peers.py"),
            "whole",
            _job(peer, n, target, spec, base_url),
        ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(), timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{peer} process failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def _cold_skip(peer: str) -> str | None:
    if quick() and peer in ("naive_loop", "download_adbc"):
        return "quick mode: the cold runs of two peers cover the child code paths"
    return None


# -- the benchmarks ----------------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS, indirect=True)
@pytest.mark.parametrize("target", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("peer", PEERS)
def test_daily(benchmark, server, target, n, peer, tmp_path):
    symbols = make_symbols(n)
    rows = _bench(
        benchmark, peer, symbols, target, daily_spec(), server, f"e2e {target.db} 1y daily x{n}"
    )
    # every symbol has ~250 trading days a year; all peers store the same bars
    assert rows >= n * 240
    if (
        target.db == "sqlite"
        and n in RSS_SIZES
        and not quick()
        and not NO_RSS
        and server.kind == "fixture"
    ):
        out = measure_rss(peer, n, daily_spec(), server.url, tmp_path)
        benchmark.extra_info["peak_rss_mb"] = round((out["peak_kb"] - out["baseline_kb"]) / 1024, 1)
        benchmark.extra_info["process_peak_mb"] = round(out["peak_kb"] / 1024, 1)


@pytest.mark.parametrize("server", SERVERS, indirect=True)
@pytest.mark.parametrize("target", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("peer", PEERS)
def test_minute(benchmark, server, target, peer):
    symbols = make_symbols(MINUTE_SYMBOLS)
    rows = _bench(
        benchmark,
        peer,
        symbols,
        target,
        minute_spec(MINUTE_DAYS),
        server,
        f"e2e {target.db} {MINUTE_DAYS}d 1m x{len(symbols)}",
    )
    # the fixed clock's window holds whole US and Tokyo sessions of 1m bars
    assert rows >= len(symbols) * 250 * max(MINUTE_DAYS * 5 // 7 - 3, 1)


@pytest.mark.parametrize("server", SERVERS, indirect=True)
@pytest.mark.parametrize("how", ["first_call", "whole_process"])
@pytest.mark.parametrize("peer", PEERS)
def test_cold(benchmark, server, how, peer, tmp_path):
    """Each round a fresh interpreter: ``first_call`` times the first job after the imports a
    user's script makes (``import stockbatch``; yfinance + pandas), ``whole_process`` the
    whole process (``stockbatch ingest`` for stockbatch; a script for the peers)."""
    reason = _cold_skip(peer) or _skip_reason(peer, COLD_N, "daily", "sqlite", server.kind)
    if reason:
        pytest.skip(reason)
    _peer_imports(peer)
    n, spec = COLD_N, daily_spec()
    target = Target("sqlite", str(tmp_path / "cold.db"))
    table = TABLES[peer]
    benchmark.group = f"e2e sqlite 1y daily x{n} {how.replace('_', '-')}{server.suffix}"
    if peer == "naive_loop":
        benchmark.extra_info["reference"] = True
    server.ensure_recorded(peer, n, spec, target)
    symfile = tmp_path / "symbols.txt"
    symfile.write_text("\n".join(make_symbols(n)) + "\n")
    rounds = 5 if peer == "stockbatch" else (1 if n >= 200 else 3)
    if how == "first_call":
        children: list[_FirstCall] = []

        def setup():
            target.reset([table])
            children.append(_FirstCall(_job(peer, n, target, spec, server.url)))
            return (children[-1],), {}

        try:
            benchmark.pedantic(
                lambda child: child.go(), setup=setup, rounds=rounds, iterations=1, warmup_rounds=0
            )
        finally:
            for child in children:
                child.wait()
    else:

        def setup():
            target.reset([table])
            return (peer, n, target, spec, server.url, str(symfile)), {}

        benchmark.pedantic(_whole, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    rows = target.count(table)
    assert rows >= n * 240, f"{peer} stored {rows} rows"
    benchmark.extra_info["rows"] = rows
    server.check(benchmark)
    target.reset([table])
