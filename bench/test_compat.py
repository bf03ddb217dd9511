"""compat.StockFetcher: what each mode costs, and what the bulk methods save (issue 15).

The fixture server runs in its own process (``FixtureServer(process=True)``). yfinance is
pointed at it by rewriting its base URLs (every other host refused), and asked once before the
rounds so that its cookie/crumb and time zones are known, as in a long-running process.
Every round starts with empty caches (``clear_all_caches``), so each round fetches.

Groups (peers in the same group, same symbols, one run):

  compat history x50      1y daily history of 50 Tokyo codes:
                            bulk_engine        stockbatch mode, ``bulk_get_historical_data``
                                               (one engine job, concurrent fetches)
                            loop_stockbatch    stockbatch mode, ``get_historical_data`` per code
                            loop_yfinance      yfinance mode, ``get_historical_data`` per code
                                               (the original's path: Ticker.history)
  compat price x50        current price of 50 codes:
                            bulk_batched       stockbatch mode, ``bulk_get_current_prices``
                                               (one /v7 quote call)
                            realtime_yfinance  yfinance mode, ``get_realtime_data`` (the
                                               original's: get_current_price per code on 10
                                               threads, Ticker.info = 3 requests each)

Run (under a minute):

    PYTHONPATH=src python -m pytest bench/test_compat.py --benchmark-only \\
        --benchmark-columns=min,median,rounds --benchmark-sort=name
"""

from __future__ import annotations

import pytest
from benchutil import quick

from stockbatch.compat import StockFetcher
from stockbatch.testing import FixtureServer
from stockbatch.testing._yfinance import yfinance_at

yf = pytest.importorskip("yfinance")

N = 5 if quick() else 50
CODES = [str(c) for c in range(1301, 1301 + N)]


@pytest.fixture(scope="module")
def server():
    with FixtureServer(process=True) as srv, yfinance_at(srv.url):
        yield srv


@pytest.fixture(scope="module")
def fetchers(server):
    with (
        StockFetcher(base_url=server.url) as sb,
        StockFetcher(base_url=server.url, mode="yfinance") as yfm,
    ):
        sb.get_historical_data("7203", period="5d")  # warm: engine, connections
        yfm.get_historical_data("7203", period="5d")  # warm: yfinance's session, time zones
        yield {"stockbatch": sb, "yfinance": yfm}


def _history(fetcher, how):
    fetcher.clear_all_caches()
    if how == "bulk":
        out = fetcher.bulk_get_historical_data(CODES, period="1y")
    else:
        out = {c: fetcher.get_historical_data(c, period="1y") for c in CODES}
    assert all(v is not None and len(v) > 200 for v in out.values())
    return sum(len(v) for v in out.values())


def _prices(fetcher, how):
    fetcher.clear_all_caches()
    if how == "bulk":
        out = fetcher.bulk_get_current_prices(CODES)
    else:
        out = fetcher.get_realtime_data(CODES)
    assert len([v for v in out.values() if v]) == len(CODES)
    return len(out)


@pytest.mark.parametrize(
    ("peer", "mode", "how"),
    [
        ("bulk_engine", "stockbatch", "bulk"),
        ("loop_stockbatch", "stockbatch", "loop"),
        ("loop_yfinance", "yfinance", "loop"),
    ],
)
def test_history(benchmark, fetchers, peer, mode, how):
    benchmark.group = f"compat history x{N}"
    bars = benchmark.pedantic(_history, args=(fetchers[mode], how), rounds=3, iterations=1)
    benchmark.extra_info["bars"] = bars
    if benchmark.stats is not None:
        benchmark.extra_info["codes_per_s"] = round(N / benchmark.stats.stats.median, 1)


@pytest.mark.parametrize(
    ("peer", "mode", "how"),
    [("bulk_batched", "stockbatch", "bulk"), ("realtime_yfinance", "yfinance", "loop")],
)
def test_prices(benchmark, fetchers, peer, mode, how):
    benchmark.group = f"compat price x{N}"
    benchmark.pedantic(_prices, args=(fetchers[mode], how), rounds=3, iterations=1)
    if benchmark.stats is not None:
        benchmark.extra_info["codes_per_s"] = round(N / benchmark.stats.stats.median, 1)
