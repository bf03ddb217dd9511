"""Hostile HTTP servers (issue 12): byte caps on the wire and after decompression, a total
deadline per request, same-origin redirects only. Real sources against the real fixture server
on loopback; every case fails only its own symbol, in bounded time, with a typed error."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pyarrow as pa
import pytest

import stockbatch
from stockbatch._errors import ProviderError, ProviderUnavailable
from stockbatch.sources import (
    AlphaVantageSource,
    CircuitBreaker,
    HTTPJSONSource,
    RetryPolicy,
    YahooChartSource,
)
from stockbatch.sources._http import DEFAULT_MAX_BYTES, HTTPClient
from stockbatch.testing import FixtureServer

SRC = str(Path(stockbatch.__file__).resolve().parents[1])  # where the tested package is


def opts(**more) -> dict:
    """No retries (each failure shows once) and no provider-wide breaker (several symbols fail
    on purpose here)."""
    return {
        "retry": RetryPolicy(attempts=1),
        "breaker": CircuitBreaker(failure_threshold=10_000),
        "rate": 1000.0,
        **more,
    }


async def collect(src, symbols, **options) -> dict:
    return {sym: res async for sym, res in src.fetch_many(symbols, period="1y", **options)}


def fetch(url: str, symbols: list[str], **options) -> tuple[dict, float]:
    async def go():
        async with YahooChartSource(base_url=url, **opts(**options)) as src:
            t0 = time.perf_counter()
            out = await collect(src, symbols)
            return out, time.perf_counter() - t0

    return asyncio.run(go())


def assert_good(out: dict, *symbols: str) -> None:
    for s in symbols:
        assert isinstance(out[s], pa.RecordBatch) and out[s].num_rows > 240, (s, out[s])


def test_huge_body_with_content_length_fails_that_symbol_only():
    with FixtureServer(faults=[{"kind": "huge", "symbols": ["HUGE"]}]) as srv:
        out, elapsed = fetch(srv.url, ["AAPL", "HUGE", "MSFT"])
    assert_good(out, "AAPL", "MSFT")
    err = out["HUGE"]
    assert type(err) is ProviderError and err.symbol == "HUGE" and err.provider == "yahoo"
    assert "500000000 bytes (Content-Length)" in str(err)
    assert f"max_bytes={DEFAULT_MAX_BYTES}" in str(err) and "16 MiB cap" in str(err)
    assert elapsed < 5


def test_a_broken_answer_says_what_was_wrong_with_it():
    """A 204 with a body: the next read finds no status line. The error says so (and what
    aiohttp saw), not only its exception's name; secrets in the URL stay masked."""
    faults = [{"kind": "status", "route": "chart", "symbols": ["NC"], "status": 204}]
    with FixtureServer(faults=faults) as srv:
        out, _ = fetch(srv.url, ["AAPL", "NC"])
    assert_good(out, "AAPL")
    err = out["NC"]
    assert type(err) is ProviderUnavailable
    assert "connection failed (ClientResponseError: " in str(err) and "status line" in str(err)
    assert "\n" not in str(err)


def test_endless_chunked_body_stops_at_the_cap():
    with FixtureServer(faults=[{"kind": "endless", "symbols": ["ENDLESS"]}]) as srv:
        out, elapsed = fetch(srv.url, ["AAPL", "ENDLESS", "MSFT"], max_bytes=4_000_000)
    assert_good(out, "AAPL", "MSFT")
    err = out["ENDLESS"]
    assert type(err) is ProviderError and err.symbol == "ENDLESS"
    assert "max_bytes=4000000" in str(err) and "on the wire" in str(err)
    assert elapsed < 5


def test_gzip_bomb_stops_at_the_cap_after_decompression():
    with FixtureServer(faults=[{"kind": "gzip_bomb", "symbols": ["BOMB"]}]) as srv:
        out, elapsed = fetch(srv.url, ["AAPL", "BOMB", "MSFT"])
    assert_good(out, "AAPL", "MSFT")
    err = out["BOMB"]
    assert type(err) is ProviderError and err.symbol == "BOMB"
    assert "after gzip decompression" in str(err) and "16 MiB cap" in str(err)
    assert elapsed < 5


