"""Indicator kernels: compiled == pure-Python twin == TA-Lib per symbol (numpy for VWAP and
volatility), on random multi-symbol batches, plus the edge cases.

Tolerance: relative 1e-9. Outputs that are differences of prices (MACD, its histogram,
band offsets) can be near zero, so the absolute floor is 1e-9 of the data's price scale
(1e-9 * 100 for RSI's 0-100 scale): a relative error of 1e-9 on the inputs' magnitude.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stockbatch
from stockbatch import _backend
from stockbatch._errors import SchemaError

RTOL = 1e-9
US_PER_HOUR = 3_600_000_000
HYP = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


@pytest.fixture
def ind(load):
    """The backend module under test (compiled or twin)."""
    return load("indicators")


def values(arr: pa.Array) -> np.ndarray:
    """float64 numpy values, NaN where null (checking the array is float64)."""
    assert arr.type == pa.float64()
    return arr.to_numpy(zero_copy_only=False)


def assert_matches(arr: pa.Array, expected: np.ndarray, scale: float) -> None:
    """Nulls exactly where expected is NaN; values within RTOL (absolute floor RTOL*scale)."""
    got = values(arr)
    exp_null = np.isnan(expected)
    np.testing.assert_array_equal(arr.is_null().to_numpy(zero_copy_only=False), exp_null)
    assert arr.null_count == int(exp_null.sum())
    np.testing.assert_allclose(got[~exp_null], expected[~exp_null], rtol=RTOL, atol=RTOL * scale)


# ------------------------------------------------------------------ random batches


@st.composite
def bar_batches(draw):
    """A record batch sorted by (symbol, interval, ts) with several segments, gaps
    (nulls, NaN, inf), dictionary or plain symbols, possibly sliced out of a larger batch."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    nsym = draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(0, 90), min_size=nsym, max_size=nsym))
    two_intervals = draw(st.booleans())
    mode = draw(st.sampled_from(["walk", "walk", "flat", "steps"]))
    gaps = draw(st.sampled_from(["none", "none", "null", "nan", "mixed"]))
    dictionary = draw(st.booleans())
    pad_front = draw(st.integers(0, 13))
    pad_back = draw(st.integers(0, 5))

    sym, itv, ts = [], [], []
    for k, length in enumerate(lengths):
        cut = length // 2 if two_intervals else length
        base = int(rng.integers(-40, 40)) * 86_400_000_000  # some days before 1970 too
        for j in range(length):
            sym.append(f"S{k}")
            itv.append("1h" if j < cut else "1d")
            ts.append(base + j * 5 * US_PER_HOUR)
    n = len(sym)
    if mode == "walk":
        close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.02, n))) if n else np.zeros(0)
    elif mode == "flat":
        close = np.full(n, float(rng.integers(1, 500)))
    else:
        close = 100.0 + np.repeat(rng.integers(-20, 20, (n + 6) // 7), 7)[:n].astype(float)
    high = close * (1 + rng.uniform(0, 0.03, n))
    low = close * (1 - rng.uniform(0, 0.03, n))
    volume = rng.integers(0, 10_000, n)
    cols = {"high": high, "low": low, "close": close}
    masks = {}
    if gaps != "none" and n:
        for name in cols:
            hole = rng.random(n) < 0.05
            if gaps == "null" or (gaps == "mixed" and name == "close"):
                masks[name] = hole
            else:
                cols[name] = cols[name].copy()
                cols[name][hole] = rng.choice([np.nan, np.inf, -np.inf], hole.sum())
        masks["volume"] = rng.random(n) < 0.03

    def pad(values, fill):
        return [fill] * pad_front + list(values) + [fill] * pad_back

    def num(name, values):
        mask = masks.get(name)
        vals = pad(values, 1 if name == "volume" else 1.0)
        m = pad(mask if mask is not None else np.zeros(n, bool), True)
        typ = pa.int64() if name == "volume" else pa.float64()
        return pa.array(vals, typ, mask=np.array(m, dtype=bool))

    symbols = pa.array(pad(sym, "ZZ"), pa.string())
    if dictionary:
        symbols = symbols.dictionary_encode()
    batch = pa.record_batch(
        {
            "symbol": symbols,
            "interval": pa.array(pad(itv, "1h"), pa.string()),
            "ts": pa.array(pad(ts, 0), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "high": num("high", cols["high"]),
            "low": num("low", cols["low"]),
            "close": num("close", cols["close"]),
            "volume": num("volume", volume),
        }
    )
    return batch.slice(pad_front, n)


def segment_bounds(batch: pa.RecordBatch) -> list[tuple[int, int]]:
    """(start, end) of each (symbol, interval) run, computed in plain Python."""
    n = batch.num_rows
    itv = batch.column("interval").to_pylist() if "interval" in batch.schema.names else [0] * n
    keys = list(zip(batch.column("symbol").to_pylist(), itv, strict=True))
    bounds, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[i - 1]:
            bounds.append((start, i))
            start = i
    return bounds


def column(batch, name) -> tuple[np.ndarray, np.ndarray]:
    """(values, present) of a numeric column: present = not null and finite."""
    col = batch.column(name)
    x = col.to_numpy(zero_copy_only=False).astype(float)
    return x, np.isfinite(x) & col.is_valid().to_numpy(zero_copy_only=False)


def runs(present: np.ndarray, bounds) -> list[tuple[int, int]]:
    out = []
    for s, e in bounds:
        i = s
        while i < e:
            while i < e and not present[i]:
                i += 1
            a = i
            while i < e and present[i]:
                i += 1
            if i > a:
                out.append((a, i))
    return out


def per_run(batch, fn, names=("close",), nout=1, positive=False):
    """The oracle: fn applied to every run of present rows of every segment."""
    cols = [column(batch, n) for n in names]
    present = np.logical_and.reduce([p for _, p in cols])
    if positive:
        present &= cols[0][0] > 0
    expected = [np.full(batch.num_rows, np.nan) for _ in range(nout)]
    for a, b in runs(present, segment_bounds(batch)):
        res = fn(*[np.ascontiguousarray(x[a:b]) for x, _ in cols])
        res = res if isinstance(res, tuple | list) else [res]
        for e, r in zip(expected, res, strict=True):
            e[a:b] = r
    return expected


def price_scale(batch) -> float:
    x, ok = column(batch, "close")
    return float(np.max(np.abs(x[ok]), initial=1.0))


def np_volatility(x, period, ddof=1, scale=1.0):
    out = np.full(len(x), np.nan)
    r = np.log(x[1:] / x[:-1])
    for i in range(period, len(x)):
        out[i] = np.std(r[i - period : i], ddof=ddof) * scale
    return out


def np_vwap(batch, day_of) -> np.ndarray:
    """Cumulative typical-price x volume / volume per (segment, day), with numpy."""
    h, ph = column(batch, "high")
    lo, pl = column(batch, "low")
    c, pc_ = column(batch, "close")
    v, pv = column(batch, "volume")
    ts = batch.column("ts")
    ok = ph & pl & pc_ & pv & ts.is_valid().to_numpy(zero_copy_only=False)
    days = np.array([day_of(t) for t in ts.cast(pa.int64()).fill_null(0).to_pylist()])
    out = np.full(batch.num_rows, np.nan)
    for s, e in segment_bounds(batch):
        idx = np.flatnonzero(ok[s:e]) + s
        for d in np.unique(days[idx]):
            rows = idx[days[idx] == d]
            cpv = np.cumsum((h[rows] + lo[rows] + c[rows]) / 3.0 * v[rows])
            cv = np.cumsum(v[rows])
            with np.errstate(invalid="ignore", divide="ignore"):
                out[rows] = np.where(cv != 0, cpv / np.where(cv != 0, cv, 1), np.nan)
    return out


# ------------------------------------------------------------------ properties vs TA-Lib


@HYP
@given(batch=bar_batches(), period=st.integers(1, 30))
def test_sma_ema_match_talib(ind, batch, period):
    scale = price_scale(batch)
    exp = per_run(batch, lambda x: talib.SMA(x, period))[0]
    assert_matches(ind.sma(batch, period), exp, scale)
    exp = per_run(batch, lambda x: talib.EMA(x, period))[0]
    assert_matches(ind.ema(batch, period), exp, scale)


@HYP
@given(batch=bar_batches(), period=st.integers(2, 25))
def test_rsi_matches_talib(ind, batch, period):
    exp = per_run(batch, lambda x: talib.RSI(x, period))[0]
    assert_matches(ind.rsi(batch, period), exp, 100.0)


@HYP
@given(
    batch=bar_batches(),
    fast=st.integers(2, 12),
    extra=st.integers(0, 18),
    signal=st.integers(1, 10),
    swap=st.booleans(),
)
def test_macd_matches_talib(ind, batch, fast, extra, signal, swap):
    slow = fast + extra
    exp = per_run(batch, lambda x: talib.MACD(x, fast, slow, signal), nout=3)
    args = (slow, fast) if swap else (fast, slow)  # TA-Lib swaps a reversed pair too
    got = ind.macd(batch, *args, signal)
    for g, e in zip(got, exp, strict=True):
        assert_matches(g, e, price_scale(batch))


@HYP
@given(
    batch=bar_batches(), period=st.integers(2, 25), nbdev=st.sampled_from([0.0, 1.0, 1.5, 2.0, 3.0])
)
def test_bbands_match_talib(ind, batch, period, nbdev):
    exp = per_run(batch, lambda x: talib.BBANDS(x, period, nbdev, nbdev), nout=3)
    got = ind.bbands(batch, period, nbdev)
    for g, e in zip(got, exp, strict=True):
        assert_matches(g, e, price_scale(batch))


@HYP
@given(batch=bar_batches(), period=st.integers(1, 25))
def test_atr_matches_talib(ind, batch, period):
    exp = per_run(
        batch, lambda h, lo, c: talib.ATR(h, lo, c, period), names=("high", "low", "close")
    )[0]
    assert_matches(ind.atr(batch, period), exp, price_scale(batch))


@HYP
@given(
    batch=bar_batches(),
    period=st.integers(2, 25),
    ddof=st.sampled_from([0, 1]),
    annualize=st.sampled_from([None, 252.0]),
)
def test_volatility_matches_numpy(ind, batch, period, ddof, annualize):
    scale = math.sqrt(annualize) if annualize else 1.0
    exp = per_run(batch, lambda x: np_volatility(x, period, ddof, scale), positive=True)[0]
    got = ind.volatility(batch, period, ddof=ddof, annualize=annualize)
    assert_matches(got, exp, 1e-6)


@HYP
@given(batch=bar_batches())
def test_vwap_matches_numpy_utc_days(ind, batch):
    exp = np_vwap(batch, lambda t: t // 86_400_000_000)
    assert_matches(ind.vwap(batch), exp, price_scale(batch))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=bar_batches())
def test_backends_agree_bit_for_bit(batch):
    """The compiled kernels and the twin run the same arithmetic: identical bits."""
    if _backend.PURE_PYTHON:
        pytest.skip("the compiled backend is not in use")
    c, p = (_backend.load_from(b, "indicators") for b in ("cython", "python"))
    calls = [
        lambda m: [m.sma(batch, 7)],
        lambda m: [m.ema(batch, 5)],
        lambda m: [m.rsi(batch, 6)],
        lambda m: list(m.macd(batch, 4, 9, 3)),
        lambda m: list(m.bbands(batch, 8, 2.0)),
        lambda m: [m.atr(batch, 5)],
        lambda m: [m.volatility(batch, 6)],
        lambda m: [m.vwap(batch)],
    ]
    for call in calls:
        for a, b in zip(call(c), call(p), strict=True):
            assert a.equals(b)
            np.testing.assert_array_equal(values(a), values(b))


# ------------------------------------------------------------------ edge cases


def bars(close, symbols=None, **extra):
    close = pa.array(close, pa.float64())
    n = len(close)
    cols = {"symbol": pa.array(symbols or ["A"] * n, pa.string()), "close": close}
    cols.update({k: pa.array(v) for k, v in extra.items()})
    return pa.record_batch(cols)


def test_warmup_starts_where_talib_starts(ind):
    x = 100 + np.sin(np.arange(60.0))
    b = pa.record_batch({"close": x, "high": x + 1, "low": x - 1})
    first = {
        "sma": ind.sma(b, 20),
        "ema": ind.ema(b, 20),
        "rsi": ind.rsi(b, 14),
        "macd": ind.macd(b, 12, 26, 9)[2],
        "bb": ind.bbands(b, 20, 2.0)[0],
        "atr": ind.atr(b, 14),
        "vol": ind.volatility(b, 20),
    }
    starts = {k: int(np.flatnonzero(~np.isnan(values(v)))[0]) for k, v in first.items()}
    assert starts == {"sma": 19, "ema": 19, "rsi": 14, "macd": 33, "bb": 19, "atr": 14, "vol": 20}
    assert all(v.null_count == starts[k] for k, v in first.items())


def test_segment_shorter_than_period_is_all_null(ind):
    b = bars([1.0, 2, 3, 4, 5, 6, 7], symbols=["A", "A", "B", "B", "B", "B", "B"])
    got = values(ind.sma(b, 3))
    np.testing.assert_array_equal(np.isnan(got), [1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_allclose(got[4:], [4.0, 5.0, 6.0])
    assert ind.rsi(b, 10).null_count == 7


def test_one_row_segments(ind):
    b = bars(
        [1.0, 2.0, 3.0],
        symbols=["A", "B", "C"],
        high=[2.0, 3, 4],
        low=[0.5, 1, 2],
        volume=[10, 0, 5],
        ts=pa.array([0, 1, 2], pa.timestamp("us", tz="UTC")),
    )
    assert ind.sma(b, 2).null_count == 3
    assert values(ind.sma(b, 1)).tolist() == [1.0, 2.0, 3.0]
    assert values(ind.ema(b, 1)).tolist() == [1.0, 2.0, 3.0]
    assert ind.atr(b, 1).null_count == 3  # the true range needs a previous close
    assert ind.rsi(b, 1).null_count == 3
    vw = values(ind.vwap(b))  # zero volume: no price yet
    np.testing.assert_allclose(vw[[0, 2]], [(2 + 0.5 + 1) / 3, (4 + 2 + 3) / 3])
    assert np.isnan(vw[1])


def test_nulls_and_nan_restart_the_warmup(ind):
    close = [1.0, 2.0, 3.0, None, 5.0, 6.0, 7.0, float("nan"), 9.0, 10.0, 11.0, 12.0]
    b = bars(close)
    got = values(ind.sma(b, 3))
    exp = [np.nan, np.nan, 2.0, np.nan, np.nan, np.nan, 6.0, np.nan, np.nan, np.nan, 10.0, 11.0]
    np.testing.assert_array_equal(got, exp)
    ema = values(ind.ema(b, 2))
    np.testing.assert_allclose(
        ema[[1, 2, 5, 6, 9, 10, 11]],
        talib.EMA(np.array([1.0, 2, 3]), 2)[1:].tolist()
        + talib.EMA(np.array([5.0, 6, 7]), 2)[1:].tolist()
        + talib.EMA(np.array([9.0, 10, 11, 12]), 2)[1:].tolist(),
    )
    assert np.isnan(ema[[0, 3, 4, 7, 8]]).all()
    # +-inf is missing too
    b = bars([1.0, 2.0, float("inf"), 4.0, 5.0])
    np.testing.assert_array_equal(values(ind.sma(b, 2)), [np.nan, 1.5, np.nan, np.nan, 4.5])


def test_atr_gap_in_high_restarts(ind):
    h = [2.0, 3.0, None, 5.0, 6.0, 7.0]
    b = bars([1.5, 2.5, 3.5, 4.5, 5.5, 6.5], high=h, low=[1.0, 2, 3, 4, 5, 6])
    got = values(ind.atr(b, 2))
    exp = talib.ATR(np.array([5.0, 6, 7]), np.array([4.0, 5, 6]), np.array([4.5, 5.5, 6.5]), 2)
    np.testing.assert_array_equal(np.isnan(got), [1, 1, 1, 1, 1, 0])
    np.testing.assert_allclose(got[5], exp[2])


def test_vwap_skips_missing_rows_and_keeps_the_day(ind):
    ts = pa.array([0, US_PER_HOUR, 2 * US_PER_HOUR, 25 * US_PER_HOUR], pa.timestamp("us", "UTC"))
    b = bars(
        [10.0, None, 30.0, 40.0],
        high=[10.0, 20, 30, 40],
        low=[10.0, 20, 30, 40],
        volume=[1, 1, 3, 2],
        ts=ts,
    )
    np.testing.assert_allclose(values(ind.vwap(b)), [10.0, np.nan, (10 + 90) / 4, 40.0])


def test_period_one(ind):
    x = np.array([3.0, 5.0, 4.0, 4.0, 8.0])
    b = bars(x, high=x + 1, low=x - 1)
    assert values(ind.sma(b, 1)).tolist() == x.tolist()
    assert values(ind.ema(b, 1)).tolist() == x.tolist()
    up, mid, lo = (values(a) for a in ind.bbands(b, 1, 2.0))
    assert up.tolist() == mid.tolist() == lo.tolist() == x.tolist()
    np.testing.assert_allclose(values(ind.atr(b, 1)), talib.ATR(x + 1, x - 1, x, 1))
    np.testing.assert_array_equal(values(ind.rsi(b, 1)), [np.nan, 100.0, 0.0, 0.0, 100.0])
    assert values(ind.volatility(b, 1, ddof=0))[1:].tolist() == [0.0] * 4
    fast1 = values(ind.macd(b, 1, 1, 1)[0])
    np.testing.assert_array_equal(fast1, [0.0] * 5)


@pytest.mark.parametrize("bad", [0, -3])
def test_invalid_period_is_a_value_error(ind, bad):
    b = bars([1.0, 2.0, 3.0], high=[1.0, 2, 3], low=[1.0, 2, 3])
    for call in (
        lambda: ind.sma(b, bad),
        lambda: ind.ema(b, bad),
        lambda: ind.rsi(b, bad),
        lambda: ind.atr(b, bad),
        lambda: ind.bbands(b, bad, 2.0),
        lambda: ind.volatility(b, bad),
        lambda: ind.macd(b, 12, bad, 9),
        lambda: ind.macd(b, 12, 26, bad),
    ):
        with pytest.raises(ValueError, match=">= 1"):
            call()


def test_other_bad_parameters(ind):
    b = bars([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="integer"):
        ind.sma(b, 2.5)
    with pytest.raises(TypeError, match="integer"):
        ind.sma(b, True)
    with pytest.raises(ValueError, match="ddof"):
        ind.volatility(b, 1)  # one return has no sample std
    with pytest.raises(ValueError, match="annualize"):
        ind.volatility(b, 2, annualize=-1)
    with pytest.raises(ValueError, match="nbdev"):
        ind.bbands(b, 2, float("nan"))
    with pytest.raises(KeyError, match="open"):
        ind.sma(b, 2, column="open")
    with pytest.raises(TypeError, match="strings"):
        ind.sma(b, 2, column="symbol")
    with pytest.raises(ValueError, match="segments"):
        ind.sma(b, 2, segments=np.array([0, 5]))
    with pytest.raises(ValueError, match="segments"):
        ind.sma(b, 2, segments=np.array([0, 2, 1, 3]))


def test_huge_periods_are_all_null(ind):
    b = bars([1.0, 2.0, 3.0], high=[1.0, 2, 3], low=[1.0, 2, 3])
    big = 100_000_000
    for arr in (
        ind.sma(b, big),
        ind.volatility(b, big),
        ind.rsi(b, big),
        ind.atr(b, big),
        *ind.macd(b, big, big, big),
        *ind.bbands(b, big, 2.0),
    ):
        assert arr.null_count == 3
    with pytest.raises(ValueError, match="<= 100000000"):
        ind.ema(b, big + 1)


def test_out_buffers_are_reused(ind):
    x = np.arange(1.0, 11.0)
    b = bars(x)
    out = np.full(10, -1.0)
    got = ind.sma(b, 3, out=out)
    assert got.buffers()[1].address == out.ctypes.data  # zero-copy over the caller's buffer
    np.testing.assert_allclose(out[2:], talib.SMA(x, 3)[2:])
    assert got.null_count == 2 and values(got)[2] == 2.0
    outs = (np.empty(10), np.empty(10), np.empty(10))
    res = ind.macd(b, 2, 3, 2, out=outs)
    assert [r.buffers()[1].address for r in res] == [o.ctypes.data for o in outs]
    assert res[0].buffers()[0].address == res[2].buffers()[0].address  # one shared bitmap
    with pytest.raises(ValueError, match="rows"):
        ind.sma(b, 3, out=np.empty(9))
    with pytest.raises(TypeError, match="float64"):
        ind.sma(b, 3, out=np.empty(10, dtype=np.float32))
    with pytest.raises(TypeError, match="tuple"):
        ind.macd(b, 2, 3, 2, out=np.empty(10))


def test_segments(ind):
    b = pa.record_batch(
        {
            "symbol": pa.array(["A", "A", "A", "B", "B", None, None]).dictionary_encode(),
            "interval": pa.array(["1d", "1d", "1h", "1h", "1h", "1h", "1h"]),
            "close": pa.array([1.0] * 7),
        }
    )
    assert ind.segments(b).tolist() == [0, 2, 3, 5, 7]
    assert ind.segments(b.slice(1, 4)).tolist() == [0, 1, 2, 4]
    assert ind.segments(pa.record_batch({"close": [1.0, 2.0]})).tolist() == [0, 2]
    assert ind.segments(b.slice(0, 0)).tolist() == [0]


def test_running_sums_do_not_drift(ind):
    """After values ~1e9 the window sums are recomputed: SMA and bands stay exact where
    TA-Lib's running sum keeps rounding from the departed values (~1e-6 relative here)."""
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.random(3000) * 1e9, rng.random(3000) + 0.5])
    b = pa.record_batch({"close": x})
    from numpy.lib.stride_tricks import sliding_window_view

    w = sliding_window_view(x, 5)[-2000:]
    np.testing.assert_allclose(values(ind.sma(b, 5))[-2000:], w.mean(axis=1), rtol=1e-13)
    up, mid, _ = (values(a) for a in ind.bbands(b, 5, 1.0))
    np.testing.assert_allclose((up - mid)[-2000:], w.std(axis=1), rtol=1e-12)


def test_flat_and_tiny_prices(ind):
    flat = pa.record_batch({"close": np.full(30, 0.1)})
    up, mid, lo = (values(a)[4:] for a in ind.bbands(flat, 5, 2.0))
    assert (up - lo).max() == 0.0 and np.allclose(mid, 0.1)
    assert values(ind.rsi(flat, 5))[5:].tolist() == [0.0] * 25
    # a flat stretch long after the shift reference was taken: the exact fallback
    x = np.concatenate(
        [100 + np.cumsum(np.random.default_rng(4).normal(0, 1, 500)), np.full(300, 123.456)]
    )
    up, mid, lo = (values(a) for a in ind.bbands(pa.record_batch({"close": x}), 20, 2.0))
    assert np.abs(up - lo)[-280:].max() < 1e-12 * 123.456
    np.testing.assert_allclose(up[19:], talib.BBANDS(x, 20, 2.0, 2.0)[0][19:], rtol=1e-12)
    # no absolute thresholds: tiny prices give the same RSI as scaled-up ones (and TA-Lib)
    y = 1e-7 * (1 + np.random.default_rng(2).random(60) * 0.01)
    small, big = (values(ind.rsi(pa.record_batch({"close": v}), 5)) for v in (y, y * 1e8))
    np.testing.assert_allclose(small[5:], big[5:], rtol=1e-9)
    np.testing.assert_allclose(small[5:], talib.RSI(y, 5)[5:], rtol=1e-9)
    np.testing.assert_allclose(
        values(ind.bbands(pa.record_batch({"close": y}), 5, 1.0)[0])[4:],
        talib.BBANDS(y, 5, 1.0, 1.0)[0][4:],
        rtol=1e-12,
    )


def test_volatility_long_series_with_flat_stretch(ind):
    rng = np.random.default_rng(8)
    x = np.concatenate(
        [
            100 * np.exp(np.cumsum(rng.normal(0, 0.02, 2000))),
            np.full(200, 42.0),
            42 * np.exp(np.cumsum(rng.normal(0, 1e-6, 300))),
        ]
    )
    got = values(ind.volatility(pa.record_batch({"close": x}), 30, annualize=252))
    exp = np_volatility(x, 30, 1, math.sqrt(252))
    np.testing.assert_allclose(got[30:], exp[30:], rtol=1e-9, atol=1e-15)
    assert got[2031:2200].max() == 0.0  # flat prices: exactly zero


def test_unsorted_ts_is_refused(ind):
    ts = pa.array([0, 10, 5, 20], pa.timestamp("us", tz="UTC"))
    b = bars([1.0, 2.0, 3.0, 4.0], symbols=["A", "A", "A", "B"], ts=ts)
    with pytest.raises(ValueError, match="not sorted.*row 2"):
        ind.segments(b)
    with pytest.raises(ValueError, match="not sorted"):
        ind.sma(b, 2)
    with pytest.raises(ValueError, match="not sorted"):
        ind.segments(pa.record_batch({"ts": ts, "close": [1.0, 2.0, 3.0, 4.0]}))
    # a new segment may start earlier; null ts are skipped; equal ts are allowed
    ok = bars(
        [1.0] * 5,
        symbols=["A", "A", "B", "B", "B"],
        ts=pa.array([5, 9, 1, None, 1], pa.timestamp("us", tz="UTC")),
    )
    assert ind.segments(ok).tolist() == [0, 2, 5]


@pytest.mark.parametrize("encoding", ["plain", "dictionary", "large", "nulls"])
def test_segments_long_runs(ind, encoding):
    """Runs longer and shorter than the compiled block test, strings that share a length or
    a prefix, sliced arrays: the boundaries are exactly where the key changes."""
    lengths = [130, 64, 1, 200, 3, 5000, 63, 65, 1, 1, 700]
    keys = ["AB", "AC", "ABC", "AB", "X", "Y", "YY", "Y", "Z", "ZZZZZZZZZZZZZZZZZZ", "Z"]
    sym = [k for k, m in zip(keys, lengths, strict=True) for _ in range(m)]
    itv = ["1d"] * len(sym)
    itv[300:302] = ["1h", "1h"]  # an interval change inside a symbol's run
    arr = pa.array(["pad"] * 7 + sym, pa.string())
    if encoding == "nulls":
        arr = pa.array(["pad"] * 7 + [None if k == "X" else k for k in sym], pa.string())
    if encoding == "dictionary":
        arr = arr.dictionary_encode()
    elif encoding == "large":
        arr = arr.cast(pa.large_string())
    b = pa.record_batch(
        {"symbol": arr, "interval": pa.array(["1d"] * 7 + itv), "close": np.ones(len(sym) + 7)}
    ).slice(7)
    expected = [0]
    for i in range(1, len(sym)):
        if sym[i] != sym[i - 1] or itv[i] != itv[i - 1]:
            expected.append(i)
    expected.append(len(sym))
    assert ind.segments(b).tolist() == expected
    if hasattr(ind, "_segments_reference"):  # the compiled block test vs arrow.pxd's
        assert ind._segments_reference(b).tolist() == expected


def test_empty_batch(ind):
    b = bars([])
    for arr in (ind.sma(b, 3), ind.rsi(b, 2), *ind.macd(b, 12, 26, 9)):
        assert len(arr) == 0 and arr.type == pa.float64()


def test_non_float64_columns_are_read(ind):
    b32 = pa.record_batch({"close": pa.array([1.0, 2.0, None, 4.0, 5.0, 6.0], pa.float32())})
    bint = pa.record_batch({"close": pa.array([1, 2, None, 4, 5, 6], pa.int32())})
    exp = [np.nan, 1.5, np.nan, np.nan, 4.5, 5.5]
    np.testing.assert_array_equal(values(ind.sma(b32, 2)), exp)
    np.testing.assert_array_equal(values(ind.sma(bint, 2)), exp)


# ------------------------------------------------------------------ public module


@pytest.fixture
def public(load, monkeypatch):
    """stockbatch.indicators running on the backend under test."""
    import stockbatch.indicators as mod

    monkeypatch.setattr(mod, "_impl", load("indicators"))
    return mod


def sample_table(nsym=3, nbar=80, chunks=1):
    rng = np.random.default_rng(5)
    n = nsym * nbar
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    t = pa.table(
        {
            "symbol": pa.array(np.repeat([f"S{i}" for i in range(nsym)], nbar)),
            "interval": pa.array(["1h"] * n),
            "ts": pa.array(np.tile(np.arange(nbar) * US_PER_HOUR, nsym), pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "open": c,
            "high": c * 1.01,
            "low": c * 0.99,
            "close": c,
            "volume": rng.integers(1, 1000, n),
        }
    )
    if chunks > 1:
        t = pa.concat_tables([t.slice(k * n // chunks, n // chunks) for k in range(chunks)])
    return t


def test_public_module_is_reachable():
    assert stockbatch.indicators.sma is stockbatch.indicators.__dict__["sma"]
    assert set(stockbatch.indicators.__all__) >= {
        "sma",
        "ema",
        "rsi",
        "macd",
        "bbands",
        "atr",
        "volatility",
        "vwap",
        "compute",
    }


def test_compute_appends_named_columns(public):
    t = sample_table()
    out = public.compute(
        t, ["sma20", "ema12", "rsi14", "macd", "bbands20", "atr14", "vol20", "vwap"]
    )
    assert out.column_names == t.column_names + [
        "sma20",
        "ema12",
        "rsi14",
        "macd",
        "macd_signal",
        "macd_hist",
        "bbands20_upper",
        "bbands20_middle",
        "bbands20_lower",
        "atr14",
        "vol20",
        "vwap",
    ]
    assert out.num_rows == t.num_rows
    assert out.slice(0, 5).select(t.column_names).equals(t.slice(0, 5))
    c, h, lo = (t[k].to_numpy() for k in ("close", "high", "low"))
    for s in (slice(0, 80), slice(80, 160)):
        assert_matches(out["sma20"].chunk(0)[s], talib.SMA(c[s], 20), 200)
        assert_matches(out["ema12"].chunk(0)[s], talib.EMA(c[s], 12), 200)
        assert_matches(out["rsi14"].chunk(0)[s], talib.RSI(c[s], 14), 100)
        assert_matches(out["macd_hist"].chunk(0)[s], talib.MACD(c[s], 12, 26, 9)[2], 200)
        assert_matches(out["bbands20_lower"].chunk(0)[s], talib.BBANDS(c[s], 20, 2, 2)[2], 200)
        assert_matches(out["atr14"].chunk(0)[s], talib.ATR(h[s], lo[s], c[s], 14), 200)
        assert_matches(out["vol20"].chunk(0)[s], np_volatility(c[s], 20), 1e-6)


def test_compute_rejects_unknown_and_duplicate_specs(public):
    t = sample_table()
    with pytest.raises(ValueError, match=r"'smaX'.*sma<N>.*macd.*vwap"):
        public.compute(t, ["sma20", "smaX"])
    with pytest.raises(ValueError, match="'rsi14' already exists"):
        public.compute(t, ["rsi14", "rsi"])
    with pytest.raises(ValueError, match=">= 1"):
        public.compute(t, ["sma0"])
    with pytest.raises(SchemaError, match="volume: missing"):
        public.compute(t.drop_columns(["volume"]), ["vwap"])
    with pytest.raises(SchemaError, match="close: type string"):
        public.sma(t.set_column(6, "close", pa.array(["x"] * t.num_rows)), 3)


def test_compute_specs_defaults_and_custom_macd(public):
    t = sample_table()
    out = public.compute(t, "macd5_35_5")
    assert out.column_names[-3:] == ["macd5_35_5", "macd5_35_5_signal", "macd5_35_5_hist"]
    assert out["macd5_35_5"].null_count == 3 * 38
    out = public.compute(t, ["rsi", "bbands", "vol"])
    assert out.column_names[-5:] == [
        "rsi14",
        "bbands20_upper",
        "bbands20_middle",
        "bbands20_lower",
        "vol20",
    ]


def test_public_inputs_chunked_tables_arrays_and_polars(public):
    t = sample_table(chunks=3)
    assert t["close"].num_chunks == 3
    whole = public.sma(t.combine_chunks(), 5)
    assert public.sma(t, 5).equals(whole)
    assert public.sma(t.to_batches()[0], 5).equals(public.sma(t.slice(0, 80), 5))
    one = public.sma(np.arange(1.0, 6.0), 2)  # one series, no symbol column
    assert values(one).tolist()[1:] == [1.5, 2.5, 3.5, 4.5]
    assert public.rsi(pa.chunked_array([[1.0, 2.0], [3.0, 2.0]]), 2).null_count == 2
    polars = pytest.importorskip("polars")
    df = polars.from_arrow(t.combine_chunks())
    assert public.sma(df, 5).equals(whole)
    assert public.sma({"close": [1.0, 2.0, 3.0]}, 2).to_pylist() == [None, 1.5, 2.5]
    with pytest.raises(TypeError, match="expected bars"):
        public.sma(object(), 2)


def test_public_named_results_and_out(public):
    t = sample_table()
    m = public.macd(t)
    assert isinstance(m, public.MACD) and m.hist.null_count == 3 * 33
    bb = public.bbands(t, 20, 2.0)
    up, mid, lo = (values(a) for a in bb)
    np.testing.assert_allclose((up - mid)[~np.isnan(mid)], (mid - lo)[~np.isnan(mid)])
    out = np.empty(t.num_rows)
    r = public.ema(t, 10, out=out)
    assert r.buffers()[1].address == out.ctypes.data


def test_vwap_in_exchange_time_zone(public):
    # hourly bars across New York midnight (04:00 or 05:00 UTC depending on DST)
    start = int(datetime(2026, 3, 6, tzinfo=timezone.utc).timestamp()) * 1_000_000
    n = 24 * 4
    rng = np.random.default_rng(3)
    c = 50 + rng.random(n)
    ts = start + np.arange(n, dtype=np.int64) * US_PER_HOUR
    t = pa.table(
        {
            "symbol": ["X"] * n,
            "ts": pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
            "high": c + 1,
            "low": c - 1,
            "close": c,
            "volume": rng.integers(1, 100, n),
        }
    )
    ny = ZoneInfo("America/New_York")

    def ny_day(us):
        return datetime.fromtimestamp(us / 1e6, tz=ny).date().toordinal()

    assert_matches(public.vwap(t, tz="America/New_York"), np_vwap(t.to_batches()[0], ny_day), 100)
    assert_matches(public.vwap(t), np_vwap(t.to_batches()[0], lambda us: us // 86_400_000_000), 100)
    assert not public.vwap(t, tz="America/New_York").equals(public.vwap(t))
    out = public.compute(t, ["vwap"], tz="America/New_York")
    assert out["vwap"].chunk(0).equals(public.vwap(t, tz="America/New_York"))
    with pytest.raises(ValueError, match="time zone"):
        public.vwap(t, tz="Mars/Olympus")
