"""Sources: decoding Yahoo chart payloads, fetching from the fixture server, and the server's own
ceiling.

The fixture server runs in its own process (``FixtureServer(process=True)``), so the client
under test does not share its GIL; the machine's two cores are one for the client, one for the
server. Nothing leaves loopback: yfinance is given ``stockbatch.sources.rewriting_session``
(a ``requests`` session: every ``*.yahoo.com`` request goes to the fixture server) wrapped in a
guard that refuses any other host; one small warm-up download first lets yfinance learn its
cookie, crumb and time zones, as a long-running user's process would have.

Groups (peers in the same group, same data, one run):

  decode 1y daily x500     500 chart payloads (one year of daily bars each, as the server sends
                           them for ``range=1y&interval=1d&events=div,splits``), decoded to
                           BARS record batches:
                             stockbatch_compiled   stockbatch._ext.decode.decode_yahoo_chart
                             python_twin           stockbatch._py.decode (the specification)
                             json_loads_build      json.loads + pa.array over the Python lists
                           targets: compiled >= 8x json_loads_build, >= 4 M bars/s on one core
  decode 1m x1             one long payload of one-minute bars (a year of 8-day windows joined
                           into one Yahoo-shaped document, ~98k bars), same peers and targets
  fetch 1y daily x500      fetch + decode 500 symbols x 1y daily from the server:
                             stockbatch            YahooChartSource.fetch_many (default
                                                   concurrency 8, rate limiter off: rate=inf)
                             stockbatch_c4         the same with concurrency=4 (on loopback
                                                   there is no latency to hide; the sources'
                                                   aiohttp client costs about the same CPU
                                                   per request from 4 to 32 in flight, see
                                                   bench/test_http.py)
                             yfinance_download     yfinance.download(threads=True)
                             httpx_json_loop       httpx.Client keep-alive loop + json.loads +
                                                   pa.array
                           target: stockbatch >= 5x faster than yfinance_download
  fixture ceiling          requests/s the server answers to a plain keep-alive client (asyncio
                           streams, 8 connections, minimal HTTP/1.1 parsing) for a small chart
                           payload (5 days) and for the 1y daily payload of group "fetch"

Every benchmark stores its throughput in ``extra_info`` (``bars_per_s`` from the median round,
or ``requests_per_s``); the fetch benchmarks also store ``server_cpu_share``: the server
process's CPU seconds over the wall time of the rounds (well below 1: the server was not the
bottleneck).

Run (about two minutes):

    PYTHONPATH=src python -m pytest bench/test_sources.py --benchmark-only \\
        --benchmark-columns=min,median,rounds --benchmark-sort=name

``--benchmark-disable`` (CI) runs each peer once on 5 symbols and one 8-day 1m window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import time
from urllib.parse import urlsplit

import httpx
import pyarrow as pa
import pytest
from benchutil import cpu_seconds, quick

from stockbatch import _backend
from stockbatch.schema import BARS
from stockbatch.sources import YahooChartSource, rewriting_session
from stockbatch.testing import FixtureServer

compiled = _backend.load_from("cython", "decode")
twin = _backend.load_from("python", "decode")

NSYM = 5 if quick() else 500
MINUTE_DAYS = 8 if quick() else 365
CEILING_REQUESTS = 200 if quick() else 8_000
CONNECTIONS = 8
CONCURRENCY = 8
US = pa.timestamp("us", tz="UTC")
CHART_PARAMS = {"interval": "1d", "includePrePost": "false", "events": "div,splits", "range": "1y"}

pytestmark = pytest.mark.filterwarnings("ignore:::yfinance")


def rounds(fast: int, slow: int = 3) -> dict:
    n = 1 if quick() else fast
    return (
        {"rounds": n, "iterations": 1, "warmup_rounds": 0 if quick() else 1}
        if fast
        else {"rounds": 1 if quick() else slow, "iterations": 1, "warmup_rounds": 0}
    )


def symbols(n: int = NSYM) -> list[str]:
    """Half US tickers, half Tokyo codes: two exchanges, two zones."""
    return [f"{1300 + i // 2}.T" if i % 2 else f"S{i:04d}" for i in range(n)]


# -- the naive peer: json.loads + pa.array over Python lists ---------------------------------


def naive_build(payload: bytes, symbol: str, interval: str) -> pa.RecordBatch:
    res = json.loads(payload)["chart"]["result"][0]
    ts = res.get("timestamp", [])
    n = len(ts)
    ind = res["indicators"]
    q = ind["quote"][0]
    adj = (ind.get("adjclose") or [{}])[0].get("adjclose")
    cols = [
        pa.array([symbol] * n, pa.string()),
        pa.array([interval] * n, pa.string()),
        pa.array(ts, pa.timestamp("s", tz="UTC")).cast(US),
    ]
    for k in ("open", "high", "low", "close"):
        cols.append(pa.array(q[k], pa.float64()) if k in q else pa.nulls(n, pa.float64()))
    cols.append(pa.array(adj, pa.float64()) if adj is not None else pa.nulls(n, pa.float64()))
    cols.append(pa.array(q["volume"], pa.int64()) if "volume" in q else pa.nulls(n, pa.int64()))
    cols.append(pa.array(["yahoo"] * n, pa.string()))
    md = dict(BARS.metadata)
    md[b"stockbatch.tz"] = res["meta"]["exchangeTimezoneName"].encode()
    return pa.RecordBatch.from_arrays(cols, schema=BARS.with_metadata(md))


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with FixtureServer(process=True) as srv:
        yield srv


def server_pid() -> int | None:
    kids = [p for p in mp.active_children() if p.is_alive()]
    return kids[0].pid if len(kids) == 1 else None


@pytest.fixture(scope="module")
def daily_payloads(server) -> list[tuple[str, bytes]]:
    with httpx.Client() as c:
        out = []
        for s in symbols():
            r = c.get(f"{server.url}/v8/finance/chart/{s}", params=CHART_PARAMS)
            assert r.status_code == 200
            out.append((s, r.content))
    return out


@pytest.fixture(scope="module")
def minute_payload(server) -> bytes:
    """One Yahoo-shaped 1m document: 8-day windows (Yahoo's limit) joined into one."""
    end = int(time.time()) // 86_400 * 86_400
    start = end - MINUTE_DAYS * 86_400
    doc = None
    with httpx.Client() as c:
        for a in range(start, end, 8 * 86_400):
            r = c.get(
                f"{server.url}/v8/finance/chart/AAPL",
                params={"interval": "1m", "period1": a, "period2": min(a + 8 * 86_400, end)},
            )
            res = r.json()["chart"]["result"][0]
            if "timestamp" not in res:
                continue
            if doc is None:
                doc = {"chart": {"result": [res], "error": None}}
                continue
            base = doc["chart"]["result"][0]
            base["timestamp"] += res["timestamp"]
            for k, v in res["indicators"]["quote"][0].items():
                base["indicators"]["quote"][0][k] += v
    return json.dumps(doc, separators=(",", ":")).encode()


def _check_decoders(payloads, interval) -> None:
    """Every peer gives the same bars (so the timings compare the same work)."""
    for sym, p in payloads[:3]:
        a = compiled.decode_yahoo_chart(p, symbol=sym, interval=interval)
        b = naive_build(p, sym, interval)
        c = twin.decode_yahoo_chart(p, symbol=sym, interval=interval)
        assert a.equals(c) and a.num_rows > 0
        cols = ["ts", "open", "high", "low", "close", "adj_close", "volume"]
        assert a.select(cols).equals(b.select(cols))


def _rates(benchmark, bars: int | None = None, requests: int | None = None) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return
    med = stats.stats.median
    if bars is not None:
        benchmark.extra_info["bars"] = bars
        benchmark.extra_info["bars_per_s"] = round(bars / med)
    if requests is not None:
        benchmark.extra_info["requests"] = requests
        benchmark.extra_info["requests_per_s"] = round(requests / med)


# -- (a) decode ----------------------------------------------------------------------------------

DECODERS = {
    "stockbatch_compiled": lambda p, s, i: compiled.decode_yahoo_chart(p, symbol=s, interval=i),
    "python_twin": lambda p, s, i: twin.decode_yahoo_chart(p, symbol=s, interval=i),
    "json_loads_build": naive_build,
}


def _decode_all(fn, payloads, interval):
    return sum(fn(p, s, interval).num_rows for s, p in payloads)


@pytest.mark.parametrize("peer", list(DECODERS))
def test_decode_daily(benchmark, daily_payloads, peer):
    benchmark.group = f"decode 1y daily x{NSYM}"
    _check_decoders(daily_payloads, "1d")
    fast = peer == "stockbatch_compiled"
    bars = benchmark.pedantic(
        _decode_all, args=(DECODERS[peer], daily_payloads, "1d"), **rounds(20 if fast else 5)
    )
    assert bars >= NSYM * 240
    _rates(benchmark, bars=bars)


@pytest.mark.parametrize("peer", list(DECODERS))
def test_decode_minute(benchmark, minute_payload, peer):
    benchmark.group = "decode 1m x1"
    payloads = [("AAPL", minute_payload)]
    _check_decoders(payloads, "1m")
    fast = peer == "stockbatch_compiled"
    bars = benchmark.pedantic(
        _decode_all, args=(DECODERS[peer], payloads, "1m"), **rounds(20 if fast else 5)
    )
    benchmark.extra_info["payload_mb"] = round(len(minute_payload) / 1e6, 2)
    assert bars >= (MINUTE_DAYS * 5 // 7 - 12) * 390
    _rates(benchmark, bars=bars)


# -- (b) fetch + decode --------------------------------------------------------------------------


def stockbatch_fetch(url: str, syms: list[str], concurrency: int = CONCURRENCY) -> int:
    async def go() -> int:
        rows = 0
        async with YahooChartSource(
            base_url=url, concurrency=concurrency, rate=float("inf")
        ) as src:
            async for _sym, result in src.fetch_many(syms, period="1y"):
                if isinstance(result, Exception):
                    raise result
                rows += result.num_rows
        return rows

    return asyncio.run(go())


def httpx_json_loop(url: str, syms: list[str]) -> int:
    rows = 0
    with httpx.Client() as c:
        for s in syms:
            r = c.get(f"{url}/v8/finance/chart/{s}", params=CHART_PARAMS)
            r.raise_for_status()
            rows += naive_build(r.content, s, "1d").num_rows
    return rows


def guarded_session(base: str):
    """rewriting_session(base), refusing any request that would not end on the server."""
    sess = rewriting_session(base)
    forward = sess.request

    def request(method, url, *args, **kwargs):
        host = urlsplit(str(url)).hostname or ""
        if not (host.endswith("yahoo.com") or str(url).startswith(base)):
            raise ConnectionRefusedError(f"bench guard: {url} is not the fixture server")
        return forward(method, url, *args, **kwargs)

    sess.request = request
    return sess


def yfinance_download(session, syms: list[str]) -> int:
    import yfinance as yf

    wide = yf.download(
        syms,
        period="1y",
        interval="1d",
        threads=True,
        progress=False,
        auto_adjust=False,
        session=session,
    )
    closes = wide.xs("Close", axis=1, level="Price")
    return int(closes.notna().sum().sum())


@contextlib.contextmanager
def yfinance_session_restored():
    """yfinance keeps one process-wide session: put the previous one back afterwards."""
    from yfinance import data as yd

    previous = yd.YfData()._session
    try:
        yield
    finally:
        yd.YfData(session=previous)


PEERS = ("stockbatch", "stockbatch_c4", "yfinance_download", "httpx_json_loop")


@pytest.mark.parametrize("peer", PEERS)
def test_fetch_daily(benchmark, server, peer):
    benchmark.group = f"fetch 1y daily x{NSYM}"
    syms = symbols()
    stack = contextlib.ExitStack()
    if peer.startswith("stockbatch"):
        conc = 4 if peer == "stockbatch_c4" else CONCURRENCY
        fn, args, opts = stockbatch_fetch, (server.url, syms, conc), rounds(7)
        benchmark.extra_info["concurrency"] = conc
    elif peer == "httpx_json_loop":
        fn, args, opts = httpx_json_loop, (server.url, syms), rounds(0, 3)
    else:
        pytest.importorskip("yfinance")
        stack.enter_context(yfinance_session_restored())
        sess = guarded_session(server.url)
        yfinance_download(sess, syms[:2])  # cookie, crumb and time zones learnt once
        fn, args, opts = yfinance_download, (sess, syms), rounds(0, 3)
    pid = server_pid()
    with stack:
        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        bars = benchmark.pedantic(fn, args=args, **opts)
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(pid) - cpu0
    assert bars >= NSYM * 240
    _rates(benchmark, bars=bars, requests=NSYM)
    if pid is not None:
        benchmark.extra_info["server_cpu_share"] = round(cpu / wall, 3)


# -- (c) the fixture server's ceiling ----------------------------------------------------------


async def _keepalive_client(host: str, port: int, target: str, n: int, conns: int) -> int:
    """``n`` GETs of ``target`` over ``conns`` keep-alive connections; returns bytes read."""
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: keep-alive\r\n\r\n"
    ).encode()

    async def one(count: int) -> int:
        reader, writer = await asyncio.open_connection(host, port)
        got = 0
        try:
            for _ in range(count):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200")
                length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                got += len(await reader.readexactly(length))
        finally:
            writer.close()
        return got

    share = [n // conns + (i < n % conns) for i in range(conns)]
    return sum(await asyncio.gather(*(one(k) for k in share)))


@pytest.mark.parametrize("payload", ["5d", "1y"])
def test_fixture_ceiling(benchmark, server, payload):
    benchmark.group = "fixture ceiling"
    parts = urlsplit(server.url)
    target = (
        f"/v8/finance/chart/AAPL?interval=1d&includePrePost=false&events=div%2Csplits"
        f"&range={payload}"
    )
    asyncio.run(_keepalive_client(parts.hostname, parts.port, target, 8, 1))  # payload cached
    pid = server_pid()
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    nbytes = benchmark.pedantic(
        lambda: asyncio.run(
            _keepalive_client(parts.hostname, parts.port, target, CEILING_REQUESTS, CONNECTIONS)
        ),
        **rounds(5),
    )
    wall = time.perf_counter() - t0
    assert nbytes > 0
    benchmark.extra_info["payload_bytes"] = nbytes // CEILING_REQUESTS
    benchmark.extra_info["connections"] = CONNECTIONS
    _rates(benchmark, requests=CEILING_REQUESTS)
    if pid is not None:
        benchmark.extra_info["server_cpu_share"] = round((cpu_seconds(pid) - cpu0) / wall, 3)