def test_gzip_answers_are_decoded():
    """A well-behaved server that gzips: the same bars as without."""
    with FixtureServer() as plain, FixtureServer(faults=[{"kind": "gzip", "route": "chart"}]) as gz:
        want, _ = fetch(plain.url, ["AAPL"])
        got, _ = fetch(gz.url, ["AAPL"])
        assert gz.stats()["faults"][0]["fired"] == 1
    assert got["AAPL"].equals(want["AAPL"])


def test_a_dripping_server_fails_within_the_deadline():
    """One byte every 0.2 s: the read timeout (2 s) never fires, the total deadline does."""
    faults = [{"kind": "drip", "symbols": ["DRIP"], "delay": 0.2}]
    with FixtureServer(faults=faults) as srv:
        out, elapsed = fetch(srv.url, ["AAPL", "DRIP", "MSFT"], timeout=2.0, deadline=1.5)
    assert_good(out, "AAPL", "MSFT")
    err = out["DRIP"]
    assert type(err) is ProviderUnavailable and err.symbol == "DRIP"
    assert "1.5 s deadline" in str(err)
    assert 1.4 < elapsed < 4


@pytest.mark.parametrize("where", ["other host", "other port"])
def test_redirect_off_origin_is_refused(where):
    """A 302 to 127.0.0.2 (same port) or to another port: that symbol fails naming the target,
    and the other server is never asked."""
    host = "127.0.0.2" if where == "other host" else "127.0.0.1"
    with FixtureServer(host=host) as other:
        target = f"http://{host}:{other.port}"
        faults = [{"kind": "redirect", "symbols": ["MOVED"], "location": target + "{target}"}]
        port = other.port if where == "other host" else 0  # same port, another address
        with FixtureServer(port=port, faults=faults) as srv:
            out, elapsed = fetch(srv.url, ["AAPL", "MOVED", "MSFT"])
        assert other.stats()["requests"] == 0
    assert_good(out, "AAPL", "MSFT")
    err = out["MOVED"]
    assert type(err) is ProviderError and err.symbol == "MOVED" and err.status == 302
    assert f"redirect (HTTP 302) to {target}/v8/finance/chart/MOVED refused" in str(err)
    assert "?" not in str(err)  # the query (where API keys live) is never named
    assert elapsed < 5


def test_redirect_to_an_invalid_location_is_refused():
    faults = [{"kind": "redirect", "symbols": ["BADLOC"], "location": "http://[::1"}]
    with FixtureServer(faults=faults) as srv:
        out, _ = fetch(srv.url, ["AAPL", "BADLOC"])
    assert_good(out, "AAPL")
    assert type(out["BADLOC"]) is ProviderError and "invalid Location" in str(out["BADLOC"])


def test_same_origin_redirect_is_followed_a_few_hops():
    with FixtureServer() as plain:
        want, _ = fetch(plain.url, ["AAPL"])
    faults = [
        {"kind": "redirect", "symbols": ["AAPL"], "location": "{target}", "times": 2},
        {"kind": "redirect", "symbols": ["LOOP"], "location": "self"},
    ]
    with FixtureServer(faults=faults) as srv:
        out, _ = fetch(srv.url, ["AAPL", "LOOP"])
        assert srv.hits("chart", "AAPL") == 3
        assert srv.hits("chart", "LOOP") == 4  # the first ask and 3 hops
    assert out["AAPL"].equals(want["AAPL"])
    assert type(out["LOOP"]) is ProviderError and "more than 3 redirects" in str(out["LOOP"])


