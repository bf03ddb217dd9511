"""Kernels against their peers: 1e7 one-minute bars of 2,000 symbols, seeded.

Groups (peers in the same group, ratios compared within one run):
  validate           stockbatch vs numpy vs pyarrow.compute vs polars vs the memory-bandwidth
                     floor (np.add.reduce over the same columns)
  normalize+returns  stockbatch vs pyarrow/numpy vs polars (checking order, dropping duplicate
                     keys, per-segment returns)
  resample           stockbatch vs polars group_by_dynamic (5m UTC; 1d in New York time)
  validate-memory    peak RSS growth of one validate call vs the input's size, measured in a
                     fresh child process (extra_info; must stay within 25 % of the input)

The peers implement the same eight rules as validate, except that TS_NOT_INCREASING and
DUPLICATE_TS compare with the previous row rather than the segment's running maximum (a
cheaper check, so the peers' times are a lower bound). The data carries a few nulls, NaN and
negative volumes, as provider data does. Run:

    PYTHONPATH=src python -m pytest bench/test_kernels.py --benchmark-only \
        --benchmark-columns=min,median,rounds --benchmark-sort=name
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from benchutil import quick, sized

import stockbatch as sb

pl = pytest.importorskip("polars")

N = sized(10_000_000)
NSYM = 2_000
MIN = 60_000_000
START = 1_767_225_600_000_000  # 2026-01-01T00:00Z
NUMERIC = ("ts", "open", "high", "low", "close", "adj_close", "volume")


def make_bars(n: int = N, nsym: int = NSYM, seed: int = 20260101) -> pa.Table:
    """Sorted (symbol, interval, ts) one-minute bars: a random walk per row, ~0.1 % bad."""
    rng = np.random.default_rng(seed)
    per = max(n // nsym, 1)
    n = per * nsym
    names = pa.array([f"S{i:04d}" for i in range(nsym)])
    symbol = pa.DictionaryArray.from_arrays(
        np.repeat(np.arange(nsym, dtype=np.int32), per), names
    ).cast(pa.string())
    interval = pa.Array.from_buffers(
        pa.string(),
        n,
        [None, pa.py_buffer(np.arange(n + 1, dtype=np.int32) * 2), pa.py_buffer(b"1m" * n)],
    )
    ts = START + np.tile(np.arange(per, dtype=np.int64) * MIN, nsym)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    open_ = close * (1.0 + rng.normal(0.0, 5e-4, n))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 5e-4, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 5e-4, n)))
    volume = rng.integers(0, 100_000, n)
    bad = rng.integers(0, n, max(n // 2_000, 1))
    high[bad[::2]] = np.nan
    volume[bad[1::2]] = -1
    null_close = np.zeros(n, bool)
    null_close[rng.integers(0, n, max(n // 5_000, 1))] = True
    return pa.table(
        {
            "symbol": symbol,
            "interval": interval,
            "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "open": pa.array(open_),
            "high": pa.array(high),
            "low": pa.array(low),
            "close": pa.array(close, mask=null_close),
            "adj_close": pa.array(close * 0.98, mask=null_close),
            "volume": pa.array(volume, pa.int64()),
            "source": pa.array(["bench"] * nsym).take(pa.array(np.repeat(np.arange(nsym), per))),
        }
    )


@pytest.fixture(scope="module")
def bars() -> pa.Table:
    return make_bars()


@pytest.fixture(scope="module")
def frame(bars):
    return pl.from_arrow(bars)


# ------------------------------------------------------------------------------ peers: helpers


def _values(chunk: pa.Array, dtype) -> np.ndarray:
    """Zero-copy numpy view of a fixed-width Arrow array's values."""
    return np.frombuffer(
        chunk.buffers()[1], dtype, len(chunk), chunk.offset * np.dtype(dtype).itemsize
    )


def _valid(chunk: pa.Array) -> np.ndarray | None:
    """Validity as bool (None when there are no nulls)."""
    if chunk.null_count == 0:
        return None
    bits = np.frombuffer(chunk.buffers()[0], np.uint8)
    return np.unpackbits(bits, bitorder="little", count=chunk.offset + len(chunk))[
        chunk.offset :
    ].view(bool)


