"""stockbatch.dask.ingest on a real LocalCluster (2 worker processes, one thread each), the
real fixture server and the real PostgreSQL: results equal the local engine's, one rate
limit for the whole cluster, a killed worker's shard runs again with exact counts, a database
outage on one worker fails only its shard."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest

pytest.importorskip("distributed")

import adbc_driver_postgresql.dbapi as pg
from distributed import Client, LocalCluster

import stockbatch as sb
import stockbatch.dask as sbd
from stockbatch.sinks import Sink, connect
from stockbatch.testing import FixtureServer

pytestmark = pytest.mark.postgres

SYMS = [f"S{i:04d}" for i in range(120)] + ["AAPL", "MSFT", "7203.T"]


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def tables(pg_uri):
    made: list[str] = []

    def new(prefix: str = "dask") -> str:
        made.append(f"{prefix}_{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield new
    with pg.connect(pg_uri) as conn, conn.cursor() as cur:
        for t in made:
            cur.execute(f"DROP TABLE IF EXISTS {t}")
        conn.commit()


@pytest.fixture
def ingest(client, fixture_server, pg_uri):
    """``sbd.ingest`` on the test cluster: from the fixture server into PostgreSQL, unless
    ``server=`` / ``db=`` say otherwise."""

    def run(symbols, *, server=fixture_server, db=pg_uri, **options) -> sb.JobResult:
        return sbd.ingest(symbols, client=client, db=db, base_url=server.url, **options)

    return run


def _rows(pg_uri: str, table: str) -> list[tuple]:
    with pg.connect(pg_uri) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT symbol, interval, ts, open, high, low, close, adj_close, volume "
            f"FROM {table} ORDER BY symbol, interval, ts"
        )
        return cur.fetchall()


def test_results_equal_the_local_engine(ingest, fixture_server, pg_uri, tables):
    local_t, dask_t = tables(), tables()
    seen: list[sb.pipeline.Progress] = []
    local = sb.ingest(SYMS, db=pg_uri, base_url=fixture_server.url, period="1y", table=local_t)
    r = ingest(SYMS, period="1y", table=dask_t, on_progress=seen.append, shard_size=20)
    assert r.success and r.status == "completed"
    assert list(r.symbols) == list(local.symbols)  # the caller's order
    assert {s: o.to_dict() for s, o in r.symbols.items()} == {
        s: o.to_dict() for s, o in local.symbols.items()
    }
    for name in sb.pipeline.STAGES:
        assert (r.stages[name].rows_in, r.stages[name].rows_out, r.stages[name].rejected) == (
            local.stages[name].rows_in,
            local.stages[name].rows_out,
            local.stages[name].rejected,
        )
    assert r.stats["provider_calls"] == local.stats["provider_calls"] == len(SYMS)
    assert r.stats["shards"] == r.stats["shard_attempts"] == 7 and r.stats["workers"] == 2
    assert _rows(pg_uri, dask_t) == _rows(pg_uri, local_t)
    assert r.rows_stored == len(_rows(pg_uri, dask_t))
    # one progress for the whole job: counts only grow, the last is the result's
    assert seen and all(p.job_id == r.job_id and p.symbols_total == len(SYMS) for p in seen)
    assert [p.symbols_done for p in seen] == sorted(p.symbols_done for p in seen)
    last = seen[-1]
    assert (last.symbols_done, last.rows_stored, last.rows_rejected, last.stage) == (
        len(SYMS),
        r.rows_stored,
        r.rows_rejected,
        "done",
    )


def test_invalid_symbols_fail_as_with_the_local_engine(ingest, fixture_server, pg_uri, tables):
    syms = ["AAPL", "A?b=c", "MSFT"]
    table = tables()
    local = sb.ingest(syms, db=pg_uri, base_url=fixture_server.url, table=table)
    r = ingest(syms, table=table)
    assert list(r.symbols) == list(local.symbols)
    assert {s: o.to_dict() for s, o in r.symbols.items()} == {
        s: o.to_dict() for s, o in local.symbols.items()
    }
    assert r.failed_symbols == local.failed_symbols == ["A?b=c"]


def test_each_worker_keeps_one_engine_and_one_sink(ingest, client, pg_uri, tables):
    def ids():
        from stockbatch.dask._worker import worker_state

        st = worker_state()
        return id(st.engine(1)), {u: id(s) for u, s in st.sinks.items()}, st.shards_run

    table = tables()
    ingest(SYMS[:40], table=table, shard_size=5)
    before = client.run(ids)
    ingest(SYMS[:40], table=table, shard_size=5)
    after = client.run(ids)
    assert sum(a[2] - b[2] for a, b in zip(after.values(), before.values(), strict=True)) == 8
    for w in before:
        assert after[w][0] == before[w][0]  # the same engine
        assert after[w][1] == before[w][1] and list(after[w][1]) == [pg_uri]  # same sink


def test_modes_are_prepared_once(ingest, client, pg_uri, tables):
    table = tables()
    with pytest.raises(ValueError, match="create_append"):
        sbd.ingest(["AAPL"], client=client, db=pg_uri, mode="create", table=table)
    first = ingest(SYMS[:30], table=table, mode="create_append", shard_size=5)
    assert first.success
    again = ingest(SYMS[:10], table=table, mode="replace", shard_size=5)
    assert again.success
    assert sorted(set(sb.read(pg_uri, table=table)["symbol"].to_pylist())) == sorted(
        SYMS[:10]
    )  # replaced once, not by each shard
    assert again.rows_stored == len(_rows(pg_uri, table))


def test_unreachable_database_is_a_failed_result(ingest):
    r = ingest(["AAPL", "MSFT"], db="postgresql://postgres@127.0.0.1:1/x")
    assert r.status == "failed" and not r.success and r.failed_symbols == ["AAPL", "MSFT"]
    assert "not run" in r.symbols["AAPL"].error


def test_bad_options_fail_before_anything_runs(client, pg_uri):
    with pytest.raises(ValueError, match="period|1zz"):
        sbd.ingest(["AAPL"], client=client, db=pg_uri, period="1zz")
    with pytest.raises(ValueError, match="mode"):
        sbd.ingest(["AAPL"], client=client, db=pg_uri, mode="sideways")
    with pytest.raises(ValueError, match="shard_size"):
        sbd.ingest(["AAPL"], client=client, db=pg_uri, shard_size=0)
    with connect(pg_uri) as sink:
        assert isinstance(sink, Sink)
        with pytest.raises(TypeError, match="URI"):
            sbd.ingest(["AAPL"], client=client, db=sink)


class _Sampler:
    """The fixture server's chart requests over time, sampled every 10 ms."""

    def __init__(self, server: FixtureServer) -> None:
        self.server, self.samples = server, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _count(self) -> int:
        return sum(n for k, n in self.server.stats()["hits"].items() if k.startswith("chart:"))

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.samples.append((time.monotonic(), self._count()))

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), self._count()))

    def changes(self) -> list[tuple[float, int, int]]:
        """(time, count, count before) of each sample where the count changed."""
        return [
            (t, n, p)
            for (t, n), (_, p) in zip(self.samples[1:], self.samples[:-1], strict=True)
            if n != p
        ]

    def active(self) -> tuple[float, float, int]:
        """First and last time the count changed, and the requests between."""
        ch = self.changes()
        return ch[0][0], ch[-1][0], ch[-1][1] - ch[0][2]

    def longest_gap(self) -> float:
        times = [t for t, _, _ in self.changes()]
        return max(b - a for a, b in zip(times[:-1], times[1:], strict=True))


