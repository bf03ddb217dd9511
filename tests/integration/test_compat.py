"""stockbatch.compat.StockFetcher against the fixture server, with yfinance 1.7 pointed at the
same server as the oracle: same values, same columns (Dividends, Stock Splits, Adj Close), same
index dtype. These tests use the faster options (TSE suffix rule, strict symbols); the
original's defaults are stated in test_compat_contract.py."""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.request

import pandas as pd
import pytest
from test_compat_contract import HISTORY_DTYPES, PRICE_KEYS

import stockbatch
from stockbatch.compat import (
    COLUMNS,
    DataNotFoundError,
    InvalidSymbolError,
    StockFetcher,
    StockFetcherError,
    legacy_suffix_rule,
)
from stockbatch.testing import FixtureServer
from stockbatch.testing._yfinance import yfinance_at

yf = pytest.importorskip("yfinance")


@pytest.fixture(scope="module")
def server():
    with FixtureServer() as srv, yfinance_at(srv.url):
        yield srv


@pytest.fixture
def fetcher(server):
    with StockFetcher(base_url=server.url, market_suffix=".T", symbols="strict") as f:
        yield f


def hits(server, route: str, symbol: str) -> int:
    return server.stats()["hits"].get(f"{route}:{symbol}", 0)


def yf_history(symbol: str, **kw) -> pd.DataFrame:
    df = yf.Ticker(symbol).history(**kw)
    df.index = df.index.tz_localize(None)  # what the original StockFetcher did
    return df


def assert_same_frame(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    assert list(ours.columns) == list(theirs.columns)
    assert list(ours.columns)[:4] == COLUMNS[:4]
    assert ours.index.tz is None
    assert ours.index.dtype == theirs.index.dtype
    assert ours.index.name == theirs.index.name
    pd.testing.assert_frame_equal(ours, theirs, check_freq=False, rtol=1e-12)


# -- history against yfinance ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "symbol"),
    [("7203", "7203.T"), ("AAPL", "AAPL"), ("6758.T", "6758.T"), ("VOD.L", "VOD.L")],
)
def test_daily_history_equals_yfinance(fetcher, code, symbol):
    ours = fetcher.get_historical_data(code, period="1y")
    theirs = yf_history(symbol, period="1y")
    assert len(ours) > 240
    assert_same_frame(ours, theirs)
    # Tokyo daily bars sit at midnight of the Tokyo date, New York ones at New York midnight
    assert (ours.index == ours.index.normalize()).all()


def test_default_period_is_one_month(fetcher):
    ours = fetcher.get_historical_data("7203")
    assert_same_frame(ours, yf_history("7203.T", period="1mo"))
    assert 15 <= len(ours) <= 25


@pytest.mark.parametrize("interval", ["1m", "5m"])
def test_intraday_history_equals_yfinance(fetcher, interval):
    ours = fetcher.get_historical_data("AAPL", period="5d", interval=interval)
    theirs = yf_history("AAPL", period="5d", interval=interval)
    assert ours.index.name == "Datetime"
    assert_same_frame(ours, theirs)
    # exchange wall time: the New York session opens at 09:30
    assert ours.index.min().time() >= dt.time(9, 30)


def test_weekly_history_equals_yfinance(fetcher):
    ours = fetcher.get_historical_data("7203", period="6mo", interval="1wk")
    assert_same_frame(ours, yf_history("7203.T", period="6mo", interval="1wk"))


def test_range_history_equals_yfinance(fetcher):
    today = dt.date.today()
    start, end = (
        (today - dt.timedelta(days=90)).isoformat(),
        (today - dt.timedelta(days=30)).isoformat(),
    )
    ours = fetcher.get_historical_data_range("7203", start, end)
    theirs = yf_history("7203.T", start=start, end=end)
    assert_same_frame(ours, theirs)
    assert ours.index.min() >= pd.Timestamp(start)
    assert ours.index.max() < pd.Timestamp(end)
    # datetimes work like strings
    again = fetcher.get_historical_data_range(
        "AAPL", dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)
    )
    assert_same_frame(again, yf_history("AAPL", start=start, end=end))


# -- quotes -----------------------------------------------------------------------------------


def raw_quotes(server, symbols):
    url = f"{server.url}/v7/finance/quote?symbols={','.join(symbols)}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return {q["symbol"]: q for q in json.loads(resp.read())["quoteResponse"]["result"]}


