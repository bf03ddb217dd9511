"""End to end, fetch to stored: stockbatch against the yfinance ways of doing it.

The fixture server (``stockbatch.testing.FixtureServer(process=True)``: its own process, so it
does not share the client's GIL) serves Yahoo's chart API on loopback, started once for the
module. yfinance 1.7 is pointed at the same server (chart/quoteSummary base URLs, cookie and
crumb skipped, every request outside the server refused), so every peer fetches the same bytes.

Groups (peers in the same group, one run; the naive loop is the reference where it runs):

  e2e <db> 1y daily x<N>     N = 10, 50, 200, 2,000 symbols, one year of daily bars each
  e2e <db> 30d 1m x200        200 symbols x 30 days of one-minute bars (Yahoo serves at most
                              8 days of 1m per request, so every peer asks in 8-day windows)

Peers:
  naive_loop       ``yfinance.Ticker(s).history()`` + ``DataFrame.to_sql`` per symbol
  download_to_sql  ``yfinance.download(threads=True)`` + one ``to_sql`` of the long frame
  download_adbc    ``yfinance.download`` + ``polars.write_database(engine="adbc")``
  stockbatch       ``stockbatch.ingest`` (engine: concurrent fetch, validate, ADBC ingest)

Databases: SQLite (a fresh file per round) and PostgreSQL at STOCKBATCH_PG_URI (default
postgresql://postgres@127.0.0.1:5432/test; its groups are skipped when unreachable, failed
under CI=true). pandas reaches PostgreSQL through SQLAlchemy + psycopg, polars through ADBC.

The slow peers only run where they finish in reasonable time: the naive loop and the two
download peers up to 200 symbols (``STOCKBATCH_BENCH_PEER_MAX`` raises the cap; the naive loop
at 2,000 symbols takes minutes a round). ``--benchmark-disable`` (CI) runs 10 symbols (1m: 3
symbols x 2 days) and skips the bigger groups.

Peak RSS: for 200 and 2,000 symbols (SQLite, daily) each peer that runs there is repeated once
in a fresh child process that imports everything, warms up on two symbols, resets the kernel's
high-water mark (``/proc/self/clear_refs``), runs the job and reads ``VmHWM``: the figure is
the job's peak RSS above the process's resident size just before it (``peak_rss_mb``), with the
whole process's peak next to it (``process_peak_mb``).

Each benchmark stores ``rows`` (rows in the table after the round) so the report shows rows/s.
Run:

    PYTHONPATH=src python -m pytest bench/test_pipeline.py --benchmark-only \
        --benchmark-columns=min,median,rounds --benchmark-sort=name --benchmark-json=e2e.json
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import os
import re
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from benchutil import quick

import stockbatch
from stockbatch.testing import FixtureServer

# The peers' libraries are imported on first use, so that the RSS child of the stockbatch peer
# carries none of them (yfinance + pandas + polars are ~130 MB resident on their own).
yf = pd = pl = None


def _peer_libs() -> None:
    global yf, pd, pl
    if yf is None:
        import pandas
        import polars
        import yfinance

        yf, pd, pl = yfinance, pandas, polars

PG_URI = os.environ.get("STOCKBATCH_PG_URI", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
PEER_MAX = int(os.environ.get("STOCKBATCH_BENCH_PEER_MAX", "200"))
SIZES = (10, 50, 200, 2000)
RSS_SIZES = (200, 2000)
PEERS = ("stockbatch", "download_adbc", "download_to_sql", "naive_loop")
MINUTE_SYMBOLS = 3 if quick() else 200
MINUTE_DAYS = 2 if quick() else 30
WINDOW_DAYS = 8  # Yahoo's 1m window per request

warnings.filterwarnings("ignore", module="yfinance")


def make_symbols(n: int) -> list[str]:
    """Half Tokyo codes (7203.T style), half US-style tickers: two exchanges, two zones."""
    return [f"{1300 + i // 2}.T" if i % 2 else f"S{i:04d}" for i in range(n)]


# -- yfinance pointed at the fixture server ----------------------------------------------------

@contextlib.contextmanager
def yfinance_at(base: str):
    """Point yfinance 1.7 at ``base``; any request elsewhere raises (nothing leaves loopback)."""
    import curl_cffi.requests as cr
    from yfinance import base as yb
    from yfinance import data as yd
    from yfinance.scrapers import history as yh
    from yfinance.scrapers import quote as yq

    saved = [(yh, "_BASE_URL_", yh._BASE_URL_), (yb, "_BASE_URL_", yb._BASE_URL_),
             (yq, "_QUOTE_SUMMARY_URL_", yq._QUOTE_SUMMARY_URL_),
             (yq, "_QUERY1_URL_", yq._QUERY1_URL_),
             (yd.YfData, "_get_cookie_and_crumb", yd.YfData._get_cookie_and_crumb),
             (cr.Session, "request", cr.Session.request)]
    real_request = cr.Session.request

    def loopback_only(self, method, url, *args, **kwargs):
        if not str(url).startswith(base):
            raise ConnectionRefusedError(f"bench guard: {url} is not the fixture server")
        return real_request(self, method, url, *args, **kwargs)

    yh._BASE_URL_ = yb._BASE_URL_ = base
    yq._QUOTE_SUMMARY_URL_ = f"{base}/v10/finance/quoteSummary"
    yq._QUERY1_URL_ = base
    yd.YfData._get_cookie_and_crumb = lambda self, timeout=30: (None, "basic")
    cr.Session.request = loopback_only
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


# -- what one job asks for ---------------------------------------------------------------------

def daily_spec() -> dict:
    return {"kind": "daily", "period": "1y", "interval": "1d"}


def minute_spec() -> dict:
    """30 days of 1m bars ending at today's UTC midnight, as 8-day windows (epoch seconds)."""
    end = dt.datetime.combine(dt.date.today(), dt.time(), tzinfo=dt.timezone.utc)
    start = end - dt.timedelta(days=MINUTE_DAYS)
    windows, lo = [], start
    while lo < end:
        hi = min(lo + dt.timedelta(days=WINDOW_DAYS), end)
        windows.append((lo.timestamp(), hi.timestamp()))
        lo = hi
    return {"kind": "minute", "interval": "1m", "start": start.timestamp(),
            "end": end.timestamp(), "windows": windows}


