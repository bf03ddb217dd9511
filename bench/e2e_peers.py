"""The end-to-end peers (stockbatch and the yfinance ways), runnable in this process or as a
fresh one.

Kept apart from ``test_pipeline.py`` so that a child process measuring a peer's first call or
its whole run imports only what that peer needs (no pytest, no fixture server, and no
stockbatch for the yfinance peers). Top-level imports are the standard library only.

Every job asks for explicit windows ending at ``FIXED_NOW`` (a Wednesday evening, after the
US close), and the fixture server is started with ``now=FIXED_NOW``: what is fetched does not
depend on the day or the hour the benchmarks run.

Child modes (``python bench/e2e_peers.py MODE JOB_JSON``):

  whole   run the peer once and exit; the parent times the whole process (for stockbatch the
          parent runs the ``stockbatch ingest`` CLI instead)
  first   import what a user's script would (``import stockbatch``; ``import yfinance,
          pandas`` and polars for the ADBC peer), print ``ready``, wait for a line on stdin,
          run the peer once, print ``done``: the parent times the first call alone
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sqlite3
import sys

UTC = dt.timezone.utc
#: The benchmarks' clock: Wednesday 2026-11-18 21:30 UTC (after the US close).
FIXED_NOW = dt.datetime(2026, 11, 18, 21, 30, tzinfo=UTC).timestamp()
WINDOW_DAYS = 8  # Yahoo's 1m window per request
PEERS = ("stockbatch", "download_adbc", "download_to_sql", "naive_loop")
TABLES = {
    "naive_loop": "bench_naive",
    "download_to_sql": "bench_download",
    "download_adbc": "bench_polars",
    "stockbatch": "bench_stockbatch",
}

yf = pd = pl = None


def _peer_libs(peer: str) -> None:
    """Import what ``peer`` uses (and no more: a whole-process figure includes its imports)."""
    global yf, pd, pl
    if yf is None:
        import pandas
        import yfinance

        yf, pd = yfinance, pandas
    if pl is None and peer == "download_adbc":
        import polars

        pl = polars


def make_symbols(n: int) -> list[str]:
    """Half Tokyo codes (7203.T style), half US-style tickers: two exchanges, two zones."""
    return [f"{1300 + i // 2}.T" if i % 2 else f"S{i:04d}" for i in range(n)]


def _midnight(ts: float) -> dt.datetime:
    return dt.datetime.combine(dt.datetime.fromtimestamp(ts, UTC).date(), dt.time(), tzinfo=UTC)


def daily_spec() -> dict:
    """One year of daily bars up to the fixed clock's UTC midnight."""
    end = _midnight(FIXED_NOW)
    start = end - dt.timedelta(days=365)
    return {"kind": "daily", "interval": "1d", "start": start.timestamp(), "end": end.timestamp()}


def minute_spec(days: int) -> dict:
    """``days`` days of 1m bars ending at the fixed clock's UTC midnight, as 8-day windows."""
    end = _midnight(FIXED_NOW)
    start = end - dt.timedelta(days=days)
    windows, lo = [], start
    while lo < end:
        hi = min(lo + dt.timedelta(days=WINDOW_DAYS), end)
        windows.append((lo.timestamp(), hi.timestamp()))
        lo = hi
    return {
        "kind": "minute",
        "interval": "1m",
        "start": start.timestamp(),
        "end": end.timestamp(),
        "windows": windows,
    }


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, UTC)


# -- yfinance pointed at a loopback server ---------------------------------------------------


