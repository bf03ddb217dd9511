"""stockbatch on Dask against the local engine: the overhead of going through Dask at one
worker, the speed-up at two, and the peak RSS per worker of a big light job.

Groups (peers in the same group, one run):

  dask pg 1y daily x<N>   N = 2,000 symbols (``--benchmark-disable``: 40), one year of daily
                          bars each, from the fixture server (its own process) into
                          PostgreSQL (a fresh table every round)
      local      ``stockbatch.ingest`` (one engine in this process; the reference)
      dask_1w    ``stockbatch.dask.ingest`` on a LocalCluster of 1 worker process
      dask_2w    the same on 2 worker processes
  dask pg 5d x<N>         N = 20,000 symbols (quick: 200), 2 workers, one round: completes,
                          ``peak_rss_mb`` per worker in extra_info

The clusters are started once for the module, outside the timed rounds (a Dask user's cluster
is already up); one worker process, one thread each (``processes=True``). Run:

    PYTHONPATH=src python -m pytest bench/test_dask.py --benchmark-only \
        --benchmark-columns=min,median,rounds --benchmark-group-by=group
"""

from __future__ import annotations

import uuid

import pytest
from benchutil import PG_URI, need_postgres, quick

pytest.importorskip("distributed")

from distributed import Client, LocalCluster

import stockbatch as sb
import stockbatch.dask as sbd
from stockbatch.testing import FixtureServer

PEERS = ("local", "dask_1w", "dask_2w")


def _n(full: int, small: int) -> int:
    return small if quick() else full


@pytest.fixture(scope="module")
def server():
    with FixtureServer(process=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def pg():
    need_postgres(_select_1)
    made: list[str] = []
    yield made
    _drop(made)


def _select_1(uri: str) -> None:
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")


def _drop(tables: list[str]) -> None:
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(PG_URI) as conn, conn.cursor() as cur:
        for t in tables:
            cur.execute(f"DROP TABLE IF EXISTS {t}")
        conn.commit()


@pytest.fixture(scope="module")
def clusters():
    made: dict[int, Client] = {}

    def get(workers: int) -> Client:
        if workers not in made:
            cluster = LocalCluster(
                n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=":0"
            )
            made[workers] = Client(cluster)
        return made[workers]

    yield get
    for c in made.values():
        cluster = c.cluster
        c.close()
        cluster.close()


def _ingest(
    peer: str, symbols: list[str], table: str, base_url: str, period: str, clusters
) -> sb.JobResult:
    if peer == "local":
        return sb.ingest(symbols, db=PG_URI, base_url=base_url, period=period, table=table)
    client = clusters(int(peer[5]))
    return sbd.ingest(
        symbols, client=client, db=PG_URI, base_url=base_url, period=period, table=table
    )


@pytest.mark.parametrize("peer", PEERS)
def test_daily_2000(benchmark, server, pg, clusters, peer):
    n = _n(2000, 40)
    symbols = [f"D{i:05d}" for i in range(n)]
    table = f"bench_dask_{peer}_{uuid.uuid4().hex[:8]}"
    pg.append(table)
    if peer != "local":
        clusters(int(peer[5]))  # started before the timed rounds
    results: list[sb.JobResult] = []

    def setup():
        _drop([table])
        return (), {}

    def run():
        results.append(_ingest(peer, symbols, table, server.url, "1y", clusters))

    benchmark.group = f"dask pg 1y daily x{n}"
    if peer == "local":
        benchmark.extra_info["reference"] = True
    benchmark.pedantic(run, setup=setup, rounds=1 if quick() else 3, iterations=1, warmup_rounds=0)
    r = results[-1]
    assert r.success and r.count("stored") == n, r.summary()
    benchmark.extra_info["rows"] = r.rows_stored
    benchmark.extra_info["store_s"] = round(r.stages["store"].seconds, 3)
    benchmark.extra_info["fetch_s"] = round(r.stages["fetch"].seconds, 3)


def test_many_light_symbols(benchmark, server, pg, clusters):
    n = _n(20_000, 200)
    symbols = [f"L{i:05d}" for i in range(n)]
    table = f"bench_dask_light_{uuid.uuid4().hex[:8]}"
    pg.append(table)
    client = clusters(2)
    results: list[sb.JobResult] = []
    benchmark.group = f"dask pg 5d x{n}"
    benchmark.pedantic(
        lambda: results.append(
            sbd.ingest(
                symbols, client=client, db=PG_URI, base_url=server.url, period="5d", table=table
            )
        ),
        rounds=1,
        iterations=1,
        warmup_rounds=0,
    )
    r = results[-1]
    assert r.success and r.count("stored") == n, r.summary()
    rss = client.run(_rss_mb)
    assert all(v <= 300 for v in rss.values()) or not quick(), rss
    benchmark.extra_info["rows"] = r.rows_stored
    benchmark.extra_info["peak_rss_mb_per_worker"] = sorted(round(v, 1) for v in rss.values())


def _rss_mb() -> float:
    """This worker process's peak resident size (``VmHWM``: per process image, unlike
    ``ru_maxrss``, which a child inherits from the process that forked it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")