def test_current_price_matches_the_quote_endpoint(fetcher, server):
    out = fetcher.get_current_price("7203")
    assert set(out) == PRICE_KEYS
    q = raw_quotes(server, ["7203.T"])["7203.T"]
    assert out["symbol"] == "7203.T"
    assert out["current_price"] == q["regularMarketPrice"]
    assert out["previous_close"] == q["regularMarketPreviousClose"]
    assert out["change"] == pytest.approx(q["regularMarketPrice"] - q["regularMarketPreviousClose"])
    assert out["change_percent"] == pytest.approx(q["regularMarketChangePercent"])
    assert out["volume"] == q["regularMarketVolume"]
    assert out["market_cap"] == pytest.approx(q["marketCap"])
    assert isinstance(out["timestamp"], dt.datetime)


def test_bulk_current_prices_use_the_batched_quote_endpoint(fetcher, server):
    codes = ["7203", "6758", "9984", "AAPL", "MSFT", "UNKNOWNQ", "bad code"]
    before = {s: hits(server, "quote", s) for s in ("7203.T", "MSFT")}
    requests_before = server.stats()["requests"]
    out = fetcher.bulk_get_current_prices(codes, batch_size=3)
    assert list(out) == codes
    assert out["UNKNOWNQ"] is None and out["bad code"] is None
    assert out["7203"]["symbol"] == "7203.T" and out["MSFT"]["symbol"] == "MSFT"
    q = raw_quotes(server, ["9984.T", "AAPL"])
    assert out["9984"]["current_price"] == q["9984.T"]["regularMarketPrice"]
    assert out["AAPL"]["previous_close"] == q["AAPL"]["regularMarketPreviousClose"]
    # 6 well-formed symbols, 3 a request: 2 quote requests (+1 for raw_quotes above)
    assert server.stats()["requests"] - requests_before == 3
    assert hits(server, "quote", "7203.T") == before["7203.T"] + 1
    assert hits(server, "quote", "MSFT") == before["MSFT"] + 1


def test_realtime_data_keeps_only_successes(fetcher):
    out = fetcher.get_realtime_data(["7203", "UNKNOWNR", "AAPL"])
    assert set(out) == {"7203", "AAPL"}
    assert out["AAPL"]["current_price"] > 0
    with pytest.raises(InvalidSymbolError):
        fetcher.get_realtime_data([])
    with pytest.raises(InvalidSymbolError):
        fetcher.get_realtime_data("7203")


# -- bulk history -----------------------------------------------------------------------------


def test_bulk_history_equals_single_calls_and_yfinance(fetcher, server):
    codes = ["7203", "6758", "AAPL", "UNKNOWNB", "no/slash", "7203"]
    before = hits(server, "chart", "6758.T")
    out = fetcher.bulk_get_historical_data(codes, period="1y")
    # one request per distinct symbol, even though 7203 was asked twice
    assert hits(server, "chart", "6758.T") == before + 1
    assert set(out) == set(codes)
    assert out["UNKNOWNB"] is None and out["no/slash"] is None
    for code, symbol in [("7203", "7203.T"), ("6758", "6758.T"), ("AAPL", "AAPL")]:
        assert_same_frame(out[code], yf_history(symbol, period="1y"))
    assert fetcher.bulk_get_historical_data([]) == {}


def test_bulk_history_many_symbols_in_one_go(fetcher, server):
    codes = [str(c) for c in range(1301, 1341)]  # 40 Tokyo codes
    out = fetcher.bulk_get_historical_data(codes, period="3mo")
    assert all(isinstance(out[c], pd.DataFrame) and len(out[c]) > 50 for c in codes)
    assert_same_frame(out["1320"], yf_history("1320.T", period="3mo"))


def test_bulk_history_runs_as_an_engine_job(server):
    """Bulk history is a BatchProcessingEngine job; single calls share the engine's I/O loop
    (one loop for the source's HTTP client), and close() stops it."""
    with StockFetcher(base_url=server.url, market_suffix=".T") as f:
        f.get_historical_data("7203", period="1mo")  # a single call first: makes the engine
        engine = f._sb.engine
        assert engine.health_check()["loop_alive"]
        assert "stockbatch-compat" not in {t.name for t in threading.enumerate()}
        co_before = engine.coalescer.stats()["requests_in"]
        out = f.bulk_get_historical_data(["7203", "6758", "AAPL", "UNKNOWNC"], period="6mo")
        assert out["UNKNOWNC"] is None and all(out[c] is not None for c in ("7203", "6758"))
        result = f._sb.last_result
        assert result.status == "completed"
        assert result.stats["requests"] == 4
        assert result.stats["provider_calls"] == 4
        assert result.failed_symbols == ["UNKNOWNC"]
        assert result.symbols["AAPL"].rows == len(out["AAPL"])
        assert engine.coalescer.stats()["requests_in"] - co_before == 4
        assert engine.health_check()["finished"]["completed"] == 1
        assert_same_frame(out["6758"], yf_history("6758.T", period="6mo"))
    assert not engine.health_check()["loop_alive"]