def yfinance_at(base: str):
    """``stockbatch.testing._yfinance.yfinance_at``, loaded from its file alone: a yfinance
    peer's process must not import stockbatch (its whole-process time would include ours)."""
    import importlib.util
    from pathlib import Path

    package = importlib.util.find_spec("stockbatch").submodule_search_locations[0]
    path = Path(package) / "testing" / "_yfinance.py"
    spec = importlib.util.spec_from_file_location("_stockbatch_yfinance", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.yfinance_at(base)


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

            engine = sqlalchemy.create_engine(
                re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", self.where)
            )
            try:
                yield engine
            finally:
                engine.dispose()

    def reset(self, tables: list[str]) -> None:
        if self.db == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
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


# -- the peers ---------------------------------------------------------------------------------


def _long_frame(wide):
    """yfinance.download's wide (field, ticker) frame -> one row per symbol and bar."""
    if wide.empty:
        return wide
    long = wide.stack(level="Ticker").reset_index()
    long = long.rename(columns={long.columns[0]: "ts", "Ticker": "symbol"})
    return long.dropna(subset=["Close"])


def _windows(spec: dict) -> list[tuple[float, float]]:
    return spec.get("windows") or [(spec["start"], spec["end"])]


def _download(symbols: list[str], spec: dict):
    kw = {"threads": True, "progress": False, "auto_adjust": True, "interval": spec["interval"]}
    parts = [
        _long_frame(yf.download(symbols, start=_utc(a), end=_utc(b), **kw))
        for a, b in _windows(spec)
    ]
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def naive_loop(symbols: list[str], target: Target, spec: dict) -> None:
    table = TABLES["naive_loop"]
    with target.pandas_con() as con:
        for s in symbols:
            parts = [
                yf.Ticker(s).history(start=_utc(a), end=_utc(b), interval=spec["interval"])
                for a, b in _windows(spec)
            ]
            df = parts[0] if len(parts) == 1 else pd.concat(parts)
            if df.empty:
                continue
            df = df.reset_index()
            df = df.rename(columns={df.columns[0]: "ts"})
            df.insert(0, "symbol", s)
            df.to_sql(table, con, if_exists="append", index=False)


def download_to_sql(symbols: list[str], target: Target, spec: dict) -> None:
    long = _download(symbols, spec)
    with target.pandas_con() as con:
        long.to_sql(
            TABLES["download_to_sql"], con, if_exists="append", index=False, chunksize=10_000
        )


def download_adbc(symbols: list[str], target: Target, spec: dict) -> None:
    long = _download(symbols, spec)
    frame = pl.from_pandas(long)
    frame.write_database(
        TABLES["download_adbc"], connection=target.uri, engine="adbc", if_table_exists="replace"
    )  # the table is new each round


def make_source(base_url: str):
    """Our Yahoo source, fresh per round (no response cache carried between rounds). The
    benchmark servers have no rate limit and yfinance never throttles, so neither do we."""
    from stockbatch.sources import YahooChartSource

    return YahooChartSource(base_url=base_url, rate=1e6, burst=1_000_000)


def history_kw(spec: dict) -> dict:
    return {"interval": spec["interval"], "start": _utc(spec["start"]), "end": _utc(spec["end"])}


def ours(symbols: list[str], target: Target, spec: dict, base_url: str) -> None:
    import stockbatch

    result = stockbatch.ingest(
        symbols,
        db=target.uri,
        source=make_source(base_url),
        mode="append",
        table=TABLES["stockbatch"],
        **history_kw(spec),
    )
    if not result.success:
        raise RuntimeError(f"stockbatch.ingest failed: {result}")


def run_peer(peer: str, symbols: list[str], target: Target, spec: dict, base_url: str) -> None:
    if peer == "stockbatch":
        ours(symbols, target, spec, base_url)
    else:
        _peer_libs(peer)
        globals()[peer](symbols, target, spec)


def cli_command(symbols_file: str, target: Target, spec: dict, base_url: str) -> list[str]:
    """The ``stockbatch ingest`` command line of the stockbatch peer (its whole process)."""
    return [
        sys.executable,
        "-m",
        "stockbatch",
        "ingest",
        "-f",
        symbols_file,
        "--base-url",
        base_url,
        "--db",
        target.uri,
        "--interval",
        spec["interval"],
        "--start",
        _utc(spec["start"]).isoformat(),
        "--end",
        _utc(spec["end"]).isoformat(),
        "--mode",
        "append",
        "--table",
        TABLES["stockbatch"],
        "--quiet",
    ]


# -- child process -----------------------------------------------------------------------------


def child(mode: str, job: dict) -> None:
    peer, base = job["peer"], job["base_url"]
    if mode == "first":  # what a user's script imports before its first call
        if peer == "stockbatch":
            import stockbatch  # noqa: F401
        else:
            _peer_libs(peer)
    target = Target(job["db"], job["where"])
    symbols = make_symbols(job["n"])
    with contextlib.nullcontext() if peer == "stockbatch" else yfinance_at(base):
        if mode == "first":
            print("ready", flush=True)
            sys.stdin.readline()
        run_peer(peer, symbols, target, job["spec"], base)
    if mode == "first":
        print("done", flush=True)


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", module="yfinance")
    child(sys.argv[1], json.loads(sys.argv[2]))
