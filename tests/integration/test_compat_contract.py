"""The original day_trade StockFetcher's contract, method by method, as behaviour tests of
stockbatch.compat.StockFetcher against the fixture server — in both modes:

* ``stockbatch`` (the default): everything through stockbatch's Yahoo source;
* ``yfinance``: single-symbol methods call ``yfinance.Ticker(symbol)`` (yfinance pointed at the
  same fixture server), bulk methods run as stockbatch engine jobs.

Both modes must give the same answers. Where a test patches ``yfinance.Ticker`` it does what
suites written for the original do (the Mock stands in for yfinance, never for our code).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from unittest.mock import Mock, patch

import numpy as np
import pandas as pd
import pytest

import stockbatch
from stockbatch.compat import (
    DataCache,
    DataNotFoundError,
    InvalidSymbolError,
    NetworkError,
    StockFetcher,
    StockFetcherError,
    cache_with_ttl,
    history_columns,
)
from stockbatch.compat import stock_fetcher as mirror
from stockbatch.testing import FixtureServer
from stockbatch.testing._yfinance import yfinance_at

yf = pytest.importorskip("yfinance")

MODES = ["stockbatch", "yfinance"]
PRICE_KEYS = {
    "symbol",
    "current_price",
    "previous_close",
    "change",
    "change_percent",
    "volume",
    "market_cap",
    "timestamp",
}
#: The dtypes of a history frame (the original's, from yfinance).
HISTORY_DTYPES = {
    "Open": np.float64,
    "High": np.float64,
    "Low": np.float64,
    "Close": np.float64,
    "Volume": np.int64,
    "Dividends": np.float64,
    "Stock Splits": np.float64,
}
COMPANY_KEYS = {
    "symbol",
    "name",
    "sector",
    "industry",
    "market_cap",
    "employees",
    "description",
    "website",
    "headquarters",
    "country",
    "currency",
    "exchange",
}


@pytest.fixture(scope="module")
def server():
    with FixtureServer() as srv, yfinance_at(srv.url):
        yield srv


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


@pytest.fixture
def fetcher(server, mode):
    with StockFetcher(base_url=server.url, mode=mode) as f:
        yield f


@pytest.fixture
def pair(server):
    """One fetcher per mode, for answers that must be equal."""
    with (
        StockFetcher(base_url=server.url) as a,
        StockFetcher(base_url=server.url, mode="yfinance") as b,
    ):
        yield a, b


def requests(server) -> int:
    return server.stats()["requests"]


# -- construction ------------------------------------------------------------------------------


def _settings(f: StockFetcher) -> tuple:
    """The original constructor's positional parameters, in its order."""
    return (f.cache_size, f.price_cache_ttl, f.historical_cache_ttl, f.retry_count, f.retry_delay)


def test_constructor_defaults_are_the_originals():
    with StockFetcher() as f:
        assert _settings(f) == (128, 30, 300, 3, 1.0)
        assert f.company_cache_ttl == 3600
        assert f.mode == "stockbatch"
    with StockFetcher(2, 5, 10, 2, 0.1) as f:  # positional, as the original took them
        assert _settings(f) == (2, 5, 10, 2, 0.1)


