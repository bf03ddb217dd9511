"""accelerate(): a user's own yfinance-based fetcher class gets its bulk methods run through
stockbatch, everything else stays the user's."""

from __future__ import annotations

import pandas as pd
import pytest
from test_compat import assert_same_frame

from stockbatch.compat import BULK_METHODS, accelerate
from stockbatch.testing import FixtureServer
from stockbatch.testing._yfinance import yfinance_at

yf = pytest.importorskip("yfinance")


class UserFetcher:
    """What a day_trade user has: yfinance per symbol, a loop for the bulk methods."""

    def __init__(self, label: str = "mine"):
        self.label = label
        self.single_calls = 0

    def _format_symbol(self, code: str, market: str = "T") -> str:
        return code if "." in code else f"{code}.{market}"  # the original's rule: AAPL -> AAPL.T

    def get_historical_data(self, code, period="1mo", interval="1d"):
        self.single_calls += 1
        df = yf.Ticker(self._format_symbol(code)).history(period=period, interval=interval)
        if df.empty:
            return None
        df.index = df.index.tz_localize(None)
        return df

    def get_current_price(self, code):
        self.single_calls += 1
        symbol = self._format_symbol(code)
        hist = yf.Ticker(symbol).history(period="5d", auto_adjust=False)
        if hist.empty:
            return None
        return {"symbol": symbol, "current_price": float(hist["Close"].iloc[-1])}

    def get_company_info(self, code):
        return {"symbol": self._format_symbol(code), "owner": self.label}

    def bulk_get_historical_data(self, codes, period="1y", interval="1d", batch_size=50, delay=0.1):
        out = {}
        for code in codes:
            try:
                out[code] = self.get_historical_data(code, period, interval)
            except Exception:  # noqa: BLE001 - the user's code swallowed errors per code
                out[code] = None
        return out

    def bulk_get_current_prices(self, codes, batch_size=100, delay=0.05):
        return {code: self.get_current_price(code) for code in codes}

    def get_realtime_data(self, codes):
        return {c: v for c, v in self.bulk_get_current_prices(codes).items() if v}


class Bare:
    """A fetcher with no ``_format_symbol`` of its own."""

    def bulk_get_historical_data(self, codes, period="1y", interval="1d"):
        raise AssertionError("replaced by accelerate()")


class Slotted:
    __slots__ = ("x",)


@pytest.fixture(scope="module")
def server():
    with FixtureServer() as srv, yfinance_at(srv.url):
        yield srv


def hits(server, route, symbol):
    return server.stats()["hits"].get(f"{route}:{symbol}", 0)


def test_accelerated_class_returns_the_same_frames_without_the_loop(server):
    Fast = accelerate(UserFetcher, base_url=server.url)
    assert Fast is not UserFetcher and issubclass(Fast, UserFetcher)
    assert Fast.__name__ == "UserFetcher"
    codes = ["7203", "6758", "AAPL", "UNKNOWNA"]
    slow, fast = UserFetcher(), Fast("fast")
    try:
        expected = slow.bulk_get_historical_data(codes, period="6mo")
        assert slow.single_calls == 4  # the original class is untouched
        before = hits(server, "chart", "6758.T")
        got = fast.bulk_get_historical_data(codes, period="6mo")
        assert fast.single_calls == 0  # no per-code loop through the user's methods
        assert hits(server, "chart", "6758.T") == before + 1  # one request per symbol
        assert set(got) == set(codes)
        assert got["UNKNOWNA"] is None and expected["UNKNOWNA"] is None
        for code in ("7203", "6758", "AAPL"):
            assert_same_frame(got[code], expected[code])
        # the host's own symbol rule was used: AAPL -> AAPL.T (a Tokyo symbol on the server)
        assert hits(server, "chart", "AAPL.T") >= 2
        # everything else stays the user's
        assert fast.get_company_info("7203") == {"symbol": "7203.T", "owner": "fast"}
        single = fast.get_historical_data("7203", period="6mo")
        assert fast.single_calls == 1
        pd.testing.assert_frame_equal(single, got["7203"], check_freq=False)
    finally:
        fast.stockbatch_close()


def test_accelerated_instance_uses_the_batched_quote_endpoint(server):
    user = UserFetcher()
    fast = accelerate(user, base_url=server.url)
    assert fast is user
    try:
        codes = ["7203", "6758", "9984", "8306", "UNKNOWNP"]
        requests = server.stats()["requests"]
        prices = user.bulk_get_current_prices(codes)
        assert server.stats()["requests"] - requests == 1  # 5 codes, one quote request
        assert user.single_calls == 0
        assert prices["UNKNOWNP"] is None
        for code in ("7203", "8306"):
            own = UserFetcher().get_current_price(code)
            assert prices[code]["symbol"] == own["symbol"]
            assert prices[code]["current_price"] == pytest.approx(own["current_price"])
        realtime = user.get_realtime_data(codes)
        assert set(realtime) == {"7203", "6758", "9984", "8306"}
        assert set(BULK_METHODS) <= set(vars(user))  # rebound on the instance only
        assert "bulk_get_current_prices" not in vars(UserFetcher())
    finally:
        user.stockbatch_close()


def test_class_without_its_own_symbol_rule_gets_the_tse_rule(server):
    Fast = accelerate(Bare, base_url=server.url, market_suffix=".T")
    fetcher = Fast()
    try:
        out = fetcher.bulk_get_historical_data(["7203", "AAPL"], period="1mo")
        assert_same_frame(out["7203"], yf.Ticker("7203.T").history(period="1mo").tz_localize(None))
        aapl = yf.Ticker("AAPL").history(period="1mo")
        aapl.index = aapl.index.tz_localize(None)
        assert_same_frame(out["AAPL"], aapl)  # AAPL stays AAPL under the TSE rule
    finally:
        fetcher.stockbatch_close()


def test_slotted_instances_are_refused_with_a_clear_error():
    with pytest.raises(TypeError, match="accelerate the class"):
        accelerate(Slotted())