def _and(a, b):
    return b if a is None else a if b is None else a & b


# ----------------------------------------------------------------------------------- validate


def validate_numpy(t: pa.Table):
    c = {k: t.column(k).chunk(0) for k in t.column_names}
    n = t.num_rows
    valid = {k: _valid(c[k]) for k in c}
    x = {k: _values(c[k], np.float64) for k in ("open", "high", "low", "close", "adj_close")}
    ts = _values(c["ts"], np.int64)
    vol = _values(c["volume"], np.int64)
    present = None
    for k in ("symbol", "interval", "ts", "open", "high", "low", "close", "volume"):
        present = _and(present, valid[k])
    null = ~present if present is not None else np.zeros(n, bool)
    nonfinite = np.zeros(n, bool)
    nonpos = np.zeros(n, bool)
    ok = {}
    for k, v in x.items():
        fin = np.isfinite(v)
        ok[k] = fin if valid[k] is None else fin & valid[k]
        nonfinite |= ~fin if valid[k] is None else ~fin & valid[k]
        nonpos |= ok[k] & (v <= 0)
    o, h, lo, cl = x["open"], x["high"], x["low"], x["close"]
    high_bad = ok["high"] & (
        (ok["open"] & (h < o)) | (ok["close"] & (h < cl)) | (ok["low"] & (h < lo))
    )
    low_bad = ok["low"] & (
        (ok["open"] & (lo > o)) | (ok["close"] & (lo > cl)) | (ok["high"] & (lo > h))
    )
    negvol = vol < 0 if valid["volume"] is None else (vol < 0) & valid["volume"]
    same = np.zeros(n, bool)
    same[1:] = pc.and_(
        pc.equal(c["symbol"][1:], c["symbol"][:-1]), pc.equal(c["interval"][1:], c["interval"][:-1])
    ).to_numpy(zero_copy_only=False)
    notinc = np.zeros(n, bool)
    dup = np.zeros(n, bool)
    notinc[1:] = same[1:] & (ts[1:] < ts[:-1])
    dup[1:] = same[1:] & (ts[1:] == ts[:-1])
    flags = [null, nonfinite, nonpos, high_bad, low_bad, negvol, notinc, dup]
    mask = np.zeros(n, np.uint16)
    for bit, f in enumerate(flags):
        mask |= f.astype(np.uint16) << bit
    return mask, [int(np.count_nonzero(f)) for f in flags]


def validate_pyarrow(t: pa.Table):
    b = t.to_batches()[0]
    col = b.column
    n = b.num_rows
    f = pc.fill_null
    present = None
    for k in ("symbol", "interval", "ts", "open", "high", "low", "close", "volume"):
        v = pc.is_valid(col(k))
        present = v if present is None else pc.and_(present, v)
    null = pc.invert(present)
    ok = {k: f(pc.is_finite(col(k)), False) for k in ("open", "high", "low", "close", "adj_close")}
    nonfinite = None
    nonpos = None
    for k in ok:
        nf = f(pc.invert(pc.is_finite(col(k))), False)
        npos = pc.and_(ok[k], f(pc.less_equal(col(k), 0.0), False))
        nonfinite = nf if nonfinite is None else pc.or_(nonfinite, nf)
        nonpos = npos if nonpos is None else pc.or_(nonpos, npos)

    def lt(a, b_):
        return pc.and_(pc.and_(ok[a], ok[b_]), f(pc.less(col(a), col(b_)), False))

    high_bad = pc.or_(pc.or_(lt("high", "open"), lt("high", "close")), lt("high", "low"))
    low_bad = pc.or_(pc.or_(lt("open", "low"), lt("close", "low")), lt("high", "low"))
    negvol = f(pc.less(col("volume"), 0), False)
    same = pc.and_(
        pc.equal(col("symbol")[1:], col("symbol")[:-1]),
        pc.equal(col("interval")[1:], col("interval")[:-1]),
    )
    ts = col("ts").cast(pa.int64())
    first = pa.array([False])
    notinc = pa.concat_arrays([first, f(pc.and_(same, pc.less(ts[1:], ts[:-1])), False)])
    dup = pa.concat_arrays([first, f(pc.and_(same, pc.equal(ts[1:], ts[:-1])), False)])
    flags = [null, nonfinite, nonpos, high_bad, low_bad, negvol, notinc, dup]
    mask = pa.nulls(n, pa.uint16()).fill_null(0)
    for bit, fl in enumerate(flags):
        mask = pc.bit_wise_or(
            mask, pc.multiply(pc.cast(fl, pa.uint16()), pa.scalar(1 << bit, pa.uint16()))
        )
    return mask, [pc.sum(fl).as_py() or 0 for fl in flags]


