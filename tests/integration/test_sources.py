"""The sources over real sockets against the fixture server.

Every fault the fixture server can inject (``stockbatch.testing.FAULT_KINDS`` plus the
cookie/crumb requirement) has its outcome shown here: recovered after a retry (honouring
Retry-After), failed over to the next provider (FailoverSource), or reported for that symbol by
``fetch_many`` — never lost. Then the canonical output of each source (Yahoo chart, Alpha
Vantage, a generic JSON endpoint, yfinance pointed at the server), range splitting, quotes,
the circuit breaker, the response cache, the rate limiter, and API-key secrecy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import traceback
from collections import Counter

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from stockbatch._errors import (
    DecodeError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    SymbolNotFound,
)
from stockbatch.schema import BARS, QUOTES
from stockbatch.sources import (
    AlphaVantageSource,
    CircuitBreaker,
    FailoverSource,
    HTTPJSONSource,
    ResponseCache,
    RetryPolicy,
    YahooChartSource,
    YFinanceSource,
)
from stockbatch.testing import FAULT_KINDS, FixtureServer


def epoch(y: int, m: int, d: int) -> int:
    return int(dt.datetime(y, m, d, tzinfo=dt.timezone.utc).timestamp())


# Fixed past windows: the synthetic data of a past window never changes.
D1, D2 = epoch(2025, 1, 1), epoch(2026, 1, 1)  # one year of daily bars
M1, M2 = epoch(2026, 3, 2), epoch(2026, 4, 1)  # 30 days of 1m bars (4 requests)
US = pa.timestamp("us", tz="UTC")


def no_breaker() -> dict:
    """Source options for tests where many symbols fail on purpose: a provider-wide breaker
    would open and refuse the healthy symbols too (that is shown in its own test)."""
    return {"breaker": CircuitBreaker(failure_threshold=10_000)}


def run(coro):
    return asyncio.run(coro)


async def collect(src, symbols, **options) -> dict:
    """fetch_many into {symbol: result}, asserting each symbol comes back exactly once."""
    seen = Counter()
    out = {}
    async for sym, result in src.fetch_many(symbols, **options):
        seen[sym] += 1
        out[sym] = result
    assert set(seen) == set(symbols), "a symbol was lost or invented"
    assert set(seen.values()) == {1}, f"a symbol came back twice: {seen}"
    return out


async def yahoo_history(url: str, symbol: str, **kw) -> pa.RecordBatch:
    async with YahooChartSource(base_url=url, **kw) as src:
        return await src.fetch_history(symbol, start=D1, end=D2)


def raw_chart(url: str, symbol: str, **params) -> dict:
    r = httpx.get(f"{url}/v8/finance/chart/{symbol}", params=params)
    assert r.status_code == 200
    return r.json()["chart"]["result"][0]


def same_bars(a: pa.RecordBatch, b: pa.RecordBatch) -> bool:
    cols = ["symbol", "interval", "ts", "open", "high", "low", "close", "adj_close", "volume"]
    return a.select(cols).equals(b.select(cols))


# -- Yahoo chart: canonical output ---------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["AAPL", "7203.T"])
def test_yahoo_history_equals_the_fixture_payload(fixture_server, symbol):
    batch = run(yahoo_history(fixture_server.url, symbol, normalize=False))
    raw = raw_chart(fixture_server.url, symbol, period1=D1, period2=D2, interval="1d")
    assert batch.schema.equals(BARS)  # field names, types, nullability
    assert batch.schema.field("ts").type == US
    md = batch.schema.metadata
    assert md[b"stockbatch.tz"].decode() == raw["meta"]["exchangeTimezoneName"]
    assert md[b"stockbatch.currency"].decode() == raw["meta"]["currency"]
    q = raw["indicators"]["quote"][0]
    assert batch.column("ts").cast(pa.int64()).to_pylist() == [
        t * 1_000_000 for t in raw["timestamp"]
    ]
    for col in ("open", "high", "low", "close", "volume"):
        assert batch.column(col).to_pylist() == q[col], col
    assert batch.column("adj_close").to_pylist() == raw["indicators"]["adjclose"][0]["adjclose"]
    # (equal lists: the payload's nulls are Arrow nulls, never NaN)
    assert not pc.any(pc.is_nan(batch.column("close"))).as_py()
    assert set(batch.column("symbol").to_pylist()) == {symbol}
    assert set(batch.column("source").to_pylist()) == {"yahoo"}
    # normalized (default): the same bars stamped at 00:00 exchange time
    norm = run(yahoo_history(fixture_server.url, symbol))
    local = norm.column("ts").cast(pa.timestamp("us", tz=md[b"stockbatch.tz"].decode()))
    assert set(pc.hour(local).to_pylist()) == {0} and set(pc.minute(local).to_pylist()) == {0}
    assert norm.column("close").equals(batch.column("close"))


def test_one_minute_range_is_split_into_8_day_windows_without_gaps(faulty_server):
    async def go():
        async with YahooChartSource(base_url=faulty_server.url) as src:
            return await src.fetch_history("AAPL", interval="1m", start=M1, end=M2)

    batch = run(go())
    # 30 days in 8-day windows: 4 requests (the server answers 422 beyond 8 days)
    assert faulty_server.hits("chart", "AAPL") == 4
    ts = batch.column("ts").cast(pa.int64()).to_pylist()
    assert ts == sorted(ts) and len(set(ts)) == len(ts)  # ordered, no duplicates
    # oracle: the same range asked one day at a time, straight from the server
    expect = []
    with httpx.Client() as c:
        for a in range(M1, M2, 86_400):
            r = c.get(
                f"{faulty_server.url}/v8/finance/chart/AAPL",
                params={"interval": "1m", "period1": a, "period2": a + 86_400},
            )
            expect += r.json()["chart"]["result"][0].get("timestamp", [])
    assert ts == [t * 1_000_000 for t in expect]  # nothing missing at the window seams
    assert len(ts) == 22 * 390  # 22 trading days from 2 to 31 March 2026, 390 minutes each
    assert M1 * 1_000_000 <= ts[0] and ts[-1] < M2 * 1_000_000


def test_one_minute_period_wider_than_a_window(fixture_server):
    async def go():
        async with YahooChartSource(base_url=fixture_server.url) as src:
            return await src.fetch_history("MSFT", interval="1m", period="1mo")

    ts = run(go()).column("ts").cast(pa.int64()).to_numpy()
    assert len(ts) >= 15 * 390
    assert (ts[1:] > ts[:-1]).all()


def test_quotes_for_many_symbols_in_few_calls(faulty_server):
    symbols = [f"Q{i:03d}" for i in range(120)] + ["7203.T", "UNKNOWNQ1", "UNKNOWNQ2"]

    async def go():
        async with YahooChartSource(base_url=faulty_server.url) as src:
            return await src.fetch_quotes(symbols)

    batch = run(go())
    assert batch.schema.remove_metadata().equals(QUOTES.remove_metadata())
    assert batch.column("symbol").to_pylist() == [s for s in symbols if "UNKNOWN" not in s]
    assert batch.schema.metadata[b"stockbatch.missing"] == b"UNKNOWNQ1,UNKNOWNQ2"
    assert faulty_server.stats()["requests"] == 3  # 123 symbols, 50 per call
    assert batch.column("price").null_count == 0


def test_unknown_symbol_is_symbol_not_found_without_retries(faulty_server, fast_retry):
    async def go():
        async with YahooChartSource(base_url=faulty_server.url, retry=fast_retry) as src:
            with pytest.raises(SymbolNotFound) as info:
                await src.fetch_history("UNKNOWNXYZ", period="1mo")
            return src, info.value

    src, exc = run(go())
    assert exc.provider == "yahoo" and exc.symbol == "UNKNOWNXYZ"
    assert faulty_server.hits("chart", "UNKNOWNXYZ") == 1  # no retry: the answer is final
    assert src.breaker.state == "closed" and src.stats.retries == 0


# -- every fault: recovered --------------------------------------------------------------------

RECOVER = [
    # kind, fault options, source options, retries expected, error class seen on the way
    ("latency", dict(delay=0.6), dict(timeout=0.2), 1, "ProviderUnavailable"),
    ("rate_limit", dict(retry_after=0.4), {}, 1, "RateLimited"),
    ("status", dict(status=500, times=2), {}, 2, "ProviderUnavailable"),
    ("status", dict(status=503), {}, 1, "ProviderUnavailable"),
    ("malformed", {}, {}, 1, "DecodeError"),
    ("truncate", dict(fraction=0.6), {}, 1, "DecodeError"),
    ("reset", {}, {}, 1, "ProviderUnavailable"),
    ("slow_body", dict(delay=0.5, chunks=2), dict(timeout=0.2), 1, "ProviderUnavailable"),
]


def test_the_fault_tables_cover_every_fault_kind():
    kinds = {r[0] for r in RECOVER}
    assert kinds == set(FAULT_KINDS)
    assert {r[0] for r in PERSISTENT} | {"slow_body"} == set(FAULT_KINDS)


@pytest.mark.parametrize(
    ("kind", "fault", "opts", "retries", "seen"),
    RECOVER,
    ids=[f"{r[0]}-{i}" for i, r in enumerate(RECOVER)],
)
def test_fault_once_then_recovered_after_retry(
    fixture_server, faulty_server, fast_retry, kind, fault, opts, retries, seen
):
    times = fault.pop("times", 1)
    faulty_server.add_fault(kind, route="chart", symbols=["AAPL"], times=times, **fault)
    clean = run(yahoo_history(fixture_server.url, "AAPL"))

    async def go():
        async with YahooChartSource(base_url=faulty_server.url, retry=fast_retry, **opts) as src:
            t0 = time.perf_counter()
            batch = await src.fetch_history("AAPL", start=D1, end=D2)
            return batch, time.perf_counter() - t0, src.stats

    batch, elapsed, stats = run(go())
    assert same_bars(batch, clean)  # the recovered answer is the real one
    assert stats.retries == retries and stats.errors == {seen: retries}
    assert faulty_server.hits("chart", "AAPL") == retries + 1
    if kind == "rate_limit":
        assert stats.rate_limited == 1
        assert elapsed >= 0.4  # waited Retry-After (the backoff alone is <= 0.05 s)


def test_slow_body_within_the_timeout_is_simply_slower(faulty_server, fast_retry):
    faulty_server.add_fault("slow_body", route="chart", symbols=["AAPL"], delay=0.06, chunks=4)

    async def go():
        async with YahooChartSource(
            base_url=faulty_server.url, retry=fast_retry, timeout=2.0
        ) as src:
            t0 = time.perf_counter()
            batch = await src.fetch_history("AAPL", start=D1, end=D2)
            return batch, time.perf_counter() - t0, src.stats

    batch, elapsed, stats = run(go())
    assert batch.num_rows > 240 and stats.retries == 0
    assert elapsed >= 0.17  # the body really came in pieces (3 pauses before the last)


@pytest.mark.parametrize("mode", ["auto", True])
def test_cookie_and_crumb_required(faulty_server, fast_retry, mode):
    faulty_server.require_crumb = True

    async def go():
        async with YahooChartSource(
            base_url=faulty_server.url, crumb=mode, retry=fast_retry
        ) as src:
            out = await collect(src, ["AAPL", "MSFT", "7203.T"], period="1mo")
            quotes = await src.fetch_quotes(["AAPL", "MSFT"])
            return out, quotes

    out, quotes = run(go())
    assert all(isinstance(b, pa.RecordBatch) and b.num_rows > 15 for b in out.values())
    assert quotes.num_rows == 2
    # one handshake shared by every request (the crumb is cached)
    assert faulty_server.hits("crumb") == 1 and faulty_server.hits("cookie") == 1


def test_crumb_refused_without_the_handshake_is_reported(faulty_server, fast_retry):
    faulty_server.require_crumb = True

    async def go():
        async with YahooChartSource(
            base_url=faulty_server.url, crumb=False, retry=RetryPolicy(attempts=1)
        ) as src:
            return await collect(src, ["AAPL", "MSFT"], period="1mo")

    out = run(go())
    for sym, exc in out.items():
        assert isinstance(exc, ProviderUnavailable) and exc.symbol == sym
        assert "crumb" in str(exc)


@pytest.mark.parametrize("route", ["cookie", "crumb"])
def test_handshake_faults_recover(faulty_server, fast_retry, route):
    faulty_server.require_crumb = True
    faulty_server.add_fault("status", route=route, status=503, times=1)

    async def go():
        async with YahooChartSource(base_url=faulty_server.url, retry=fast_retry) as src:
            return await src.fetch_history("AAPL", start=D1, end=D2), src.stats

    batch, stats = run(go())
    assert batch.num_rows > 240 and stats.retries == 1
    assert faulty_server.hits("crumb") == 2


# -- every fault, persistent: failed over, or reported per symbol -------------------------------

PERSISTENT = [
    # kind, fault options, source options, the error yahoo reports for the symbol
    ("latency", dict(delay=0.5), dict(timeout=0.15), ProviderUnavailable),
    ("rate_limit", dict(retry_after=120), {}, RateLimited),  # too long to wait: no retry
    ("status", dict(status=503), {}, ProviderUnavailable),
    ("malformed", {}, {}, DecodeError),
    ("truncate", dict(fraction=0.3), {}, DecodeError),
    ("reset", {}, {}, ProviderUnavailable),
]


@pytest.mark.parametrize(
    ("kind", "fault", "opts", "error"), PERSISTENT, ids=[r[0] for r in PERSISTENT]
)
def test_persistent_fault_fails_over_to_alpha_vantage(
    fixture_server, faulty_server, kind, fault, opts, error
):
    faulty_server.add_fault(kind, route="chart", symbols=["BAD"], **fault)
    retry = RetryPolicy(attempts=2, base=0.01, max_delay=0.02, max_retry_after=5.0)

    async def go():
        yahoo = YahooChartSource(base_url=faulty_server.url, retry=retry, **no_breaker(), **opts)
        av = AlphaVantageSource(api_key="demo", base_url=faulty_server.url, rate=1000, burst=100)
        async with FailoverSource([yahoo, av]) as src:
            out = await collect(src, ["BAD", "GOOD"], start=D1, end=D2)
            return out, src, yahoo

    out, src, yahoo = run(go())
    assert isinstance(out["GOOD"], pa.RecordBatch) and isinstance(out["BAD"], pa.RecordBatch)
    assert set(out["GOOD"].column("source").to_pylist()) == {"yahoo"}
    assert set(out["BAD"].column("source").to_pylist()) == {"alphavantage"}
    assert src.stats.failovers == 1 and src.served_by == {"yahoo": 1, "alphavantage": 1}
    assert yahoo.stats.errors[error.__name__] >= 1
    # the same trading days and prices (Alpha Vantage rounds to 4 decimals, skips null days)
    ref = run(yahoo_history(fixture_server.url, "BAD")).filter(
        pc.is_valid(run(yahoo_history(fixture_server.url, "BAD")).column("close"))
    )
    got = out["BAD"]
    assert got.column("ts").equals(ref.column("ts"))
    diff = pc.max(pc.abs(pc.subtract(got.column("close"), ref.column("close")))).as_py()
    assert diff < 1e-4


def test_fetch_many_reports_every_fault_per_symbol(faulty_server, fast_retry):
    for kind, fault, _opts, _error in PERSISTENT:
        faulty_server.add_fault(kind, route="chart", symbols=[f"F{kind.upper()}"], **fault)
    faulty_server.add_fault("status", route="chart", symbols=["FLAKY"], status=502, times=2)
    good = [f"G{i}" for i in range(10)]
    bad = [f"F{k.upper()}" for k, *_ in PERSISTENT]
    symbols = good + bad + ["FLAKY", "UNKNOWN1", "G0"]  # G0 twice: answered once

    async def go():
        async with YahooChartSource(
            base_url=faulty_server.url, retry=fast_retry, timeout=0.15, **no_breaker()
        ) as src:
            return await collect(src, symbols, start=D1, end=D2)

    out = run(go())
    assert len(out) == len(set(symbols))
    for sym in good + ["FLAKY"]:
        assert isinstance(out[sym], pa.RecordBatch) and out[sym].num_rows > 240, sym
    for (kind, _f, _o, error), sym in zip(PERSISTENT, bad, strict=True):
        exc = out[sym]
        assert type(exc) is error, (kind, exc)
        assert exc.symbol == sym and exc.provider == "yahoo"
    assert out["FRATE_LIMIT"].retry_after == 120
    assert out["FMALFORMED"].position is not None  # the byte where the payload broke
    assert "timed out" in str(out["FLATENCY"])
    assert isinstance(out["UNKNOWN1"], SymbolNotFound)


def test_failover_reports_when_every_source_fails(faulty_server, fast_retry):
    faulty_server.add_fault("status", route="chart", status=503)
    faulty_server.add_fault("rate_limit", route="alphavantage", style="information")

    async def go():
        yahoo = YahooChartSource(base_url=faulty_server.url, retry=RetryPolicy(attempts=1))
        av = AlphaVantageSource(api_key="demo", base_url=faulty_server.url, rate=1000)
        async with FailoverSource([yahoo, av]) as src:
            return await collect(src, ["AAPL", "UNKNOWN2"], start=D1, end=D2)

    out = run(go())
    exc = out["AAPL"]
    assert isinstance(exc, ProviderUnavailable)
    assert [type(e) for e in exc.errors] == [ProviderUnavailable, RateLimited]
    assert "yahoo" in str(exc) and "alphavantage" in str(exc)
    assert isinstance(out["UNKNOWN2"], ProviderError)


# -- circuit breaker, cache, rate limit --------------------------------------------------------


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_circuit_breaker_opens_then_refuses_fast_then_recovers(faulty_server):
    faulty_server.add_fault("status", route="chart", status=503)
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=30, clock=clock)

    async def go():
        async with YahooChartSource(
            base_url=faulty_server.url, breaker=breaker, retry=RetryPolicy(attempts=1)
        ) as src:
            for s in ("A1", "A2", "A3"):
                with pytest.raises(ProviderUnavailable):
                    await src.fetch_history(s, period="1mo")
            assert breaker.state == "open"
            sent = faulty_server.stats()["requests"]
            t0 = time.perf_counter()
            refused = await collect(src, [f"B{i}" for i in range(20)], period="1mo")
            fast = time.perf_counter() - t0
            assert faulty_server.stats()["requests"] == sent  # nothing went out
            faulty_server.clear_faults()
            clock.t += 31  # half-open: one trial call
            ok = await src.fetch_history("C1", period="1mo")
            return refused, fast, ok, src.stats

    refused, fast, ok, stats = run(go())
    assert fast < 0.5
    for sym, exc in refused.items():
        assert isinstance(exc, ProviderUnavailable) and exc.symbol == sym
        assert "circuit breaker open" in str(exc)
    assert ok.num_rows > 15 and breaker.state == "closed"
    assert stats.circuit_opened == 1


def test_response_cache_hits_and_saved_calls(faulty_server, tmp_path):
    async def go(cache):
        async with YahooChartSource(base_url=faulty_server.url, cache=cache) as src:
            a = await src.fetch_history("AAPL", period="1y")
            b = await src.fetch_history("AAPL", period="1y")
            m1 = await src.fetch_history("AAPL", interval="1m", start=M1, end=M2)
            m2 = await src.fetch_history("AAPL", interval="1m", start=M1, end=M2)
            return a, b, m1, m2, src.stats

    cache = ResponseCache(ttl=600, directory=tmp_path)
    a, b, m1, m2, stats = run(go(cache))
    assert a.equals(b) and m1.equals(m2)
    assert stats.cache_hits == 2 and stats.saved_calls == 1 + 4  # 1m: four windows saved
    assert cache.hits == 2 and cache.misses == 2
    assert faulty_server.hits("chart", "AAPL") == 1 + 4
    # a new source on the same directory answers from disk
    disk = ResponseCache(ttl=600, directory=tmp_path)
    a2, _, m3, _, stats2 = run(go(disk))
    assert a2.equals(a) and m3.equals(m1) and disk.disk_hits == 2
    assert stats2.requests == 0 and faulty_server.hits("chart", "AAPL") == 5


def test_response_cache_hits_for_a_period(faulty_server):
    # a period the source turns into explicit bounds from the clock (Yahoo 1m wider than 8
    # days, every Alpha Vantage period): the cache key must stay the period asked for, or no
    # later call could ever hit
    async def go():
        async with (
            YahooChartSource(base_url=faulty_server.url, cache=True) as y,
            AlphaVantageSource(
                api_key="demo", base_url=faulty_server.url, rate=1000, cache=True
            ) as av,
        ):
            first = [
                await y.fetch_history("AAPL", interval="1m", period="1mo"),
                await av.fetch_history("IBM", period="1mo"),
            ]
            await asyncio.sleep(1.0 - time.time() % 1.0 + 0.01)  # the clock moves on
            second = [
                await y.fetch_history("AAPL", interval="1m", period="1mo"),
                await av.fetch_history("IBM", period="1mo"),
            ]
            return first, second, y.stats, av.stats

    first, second, ystats, avstats = run(go())
    assert second[0].equals(first[0]) and second[1].equals(first[1])
    assert ystats.cache_hits == 1 and ystats.saved_calls == 4
    assert avstats.cache_hits == 1 and avstats.saved_calls == 1
    assert faulty_server.hits("chart", "AAPL") == 4
    assert faulty_server.hits("alphavantage", "IBM") == 1


def test_failures_are_not_cached(faulty_server, fast_retry):
    faulty_server.add_fault("status", route="chart", status=503, times=1)

    async def go():
        async with YahooChartSource(
            base_url=faulty_server.url, cache=True, retry=RetryPolicy(attempts=1)
        ) as src:
            with pytest.raises(ProviderUnavailable):
                await src.fetch_history("AAPL", period="1y")
            return await src.fetch_history("AAPL", period="1y")

    assert run(go()).num_rows > 240
    assert faulty_server.hits("chart", "AAPL") == 2


def test_rate_limiter_is_honoured(fixture_server):
    n, rate = 11, 20.0

    async def go():
        async with YahooChartSource(base_url=fixture_server.url, rate=rate, burst=1) as src:
            t0 = time.perf_counter()
            out = await collect(src, [f"R{i}" for i in range(n)], period="5d")
            return out, time.perf_counter() - t0, src.limiter.waited

    out, elapsed, waited = run(go())
    assert all(isinstance(b, pa.RecordBatch) for b in out.values())
    # one call free (burst 1), the other ten at 20/s: at least 0.5 s. The limiter's own wait
    # is less on a busy machine (tokens also accrue while the calls run), never nothing.
    assert elapsed >= (n - 1) / rate - 0.02
    assert 0 < waited <= elapsed


# -- Alpha Vantage -----------------------------------------------------------------------------


def test_alphavantage_daily_and_intraday(fixture_server):
    async def go():
        async with AlphaVantageSource(
            api_key="demo", base_url=fixture_server.url, rate=1000, burst=10
        ) as src:
            daily = await src.fetch_history("IBM", start=D1, end=D2)
            recent = await src.fetch_history("IBM", period="1mo")
            intraday = await src.fetch_history("IBM", interval="5m", period="5d")
            return daily, recent, intraday

    daily, recent, intraday = run(go())
    assert daily.schema.remove_metadata().equals(BARS.remove_metadata())
    assert daily.schema.metadata[b"stockbatch.tz"] == b"America/New_York"
    ts = daily.column("ts").cast(pa.int64()).to_numpy()
    assert (ts[1:] > ts[:-1]).all()  # oldest first although the wire is newest first
    assert D1 * 1_000_000 <= ts[0] and ts[-1] < D2 * 1_000_000
    # the same days and prices as Yahoo's chart (4 decimals on the wire)
    yahoo = run(yahoo_history(fixture_server.url, "IBM"))
    yahoo = yahoo.filter(pc.is_valid(yahoo.column("close")))
    assert daily.column("ts").equals(yahoo.column("ts"))
    assert pc.max(pc.abs(pc.subtract(daily.column("open"), yahoo.column("open")))).as_py() < 1e-4
    assert daily.column("volume").equals(yahoo.column("volume"))
    assert daily.column("adj_close").null_count == daily.num_rows  # AV daily has none
    assert 15 <= recent.num_rows <= 24
    its = intraday.column("ts").cast(pa.int64()).to_numpy()
    assert set(intraday.column("interval").to_pylist()) == {"5m"} and len(its) > 2 * 78
    assert (its[1:] > its[:-1]).all()
    assert int((its[1:] - its[:-1]).min()) == 300 * 1_000_000


@pytest.mark.parametrize("symbol", ["IBM", "7203.T", "SAP.DE", "VOD.L", "0005.HK"])
def test_alphavantage_daily_window_holds_the_asked_trading_days(fixture_server, symbol):
    """start is the first trading day, end the first one left out, in every zone: a daily
    bar east of UTC is stamped on the UTC day before its own (Tokyo's 1 Oct at 30 Sep 15:00)."""
    start, end = epoch(2025, 10, 1), epoch(2025, 10, 8)  # Wed 1 Oct .. Tue 7 Oct

    async def go():
        async with AlphaVantageSource(
            api_key="demo", base_url=fixture_server.url, rate=1000, outputsize="full"
        ) as av:
            got = await av.fetch_history(symbol, start=start, end=end)
        async with YahooChartSource(base_url=fixture_server.url) as yahoo:
            want = await yahoo.fetch_history(symbol, start=start, end=end)
        return got, want

    got, want = run(go())
    zone = got.schema.metadata[b"stockbatch.tz"].decode()
    days = pc.local_timestamp(got.column("ts").cast(pa.timestamp("us", tz=zone)))
    assert [d.day for d in days.cast(pa.date32()).to_pylist()] == [1, 2, 3, 6, 7]
    want = want.filter(pc.is_valid(want.column("close")))
    assert got.column("ts").equals(want.column("ts"))


@pytest.mark.parametrize("style", ["note", "information"])
def test_alphavantage_quota_payload_is_rate_limited(faulty_server, style):
    faulty_server.add_fault("rate_limit", route="alphavantage", style=style)

    async def go():
        async with AlphaVantageSource(api_key="demo", base_url=faulty_server.url, rate=1000) as src:
            with pytest.raises(RateLimited) as info:
                await src.fetch_history("IBM", period="1mo")
            return info.value

    exc = run(go())
    assert exc.provider == "alphavantage" and exc.symbol == "IBM"
    assert "rate limit" in str(exc)
    # HTTP 200 with a quota note: a minute's wait is too long to retry in place
    assert faulty_server.hits("alphavantage", "IBM") == 1


def test_alphavantage_error_message_is_symbol_not_found(fixture_server):
    async def go():
        async with AlphaVantageSource(
            api_key="demo", base_url=fixture_server.url, rate=1000
        ) as src:
            with pytest.raises(SymbolNotFound) as info:
                await src.fetch_history("UNKNOWNAV", period="1mo")
            return info.value

    exc = run(go())
    assert exc.symbol == "UNKNOWNAV" and "Invalid API call" in str(exc)


@pytest.mark.parametrize("from_env", [False, True])
def test_alphavantage_key_never_shown(monkeypatch, caplog, from_env):
    key = "SeCrEt-K3Y-0042"
    faults = [
        {"kind": "reset", "route": "alphavantage", "symbols": ["RST"]},
        {"kind": "malformed", "route": "alphavantage", "symbols": ["MAL"]},
        {"kind": "status", "route": "alphavantage", "symbols": ["DOWN"], "status": 500},
        {"kind": "rate_limit", "route": "alphavantage", "symbols": ["NOTE"]},
    ]
    if from_env:
        monkeypatch.setenv("ALPHAVANTAGE_API_KEY", key)
        kwargs = {}
    else:
        monkeypatch.delenv("ALPHAVANTAGE_API_KEY", raising=False)
        kwargs = {"api_key": key}
    caplog.set_level(logging.DEBUG)

    async def go(url):
        async with AlphaVantageSource(
            base_url=url,
            rate=1000,
            burst=100,
            retry=RetryPolicy(attempts=2, base=0.01),
            **no_breaker(),
            **kwargs,
        ) as src:
            out = await collect(
                src, ["IBM", "RST", "MAL", "DOWN", "NOTE", "UNKNOWNK"], period="1mo"
            )
            return src, out

    with FixtureServer(faults=faults, av_keys=[key]) as srv:
        src, out = run(go(srv.url))
        assert srv.hits("alphavantage", "IBM") == 1  # the server did receive the key
    assert isinstance(out["IBM"], pa.RecordBatch) and out["IBM"].num_rows > 15
    errors = [out[s] for s in ("RST", "MAL", "DOWN", "NOTE", "UNKNOWNK")]
    assert [type(e) for e in errors] == [
        ProviderUnavailable,
        DecodeError,
        ProviderUnavailable,
        RateLimited,
        SymbolNotFound,
    ]
    assert key not in repr(src) and "***" in repr(src)
    for exc in errors:
        assert key not in str(exc) and key not in repr(exc)
        assert key not in "".join(traceback.format_exception(exc))
    logged = [
        r
        for r in caplog.records
        if r.name.startswith(("httpx", "httpcore", "aiohttp", "stockbatch"))
    ]
    assert any(
        "apikey=***" in r.getMessage() for r in logged
    )  # the request URL was logged (redacted)
    for r in caplog.records:
        assert key not in r.getMessage()
    assert key not in caplog.text


def test_alphavantage_without_a_key_refuses_to_start(monkeypatch):
    monkeypatch.delenv("ALPHAVANTAGE_API_KEY", raising=False)
    with pytest.raises(ProviderError, match="ALPHAVANTAGE_API_KEY"):
        AlphaVantageSource()


# -- HTTPJSONSource ----------------------------------------------------------------------------


def test_httpjson_columnar_template_equals_yahoo(fixture_server):
    q = "chart.result.0.indicators.quote.0."
    src_kw = dict(
        fields={
            "ts": "chart.result.0.timestamp",
            "open": q + "open",
            "high": q + "high",
            "low": q + "low",
            "close": q + "close",
            "volume": q + "volume",
            "adj_close": "chart.result.0.indicators.adjclose.0.adjclose",
        },
        tz="America/New_York",
        name="yahoo",
    )
    template = (
        fixture_server.url + "/v8/finance/chart/{symbol}?interval={interval}"
        "&period1={start}&period2={end}"
    )

    async def go():
        async with HTTPJSONSource(template, **src_kw) as src:
            out = await collect(src, ["AAPL", "UNKNOWNH"], start=D1, end=D2)
            return out

    out = run(go())
    ref = run(yahoo_history(fixture_server.url, "AAPL", normalize=False))
    assert out["AAPL"].schema.remove_metadata().equals(BARS.remove_metadata())
    assert same_bars(out["AAPL"], ref)
    assert isinstance(out["UNKNOWNH"], SymbolNotFound)


def test_httpjson_records_template_equals_alphavantage(fixture_server):
    template = (
        fixture_server.url + "/query?function=TIME_SERIES_DAILY&symbol={symbol}"
        "&outputsize=full&apikey=demo"
    )
    fields = {
        "ts": "$key",
        "open": "1. open",
        "high": "2. high",
        "low": "3. low",
        "close": "4. close",
        "volume": "5. volume",
    }

    async def go():
        async with HTTPJSONSource(
            template,
            fields=fields,
            records="Time Series (Daily)",
            ts_unit="iso",
            tz="America/New_York",
            name="alphavantage",
        ) as src:
            b = await src.fetch_history("IBM", start=D1, end=D2)
        async with AlphaVantageSource(api_key="demo", base_url=fixture_server.url, rate=1000) as av:
            return b, await av.fetch_history("IBM", start=D1, end=D2)

    got, ref = run(go())
    # the generic source keeps every record it is given (newest first, all of history)
    got = got.sort_by("ts")
    keep = pc.and_(
        pc.greater_equal(got.column("ts"), ref.column("ts")[0]),
        pc.less_equal(got.column("ts"), ref.column("ts")[-1]),
    )
    got = got.filter(keep)
    for col in ("ts", "open", "high", "low", "close", "volume"):
        assert got.column(col).equals(ref.column(col)), col


def test_httpjson_429_retry_after_and_malformed(faulty_server, fast_retry):
    faulty_server.add_fault("rate_limit", route="chart", symbols=["AAPL"], retry_after=1, times=1)
    faulty_server.add_fault("malformed", route="chart", symbols=["MSFT"])
    template = faulty_server.url + "/v8/finance/chart/{symbol}?range={period}"

    async def go():
        # only ts mapped: the other columns are all null
        async with HTTPJSONSource(
            template, fields={"ts": "chart.result.0.timestamp"}, retry=fast_retry, **no_breaker()
        ) as src:
            t0 = time.perf_counter()
            out = await collect(src, ["AAPL", "MSFT"], period="1mo")
            return out, time.perf_counter() - t0, src.stats

    out, elapsed, stats = run(go())
    assert isinstance(out["AAPL"], pa.RecordBatch) and out["AAPL"].num_rows > 15
    assert out["AAPL"].column("close").null_count == out["AAPL"].num_rows
    assert elapsed >= 1.0 and stats.rate_limited == 1  # Retry-After: 1 honoured
    assert isinstance(out["MSFT"], DecodeError) and out["MSFT"].symbol == "MSFT"


# -- yfinance pointed at the fixture server ----------------------------------------------------


@pytest.fixture
def yf_session_restored():
    """yfinance keeps one process-wide session; put the previous one back afterwards."""
    yd = pytest.importorskip("yfinance.data")
    previous = yd.YfData()._session
    yield
    yd.YfData(session=previous)


@pytest.mark.filterwarnings("ignore:::yfinance")  # its own pandas deprecations
def test_yfinance_source_via_rewriting_session(fixture_server, yf_session_restored):
    pytest.importorskip("yfinance")
    symbols = ["AAPL", "7203.T", "UNKNOWNYF"]

    async def go():
        src = YFinanceSource(base_url=fixture_server.url)
        return await collect(src, symbols, start=D1, end=D2), src

    out, src = run(go())
    assert isinstance(out["UNKNOWNYF"], SymbolNotFound) and out["UNKNOWNYF"].symbol == "UNKNOWNYF"
    for sym in ("AAPL", "7203.T"):
        got = out[sym]
        assert got.schema.remove_metadata().equals(BARS.remove_metadata())  # no MultiIndex
        assert got.schema.field("ts").type == US  # UTC, never naive
        assert set(got.column("source").to_pylist()) == {"yfinance"}
        ref = run(yahoo_history(fixture_server.url, sym))
        ref = ref.filter(pc.is_valid(ref.column("close")))  # yfinance drops all-NaN rows
        assert got.column("ts").equals(ref.column("ts")), sym
        for col in ("open", "high", "low", "close", "adj_close", "volume"):
            assert got.column(col).equals(ref.column(col)), (sym, col)
        assert got.schema.metadata[b"stockbatch.tz"] == ref.schema.metadata[b"stockbatch.tz"]
    assert src.stats.errors == {"SymbolNotFound": 1}
