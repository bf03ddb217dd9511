"""The fixture server over real sockets: Yahoo's and Alpha Vantage's shapes, faults."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from stockbatch.testing import Fault, FixtureServer, serve_main


def test_chart_shape_and_determinism(fixture_server):
    url = f"{fixture_server.url}/v8/finance/chart/AAPL"
    params = {"range": "1y", "interval": "1d", "events": "div,splits"}
    with httpx.Client() as c:
        r1 = c.get(url, params=params)
        r2 = c.get(url, params={"period1": 0, "period2": 2_000_000_000, "interval": "1d"})
    assert r1.status_code == 200 and r1.headers["content-type"].startswith("application/json")
    res = r1.json()["chart"]["result"][0]
    meta = res["meta"]
    for key in (
        "currency",
        "symbol",
        "exchangeName",
        "instrumentType",
        "exchangeTimezoneName",
        "gmtoffset",
        "regularMarketPrice",
        "chartPreviousClose",
        "dataGranularity",
        "validRanges",
        "currentTradingPeriod",
    ):
        assert key in meta
    assert meta["exchangeTimezoneName"] == "America/New_York" and meta["currency"] == "USD"
    n = len(res["timestamp"])
    assert 245 <= n <= 262
    q = res["indicators"]["quote"][0]
    assert {len(q[k]) for k in ("open", "high", "low", "close", "volume")} == {n}
    assert len(res["indicators"]["adjclose"][0]["adjclose"]) == n
    # the same day has the same bar whatever window was asked for
    full = r2.json()["chart"]["result"][0]
    i = full["timestamp"].index(res["timestamp"][0])
    assert full["indicators"]["quote"][0]["close"][i] == q["close"][0]


def test_tokyo_trading_days_in_tokyo():
    import datetime as dt
    from zoneinfo import ZoneInfo

    with FixtureServer() as srv:
        r = httpx.get(f"{srv.url}/v8/finance/chart/7203.T", params={"range": "1mo"})
    res = r.json()["chart"]["result"][0]
    assert res["meta"]["currency"] == "JPY" and res["meta"]["exchangeTimezoneName"] == "Asia/Tokyo"
    for t in res["timestamp"]:
        local = dt.datetime.fromtimestamp(t, ZoneInfo("Asia/Tokyo"))
        assert local.weekday() < 5 and (local.hour, local.minute) == (9, 0)


def test_unknown_symbol_is_yahoo_404(fixture_server):
    r = httpx.get(f"{fixture_server.url}/v8/finance/chart/UNKNOWNABC")
    assert r.status_code == 404
    body = r.json()
    assert body["chart"]["result"] is None and body["chart"]["error"]["code"] == "Not Found"


def test_intraday_window_limit_is_422(fixture_server):
    r = httpx.get(
        f"{fixture_server.url}/v8/finance/chart/AAPL",
        params={"interval": "1m", "period1": 0, "period2": 30 * 86400},
    )
    assert r.status_code == 422
    assert "8 days" in r.json()["chart"]["error"]["description"]


def test_quote_endpoint_many_symbols(fixture_server):
    r = httpx.get(
        f"{fixture_server.url}/v7/finance/quote", params={"symbols": "AAPL,7203.T,UNKNOWNQ"}
    )
    res = r.json()["quoteResponse"]["result"]
    assert [q["symbol"] for q in res] == ["AAPL", "7203.T"]


def test_alphavantage_shapes(fixture_server):
    base = f"{fixture_server.url}/query"
    with httpx.Client() as c:
        daily = c.get(
            base, params={"function": "TIME_SERIES_DAILY", "symbol": "IBM", "apikey": "k"}
        ).json()
        missing_key = c.get(base, params={"function": "TIME_SERIES_DAILY", "symbol": "IBM"})
        unknown = c.get(
            base, params={"function": "TIME_SERIES_DAILY", "symbol": "UNKNOWN1", "apikey": "k"}
        )
    series = daily["Time Series (Daily)"]
    dates = list(series)
    assert len(dates) == 100 and dates == sorted(dates, reverse=True)  # newest first
    assert all(isinstance(v, str) for v in series[dates[0]].values())
    assert daily["Meta Data"]["2. Symbol"] == "IBM"
    assert missing_key.status_code == 200 and "Error Message" in missing_key.json()
    assert "Invalid API call" in unknown.json()["Error Message"]


@pytest.mark.parametrize(
    "fault,check",
    [
        (Fault("status", status=503, times=1), lambda r: r.status_code == 503),
        (
            Fault("rate_limit", retry_after=2, times=1),
            lambda r: r.status_code == 429 and r.headers["retry-after"] == "2",
        ),
        (Fault("truncate", fraction=0.3, times=1), lambda r: _bad_json(r.content)),
        (Fault("malformed", times=1), lambda r: _bad_json(r.content)),
    ],
)
def test_faults_fire_then_recover(faulty_server, fault, check):
    faulty_server.add_fault(
        fault.kind,
        route="chart",
        symbols=["AAPL"],
        times=1,
        status=fault.status,
        retry_after=fault.retry_after,
        fraction=fault.fraction,
    )
    url = f"{faulty_server.url}/v8/finance/chart/AAPL"
    with httpx.Client() as c:
        assert httpx.get(f"{faulty_server.url}/v8/finance/chart/MSFT").status_code == 200
        assert check(c.get(url))
        ok = c.get(url)
    assert ok.status_code == 200 and ok.json()["chart"]["result"]
    assert faulty_server.hits("chart", "AAPL") == 2


def _bad_json(content: bytes) -> bool:
    try:
        json.loads(content)
    except ValueError:
        return True
    return False


def test_reset_latency_and_slow_body(faulty_server):
    faulty_server.add_fault("reset", route="chart", symbols=["RST"], times=1)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{faulty_server.url}/v8/finance/chart/RST")
    assert httpx.get(f"{faulty_server.url}/v8/finance/chart/RST").status_code == 200
    faulty_server.add_fault("latency", route="chart", symbols=["LAG"], delay=0.5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{faulty_server.url}/v8/finance/chart/LAG", timeout=0.2)
    faulty_server.add_fault("slow_body", route="chart", symbols=["SLOW"], delay=0.05, chunks=4)
    r = httpx.get(f"{faulty_server.url}/v8/finance/chart/SLOW")
    assert r.status_code == 200 and r.json()["chart"]["result"]


def test_crumb_required(faulty_server):
    faulty_server.require_crumb = True
    url = f"{faulty_server.url}/v8/finance/chart/AAPL"
    assert httpx.get(url).status_code == 401
    with httpx.Client() as c:
        c.get(faulty_server.url + "/")  # the cookie
        crumb = c.get(faulty_server.url + "/v1/test/getcrumb").text
        assert c.get(url, params={"crumb": crumb}).status_code == 200
        assert c.get(url, params={"crumb": "wrong"}).status_code == 401


def test_process_mode_and_admin_faults():
    with FixtureServer(process=True) as srv:
        srv.add_fault("status", route="chart", status=500, times=1)
        assert httpx.get(f"{srv.url}/v8/finance/chart/AAPL").status_code == 500
        assert httpx.get(f"{srv.url}/v8/finance/chart/AAPL").status_code == 200
        assert srv.hits("chart", "AAPL") == 2
        srv.clear_faults()
        assert srv.stats()["faults"] == []


def test_serve_main_parses_faults_and_rejects_bad_ones(capsys):
    from stockbatch.testing import _fault_arg

    assert _fault_arg("rate_limit:route=chart,times=3,retry_after=1.5,symbols=A+B") == {
        "kind": "rate_limit",
        "route": "chart",
        "times": 3,
        "retry_after": 1.5,
        "symbols": ["A", "B"],
    }
    with pytest.raises(SystemExit):
        serve_main(["--fault", "explode"])


def test_serve_main_runs_until_sigterm():
    import os
    import signal
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "import sys; from stockbatch.testing import serve_main; "
        f"sys.exit(serve_main(['--port', '{port}', '--fault', 'status:times=1,status=503']))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line
        url = f"http://127.0.0.1:{port}/v8/finance/chart/AAPL"
        assert httpx.get(url).status_code == 503
        assert httpx.get(url).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        while proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
    assert proc.returncode == 0