def validate_polars(df):
    c = pl.col
    same = (c("symbol") == c("symbol").shift(1)) & (c("interval") == c("interval").shift(1))
    ok = {
        k: c(k).is_finite().fill_null(False) for k in ("open", "high", "low", "close", "adj_close")
    }
    flags = {
        "null": pl.any_horizontal(
            [
                c(k).is_null()
                for k in ("symbol", "interval", "ts", "open", "high", "low", "close", "volume")
            ]
        ),
        "nonfinite": pl.any_horizontal([(~c(k).is_finite()).fill_null(False) for k in ok]),
        "nonpos": pl.any_horizontal([ok[k] & (c(k) <= 0) for k in ok]),
        "high": ok["high"]
        & (
            (ok["open"] & (c("high") < c("open")))
            | (ok["close"] & (c("high") < c("close")))
            | (ok["low"] & (c("high") < c("low")))
        ),
        "low": ok["low"]
        & (
            (ok["open"] & (c("low") > c("open")))
            | (ok["close"] & (c("low") > c("close")))
            | (ok["high"] & (c("low") > c("high")))
        ),
        "negvol": (c("volume") < 0).fill_null(False),
        "notinc": (same & (c("ts") < c("ts").shift(1))).fill_null(False),
        "dup": (same & (c("ts") == c("ts").shift(1))).fill_null(False),
    }
    out = df.select(**flags)
    mask = out.select(
        pl.sum_horizontal(
            [pl.col(k).cast(pl.UInt16) * (1 << i) for i, k in enumerate(flags)]
        ).alias("mask")
    )
    return mask, out.sum().row(0)


def floor_reduce(t: pa.Table):
    """Memory-bandwidth floor: one np.add.reduce over every buffer validate reads."""
    total = 0.0
    for k in NUMERIC:
        chunk = t.column(k).chunk(0)
        total += float(
            np.add.reduce(_values(chunk, np.int64 if k in ("ts", "volume") else np.float64))
        )
    for k in ("symbol", "interval"):
        total += float(np.add.reduce(np.frombuffer(t.column(k).chunk(0).buffers()[1], np.int32)))
    return total


@pytest.mark.benchmark(group="validate")
def test_validate_stockbatch(benchmark, bars):
    out = np.empty(bars.num_rows, np.uint16)
    report = benchmark(sb.validate, bars, out=out)
    assert report.n_rejected > 0 and len(report.mask) == bars.num_rows


@pytest.mark.benchmark(group="validate")
def test_validate_stockbatch_fresh_mask(benchmark, bars):
    report = benchmark(sb.validate, bars)
    assert report.n_rejected > 0


@pytest.mark.benchmark(group="validate")
def test_validate_numpy(benchmark, bars):
    mask, counts = benchmark(validate_numpy, bars)
    ours = sb.validate(bars)
    assert counts == [ours.counts[r.name] for r in list(sb.Rule)[:8]]


@pytest.mark.benchmark(group="validate")
def test_validate_pyarrow(benchmark, bars):
    mask, counts = benchmark(validate_pyarrow, bars)
    assert counts == list(validate_numpy(bars)[1])


@pytest.mark.benchmark(group="validate")
def test_validate_polars(benchmark, frame, bars):
    mask, counts = benchmark(validate_polars, frame)
    assert list(counts) == list(validate_numpy(bars)[1])


@pytest.mark.benchmark(group="validate")
def test_validate_floor_np_add_reduce(benchmark, bars):
    benchmark(floor_reduce, bars)


