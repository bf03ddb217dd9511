"""HTTP clients on loopback: CPU per request, flat or not from 4 to 32 in flight (issue 11).

One harness for every client: 200 one-year daily Yahoo chart payloads (``range=1y&interval=1d
&events=div,splits``, ~30 kB each) fetched from the fixture server running in ANOTHER process
(``FixtureServer(process=True)``), bytes only (no decoding), ``C`` requests in flight through
one client of ``C`` keep-alive connections. The figure that matters is

    cpu_ms_per_request = client process CPU time (time.process_time) / requests

stored in ``extra_info`` (from the median round), beside the server process's own CPU per
request (``server_cpu_ms_per_request``, read from /proc) and the bytes received (checked equal
across peers, so every peer did the same work).

Groups (peers in the same group, one run):

  http cpu C=4 / 8 / 16 / 32    peers:
      httpx_default     httpx.AsyncClient(limits=C) as the sources built it before
      httpx_tuned       httpx.AsyncClient over an explicit AsyncHTTPTransport(retries=0),
                        trust_env off, shared SSL context, no redirects
      httpcore_pool     httpcore.AsyncConnectionPool directly (httpx's transport, no client)
      aiohttp           aiohttp.ClientSession(TCPConnector(limit=C))
      stockbatch_http   stockbatch.sources._http.HTTPClient (aiohttp + byte caps, total
                        deadline, same-origin redirects): what the sources use
  http client build     building (and closing) one client: httpx.AsyncClient, aiohttp
                        ClientSession, stockbatch HTTPClient
  fixture server        the server's own CPU per request on the wall clock, 2,000 symbols x 1y
                        daily asked twice: ``render`` (first ask: series + JSON) and ``cached``
                        (every later ask, until the payload's content changes)

Run (about a minute):

    PYTHONPATH=src python -m pytest bench/test_http.py --benchmark-only \\
        --benchmark-columns=min,median,rounds --benchmark-sort=name

``--benchmark-disable`` runs each peer once on 10 payloads.
"""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest
from benchutil import cpu_seconds, quick

from stockbatch.testing import FixtureServer

httpx = pytest.importorskip("httpx")
httpcore = pytest.importorskip("httpcore")
aiohttp = pytest.importorskip("aiohttp")

NOW = 1_767_225_600.0  # 2026-01-01: fixed clock, the server renders each payload once
NREQ = 10 if quick() else 200
CONCURRENCY = (4, 8, 16, 32)
PEERS = ("httpx_default", "httpx_tuned", "httpcore_pool", "aiohttp", "stockbatch_http")
QUERY = "interval=1d&includePrePost=false&events=div%2Csplits&range=1y"


@pytest.fixture(scope="module")
def server():
    with FixtureServer(process=True, now=NOW) as srv:
        yield srv


def server_pid(srv: FixtureServer) -> int | None:
    proc = srv._proc  # the server's child process (process=True)
    return proc.pid if proc is not None and proc.is_alive() else None


def urls(base: str) -> list[str]:
    return [f"{base}/v8/finance/chart/S{i:04d}?{QUERY}" for i in range(NREQ)]


async def _gather(get, targets: list[str], conc: int) -> int:
    """``get(url) -> bytes`` for every target, ``conc`` at a time; total bytes."""
    it = iter(targets)
    total = 0

    async def worker():
        nonlocal total
        for u in it:
            n = len(await get(u))  # (not ``total += len(await ...)``: that reads total first)
            total += n

    await asyncio.gather(*(worker() for _ in range(conc)))
    return total


async def run_peer(peer: str, targets: list[str], conc: int) -> int:
    if peer in ("httpx_default", "httpx_tuned"):
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        if peer == "httpx_default":
            client = httpx.AsyncClient(limits=limits, follow_redirects=True)
        else:
            client = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(limits=limits, retries=0, verify=_SSL_CONTEXT),
                trust_env=False,
                follow_redirects=False,
            )

        async def get(u):
            r = await client.get(u)
            return r.content

        async with client:
            return await _gather(get, targets, conc)
    if peer == "httpcore_pool":
        async with httpcore.AsyncConnectionPool(max_connections=conc) as pool:

            async def get(u):
                r = await pool.request("GET", u)
                return r.content

            return await _gather(get, targets, conc)
    if peer == "aiohttp":
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as session:

            async def get(u):
                async with session.get(u) as r:
                    return await r.read()

            return await _gather(get, targets, conc)
    from stockbatch.sources._http import HTTPClient

    async with HTTPClient(concurrency=conc) as client:

        async def get(u):
            return (await client.get(u)).body

        return await _gather(get, targets, conc)


