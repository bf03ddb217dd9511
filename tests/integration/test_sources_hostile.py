"""Hostile input against the sources over real sockets (issue 12 items 4-8, issue 13).

Symbols that look like paths, queries or fragments; payloads that lie (bars outside the asked
window, timestamps that overflow, unknown zones, seeded random mutations — the fixture
server's data-level faults); the circuit breaker against a server that is down; overlapping
FailoverSource quote calls; secrets echoed back by a provider.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections import Counter

import pyarrow as pa
import pytest

from stockbatch._errors import DecodeError, ProviderError, ProviderUnavailable, SymbolNotFound
from stockbatch.sources import (
    AlphaVantageSource,
    CircuitBreaker,
    FailoverSource,
    HTTPJSONSource,
    RetryPolicy,
    YahooChartSource,
)
from stockbatch.sources._base import OUT_OF_WINDOW_KEY, url_segment
from stockbatch.testing import DATA_FAULT_KINDS, FixtureServer
from stockbatch.testing._hostile import TS_1969, TS_9999


def epoch(y: int, m: int, d: int) -> int:
    return int(dt.datetime(y, m, d, tzinfo=dt.timezone.utc).timestamp())


W1, W2 = epoch(2025, 1, 1), epoch(2025, 3, 1)
ONCE = RetryPolicy(attempts=1)
PATHLIKE = [
    "XYZ/../GOOD9",
    "GOOD9#x",
    "GOOD9?a=b",
    "../../etc/passwd",
    "GOOD9/",
    "%2e%2e",
    "a b",
    "",
    " ",
    "GOO\nD9",
    "GOOD9,AAPL",
    ".",
    "..",
    "-X",
]


def run(coro):
    return asyncio.run(coro)


async def collect(src, symbols, **options) -> dict:
    """fetch_many into {symbol: result}; every symbol answered exactly once."""
    seen: Counter = Counter()
    out = {}
    async for sym, result in src.fetch_many(symbols, **options):
        seen[sym] += 1
        out[sym] = result
    assert set(seen.values()) <= {1}, f"a symbol came back twice: {seen}"
    return out


# -- symbols ---------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", PATHLIKE)
def test_yahoo_refuses_symbols_it_cannot_have_naming_the_rule(symbol):
    src = YahooChartSource(base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError) as err:
        src.normalize_symbol(symbol)
    assert repr(symbol) in str(err.value) and "A-Z 0-9" in str(err.value)
    run(src.aclose())


@pytest.mark.parametrize(
    ("given", "norm"),
    [
        ("aapl", "AAPL"),
        (" msft ", "MSFT"),
        ("7203.t", "7203.T"),
        ("^gspc", "^GSPC"),
        ("eurusd=x", "EURUSD=X"),
        ("brk-b", "BRK-B"),
        ("m&m.ns", "M&M.NS"),
    ],
)
def test_yahoo_normalizes_case_and_is_idempotent(given, norm):
    src = YahooChartSource(base_url="http://127.0.0.1:9")
    assert src.normalize_symbol(given) == norm
    assert src.normalize_symbol(norm) == norm
    run(src.aclose())


def test_every_provider_documents_and_applies_its_rule():
    av = AlphaVantageSource(api_key="k", base_url="http://127.0.0.1:9")
    assert av.normalize_symbol("tsco.lon") == "TSCO.LON"
    for bad in ("IBM/../X", "IBM?x", "^GSPC", "A B"):
        with pytest.raises(ValueError, match="A-Z 0-9"):
            av.normalize_symbol(bad)
    http = HTTPJSONSource("http://127.0.0.1:9/{symbol}", fields={"ts": "t"})
    assert http.normalize_symbol(" aapl ") == "aapl"  # a generic API keeps case
    for bad in ("", "a b", ".", "..", "x\x00", "x" * 65):
        with pytest.raises(ValueError, match="printable"):
            http.normalize_symbol(bad)
    fo = FailoverSource([YahooChartSource(base_url="http://127.0.0.1:9"), av])
    assert fo.normalize_symbol("aapl") == "AAPL"
    with pytest.raises(ValueError, match="no source"):
        fo.normalize_symbol("a/b")
    for s in (av, http, fo):
        run(s.aclose())


def test_url_segment_never_leaves_its_segment():
    assert url_segment("XYZ/../GOOD9") == "XYZ%2F..%2FGOOD9"
    assert url_segment("GOOD9?a=b#x") == "GOOD9%3Fa%3Db%23x"
    assert url_segment("..") == "%2E%2E" and url_segment(".") == "%2E"
    assert url_segment("M&M.NS") == "M%26M.NS" and url_segment("^GSPC") == "%5EGSPC"
    assert url_segment("a+b%20") == "a%2Bb%2520"


def test_yahoo_fetch_many_bars_under_normalized_names_and_no_stray_requests():
    with FixtureServer() as srv:

        async def go():
            async with YahooChartSource(base_url=srv.url, retry=ONCE) as src:
                out = await collect(src, ["aapl", "AAPL", "GOOD9", *PATHLIKE[:4]], start=W1, end=W2)
                with pytest.raises(ValueError, match="bad symbol"):
                    await src.fetch_history("XYZ/../GOOD9", start=W1, end=W2)
                return out

        out = run(go())
        stats = srv.stats()["hits"]
    assert set(out) == {"AAPL", "GOOD9", *PATHLIKE[:4]}
    for name in ("AAPL", "GOOD9"):
        assert isinstance(out[name], pa.RecordBatch) and out[name].num_rows > 30
        assert set(out[name].column("symbol").to_pylist()) == {name}
    for bad in PATHLIKE[:4]:
        assert isinstance(out[bad], SymbolNotFound) and out[bad].symbol == bad
        assert "rule" in str(out[bad])
    # one request per real symbol, none for the path-like ones
    assert stats == {"chart:AAPL": 1, "chart:GOOD9": 1}


def test_a_generic_source_sends_a_symbol_as_one_segment_or_one_query_value():
    with FixtureServer() as srv:
        path = HTTPJSONSource(
            srv.url + "/v8/finance/chart/{symbol}?interval=1d&period1={start}&period2={end}",
            fields={
                "ts": "chart.result.0.timestamp",
                "close": "chart.result.0.indicators.quote.0.close",
            },
            retry=ONCE,
            breaker=CircuitBreaker(10_000),
        )
        query = HTTPJSONSource(
            srv.url + "/query?function=TIME_SERIES_DAILY&symbol={symbol}"
            "&apikey=demo&outputsize=full",
            records="Time Series (Daily)",
            ts_unit="iso",
            fields={"ts": "$key", "close": "4. close"},
            retry=ONCE,
            breaker=CircuitBreaker(10_000),
        )

        async def go():
            async with path, query:
                a = await collect(path, ["XYZ/../GOOD9", "GOOD9#x", "GOOD9?a=b"], start=W1, end=W2)
                b = await collect(query, ["GOOD9&symbol=AAPL", "GOOD9#x"], start=W1, end=W2)
                return a, b

        a, b = run(go())
        hits = srv.stats()["hits"]
    # the server saw each symbol whole, as one segment / one value — never GOOD9 or AAPL
    assert hits == {
        "chart:XYZ/../GOOD9": 1,
        "chart:GOOD9#x": 1,
        "chart:GOOD9?a=b": 1,
        "alphavantage:GOOD9&symbol=AAPL": 1,
        "alphavantage:GOOD9#x": 1,
    }
    for sym, res in {**a, **b}.items():
        if isinstance(res, pa.RecordBatch):
            assert set(res.column("symbol").to_pylist()) <= {sym}


# -- payloads that lie -----------------------------------------------------------------------


def test_data_fault_kinds_each_have_an_outcome_here():
    assert set(DATA_FAULT_KINDS) == {
        "out_of_window",
        "ts_overflow",
        "bad_tz",
        "fuzz",
        "echo_secret",
    }


@pytest.mark.parametrize("kind", ["ts_overflow", "bad_tz"])
def test_malformed_payload_is_a_decode_error_for_that_symbol_only(kind):
    with FixtureServer() as srv:
        srv.add_fault(kind, route="chart", symbols=["BAD1", "BAD2"])

        async def go():
            async with YahooChartSource(base_url=srv.url, retry=ONCE) as src:
                return await collect(
                    src, ["BAD1", "GOOD1", "BAD2", "GOOD2", "GOOD3"], start=W1, end=W2
                ), src

        out, src = run(go())
    for s in ("BAD1", "BAD2"):
        assert isinstance(out[s], DecodeError) and out[s].symbol == s, out[s]
    for s in ("GOOD1", "GOOD2", "GOOD3"):
        assert isinstance(out[s], pa.RecordBatch) and out[s].num_rows > 30
    assert src.breaker.state == "closed" and src.breaker.failures == 0


def test_alphavantage_bad_zone_is_a_decode_error():
    with FixtureServer() as srv:
        srv.add_fault("bad_tz", route="alphavantage")

        async def go():
            async with AlphaVantageSource(
                api_key="demo", base_url=srv.url, rate=1000, retry=ONCE
            ) as src:
                with pytest.raises(DecodeError, match="time zone"):
                    await src.fetch_history("IBM", start=W1, end=W2)

        run(go())


def _ts(batch) -> list[int]:
    return batch.column("ts").cast(pa.int64()).to_pylist()


def test_bars_outside_the_window_are_dropped_and_counted():
    with FixtureServer() as srv:
        srv.add_fault("out_of_window", route="chart")

        async def go():
            async with YahooChartSource(base_url=srv.url) as src:
                explicit = await src.fetch_history("AAPL", start=W1, end=W2)
                period = await src.fetch_history("MSFT", period="1mo")
                return explicit, period, src.stats.out_of_window

        explicit, period, counted = run(go())
    for batch in (explicit, period):
        ts = _ts(batch)
        assert TS_1969 * 10**6 not in ts and TS_9999 * 10**6 not in ts
        assert batch.schema.metadata[OUT_OF_WINDOW_KEY] == b"2"
        assert batch.num_rows > 15
    ts = _ts(explicit)
    assert min(ts) >= (W1 - 86400) * 10**6 and max(ts) < W2 * 10**6
    assert counted == 4


def test_clean_answers_carry_no_out_of_window_mark():
    with FixtureServer() as srv:

        async def go():
            async with YahooChartSource(base_url=srv.url) as src:
                return await src.fetch_history("7203.T", start=W1, end=W2), src.stats

        batch, stats = run(go())
    assert OUT_OF_WINDOW_KEY not in (batch.schema.metadata or {})
    assert stats.out_of_window == 0
    # Tokyo's first trading day is keyed at its local midnight, before W1 in UTC: kept
    assert min(_ts(batch)) < W1 * 10**6


def test_generic_source_drops_out_of_window_bars_too():
    with FixtureServer() as srv:
        srv.add_fault("out_of_window", route="chart")
        src = HTTPJSONSource(
            srv.url + "/v8/finance/chart/{symbol}?interval=1d&period1={start}&period2={end}",
            fields={
                "ts": "chart.result.0.timestamp",
                "close": "chart.result.0.indicators.quote.0.close",
            },
        )

        async def go():
            async with src:
                return await src.fetch_history("AAPL", start=W1, end=W2)

        batch = run(go())
    assert src.stats.out_of_window == 2
    assert max(_ts(batch)) < W2 * 10**6 and min(_ts(batch)) >= (W1 - 86400) * 10**6


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzzed_payloads_every_symbol_answered_once_with_bars_or_provider_error(seed):
    """Seeded random mutations of real chart payloads through fetch_many: N symbols in, N
    answers out, each a BARS batch (inside the window) or a ProviderError."""
    symbols = [f"FZ{i}" for i in range(24)]
    with FixtureServer() as srv:
        srv.add_fault("fuzz", route="chart", seed=seed)

        async def go():
            async with YahooChartSource(base_url=srv.url, retry=ONCE) as src:
                return await collect(src, symbols, start=W1, end=W2)

        out = run(go())
    assert set(out) == set(symbols)
    kinds = Counter()
    for sym, res in out.items():
        assert isinstance(res, (pa.RecordBatch, ProviderError)), (sym, res)
        if isinstance(res, pa.RecordBatch):
            kinds["bars"] += 1
            ts = _ts(res)
            assert not ts or (min(ts) >= (W1 - 86400) * 10**6 and max(ts) < W2 * 10**6)
            res.to_pylist()  # every value reads back
        else:
            kinds[type(res).__name__] += 1
            assert res.symbol == sym
    assert kinds["bars"] < len(symbols)  # the fuzzer did break some


@pytest.mark.parametrize("seed", [4, 5])
def test_fuzzed_alphavantage_payloads_every_symbol_answered_once(seed):
    symbols = [f"AV{i}" for i in range(16)]
    with FixtureServer() as srv:
        srv.add_fault("fuzz", route="alphavantage", seed=seed)

        async def go():
            async with AlphaVantageSource(
                api_key="demo", base_url=srv.url, rate=1000, burst=100, retry=ONCE, concurrency=4
            ) as src:
                return await collect(src, symbols, start=W1, end=W2)

        out = run(go())
    assert set(out) == set(symbols)
    for sym, res in out.items():
        assert isinstance(res, (pa.RecordBatch, ProviderError)), (sym, res)
        if isinstance(res, pa.RecordBatch):
            res.to_pylist()
        else:
            assert res.symbol == sym


def test_fuzz_fault_is_reproducible():
    from stockbatch.testing import _hostile
    from stockbatch.testing._payloads import PayloadBuilder

    payload = PayloadBuilder(now=W2).chart(
        "AAPL", {"period1": str(W1), "period2": str(W2), "interval": "1d"}
    )[2]
    a = [_hostile.apply("fuzz", "chart", payload, seed=7, fired=i) for i in range(5)]
    b = [_hostile.apply("fuzz", "chart", payload, seed=7, fired=i) for i in range(5)]
    assert a == b and len(set(a)) > 1
    rng = random.Random(0)
    assert _hostile.mutate({"a": [1, 2]}, rng) != {"a": [1, 2]}


def test_fault_cli_syntax_takes_data_kinds():
    from stockbatch.testing import _fault_arg

    assert _fault_arg("fuzz:route=chart,seed=3,times=2") == {
        "kind": "fuzz",
        "route": "chart",
        "seed": 3,
        "times": 2,
    }
    assert _fault_arg("out_of_window:route=alphavantage")["kind"] == "out_of_window"


# -- circuit breaker -------------------------------------------------------------------------


def _dead_url() -> tuple[str, int]:
    srv = FixtureServer().start()
    port = srv.port
    srv.stop()
    return f"http://127.0.0.1:{port}", port


def test_breaker_with_the_server_down_shows_the_cause_then_really_retries():
    url, port = _dead_url()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=0.4)
    symbols = [f"S{i}" for i in range(10)]

    async def go():
        async with YahooChartSource(
            base_url=url, breaker=breaker, retry=ONCE, concurrency=2
        ) as src:
            down = await collect(src, symbols, period="1mo")
            assert breaker.state == "open"
            await asyncio.sleep(0.45)  # reset timeout: the next call is a real trial
            with FixtureServer(port=port) as srv:
                batch = await src.fetch_history("AAPL", period="1mo")
                hits = srv.hits("chart", "AAPL")
            return down, batch, hits

    down, batch, hits = run(go())
    assert set(down) == set(symbols)
    refused = [e for e in down.values() if "circuit breaker open" in str(e)]
    own = [e for e in down.values() if "circuit breaker open" not in str(e)]
    assert len(own) >= 3 and refused
    for exc in down.values():
        assert isinstance(exc, ProviderUnavailable)
    for exc in refused:  # the underlying cause, not only the breaker's state
        assert "last failure" in str(exc) and "connection failed" in str(exc)
        assert exc.retry_after is not None and exc.retry_after <= 0.4
    assert batch.num_rows > 15 and hits == 1 and breaker.state == "closed"


def test_breaker_ignores_a_symbols_own_404_and_decode_errors():
    with FixtureServer() as srv:
        srv.add_fault("malformed", route="chart", symbols=[f"BAD{i}" for i in range(6)])
        srv.add_fault("ts_overflow", route="chart", symbols=[f"OVF{i}" for i in range(6)])
        breaker = CircuitBreaker(failure_threshold=3, reset_timeout=60)
        bad = (
            [f"BAD{i}" for i in range(6)]
            + [f"OVF{i}" for i in range(6)]
            + [f"UNKNOWN{i}" for i in range(6)]
        )
        good = [f"OK{i}" for i in range(6)]

        async def go():
            async with YahooChartSource(
                base_url=srv.url, breaker=breaker, retry=ONCE, concurrency=2
            ) as src:
                return await collect(src, bad + good, start=W1, end=W2)

        out = run(go())
    for s in good:
        assert isinstance(out[s], pa.RecordBatch), out[s]
    for s in bad:
        assert isinstance(out[s], (DecodeError, SymbolNotFound)), out[s]
    assert breaker.state == "closed" and breaker.times_opened == 0


def test_breaker_counts_5xx_and_429():
    for kind, opts in (("status", {"status": 502}), ("rate_limit", {"retry_after": 0})):
        with FixtureServer() as srv:
            srv.add_fault(kind, route="chart", **opts)
            breaker = CircuitBreaker(failure_threshold=3, reset_timeout=60)

            async def go(url=srv.url, breaker=breaker):
                async with YahooChartSource(
                    base_url=url, breaker=breaker, retry=ONCE, concurrency=1
                ) as src:
                    return await collect(src, [f"X{i}" for i in range(6)], period="1mo")

            out = run(go())
            assert breaker.times_opened == 1, kind
            assert srv.stats()["requests"] == 3  # the other three were refused locally
            assert sum("circuit breaker open" in str(e) for e in out.values()) == 3


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_a_cancelled_trial_call_does_not_shut_the_breaker_for_good():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=30, clock=clock)
    with FixtureServer() as srv:
        srv.add_fault("status", route="chart", status=503, times=2)

        async def go():
            async with YahooChartSource(base_url=srv.url, breaker=breaker, retry=ONCE) as src:
                for s in ("A", "B"):
                    with pytest.raises(ProviderUnavailable):
                        await src.fetch_history(s, period="1mo")
                assert breaker.state == "open"
                clock.t += 31
                srv.add_fault("latency", route="chart", symbols=["SLOW"], delay=2.0)
                trial = asyncio.ensure_future(src.fetch_history("SLOW", period="1mo"))
                await asyncio.sleep(0.2)
                trial.cancel()  # e.g. a job timeout while the trial call was out
                with pytest.raises(asyncio.CancelledError):
                    await trial
                return await src.fetch_history("C", period="1mo")

        batch = run(go())
    assert batch.num_rows > 15 and breaker.state == "closed"


# -- failover quotes -------------------------------------------------------------------------


def test_overlapping_failover_quote_calls_leave_the_sources_alone():
    with FixtureServer() as srv:
        srv.add_fault("latency", route="quote", delay=0.3)

        async def go():
            yahoo = YahooChartSource(base_url=srv.url)
            av = AlphaVantageSource(api_key="demo", base_url=srv.url, rate=1000)
            async with FailoverSource([yahoo, av]) as fo:
                q1 = asyncio.ensure_future(fo.fetch_quotes(["AAPL"]))
                await asyncio.sleep(0.05)
                q2 = asyncio.ensure_future(fo.fetch_quotes(["MSFT"]))
                await asyncio.sleep(0.05)
                during = [s.name for s in fo.sources]
                a, b = await asyncio.gather(q1, q2)
                after = [s.name for s in fo.sources]
                bars = await fo.fetch_history("IBM", start=W1, end=W2)
                return during, after, a, b, bars

        during, after, a, b, bars = run(go())
    assert during == after == ["yahoo", "alphavantage"]
    assert a.column("symbol").to_pylist() == ["AAPL"]
    assert b.column("symbol").to_pylist() == ["MSFT"]
    assert bars.num_rows > 30


# -- secrets echoed back ---------------------------------------------------------------------


def test_a_key_echoed_back_in_any_encoding_is_never_shown(caplog):
    from urllib.parse import quote, quote_plus

    key = "ab+cd/ef=gh&ij#k%lm"
    caplog.set_level(logging.DEBUG)
    with FixtureServer(av_keys=[key]) as srv:
        srv.add_fault("echo_secret", route="alphavantage")

        async def go():
            async with AlphaVantageSource(
                api_key=key, base_url=srv.url, rate=1000, retry=ONCE
            ) as src:
                out = await collect(src, ["IBM"], period="1mo")
                return out["IBM"], repr(src)

        exc, rep = run(go())
    assert isinstance(exc, ProviderError)
    forms = {
        key,
        quote(key, safe=""),
        quote(key, safe="").lower(),
        quote(key),
        quote_plus(key),
        key.replace("/", "\\/"),
    }
    texts = [str(exc), repr(exc), rep, caplog.text]
    for text in texts:
        for form in forms:
            assert form not in text, (form, text)
    assert "***" in str(exc)


def test_yahoo_quotes_normalize_and_list_refused_symbols_as_missing():
    with FixtureServer() as srv:

        async def go():
            async with YahooChartSource(base_url=srv.url) as src:
                return await src.fetch_quotes(["aapl", "AAPL", "XYZ/../GOOD9", "UNKNOWNQ"])

        batch = run(go())
        hits = srv.stats()["hits"]
    assert batch.column("symbol").to_pylist() == ["AAPL"]
    missing = batch.schema.metadata[b"stockbatch.missing"].decode().split(",")
    assert missing == ["UNKNOWNQ", "XYZ/../GOOD9"]
    assert set(hits) == {"quote:AAPL", "quote:UNKNOWNQ"}