# -- databases ---------------------------------------------------------------------------------

class Target:
    """Where a peer stores: a URI for stockbatch / ADBC, a connection for pandas."""

    def __init__(self, db: str, where: str):
        self.db = db
        self.where = where  # SQLite: a file path; PostgreSQL: the URI

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.where}" if self.db == "sqlite" else self.where

    @contextlib.contextmanager
    def pandas_con(self):
        if self.db == "sqlite":
            con = sqlite3.connect(self.where)
            try:
                yield con
                con.commit()
            finally:
                con.close()
        else:
            import sqlalchemy

            engine = sqlalchemy.create_engine(re.sub(r"^postgres(ql)?://",
                                                     "postgresql+psycopg://", self.where))
            try:
                yield engine
            finally:
                engine.dispose()

    def reset(self, tables: list[str]) -> None:
        if self.db == "sqlite":
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.where)
            for suffix in ("-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.where + suffix)
            return
        import psycopg

        with psycopg.connect(self.where, autocommit=True) as con:
            for t in tables:
                con.execute(f'DROP TABLE IF EXISTS "{t}"')

    def count(self, table: str) -> int:
        if self.db == "sqlite":
            con = sqlite3.connect(self.where)
            try:
                return con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            finally:
                con.close()
        import psycopg

        with psycopg.connect(self.where) as con:
            return con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


TABLES = {"naive_loop": "bench_naive", "download_to_sql": "bench_download",
          "download_adbc": "bench_polars", "stockbatch": "bench_stockbatch"}


# -- the peers ---------------------------------------------------------------------------------

def _long_frame(wide):
    """yfinance.download's wide (field, ticker) frame -> one row per symbol and bar."""
    if wide.empty:
        return wide
    long = wide.stack(level="Ticker").reset_index()
    long = long.rename(columns={long.columns[0]: "ts", "Ticker": "symbol"})
    return long.dropna(subset=["Close"])


def _download(symbols: list[str], spec: dict):
    kw = {"threads": True, "progress": False, "auto_adjust": True, "interval": spec["interval"]}
    if spec["kind"] == "daily":
        return _long_frame(yf.download(symbols, period=spec["period"], **kw))
    parts = [_long_frame(yf.download(symbols, start=dt.datetime.fromtimestamp(a, dt.timezone.utc),
                                     end=dt.datetime.fromtimestamp(b, dt.timezone.utc), **kw))
             for a, b in spec["windows"]]
    return pd.concat(parts, ignore_index=True)


def naive_loop(symbols: list[str], target: Target, spec: dict) -> None:
    table = TABLES["naive_loop"]
    with target.pandas_con() as con:
        for s in symbols:
            if spec["kind"] == "daily":
                df = yf.Ticker(s).history(period=spec["period"], interval=spec["interval"])
            else:
                df = pd.concat([yf.Ticker(s).history(
                    start=dt.datetime.fromtimestamp(a, dt.timezone.utc),
                    end=dt.datetime.fromtimestamp(b, dt.timezone.utc),
                    interval=spec["interval"]) for a, b in spec["windows"]])
            if df.empty:
                continue
            df = df.reset_index()
            df = df.rename(columns={df.columns[0]: "ts"})
            df.insert(0, "symbol", s)
            df.to_sql(table, con, if_exists="append", index=False)


def download_to_sql(symbols: list[str], target: Target, spec: dict) -> None:
    long = _download(symbols, spec)
    with target.pandas_con() as con:
        long.to_sql(TABLES["download_to_sql"], con, if_exists="append", index=False,
                    chunksize=10_000)


def download_adbc(symbols: list[str], target: Target, spec: dict) -> None:
    long = _download(symbols, spec)
    frame = pl.from_pandas(long)
    frame.write_database(TABLES["download_adbc"], connection=target.uri, engine="adbc",
                         if_table_exists="replace")  # the table is new each round


HAVE_ENGINE = importlib.util.find_spec("stockbatch._api") is not None


def make_source(base_url: str):
    """Our Yahoo source, fresh per round (no response cache carried between rounds). The
    fixture server has no rate limit and yfinance never throttles, so neither do we here."""
    from stockbatch.sources import YahooChartSource

    return YahooChartSource(base_url=base_url, rate=1e6, burst=1_000_000)


def _history_kw(spec: dict) -> dict:
    if spec["kind"] == "daily":
        return {"interval": spec["interval"], "period": spec["period"]}
    return {"interval": spec["interval"],
            "start": dt.datetime.fromtimestamp(spec["start"], dt.timezone.utc),
            "end": dt.datetime.fromtimestamp(spec["end"], dt.timezone.utc)}


def ours_engine(symbols: list[str], target: Target, spec: dict, base_url: str) -> None:
    result = stockbatch.ingest(symbols, db=target.uri, source=make_source(base_url),
                               mode="append", table=TABLES["stockbatch"], **_history_kw(spec))
    if not result.success:
        raise RuntimeError(f"stockbatch.ingest failed: {result}")


def ours_pieces(symbols: list[str], target: Target, spec: dict, base_url: str) -> None:
    """The stockbatch pieces without the engine: Source.fetch_many on an event-loop thread,
    each batch handed over as it arrives to one streaming Sink.ingest transaction."""
    import queue
    import threading

    from stockbatch import sinks

    handoff: queue.SimpleQueue = queue.SimpleQueue()
    done = object()

    async def produce():
        source = make_source(base_url)
        try:
            async for _symbol, result in source.fetch_many(symbols, **_history_kw(spec)):
                if not isinstance(result, BaseException) and result.num_rows:
                    handoff.put(result)
        finally:
            await source.aclose()
            handoff.put(done)

    thread = threading.Thread(target=asyncio.run, args=(produce(),), daemon=True)
    thread.start()

    def batches():
        while (item := handoff.get()) is not done:
            yield item

    with sinks.connect(target.uri) as sink:
        sink.ingest(batches(), table=TABLES["stockbatch"], kind="bars", mode="create_append")
    thread.join()


def ours(symbols: list[str], target: Target, spec: dict, base_url: str) -> None:
    (ours_engine if HAVE_ENGINE else ours_pieces)(symbols, target, spec, base_url)


def run_peer(peer: str, symbols: list[str], target: Target, spec: dict, base_url: str) -> None:
    if peer == "stockbatch":
        ours(symbols, target, spec, base_url)
    else:
        _peer_libs()
        globals()[peer](symbols, target, spec)


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
    print(json.dumps({"baseline_kb": baseline, "peak_kb": peak, "hwm_reset": reset,
                      "rows": rows}))


def measure_rss(peer: str, n: int, spec: dict, base_url: str, tmp: Path) -> dict:
    job = {"peer": peer, "n": n, "spec": spec, "base_url": base_url,
           "db_path": str(tmp / f"rss-{peer}-{n}.db")}
    code = ("import sys; sys.path[:0] = [sys.argv[1]]; import test_pipeline as t; "
            "t.child_main(sys.argv[2])")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent),
                           json.dumps(job)], capture_output=True, text=True, env=env,
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"RSS child failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if not out["hwm_reset"]:
        warnings.warn("could not reset VmHWM: peak RSS includes the warm-up", stacklevel=2)
    return out


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server():
    with FixtureServer(process=True) as srv:
        have_yf = importlib.util.find_spec("yfinance") is not None
        with yfinance_at(srv.url) if have_yf else contextlib.nullcontext():
            yield srv


