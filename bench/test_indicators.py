"""Indicators against TA-Lib, seeded daily bars (canonical schema, plain string symbols).

Groups (peers in the same group, ratios compared within one run):
  indicators-2000x2500   2,000 symbols x 2,500 bars: SMA20, EMA20, RSI14, MACD(12/26/9),
                         BBANDS(20, 2), ATR14 appended to the table. stockbatch.indicators
                         .compute (segments found once, one kernel call per indicator) vs
                         TA-Lib called per symbol the way a user would: find the symbol
                         boundaries (pyarrow), slice each symbol's numpy views, call the six
                         functions, write into full-length columns, append them to the table.
  indicators-long        the same set on one series of 5e6 bars: compute vs TA-Lib on the
                         whole arrays (appended to the table the same way).
  long-<indicator>       each indicator alone on the long series: stockbatch's public
                         function on the bars table (finds the one segment: a scan of the
                         symbol/interval strings and the ts order check), the same on the
                         series without symbol/interval (kernel only), and TA-Lib.

Run:
    PYTHONPATH=src python -m pytest bench/test_indicators.py --benchmark-only \
        --benchmark-columns=min,median,rounds --benchmark-sort=name
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from benchutil import sized

import stockbatch.indicators as ind

talib = pytest.importorskip("talib")

NSYM = 2_000
NBARS = 2_500
LONG = 5_000_000
DAY = 86_400_000_000
START = 946_684_800_000_000  # 2000-01-01T00:00Z
SPECS = ["sma20", "ema20", "rsi14", "macd", "bbands20", "atr14"]


def log_walk(rng, nsym: int, nbars: int) -> np.ndarray:
    """Log prices: a random walk per symbol from log(100); a long single series is
    high-pass filtered (minus its 10,000-bar moving average) so it stays within ~e^±3
    of 100 rather than wandering over orders of magnitude."""
    steps = rng.normal(0.0, 0.01, (nsym, nbars))
    walk = np.cumsum(steps, axis=1)
    if nbars > 20_000:
        c = np.concatenate([np.zeros((nsym, 1)), np.cumsum(walk, axis=1)], axis=1)
        w = 10_000
        ma = np.empty_like(walk)
        ma[:, w - 1 :] = (c[:, w:] - c[:, :-w]) / w
        ma[:, : w - 1] = c[:, 1:w] / np.arange(1, w)
        walk = walk - ma
    return (np.log(100.0) + walk).ravel()


def make_bars(nsym: int, nbars: int, seed: int) -> pa.Table:
    """Sorted (symbol, interval, ts) daily bars."""
    rng = np.random.default_rng(seed)
    n = nsym * nbars
    close = np.exp(log_walk(rng, nsym, nbars))
    high = close * (1.0 + np.abs(rng.normal(0.0, 0.005, n)))
    low = close * (1.0 - np.abs(rng.normal(0.0, 0.005, n)))
    names = pa.array([f"S{i:04d}" for i in range(nsym)])
    symbol = pa.DictionaryArray.from_arrays(
        np.repeat(np.arange(nsym, dtype=np.int32), nbars), names
    ).cast(pa.string())
    return pa.table(
        {
            "symbol": symbol,
            "interval": pa.array(["1d"] * n, pa.string())
            if n < 100_000
            else pa.Array.from_buffers(
                pa.string(),
                n,
                [None, pa.py_buffer(np.arange(n + 1, dtype=np.int32) * 2), pa.py_buffer(b"1d" * n)],
            ),
            "ts": pa.array(START + np.tile(np.arange(nbars, dtype=np.int64) * DAY, nsym)).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "open": close,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(0, 1_000_000, n),
        }
    )


@pytest.fixture(scope="module")
def many() -> pa.Table:
    nbars = max(sized(NSYM * NBARS) // NSYM, 1)
    return make_bars(NSYM, nbars, seed=20260102)


@pytest.fixture(scope="module")
def long() -> pa.Table:
    return make_bars(1, sized(LONG), seed=20260103)


def talib_set(table: pa.Table) -> pa.Table:
    """The six indicators with TA-Lib, per symbol, appended to the table."""
    sym = table["symbol"].combine_chunks()
    n = len(sym)
    change = pc.not_equal(sym.slice(1), sym.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    bounds = np.concatenate([[0], np.flatnonzero(change) + 1, [n]])
    c, h, lo = (table[k].to_numpy() for k in ("close", "high", "low"))
    names = [
        "sma20",
        "ema20",
        "rsi14",
        "macd",
        "macd_signal",
        "macd_hist",
        "bbands20_upper",
        "bbands20_middle",
        "bbands20_lower",
        "atr14",
    ]
    cols = [np.empty(n) for _ in names]
    for k in range(len(bounds) - 1):
        s, e = bounds[k], bounds[k + 1]
        cc = c[s:e]
        cols[0][s:e] = talib.SMA(cc, 20)
        cols[1][s:e] = talib.EMA(cc, 20)
        cols[2][s:e] = talib.RSI(cc, 14)
        cols[3][s:e], cols[4][s:e], cols[5][s:e] = talib.MACD(cc, 12, 26, 9)
        cols[6][s:e], cols[7][s:e], cols[8][s:e] = talib.BBANDS(cc, 20, 2.0, 2.0)
        cols[9][s:e] = talib.ATR(h[s:e], lo[s:e], cc, 14)
    for name, col in zip(names, cols, strict=True):
        table = table.append_column(name, pa.array(col))
    return table


def check_same(ours: pa.Table, theirs: pa.Table) -> None:
    """Not a timing assertion: the peers must compute the same thing."""
    for name in ("sma20", "rsi14", "macd_hist", "bbands20_lower", "atr14"):
        a = ours[name].to_numpy()
        b = theirs[name].to_numpy()
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        m = ~np.isnan(a)
        np.testing.assert_allclose(a[m], b[m], rtol=1e-9, atol=1e-9 * 100)


@pytest.mark.benchmark(group="indicators-2000x2500")
def test_many_stockbatch_compute(benchmark, many):
    out = benchmark(ind.compute, many, SPECS)
    check_same(out, talib_set(many))


@pytest.mark.benchmark(group="indicators-2000x2500")
def test_many_talib_per_symbol(benchmark, many):
    out = benchmark(talib_set, many)
    assert out.num_columns == many.num_columns + 10


@pytest.mark.benchmark(group="indicators-long")
def test_long_stockbatch_compute(benchmark, long):
    out = benchmark(ind.compute, long, SPECS)
    check_same(out, talib_set(long))


@pytest.mark.benchmark(group="indicators-long")
def test_long_talib(benchmark, long):
    out = benchmark(talib_set, long)
    assert out.num_columns == long.num_columns + 10


SINGLE = {
    "sma": (lambda t: ind.sma(t, 20), lambda c, h, lo: talib.SMA(c, 20)),
    "ema": (lambda t: ind.ema(t, 20), lambda c, h, lo: talib.EMA(c, 20)),
    "rsi": (lambda t: ind.rsi(t, 14), lambda c, h, lo: talib.RSI(c, 14)),
    "macd": (lambda t: ind.macd(t), lambda c, h, lo: talib.MACD(c, 12, 26, 9)),
    "bbands": (lambda t: ind.bbands(t, 20, 2.0), lambda c, h, lo: talib.BBANDS(c, 20, 2.0, 2.0)),
    "atr": (lambda t: ind.atr(t, 14), lambda c, h, lo: talib.ATR(h, lo, c, 14)),
    "volatility": (lambda t: ind.volatility(t, 20), None),
    "vwap": (lambda t: ind.vwap(t), None),
}


@pytest.mark.parametrize("name", list(SINGLE))
def test_long_single_stockbatch(benchmark, long, name):
    benchmark.group = f"long-{name}"
    result = benchmark(SINGLE[name][0], long)
    first = result[0] if isinstance(result, tuple) else result
    assert len(first) == long.num_rows


@pytest.mark.parametrize("name", list(SINGLE))
def test_long_single_stockbatch_series(benchmark, long, name):
    """The same call on the series without symbol/interval columns: no segment scan."""
    benchmark.group = f"long-{name}"
    series = long.drop_columns(["symbol", "interval"])
    result = benchmark(SINGLE[name][0], series)
    first = result[0] if isinstance(result, tuple) else result
    assert len(first) == long.num_rows


@pytest.mark.parametrize("name", [k for k, v in SINGLE.items() if v[1] is not None])
def test_long_single_talib(benchmark, long, name):
    benchmark.group = f"long-{name}"
    c, h, lo = (long[k].to_numpy() for k in ("close", "high", "low"))
    result = benchmark(SINGLE[name][1], c, h, lo)
    first = result[0] if isinstance(result, tuple) else result
    assert len(first) == long.num_rows