def test_caps_deadline_and_redirects_are_configurable_per_source():
    with FixtureServer() as srv:
        out, _ = fetch(srv.url, ["AAPL"], max_bytes=10_000)  # a 1y payload is ~30 kB
        assert "max_bytes=10000" in str(out["AAPL"])
        src = YahooChartSource(base_url=srv.url, deadline=5, max_redirects=0, max_bytes=1 << 20)
        assert (src._http.deadline, src._http.max_redirects, src._http.max_bytes) == (5, 0, 1 << 20)
    with pytest.raises(ValueError):
        YahooChartSource(max_bytes=0)


def test_alphavantage_and_httpjson_have_the_same_caps():
    faults = [
        {"kind": "huge", "route": "alphavantage", "symbols": ["BIG"]},
        {"kind": "redirect", "route": "chart", "symbols": ["AWAY"]},
    ]
    with FixtureServer(faults=faults) as srv:

        async def go():
            async with AlphaVantageSource(
                api_key="k3y-secret", base_url=srv.url, **opts(burst=10)
            ) as av:
                a = await collect(av, ["IBM", "BIG"])
            async with HTTPJSONSource(
                srv.url + "/v8/finance/chart/{symbol}?range=1y&interval=1d",
                fields={
                    "ts": "chart.result.0.timestamp",
                    "close": "chart.result.0.indicators.quote.0.close",
                },
                **opts(),
            ) as js:
                b = await collect(js, ["MSFT", "AWAY"])
            return a, b

        a, b = asyncio.run(go())
    assert isinstance(a["IBM"], pa.RecordBatch) and a["IBM"].num_rows > 15
    assert type(a["BIG"]) is ProviderError and "max_bytes" in str(a["BIG"])
    assert "k3y-secret" not in str(a["BIG"])
    assert isinstance(b["MSFT"], pa.RecordBatch) and b["MSFT"].num_rows > 240
    assert type(b["AWAY"]) is ProviderError and "127.0.0.2" in str(b["AWAY"])


def test_a_users_own_aiohttp_session():
    """client= takes an aiohttp.ClientSession: used (its headers go out), not closed, and the
    caps still apply; an httpx client is refused with the fix in the message."""
    faults = [{"kind": "huge", "symbols": ["HUGE"]}]
    with FixtureServer(faults=faults) as srv:

        async def go():
            async with aiohttp.ClientSession(headers={"X-Mine": "1"}) as session:
                async with YahooChartSource(base_url=srv.url, client=session, **opts()) as src:
                    out = await collect(src, ["AAPL", "HUGE"])
                assert not session.closed
                return out

        out = asyncio.run(go())
    assert_good(out, "AAPL")
    assert type(out["HUGE"]) is ProviderError and "max_bytes" in str(out["HUGE"])
    httpx = pytest.importorskip("httpx")
    with pytest.raises(TypeError, match="aiohttp.ClientSession"):
        YahooChartSource(client=httpx.AsyncClient())


def test_one_client_across_event_loops():
    """A source used from two asyncio.run calls in turn (a new session on the new loop)."""
    with FixtureServer() as srv:
        client = HTTPClient(name="t")
        url = srv.url + "/v8/finance/chart/AAPL?range=5d"
        assert asyncio.run(client.get(url)).status == 200
        assert asyncio.run(client.get(url)).status == 200
        asyncio.run(client.aclose())


_MEMORY_CLIENT = textwrap.dedent("""
    import asyncio, json, resource, sys
    from stockbatch.sources import CircuitBreaker, RetryPolicy, YahooChartSource

    def rss_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    async def fetch(url, symbols):
        async with YahooChartSource(base_url=url, rate=1000.0, retry=RetryPolicy(attempts=1),
                                    breaker=CircuitBreaker(failure_threshold=10_000)) as src:
            return {s: r async for s, r in src.fetch_many(symbols, period="1y")}

    url = sys.argv[1]
    normal = [f"N{i}" for i in range(40)]
    asyncio.run(fetch(url, normal))
    before = rss_mb()
    out = asyncio.run(fetch(url, ["HUGE", "ENDLESS", "BOMB"] + normal))
    print(json.dumps({"before": before, "after": rss_mb(),
                      "errors": {s: type(r).__name__ for s, r in out.items()
                                 if isinstance(r, Exception)},
                      "ok": sum(not isinstance(r, Exception) for r in out.values())}))
""")