@pytest.fixture(scope="module")
def pg_target():
    try:
        import psycopg

        with psycopg.connect(PG_URI, connect_timeout=3) as con:
            con.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        if IN_CI:
            pytest.fail(f"PostgreSQL at STOCKBATCH_PG_URI is unreachable: {type(exc).__name__}")
        pytest.skip(f"PostgreSQL unreachable: {type(exc).__name__}")
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


def _skip_reason(peer: str, n: int, kind: str, db: str) -> str | None:
    if quick() and n > 10:
        return "quick mode (--benchmark-disable): 10 symbols only"
    if peer != "stockbatch" and n > PEER_MAX:
        return f"{peer} at {n} symbols takes minutes a round (STOCKBATCH_BENCH_PEER_MAX)"
    if kind == "minute" and db == "postgresql" and peer == "naive_loop" and not quick():
        return "naive loop of 1m bars into PostgreSQL: several minutes a round"
    return None


def _bench(benchmark, peer, symbols, target, spec, base_url, group):
    n = len(symbols)
    reason = _skip_reason(peer, n, spec["kind"], target.db)
    if reason:
        pytest.skip(reason)
    if peer != "stockbatch":
        for lib in ("yfinance", "pandas", "polars", "sqlalchemy"):
            pytest.importorskip(lib)
    benchmark.group = group
    if peer == "naive_loop":
        benchmark.extra_info["reference"] = True
    if peer == "stockbatch":
        benchmark.extra_info["path"] = "engine" if HAVE_ENGINE else "pieces (no engine yet)"
    table = TABLES[peer]

    def setup():
        target.reset([table])
        return (peer, symbols, target, spec, base_url), {}

    benchmark.pedantic(run_peer, setup=setup, rounds=_rounds(peer, n, spec["kind"]),
                       iterations=1, warmup_rounds=0)
    rows = target.count(table)
    assert rows > 0, f"{peer} stored nothing"
    benchmark.extra_info["rows"] = rows
    target.reset([table])
    return rows


# -- the benchmarks ----------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("peer", PEERS)
def test_daily(benchmark, server, target, n, peer, tmp_path):
    symbols = make_symbols(n)
    rows = _bench(benchmark, peer, symbols, target, daily_spec(), server.url,
                  f"e2e {target.db} 1y daily x{n}")
    # every symbol has ~250 trading days a year; all peers store the same bars
    assert rows >= n * 240
    if target.db == "sqlite" and n in RSS_SIZES and not quick():
        out = measure_rss(peer, n, daily_spec(), server.url, tmp_path)
        benchmark.extra_info["peak_rss_mb"] = round((out["peak_kb"] - out["baseline_kb"]) / 1024,
                                                    1)
        benchmark.extra_info["process_peak_mb"] = round(out["peak_kb"] / 1024, 1)


@pytest.mark.parametrize("target", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("peer", PEERS)
def test_minute(benchmark, server, target, peer):
    symbols = make_symbols(MINUTE_SYMBOLS)
    _bench(benchmark, peer, symbols, target, minute_spec(), server.url,
           f"e2e {target.db} {MINUTE_DAYS}d 1m x{len(symbols)}")