def test_one_rate_limit_for_the_whole_cluster(ingest, faulty_server, tables):
    rate = 40.0
    syms = [f"R{i:04d}" for i in range(200)]
    faulty_server.add_fault("rate_limit", route="chart", times=3, retry_after=0.2)
    with _Sampler(faulty_server) as sampler:
        r = ingest(
            syms,
            server=faulty_server,
            period="5d",
            table=tables(),
            rate=rate,
            burst=2,
            shard_size=25,
        )
    first, last, n = sampler.active()
    measured = n / (last - first)
    assert measured <= rate * 1.10, measured
    assert measured >= rate * 0.70, measured  # the bucket does not starve the workers
    assert r.success and r.count("stored") == len(syms)  # nothing lost
    assert r.stats["rate_limited"] == 3 and r.stats["retries"] >= 3
    assert r.stats["workers"] == 2 and r.stats["cluster_rate"] == rate


def test_a_429_seen_by_one_worker_pauses_all(ingest, faulty_server, tables):
    syms = [f"P{i:04d}" for i in range(120)]
    faulty_server.add_fault(
        "rate_limit", route="chart", symbols=["P0030"], times=1, retry_after=1.0
    )
    with _Sampler(faulty_server) as sampler:
        r = ingest(
            syms,
            server=faulty_server,
            period="5d",
            table=tables(),
            rate=60.0,
            burst=2,
            shard_size=20,
        )
    assert r.success and r.stats["rate_limited"] == 1
    # without the shared pause the other worker would keep sending at 60/s
    assert sampler.longest_gap() >= 0.8
    assert r.stats["cluster_paused_s"] >= 0.8