# -------------------------------------------------------------------------- normalize+returns


def normalize_returns_stockbatch(t):
    res = sb.normalize(t)
    return res.table, sb.returns(res.table)


def normalize_returns_pyarrow(t):
    """Check order with vectorized comparisons, sort only when needed, drop duplicate keys,
    returns with the first row of each (symbol, interval) null."""
    b = t.to_batches()[0]
    sym, itv, ts = b.column("symbol"), b.column("interval"), b.column("ts")
    eq_s = pc.equal(sym[1:], sym[:-1])
    eq_i = pc.equal(itv[1:], itv[:-1])
    eq_t = pc.equal(ts[1:], ts[:-1])
    ordered = pc.or_(
        pc.less(sym[:-1], sym[1:]),
        pc.and_(
            eq_s, pc.or_(pc.less(itv[:-1], itv[1:]), pc.and_(eq_i, pc.less_equal(ts[:-1], ts[1:])))
        ),
    )
    if not pc.all(ordered).as_py():
        b = b.take(
            pc.sort_indices(
                b,
                sort_keys=[("symbol", "ascending"), ("interval", "ascending"), ("ts", "ascending")],
            )
        )
        return normalize_returns_pyarrow(pa.Table.from_batches([b]))
    dup = pc.and_(pc.and_(eq_s, eq_i), eq_t)
    if pc.any(dup).as_py():
        b = b.filter(pa.concat_arrays([pc.invert(dup), pa.array([True])]))
        return normalize_returns_pyarrow(pa.Table.from_batches([b]))
    close = b.column("close")
    r = pc.subtract(pc.divide(close[1:], close[:-1]), 1.0)
    first = pc.invert(pc.and_(eq_s, eq_i))
    r = pc.if_else(first, pa.scalar(None, pa.float64()), r)
    return b, pa.concat_arrays([pa.array([None], pa.float64()), r])


def normalize_returns_polars(df):
    """The same checks as expressions, one pass; sorts / dedups only when needed."""
    c = pl.col
    keys = ["symbol", "interval", "ts"]
    same_seg = (c("symbol") == c("symbol").shift(1)) & (c("interval") == c("interval").shift(1))
    prev = {k: c(k).shift(1) for k in keys}
    checks = df.select(
        ordered=(
            (c("symbol") > prev["symbol"])
            | (
                (c("symbol") == prev["symbol"])
                & (
                    (c("interval") > prev["interval"])
                    | ((c("interval") == prev["interval"]) & (c("ts") >= prev["ts"]))
                )
            )
        )
        .fill_null(True)
        .all(),
        dups=(same_seg & (c("ts") == c("ts").shift(1))).fill_null(False).any(),
    ).row(0)
    if not checks[0]:
        df = df.sort(keys, maintain_order=True)
    if checks[1]:
        df = df.unique(keys, keep="last", maintain_order=True)
    return df.with_columns(ret=pl.when(same_seg).then(c("close") / c("close").shift(1) - 1.0))


def normalize_returns_polars_idiomatic(df):
    keys = ["symbol", "interval", "ts"]
    return (
        df.sort(keys, maintain_order=True)
        .unique(keys, keep="last", maintain_order=True)
        .with_columns(ret=pl.col("close").pct_change().over("symbol", "interval"))
    )


@pytest.mark.benchmark(group="normalize+returns")
def test_normalize_returns_stockbatch(benchmark, bars):
    table, r = benchmark(normalize_returns_stockbatch, bars)
    assert table.num_rows == bars.num_rows and r.null_count >= NSYM


@pytest.mark.benchmark(group="normalize+returns")
def test_normalize_returns_pyarrow(benchmark, bars):
    _, r = benchmark(normalize_returns_pyarrow, bars)
    ours = normalize_returns_stockbatch(bars)[1]
    assert r.null_count == ours.null_count


@pytest.mark.benchmark(group="normalize+returns")
def test_normalize_returns_polars(benchmark, frame):
    out = benchmark(normalize_returns_polars, frame)
    assert out.height == frame.height