def test_memory_stays_bounded_under_hostile_bodies():
    """Peak RSS of a client process (the server is in this one): the 500 MB body, the endless
    body and the 1 GB gzip bomb add less than 100 MB to the peak of a normal run."""
    faults = [
        {"kind": "huge", "symbols": ["HUGE"]},
        {"kind": "endless", "symbols": ["ENDLESS"]},
        {"kind": "gzip_bomb", "symbols": ["BOMB"]},
    ]
    with FixtureServer(faults=faults) as srv:
        proc = subprocess.run(
            [sys.executable, "-c", _MEMORY_CLIENT, srv.url],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["errors"] == {
        "HUGE": "ProviderError",
        "ENDLESS": "ProviderError",
        "BOMB": "ProviderError",
    }
    assert res["ok"] == 40
    assert res["after"] - res["before"] < 100, res


def test_every_transport_fault_has_its_test_here():
    from stockbatch.testing import TRANSPORT_FAULTS

    here = Path(__file__).read_text()
    for kind in TRANSPORT_FAULTS:
        assert f'"kind": "{kind}"' in here, kind


def test_fault_syntax_of_the_command_line():
    from stockbatch.testing import _fault_arg
    from stockbatch.testing._server import Fault

    spec = _fault_arg("gzip_bomb:route=chart,symbols=A+B,size=2000000,times=1")
    assert Fault(**spec).size == 2_000_000 and spec["symbols"] == ["A", "B"]
    spec = _fault_arg("redirect:route=chart,location=http://127.0.0.2:9/{target}")
    assert Fault(**spec).location == "http://127.0.0.2:9/{target}"
    spec = _fault_arg("drip:delay=0.5")
    assert Fault(**spec).delay == 0.5


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_verified_by_default_and_your_own_ca_through_ssl(certificate):
    import ssl

    cert, key = certificate
    with FixtureServer(tls=(cert, key)) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        refused, _ = fetch(srv.url, ["AAPL"])
        trusted, _ = fetch(srv.url, ["AAPL"], ssl=ssl.create_default_context(cafile=cert))
    assert type(refused["AAPL"]) is ProviderUnavailable
    assert "Certificate" in str(refused["AAPL"])
    assert_good(trusted, "AAPL")


def test_a_source_dropped_without_aclose_logs_nothing(caplog):
    import gc
    import logging

    caplog.set_level(logging.DEBUG, logger="asyncio")
    with FixtureServer() as srv:

        async def go():
            src = YahooChartSource(base_url=srv.url)
            return await src.fetch_history("AAPL", period="5d")

        assert asyncio.run(go()).num_rows > 0
        gc.collect()
    assert "Unclosed" not in caplog.text


@pytest.mark.parametrize("how", ["env", "argument"])
def test_proxies_from_the_environment_or_proxy_argument(monkeypatch, how):
    """The fixture server answers absolute-form requests, so it can stand in for a proxy: the
    source asks for 127.0.0.3:9 (nothing listens there) and gets bars only through it."""
    for var in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with FixtureServer() as proxy:
        extra = {"proxy": proxy.url} if how == "argument" else {}
        if how == "env":
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
        via, _ = fetch("http://127.0.0.3:9", ["AAPL"], **extra)
        assert proxy.hits("chart", "AAPL") == 1
        if how == "env":
            monkeypatch.setenv("NO_PROXY", "127.0.0.3")
            direct, _ = fetch("http://127.0.0.3:9", ["AAPL"], timeout=2.0)
            assert proxy.hits("chart", "AAPL") == 1
            assert type(direct["AAPL"]) is ProviderUnavailable
    assert_good(via, "AAPL")