@pytest.mark.parametrize("kw", [{"mode": "fast"}, {"symbols": "loose"}])
def test_bad_options_are_value_errors(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        StockFetcher(**kw)


# -- symbols -----------------------------------------------------------------------------------


def test_format_symbol_is_the_originals(fetcher):
    assert fetcher._format_symbol("7203") == "7203.T"
    assert fetcher._format_symbol("aapl") == "aapl.T"  # every code without a dot
    assert fetcher._format_symbol("AAPL") == "AAPL.T"
    assert fetcher._format_symbol("7203", "O") == "7203.O"
    assert fetcher._format_symbol("6758.T") == "6758.T"
    assert fetcher._format_symbol("6758.T", "O") == "6758.T"


def test_faster_suffix_rules_are_options(server):
    with StockFetcher(base_url=server.url, market_suffix=".T") as f:
        assert [f._format_symbol(c) for c in ("7203", "130A", "AAPL")] == [
            "7203.T",
            "130A.T",
            "AAPL",
        ]
    with StockFetcher(base_url=server.url, market_suffix=None) as f:
        assert f._format_symbol("7203") == "7203"
    with pytest.raises(TypeError):
        StockFetcher(market_suffix=".T", suffix_rule=str.upper)


@pytest.mark.parametrize(
    "code", ["EMPTY_TEST", "TEST_RANGE", "PERF_TEST", "TZ_TEST", "AAPL", "7203", "72"]
)
def test_any_string_of_two_or_more_characters_is_a_symbol(fetcher, code):
    fetcher._validate_symbol(code)


@pytest.mark.parametrize("code", ["", None, "1", 7203, ["7203"]])
def test_too_short_or_not_a_string_is_invalid(fetcher, server, code):
    before = requests(server)
    with pytest.raises(InvalidSymbolError):
        fetcher._validate_symbol(code)
    for method in (
        fetcher.get_current_price,
        fetcher.get_historical_data,
        fetcher.get_company_info,
    ):
        with pytest.raises(InvalidSymbolError):
            method(code)
    assert requests(server) == before


def test_underscore_symbols_are_fetched(fetcher):
    frame = fetcher.get_historical_data("EMPTY_TEST", period="5d")
    assert not frame.empty
    assert fetcher.get_current_price("TZ_TEST")["symbol"] == "TZ_TEST.T"


def test_a_symbol_the_provider_cannot_have_is_data_not_found_without_a_request(server):
    with StockFetcher(base_url=server.url) as f:
        before = requests(server)
        for code in ("72 03", "../etc", "a/b"):
            with pytest.raises(DataNotFoundError):
                f.get_historical_data(code)
            with pytest.raises(DataNotFoundError):
                f.get_current_price(code)
        assert requests(server) == before


def test_strict_symbols_are_an_option(server):
    with StockFetcher(base_url=server.url, symbols="strict") as f:
        with pytest.raises(InvalidSymbolError):
            f._validate_symbol("EMPTY_TEST")
        with pytest.raises(InvalidSymbolError):
            f.get_current_price("72 03")


# -- get_current_price -------------------------------------------------------------------------


def test_current_price_shape_and_values_agree_in_both_modes(pair):
    a, b = (f.get_current_price("7203") for f in pair)
    for out in (a, b):
        assert set(out) == PRICE_KEYS
        assert out["symbol"] == "7203.T"
        assert isinstance(out["timestamp"], dt.datetime)
        assert out["change"] == pytest.approx(out["current_price"] - out["previous_close"])
        assert out["change_percent"] == pytest.approx(out["change"] / out["previous_close"] * 100)
    for key in PRICE_KEYS - {"timestamp"}:
        assert a[key] == b[key], key


def test_current_price_unknown_symbol(fetcher):
    with pytest.raises(DataNotFoundError):
        fetcher.get_current_price("UNKNOWN7")


def test_current_price_is_cached_for_price_cache_ttl(server, mode):
    with StockFetcher(base_url=server.url, mode=mode) as f:
        first = f.get_current_price("9984")
        n = requests(server)
        first["current_price"] = -1  # the caller's copy only
        assert f.get_current_price("9984")["current_price"] > 0
        assert requests(server) == n
        assert f.get_current_price.cache_size() >= 1
    with StockFetcher(base_url=server.url, mode=mode, price_cache_ttl=0) as f:
        f.get_current_price("9984")
        n = requests(server)
        f._get_ticker.cache_clear()  # yfinance's Ticker keeps its own .info
        f.get_current_price("9984")  # a TTL of 0: never served from the cache
        assert requests(server) > n


# -- get_historical_data -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "interval"),
    [("1mo", "1d"), ("1y", "1d"), ("5d", "5m"), ("2y", "1wk"), ("max", "1mo")],
)
def test_history_frames_agree_in_both_modes(pair, period, interval):
    a, b = (f.get_historical_data("7203", period=period, interval=interval) for f in pair)
    assert list(a.columns) == history_columns(True)
    assert a.index.tz is None
    assert a.index.name == ("Datetime" if interval.endswith("m") and interval != "1mo" else "Date")
    assert a.dtypes.to_dict() == HISTORY_DTYPES
    pd.testing.assert_frame_equal(a, b, check_freq=False, rtol=1e-12)