def _pg_hostless(pg_uri: str) -> tuple[str, str, str]:
    from urllib.parse import urlsplit

    u = urlsplit(pg_uri)
    return f"postgresql://{u.username}@{u.path}", u.hostname or "127.0.0.1", str(u.port or 5432)


def test_database_outage_on_one_worker_fails_only_its_shard(
    ingest, client, pg_uri, tables, monkeypatch
):
    # a host-less URI: each worker's libpq finds the server through its own PGHOST/PGPORT;
    # one worker's points at a closed port (its database is unreachable), the other's works
    uri, host, port = _pg_hostless(pg_uri)
    uri += f"?application_name=outage_{uuid.uuid4().hex[:6]}"  # a sink no worker has yet
    broken, good = sorted(client.scheduler_info()["workers"])

    def setenv(value):
        os.environ["PGHOST"], os.environ["PGPORT"] = host, value

    def unset():
        os.environ.pop("PGHOST", None)
        os.environ.pop("PGPORT", None)

    monkeypatch.setenv("PGHOST", host)  # the caller reaches the database too
    monkeypatch.setenv("PGPORT", port)
    client.run(setenv, port, workers=[good])
    client.run(setenv, "1", workers=[broken])
    table = tables()
    syms = [f"O{i:04d}" for i in range(40)]
    try:
        r = ingest(syms, db=uri, period="1mo", table=table, shard_size=20)
    finally:
        client.run(unset)
    failed, stored = r.failed_symbols, [s for s, o in r.symbols.items() if o.status == "stored"]
    assert r.status == "completed" and not r.success
    assert len(failed) == 20 and len(stored) == 20  # one shard each
    assert failed in (syms[:20], syms[20:])
    for s in failed:
        assert "not run" in r.symbols[s].error and "connect" in r.symbols[s].error
    assert "1 of 2 shards failed" in r.error
    back = sb.read(pg_uri, table=table)
    assert sorted(set(back["symbol"].to_pylist())) == sorted(stored)
    assert r.rows_stored == back.num_rows


def test_a_killed_worker_s_shard_runs_again_elsewhere(
    ingest, client, faulty_server, pg_uri, tables
):
    syms = [f"K{i:04d}" for i in range(160)]
    clean_t, table = tables(), tables()
    clean = sb.ingest(syms, db=pg_uri, base_url=faulty_server.url, period="1y", table=clean_t)
    # slow answers, so that the kill lands while shards are being stored
    faulty_server.add_fault("latency", route="chart", delay=0.03)
    faulty_server.reset_stats()
    pids = client.run(os.getpid)
    out: dict[str, sb.JobResult] = {}
    job = threading.Thread(
        target=lambda: out.setdefault(
            "r",
            ingest(
                syms, server=faulty_server, period="1y", table=table, shard_size=80, concurrency=2
            ),
        )
    )
    job.start()
    victim = None
    deadline = time.monotonic() + 30
    while victim is None and time.monotonic() < deadline:
        busy = [
            w
            for w, keys in client.processing().items()
            if any("stockbatch-shard" in str(k) for k in keys)
        ]
        if busy and faulty_server.stats()["requests"] > 40:  # both shards half-way
            victim = busy[0]
        time.sleep(0.02)
    assert victim is not None, "no shard was running"
    os.kill(pids[victim], signal.SIGKILL)
    job.join(120)
    client.wait_for_workers(2, timeout=60)
    r = out["r"]
    assert r.stats["shard_attempts"] > r.stats["shards"] == 2  # the lost shard ran again
    assert r.success
    assert {s: o.to_dict() for s, o in r.symbols.items()} == {
        s: o.to_dict() for s, o in clean.symbols.items()
    }
    rows = _rows(pg_uri, table)
    assert rows == _rows(pg_uri, clean_t)  # row for row
    assert r.rows_stored == clean.rows_stored == len(rows)  # counts exact


# -- kernels on Dask DataFrames ---------------------------------------------------------------

FRAME_SYMS = [f"F{i:03d}" for i in range(10)] + ["AAPL", "7203.T"]


@pytest.fixture(scope="module")
def stored(pg_uri):
    table = f"dask_frames_{uuid.uuid4().hex[:10]}"
    with FixtureServer() as srv:
        sb.ingest(FRAME_SYMS, db=pg_uri, base_url=srv.url, period="1y", table=table)
    yield table
    with pg.connect(pg_uri) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.commit()