@pytest.mark.benchmark(group="normalize+returns")
def test_normalize_returns_polars_idiomatic(benchmark, frame):
    if not quick():
        benchmark.pedantic(normalize_returns_polars_idiomatic, args=(frame,), rounds=3)
    else:
        benchmark(normalize_returns_polars_idiomatic, frame)


# ----------------------------------------------------------------------------------- resample


def resample_polars(df, every: str, tz: str | None = None):
    if tz:
        df = df.with_columns(pl.col("ts").dt.convert_time_zone(tz))
    return df.group_by_dynamic(
        "ts", every=every, group_by="symbol", closed="left", label="left"
    ).agg(
        pl.col("open").first(),
        pl.col("high").max(),
        pl.col("low").min(),
        pl.col("close").last(),
        pl.col("adj_close").last(),
        pl.col("volume").sum(),
    )


@pytest.mark.benchmark(group="resample-5m")
def test_resample_5m_stockbatch(benchmark, bars):
    out = benchmark(sb.resample, bars, to="5m")
    assert out.num_rows > 0


@pytest.mark.benchmark(group="resample-5m")
def test_resample_5m_polars(benchmark, frame, bars):
    out = benchmark(resample_polars, frame, "5m")
    assert out.height == sb.resample(bars, to="5m").num_rows


@pytest.mark.benchmark(group="resample-1d-tz")
def test_resample_1d_new_york_stockbatch(benchmark, bars):
    out = benchmark(sb.resample, bars, to="1d", tz="America/New_York")
    assert out.num_rows > 0


@pytest.mark.benchmark(group="resample-1d-tz")
def test_resample_1d_new_york_polars(benchmark, frame, bars):
    out = benchmark(resample_polars, frame, "1d", "America/New_York")
    assert out.height == sb.resample(bars, to="1d", tz="America/New_York").num_rows


# ----------------------------------------------------------------------------- peak memory


def _status() -> dict[str, int]:
    text = open("/proc/self/status").read()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) * 1024 for k in ("VmRSS", "VmHWM")}


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


_CHILD = """
import gc, json, sys
sys.path.insert(0, sys.argv[1])
import stockbatch as sb
from test_kernels import _reset_peak, _status, make_bars
t = make_bars(int(sys.argv[2]))
sb.validate(t.slice(0, 1000)).valid  # first-call costs (imports, code pages) not counted
gc.collect()
if not _reset_peak():
    print(json.dumps(None))
    sys.exit(0)
base = _status()["VmRSS"]
report = sb.validate(t)
counts = report.counts
peak = _status()["VmHWM"] - base
_reset_peak()
base2 = _status()["VmRSS"]
split = report.valid.num_rows + report.rejected.num_rows
peak_split = _status()["VmHWM"] - base2
print(json.dumps({"input_bytes": t.nbytes, "validate_peak_growth": peak,
                  "valid_rejected_peak_growth": peak_split, "rows": split,
                  "rejected": report.n_rejected, "counts": counts}))
"""


@pytest.mark.benchmark(group="validate-memory")
def test_validate_peak_memory(benchmark):
    """Peak RSS growth of one validate call (fresh mask) vs the input's size, measured in a
    fresh child process so that nothing freed earlier in this one hides the allocation.
    Target: growth <= 25 % of the input. Building ``valid`` / ``rejected`` afterwards (lazy,
    a filtered copy) is reported apart."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    def run():
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(Path(__file__).parent), str(N)],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(proc.stdout.strip().splitlines()[-1])

    sizes = benchmark.pedantic(run, rounds=1, iterations=1)
    if sizes is None:
        pytest.skip("cannot reset the peak RSS here")
    sizes["growth_to_input"] = round(sizes["validate_peak_growth"] / sizes["input_bytes"], 4)
    sizes["split_growth_to_input"] = round(
        sizes["valid_rejected_peak_growth"] / sizes["input_bytes"], 4
    )
    benchmark.extra_info.update(sizes)
    print(f"\nvalidate peak memory: {sizes}")
    assert sizes["rejected"] > 0 and sizes["counts"]["NON_FINITE"] > 0
    if not quick():  # pages and allocator slack dominate on tiny inputs
        assert sizes["validate_peak_growth"] <= 0.25 * sizes["input_bytes"]