@pytest.mark.parametrize(
    ("code", "dividends", "splits"),
    [("7203", True, False), ("6758", False, False), ("1302", True, True)],
)
def test_dividends_and_splits_are_on_their_bars(pair, code, dividends, splits):
    a, b = (f.get_historical_data(code, period="max") for f in pair)
    pd.testing.assert_frame_equal(a, b, check_freq=False, rtol=1e-12)
    assert bool((a["Dividends"] > 0).sum() > 10) == dividends
    assert list(a.loc[a["Stock Splits"] != 0, "Stock Splits"]) == ([4.0] if splits else [])
    bulk = pair[0].bulk_get_historical_data([code], period="max")[code]
    pd.testing.assert_frame_equal(bulk, a, check_freq=False, rtol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_not_adjusted_frames_have_adj_close(server, mode):
    with StockFetcher(base_url=server.url, mode=mode, auto_adjust=False) as f:
        frame = f.get_historical_data("7203", period="1y")
        assert list(frame.columns) == history_columns(False)
        assert "Adj Close" in frame and (frame["Adj Close"] <= frame["Close"] + 1e-9).all()
        bulk = f.bulk_get_historical_data(["7203"], period="1y")["7203"]
        pd.testing.assert_frame_equal(bulk, frame, check_freq=False, rtol=1e-12)


def test_history_default_period_is_one_month(fetcher):
    frame = fetcher.get_historical_data("7203")
    assert 15 <= len(frame) <= 25


def test_history_unknown_symbol(fetcher):
    with pytest.raises(DataNotFoundError):
        fetcher.get_historical_data("UNKNOWN8")


@pytest.mark.parametrize(
    ("period", "interval"),
    [("7y", "1d"), ("1y", "3h"), ("1mo", "5m"), ("invalid", "1d"), ("1mo", "invalid")],
)
def test_history_refuses_what_the_original_refused(fetcher, server, period, interval):
    before = requests(server)
    with pytest.raises(InvalidSymbolError):
        fetcher.get_historical_data("7203", period=period, interval=interval)
    with pytest.raises(InvalidSymbolError):
        fetcher._validate_period_interval(period, interval)
    assert requests(server) == before
    fetcher._validate_period_interval("1d", "5m")


def test_history_is_cached_and_clear_all_caches_forgets(server, mode):
    with StockFetcher(base_url=server.url, mode=mode) as f:
        f.get_historical_data("4503", period="3mo")
        n = requests(server)
        f.get_historical_data("4503", period="3mo")
        assert requests(server) == n
        f.clear_all_caches()
        f.get_historical_data("4503", period="3mo")
        assert requests(server) > n


# -- get_historical_data_range -----------------------------------------------------------------


def test_range_agrees_in_both_modes(pair):
    today = dt.date.today()
    start = (today - dt.timedelta(days=120)).isoformat()
    end = (today - dt.timedelta(days=30)).isoformat()
    a, b = (f.get_historical_data_range("7203", start, end) for f in pair)
    pd.testing.assert_frame_equal(a, b, check_freq=False, rtol=1e-12)
    assert a.index.min() >= pd.Timestamp(start) and a.index.max() < pd.Timestamp(end)
    c = pair[0].get_historical_data_range(
        "7203", dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)
    )
    pd.testing.assert_frame_equal(a, c, check_freq=False)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-03-01", "2026-02-01"),
        ("2026-03-01", "2026-03-01"),
        ("2026/03/01", "2026-04-01"),
        ("yesterday", "2026-04-01"),
        ("2026-03-01", "tomorrow"),
    ],
)
def test_range_refuses_bad_dates(fetcher, start, end):
    with pytest.raises(InvalidSymbolError):
        fetcher.get_historical_data_range("7203", start, end)
    with pytest.raises(InvalidSymbolError):
        fetcher._validate_date_range(start, end)