def test_read_partitions_by_whole_symbols(client, pg_uri, stored):
    df = sbd.read(pg_uri, npartitions=5, table=stored)
    assert df.npartitions == 5
    parts = [set(df.get_partition(i).compute()["symbol"]) for i in range(5)]
    assert all(parts) and sum(len(p) for p in parts) == len(FRAME_SYMS)
    assert set().union(*parts) == set(FRAME_SYMS)  # each symbol in exactly one partition
    whole = df.compute().reset_index(drop=True)
    local = sb.read(pg_uri, table=stored).to_pandas()
    import pandas as pd  # dask keeps text as pyarrow strings: equal values, other dtype

    pd.testing.assert_frame_equal(
        whole,
        local.sort_values(["symbol", "interval", "ts"]).reset_index(drop=True),
        check_dtype=False,
    )
    two = sbd.read(pg_uri, ["AAPL", "F001"], npartitions=8, table=stored)
    assert two.npartitions == 2 and set(two.compute()["symbol"]) == {"AAPL", "F001"}


@pytest.mark.parametrize(
    "kernel, options",
    [
        ("validate", {}),
        ("normalize", {}),
        ("resample", {"to": "1wk"}),
        ("returns", {}),
        ("log_returns", {}),
        ("indicators", {"specs": ["sma20", "rsi14", "macd"]}),
    ],
)
def test_kernels_per_partition_equal_the_whole(client, pg_uri, stored, kernel, options):
    df = sbd.read(pg_uri, npartitions=4, table=stored)
    out = sbd.apply(df, kernel, **options)
    got = out.compute().reset_index(drop=True)
    assert list(got.columns) == list(out._meta.columns)  # the declared meta is the truth
    assert list(got.dtypes) == list(out._meta.dtypes)
    from stockbatch.dask._frames import _run

    want = _run(sb.read(pg_uri, table=stored).to_pandas(), kernel, options)
    assert got.equals(want.reset_index(drop=True))


def test_bad_frame_options(client, pg_uri, stored):
    df = sbd.read(pg_uri, npartitions=2, table=stored)
    with pytest.raises(ValueError, match="kernel"):
        sbd.apply(df, "fourier")
    with pytest.raises(ValueError, match="spec|sma"):
        sbd.apply(df, "indicators", specs=["smaa"])
    with pytest.raises(ValueError, match="npartitions"):
        sbd.read(pg_uri, npartitions=0, table=stored)


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_ingest_on_a_scheduler(client, fixture_server, pg_uri, tables, capsys):
    from stockbatch.cli import main

    table = tables()
    code = main(
        [
            "ingest",
            "AAPL",
            "MSFT",
            "S0001",
            "--db",
            pg_uri,
            "--table",
            table,
            "--base-url",
            fixture_server.url,
            "--period",
            "1mo",
            "--scheduler",
            client.scheduler.address,
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "Traceback" not in out.err and "stored" in out.out
    assert (
        sb.read(pg_uri, table=table).num_rows
        == sb.ingest(
            ["AAPL", "MSFT", "S0001"],
            db=pg_uri,
            base_url=fixture_server.url,
            period="1mo",
            table=table,
        ).rows_stored
    )


def test_cli_workers_and_errors(fixture_server, pg_uri, tables, capsys):
    from stockbatch.cli import main

    table = tables()
    code = main(
        [
            "ingest",
            "AAPL",
            "--db",
            pg_uri,
            "--table",
            table,
            "--quiet",
            "--base-url",
            fixture_server.url,
            "--workers",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert sb.read(pg_uri, table=table).num_rows > 0
    assert main(["ingest", "AAPL", "--db", pg_uri, "--period", "1zz", "--workers", "1"]) == 2
    assert (
        main(["ingest", "AAPL", "--db", pg_uri, "--scheduler", "tcp://127.0.0.1:9", "--quiet"]) == 1
    )
    assert main(["ingest", "AAPL", "--scheduler", "tcp://127.0.0.1:9", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "scheduler" in err


def _take_token(spec) -> str:
    import asyncio

    from distributed import get_client

    from stockbatch.dask._limit import ClusterLimiter

    try:
        asyncio.run(ClusterLimiter(spec, get_client()).acquire())
        return "token"
    except sb.ProviderUnavailable as exc:
        return str(exc)


def test_a_bucket_outliving_its_ingest_fails_instead_of_hanging(client):
    from stockbatch.dask._limit import TokenMinter

    minter = TokenMinter(client, f"stockbatch-test-{uuid.uuid4().hex[:8]}", 20.0, 2)
    try:
        assert client.submit(_take_token, minter.spec, pure=False).result(30) == "token"
    finally:
        minter.close()
    # what was minted may still be taken (at most burst tokens); then it fails, in seconds
    said = [client.submit(_take_token, minter.spec, pure=False).result(30) for _ in range(3)]
    assert "rate limit is gone" in said[-1], said