def test_bulk_history_refuses_bad_period(fetcher):
    with pytest.raises(InvalidSymbolError, match="period"):
        fetcher.bulk_get_historical_data(["7203"], period="7y")


# -- errors -----------------------------------------------------------------------------------


def test_unknown_symbol_is_data_not_found(fetcher):
    with pytest.raises(DataNotFoundError) as info:
        fetcher.get_historical_data("UNKNOWN1")
    assert isinstance(info.value, StockFetcherError)
    assert isinstance(info.value, stockbatch.StockbatchError)
    with pytest.raises(DataNotFoundError):
        fetcher.get_current_price("UNKNOWN2")


@pytest.mark.parametrize("code", ["", "7", None, 7203, "72 03", "../etc", "AAPL?x=1", "a/b"])
def test_malformed_codes_never_reach_the_server(fetcher, server, code):
    before = server.stats()["requests"]
    with pytest.raises(InvalidSymbolError):
        fetcher.get_historical_data(code)
    with pytest.raises(InvalidSymbolError):
        fetcher.get_current_price(code)
    assert server.stats()["requests"] == before


@pytest.mark.parametrize(
    ("period", "interval"), [("7y", "1d"), ("1y", "3h"), ("1mo", "1m"), ("1y", "5m")]
)
def test_bad_period_or_interval(fetcher, period, interval):
    with pytest.raises(InvalidSymbolError):
        fetcher.get_historical_data("7203", period=period, interval=interval)


def test_undecodable_payload_is_a_stock_fetcher_error(server):
    server.add_fault("malformed", route="chart", symbols=["8306.T"])
    try:
        with StockFetcher(base_url=server.url) as f, pytest.raises(StockFetcherError) as info:
            f.get_historical_data("8306")
        assert not isinstance(info.value, DataNotFoundError)
        assert isinstance(info.value.__cause__, stockbatch.DecodeError)
    finally:
        server.clear_faults()


# -- the .T rule ------------------------------------------------------------------------------


def test_suffix_rule_default_and_configurable(server):
    with StockFetcher(base_url=server.url) as f:  # the original's rule
        assert [f._format_symbol(c) for c in ("7203", "aapl", "AAPL", "6758.T", "7203")] == [
            "7203.T",
            "aapl.T",
            "AAPL.T",
            "6758.T",
            "7203.T",
        ]
        assert f._format_symbol("7203", "O") == "7203.O"
    with StockFetcher(base_url=server.url, market_suffix=".T") as f:  # the TSE rule
        assert [f._format_symbol(c) for c in ("7203", "130A", "AAPL", "6758.T", "^N225")] == [
            "7203.T",
            "130A.T",
            "AAPL",
            "6758.T",
            "^N225",
        ]
        assert f.get_current_price("130A")["symbol"] == "130A.T"
    with StockFetcher(base_url=server.url, market_suffix=".OS") as f:
        assert f._format_symbol("7203") == "7203.OS"
    with StockFetcher(base_url=server.url, market_suffix=None) as f:
        assert f._format_symbol("7203") == "7203"
        assert f.get_current_price("7203")["symbol"] == "7203"  # a US-style symbol now
    with StockFetcher(base_url=server.url, suffix_rule=legacy_suffix_rule()) as f:
        assert f._format_symbol("AAPL") == "AAPL.T"  # the original's rule
        assert f.get_current_price("AAPL")["symbol"] == "AAPL.T"
    with StockFetcher(base_url=server.url, suffix_rule=lambda c: c + ".L") as f:
        frame = f.get_historical_data("VOD", period="1mo")
        assert_same_frame(frame, yf_history("VOD.L", period="1mo"))


# -- caching ----------------------------------------------------------------------------------


def test_history_is_cached_and_copies_are_handed_out(fetcher, server):
    first = fetcher.get_historical_data("4502", period="3mo")
    n = hits(server, "chart", "4502.T")
    first.iloc[0, 0] = -1.0  # the caller's copy only
    second = fetcher.get_historical_data("4502", period="3mo")
    assert hits(server, "chart", "4502.T") == n
    assert second.iloc[0, 0] != -1.0
    fetcher.clear_all_caches()
    fetcher.get_historical_data("4502", period="3mo")
    assert hits(server, "chart", "4502.T") == n + 1


def test_values_are_float64_and_int64(fetcher):
    frame = fetcher.get_historical_data("7203", period="1y")
    assert frame.dtypes.to_dict() == HISTORY_DTYPES
    assert (frame["High"] >= frame["Low"]).all()