# -- get_company_info --------------------------------------------------------------------------


def test_company_info_fields_agree_in_both_modes(pair, server):
    a, b = (f.get_company_info("7203") for f in pair)
    assert set(a) == COMPANY_KEYS
    assert a == b
    assert a["symbol"] == "7203.T" and a["country"] == "Japan" and a["currency"] == "JPY"
    assert a["name"] and a["sector"] and a["industry"] and a["employees"] > 0
    assert a["market_cap"] == pytest.approx(pair[0].get_current_price("7203")["market_cap"])


def test_company_info_unknown_and_cached(fetcher, server):
    with pytest.raises(DataNotFoundError):
        fetcher.get_company_info("UNKNOWN9")
    fetcher.get_company_info("6758")
    n = requests(server)
    assert fetcher.get_company_info("6758")["symbol"] == "6758.T"
    assert requests(server) == n  # one hour, like the original


# -- get_realtime_data and the bulk methods ----------------------------------------------------


def test_realtime_data_keeps_only_successes(fetcher):
    out = fetcher.get_realtime_data(["7203", "UNKNOWNR", "6758"])
    assert set(out) == {"7203", "6758"}
    assert set(out["7203"]) == PRICE_KEYS
    for bad in ([], "7203", None):
        with pytest.raises(InvalidSymbolError):
            fetcher.get_realtime_data(bad)


def test_bulk_current_prices_keep_every_code(fetcher):
    out = fetcher.bulk_get_current_prices(["7203", "UNKNOWNS", "6758", "sony"])
    assert list(out) == ["7203", "UNKNOWNS", "6758", "sony"]
    assert out["UNKNOWNS"] is None and out["6758"]["symbol"] == "6758.T"
    assert out["sony"]["symbol"] == "sony.T"  # as the caller spelled it, like the original
    assert fetcher.bulk_get_current_prices([]) == {}


def test_bulk_history_equals_single_calls(fetcher):
    codes = ["7203", "6758", "UNKNOWNT", "EMPTY_TEST", "sony"]  # sony -> sony.T (SONY.T)
    out = fetcher.bulk_get_historical_data(codes, period="1y")
    assert list(out) == codes and out["UNKNOWNT"] is None
    for code in ("7203", "6758", "EMPTY_TEST", "sony"):
        pd.testing.assert_frame_equal(
            out[code], fetcher.get_historical_data(code, "1y"), check_freq=False, rtol=1e-12
        )
    assert fetcher.bulk_get_historical_data([]) == {}


def test_bulk_frames_of_a_source_you_pass_have_its_actions(server):
    from stockbatch.sources import YahooChartSource

    source = YahooChartSource(base_url=server.url)
    with StockFetcher(source=source) as f:
        bulk = f.bulk_get_historical_data(["7203"], period="2y")["7203"]
        assert (bulk["Dividends"] > 0).sum() >= 4
        pd.testing.assert_frame_equal(
            bulk, f.get_historical_data("7203", "2y"), check_freq=False, rtol=1e-12
        )
    assert "fetch_history" not in vars(source)  # close() takes the events tap off again


def test_bulk_methods_are_engine_jobs_in_yfinance_mode(server):
    with (
        StockFetcher(base_url=server.url, mode="yfinance") as f,
        patch("yfinance.Ticker") as ticker,
    ):
        frames = f.bulk_get_historical_data(["7203", "6758"], period="1mo")
        prices = f.bulk_get_current_prices(["7203", "6758"])
        assert ticker.call_count == 0
        assert f._sb.last_result.status == "completed"
        assert all(frames[c] is not None and prices[c] is not None for c in ("7203", "6758"))


# -- overrides ---------------------------------------------------------------------------------