_SSL_CONTEXT = ssl.create_default_context()


def _measure(peer: str, targets: list[str], conc: int, out: dict) -> int:
    c0 = time.process_time()
    n = asyncio.run(run_peer(peer, targets, conc))
    out.setdefault("cpu", []).append(time.process_time() - c0)
    return n


@pytest.mark.parametrize("conc", CONCURRENCY)
@pytest.mark.parametrize("peer", PEERS)
def test_http_cpu(benchmark, server, peer, conc):
    benchmark.group = f"http cpu C={conc}"
    targets = urls(server.url)
    asyncio.run(run_peer("aiohttp", targets, 4))  # the server renders every payload once
    pid = server_pid(server)
    out: dict = {}
    s0 = cpu_seconds(pid)
    rounds = 1 if quick() else 5
    nbytes = benchmark.pedantic(
        _measure,
        args=(peer, targets, conc, out),
        rounds=rounds,
        iterations=1,
        warmup_rounds=0 if quick() else 1,
    )
    server_cpu = cpu_seconds(pid) - s0
    timed = out["cpu"][-rounds:]  # not the warm-up round
    cpu = sorted(timed)[len(timed) // 2]
    assert nbytes >= NREQ * 20_000
    benchmark.extra_info.update(
        concurrency=conc,
        requests=NREQ,
        bytes=nbytes,
        cpu_ms_per_request=round(cpu / NREQ * 1e3, 4),
        server_cpu_ms_per_request=round(server_cpu / (NREQ * (len(out["cpu"]))) * 1e3, 4)
        if pid is not None
        else None,
    )


def test_http_same_bytes(server):
    """Every peer receives the same bytes (so the CPU figures compare the same work)."""
    targets = urls(server.url)[:5]
    sizes = {p: asyncio.run(run_peer(p, targets, 4)) for p in PEERS}
    assert len(set(sizes.values())) == 1, sizes


BUILDERS = ("httpx_async_client", "aiohttp_session", "stockbatch_http")


async def _build(kind: str) -> None:
    if kind == "httpx_async_client":
        await httpx.AsyncClient().aclose()
    elif kind == "aiohttp_session":
        await aiohttp.ClientSession().close()
    else:
        from stockbatch.sources._http import HTTPClient

        client = HTTPClient()
        client.session()  # the session is made on first use
        await client.aclose()


@pytest.mark.parametrize("kind", BUILDERS)
def test_http_client_build(benchmark, kind):
    benchmark.group = "http client build"
    loop = asyncio.new_event_loop()
    try:
        benchmark.pedantic(
            lambda: loop.run_until_complete(_build(kind)), rounds=1 if quick() else 20, iterations=1
        )
    finally:
        loop.close()


# -- the fixture server's own cost -------------------------------------------------------------
NSERVE = 20 if quick() else 2_000


def test_fixture_server_cpu(benchmark):
    """The server's CPU per request on the wall clock (no fixed ``now``) for 2,000 symbols x
    1y daily, each asked twice: the first ask renders, the second must be a lookup (and the
    payloads stay cached across minutes: they are keyed by what they contain, not the time)."""
    benchmark.group = "fixture server"
    with FixtureServer(process=True) as srv:
        pid = server_pid(srv)
        targets = [f"{srv.url}/v8/finance/chart/F{i:04d}?{QUERY}" for i in range(NSERVE)]
        out: dict = {}

        def two_passes():
            for name in ("render", "cached"):
                s0 = cpu_seconds(pid)
                asyncio.run(run_peer("aiohttp", targets, 8))
                out[name] = (cpu_seconds(pid) - s0) / NSERVE * 1e3

        benchmark.pedantic(two_passes, rounds=1, iterations=1)
    benchmark.extra_info.update(
        requests=2 * NSERVE,
        server_cpu_ms_per_request_render=round(out["render"], 4),
        server_cpu_ms_per_request_cached=round(out["cached"], 4),
    )