class CountingPrices(StockFetcher):
    """A user's subclass with its own get_current_price."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def get_current_price(self, code):
        with self._lock:
            self.calls.append(code)
        return {"symbol": code, "current_price": 1.0}


class OwnHistory(StockFetcher):
    def get_historical_data(self, code, period="1mo", interval="1d"):
        return pd.DataFrame({"Close": [float(len(code))]})


def test_subclass_price_method_is_used_by_realtime_and_bulk(server, mode):
    with CountingPrices(base_url=server.url, mode=mode) as f:
        before = requests(server)
        out = f.get_realtime_data(["7203", "6758", "9984"])
        assert set(out) == {"7203", "6758", "9984"} and out["7203"]["current_price"] == 1.0
        bulk = f.bulk_get_current_prices(["7203", "AAPL"])
        assert bulk["AAPL"] == {"symbol": "AAPL", "current_price": 1.0}
        assert sorted(f.calls) == ["6758", "7203", "7203", "9984", "AAPL"]
        assert requests(server) == before


def test_subclass_history_method_is_used_by_bulk_history(server):
    with OwnHistory(base_url=server.url) as f:
        before = requests(server)
        out = f.bulk_get_historical_data(["7203", "AAPL.T"], period="1y")
        assert out["AAPL.T"]["Close"].iloc[0] == 6.0
        assert requests(server) == before


def test_patched_price_method_is_used_and_runs_concurrently(server, mode):
    together = threading.Barrier(3, timeout=5)  # passes only if the 3 calls overlap

    def fake(code):
        together.wait()
        return {"symbol": f"{code}.T", "current_price": float(code)}

    with (
        StockFetcher(base_url=server.url, mode=mode) as f,
        patch.object(StockFetcher, "get_current_price", side_effect=fake) as mock,
    ):
        out = f.get_realtime_data(["7203", "6758", "9984"])
        assert {c: v["current_price"] for c, v in out.items()} == {
            "7203": 7203.0,
            "6758": 6758.0,
            "9984": 9984.0,
        }
        assert mock.call_count == 3
    with (
        StockFetcher(base_url=server.url, mode=mode) as f,
        patch.object(f, "get_current_price", return_value=None) as mock,
    ):
        assert f.get_realtime_data(["7203"]) == {}  # instance patch, too
        assert mock.call_count == 1


def test_unpatched_realtime_uses_one_batched_quote_call(server):
    with StockFetcher(base_url=server.url) as f:
        before = requests(server)
        out = f.get_realtime_data(["7203", "6758", "9984", "8306", "4502"])
        assert len(out) == 5
        assert requests(server) - before == 1


# -- retries and errors ------------------------------------------------------------------------


def test_retries_follow_retry_count_and_linear_delay():
    with FixtureServer() as srv:
        srv.add_fault("status", status=503, route="chart", symbols=["7203.T"], times=2)
        with StockFetcher(base_url=srv.url, retry_count=3, retry_delay=0.05) as f:
            started = time.perf_counter()
            frame = f.get_historical_data("7203", period="1mo")
            elapsed = time.perf_counter() - started
        assert not frame.empty
        assert srv.hits("chart", "7203.T") == 3
        assert elapsed >= 0.05 + 0.10  # retry_delay * 1, then * 2
        srv.clear_faults()
        srv.add_fault("status", status=503, route="quote")
        with StockFetcher(base_url=srv.url, retry_count=2, retry_delay=0.01) as f:
            before = srv.hits("quote", "6758.T")
            with pytest.raises(NetworkError) as info:
                f.get_current_price("6758")
        assert srv.hits("quote", "6758.T") - before == 2
        assert isinstance(info.value, StockFetcherError)
        assert isinstance(info.value, stockbatch.StockbatchError)
        assert info.value.error_code == "NETWORK_ERROR"


def test_company_info_retries_too():
    with (
        FixtureServer() as srv,
        StockFetcher(base_url=srv.url, retry_count=2, retry_delay=0.01) as f,
    ):
        srv.add_fault("status", status=502, route="summary", times=1)
        assert f.get_company_info("7203")["symbol"] == "7203.T"
        assert srv.hits("summary", "7203.T") == 2
        srv.add_fault("status", status=503, route="summary")
        with pytest.raises(NetworkError):
            f.get_company_info("6758")


def test_yfinance_mode_retries_like_the_original(server):
    calls = []
    real = yf.Ticker

    def flaky(symbol):
        calls.append(symbol)
        if len(calls) < 3:
            raise ConnectionError("Connection reset by peer")
        return real(symbol)

    with (
        StockFetcher(base_url=server.url, mode="yfinance", retry_count=3, retry_delay=0.01) as f,
        patch("yfinance.Ticker", side_effect=flaky),
    ):
        assert f.get_current_price("8058")["symbol"] == "8058.T"
        assert len(calls) == 3
    calls.clear()
    with (
        StockFetcher(base_url=server.url, mode="yfinance", retry_count=2, retry_delay=0.01) as f,
        patch("yfinance.Ticker", side_effect=ConnectionError("Connection timeout")) as m,
    ):
        with pytest.raises(NetworkError):
            f.get_current_price("8058")
        assert m.call_count == 2
    with (
        StockFetcher(base_url=server.url, mode="yfinance", retry_count=3, retry_delay=0.01) as f,
        patch("yfinance.Ticker", side_effect=Exception("API Error")) as m,
    ):
        with pytest.raises(StockFetcherError) as info:
            f.get_current_price("8058")
        assert type(info.value) is StockFetcherError
        assert m.call_count == 1  # not retryable: no second call


def test_undecodable_payload_is_not_retried():
    with FixtureServer() as srv, StockFetcher(base_url=srv.url, retry_delay=0.01) as f:
        srv.add_fault("malformed", route="chart", symbols=["8306.T"])
        with pytest.raises(StockFetcherError) as info:
            f.get_historical_data("8306")
        assert not isinstance(info.value, NetworkError | DataNotFoundError)
        assert srv.hits("chart", "8306.T") == 1


@pytest.mark.parametrize(
    ("message", "retryable"),
    [
        ("Connection timeout", True),
        ("Network error", True),
        ("500 Internal Server Error", True),
        ("503 Service Unavailable", True),
        ("Invalid symbol", False),
        ("Permission denied", False),
    ],
)
def test_is_retryable_error(fetcher, message, retryable):
    assert fetcher._is_retryable_error(Exception(message)) is retryable


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("connection refused", NetworkError),
        ("read timeout", NetworkError),
        ("symbol not found", InvalidSymbolError),
        ("no data for range", DataNotFoundError),
        ("API Error", StockFetcherError),
    ],
)
def test_handle_error_maps_like_the_original(fetcher, message, kind):
    error = RuntimeError(message)
    with pytest.raises(kind) as info:
        fetcher._handle_error(error)
    assert type(info.value) is kind and info.value.__cause__ is error
    own = DataNotFoundError("kept")
    with pytest.raises(DataNotFoundError) as info:
        fetcher._handle_error(own)
    assert info.value is own


def test_exception_tree():
    assert issubclass(NetworkError, StockFetcherError)
    assert issubclass(InvalidSymbolError, StockFetcherError)
    assert issubclass(InvalidSymbolError, ValueError)
    assert issubclass(DataNotFoundError, StockFetcherError)
    assert issubclass(StockFetcherError, stockbatch.StockbatchError)
    err = StockFetcherError(message="m", error_code="E", details={"k": 1})
    assert (str(err), err.error_code, err.details) == ("m", "E", {"k": 1})


# -- yfinance mode: the original's calls, as suites that patch yfinance.Ticker see them --------


@pytest.fixture
def yf_fetcher(server):
    with StockFetcher(2, 5, 10, 2, 0.01, base_url=server.url, mode="yfinance") as f:
        yield f


def ticker_mock(**attrs):
    ticker = Mock()
    for name, value in attrs.items():
        setattr(ticker, name, value)
    return ticker


def test_yfinance_mode_calls_ticker_as_the_original(yf_fetcher):
    index = pd.date_range("2024-01-01", periods=3, freq="D", tz="Asia/Tokyo")
    frame = pd.DataFrame({"Open": [1.0, 2, 3], "Close": [1.0, 2, 3]}, index=index)
    ticker = ticker_mock(
        info={
            "currentPrice": 2500.0,
            "previousClose": 2480.0,
            "volume": 1_000_000,
            "longName": "Toyota",
            "sector": "Auto",
            "marketCap": 35,
        },
        history=Mock(return_value=frame),
    )
    with patch("yfinance.Ticker", return_value=ticker) as cls:
        price = yf_fetcher.get_current_price("7203")
        assert price["current_price"] == 2500.0 and price["change"] == 20.0
        assert price["change_percent"] == pytest.approx(20 / 2480 * 100)
        cls.assert_called_once_with("7203.T")
        out = yf_fetcher.get_historical_data("7203", period="5d", interval="1d")
        ticker.history.assert_called_once_with(period="5d", interval="1d")
        assert list(out.columns) == ["Open", "Close"] and out.index.tz is None  # as given
        ticker.history.reset_mock()
        yf_fetcher.get_historical_data_range("7203", "2024-01-01", "2024-01-05")
        ticker.history.assert_called_once_with(
            start=dt.datetime(2024, 1, 1), end=dt.datetime(2024, 1, 5), interval="1d"
        )
        info = yf_fetcher.get_company_info("7203")
        assert (info["name"], info["sector"], info["market_cap"]) == ("Toyota", "Auto", 35)
        assert cls.call_count == 1  # _get_ticker keeps the Ticker (lru_cache)


def test_yfinance_mode_empty_answers(yf_fetcher):
    with patch(
        "yfinance.Ticker",
        return_value=ticker_mock(info={}, history=Mock(return_value=pd.DataFrame())),
    ):
        with pytest.raises(DataNotFoundError):
            yf_fetcher.get_current_price("9999")
        with pytest.raises(DataNotFoundError):
            yf_fetcher.get_historical_data("9999")
        with pytest.raises(DataNotFoundError):
            yf_fetcher.get_company_info("9999")


def test_mirror_module_is_yfinance_mode_with_a_patchable_yf(server):
    assert mirror.yf is yf
    with (
        mirror.StockFetcher(base_url=server.url, retry_delay=0.01) as f,
        patch("stockbatch.compat.stock_fetcher.yf.Ticker", side_effect=Exception("API Error")),
    ):
        assert f.mode == "yfinance"
        with pytest.raises(mirror.StockFetcherError):
            f.get_current_price("EXCEPTION_TEST")
    assert {
        "DataCache",
        "cache_with_ttl",
        "NetworkError",
        "InvalidSymbolError",
        "DataNotFoundError",
    } <= set(mirror.__all__)


def test_realtime_in_yfinance_mode_goes_through_get_current_price(yf_fetcher):
    ticker = ticker_mock(
        info={
            "currentPrice": 10.0,
            "previousClose": 8.0,
            "volume": 1,
            "marketCap": 2,
            "longName": "x",
        }
    )
    with patch("yfinance.Ticker", return_value=ticker) as cls:
        out = yf_fetcher.get_realtime_data(["7203", "6758"])
        assert {c: v["change"] for c, v in out.items()} == {"7203": 2.0, "6758": 2.0}
        assert sorted(c.args[0] for c in cls.call_args_list) == ["6758.T", "7203.T"]


# -- the caches' API ---------------------------------------------------------------------------


def test_method_caches_have_clear_cache_and_cache_size(server):
    with StockFetcher(base_url=server.url) as f:
        f.get_current_price("7203")
        assert f.get_current_price.cache_size() >= 1
        f.get_current_price.clear_cache()
        assert len(f._caches["price"]) == 0
        f.clear_all_caches()  # also the Ticker cache
        assert f._get_ticker.cache_info().currsize == 0


def test_data_cache_and_cache_with_ttl():
    cache = DataCache(ttl_seconds=0.05)
    cache.set("k", "v")
    assert cache.get("k") == "v" and cache.size() == 1
    cache.clear()
    assert cache.get("k") is None and cache.size() == 0
    calls = []

    @cache_with_ttl(60)
    def double(x):
        calls.append(x)
        return x * 2

    assert double(5) == double(5) == 10 and calls == [5]
    assert double.cache_size() == 1
    double.clear_cache()
    assert double(5) == 10 and calls == [5, 5]
