"""Property tests: compiled kernels == pure-Python twin == an outside oracle.

Random batches carry nulls, NaN, +-inf, zero and negative values, several symbols (plain or
dictionary strings), sliced arrays and several chunks. Oracles: pyarrow.compute plus plain
Python for validate, numpy for returns, pandas for normalize, polars group_by_dynamic for
resample. Floats are compared with a relative tolerance of 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockbatch import Rule

pl = pytest.importorskip("polars")
pd = pytest.importorskip("pandas")

UTC_US = pa.timestamp("us", tz="UTC")
MIN = 60_000_000
NAN, INF = float("nan"), float("inf")
RTOL = 1e-9
# `load` runs each test once per backend; it hands out the same module every example.
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

normal = st.floats(0.5, 200.0, allow_nan=False, allow_infinity=False)
special = st.sampled_from([None, NAN, INF, -INF, 0.0, -1.5])
price = st.one_of(normal, normal, normal, special)
volume = st.one_of(st.integers(0, 10_000), st.integers(0, 10_000), st.none(), st.integers(-5, -1))
symbol = st.sampled_from(["A", "BB", "C", "\u00c4x", "", None])


ENCODINGS = ("plain", "plain", "dict", "dict8", "dict64", "dict_large", "large", "view")


def _encode(arr: pa.Array, how: str) -> pa.Array:
    """A string column as plain, large or view strings, or dictionary-encoded with int32,
    int8 or int64 indices (int32 over large strings)."""
    if how == "large":
        return arr.cast(pa.large_string())
    if how == "view":
        return arr.cast(pa.string_view())
    if how.startswith("dict"):
        d = arr.dictionary_encode()
        index = {"dict8": pa.int8(), "dict64": pa.int64()}.get(how, pa.int32())
        values = d.dictionary.cast(pa.large_string()) if how == "dict_large" else d.dictionary
        return pa.DictionaryArray.from_arrays(d.indices.cast(index), values)
    return arr


@st.composite
def tables(draw, *, max_rows=40, sort_ts=False, null_keys=True, ts_step=1):
    """A bars table, maybe sliced, dictionary-encoded or chunked.

    Each symbol's rows are contiguous: either in sorted symbol order, or in arrival order
    (the symbols' runs shuffled, as when per-symbol batches are concatenated as they come).
    """
    pad_lo, pad_hi = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    n = draw(st.integers(0, max_rows))
    total = pad_lo + n + pad_hi
    syms = draw(
        st.lists(
            symbol if null_keys else symbol.filter(lambda s: s is not None),
            min_size=total,
            max_size=total,
        )
    )
    syms.sort(key=lambda s: (s is None, s or ""))
    if draw(st.booleans()):
        groups = list(dict.fromkeys(syms))
        groups = draw(st.permutations(groups))
        syms = [s for g in groups for s in syms if s == g]
    ts_val = st.integers(0, 30)
    ts = draw(
        st.lists(
            st.one_of(ts_val, ts_val, ts_val, st.none()) if null_keys else ts_val,
            min_size=total,
            max_size=total,
        )
    )
    if sort_ts:
        run = {s: k for k, s in enumerate(dict.fromkeys(syms))}  # keeps the run order
        order = sorted(range(total), key=lambda i: (run[syms[i]], ts[i] is None, ts[i] or 0))
        syms = [syms[i] for i in order]
        ts = [ts[i] for i in order]
    intervals = draw(
        st.lists(
            st.sampled_from(["1m", "1m", "1m", "5m"] + ([None] if null_keys else [])),
            min_size=total,
            max_size=total,
        )
    )
    if sort_ts:
        intervals = ["1m"] * total
    cols = {
        "symbol": pa.array(syms, pa.string()),
        "interval": pa.array(intervals, pa.string()),
        "ts": pa.array([None if t is None else t * MIN * ts_step for t in ts], pa.int64()).cast(
            UTC_US
        ),
    }
    for name in ("open", "high", "low", "close", "adj_close"):
        cols[name] = pa.array(draw(st.lists(price, min_size=total, max_size=total)), pa.float64())
    cols["volume"] = pa.array(draw(st.lists(volume, min_size=total, max_size=total)), pa.int64())
    cols["symbol"] = _encode(cols["symbol"], draw(st.sampled_from(ENCODINGS)))
    table = pa.table(cols).slice(pad_lo, n)
    how = draw(st.sampled_from(["table", "batch", "chunks"]))
    if how == "batch" and n:
        return table.to_batches()[0]  # a sliced batch: children carry the offset
    if how == "chunks" and n > 1:
        cut = draw(st.integers(1, n - 1))
        return pa.Table.from_batches(
            [
                pa.RecordBatch.from_arrays([c.chunk(0) for c in part.columns], schema=part.schema)
                for part in (table.slice(0, cut), table.slice(cut))
            ]
        )
    return table


def _table(data) -> pa.Table:
    return data if isinstance(data, pa.Table) else pa.Table.from_batches([data])


def _np(arr, fill=False):
    return np.asarray(arr.fill_null(fill).to_numpy(zero_copy_only=False))


def _runs(table: pa.Table) -> list[tuple[int, int]]:
    """(start, stop) of every run of equal (symbol, interval), plain Python."""
    keys = list(
        zip(table.column("symbol").to_pylist(), table.column("interval").to_pylist(), strict=True)
    )
    runs, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[i - 1]:
            runs.append((start, i))
            start = i
    return runs


def oracle_validate(data, thr) -> np.ndarray:
    t = _table(data).combine_chunks()
    n = t.num_rows
    m = np.zeros(n, np.uint16)
    null = np.zeros(n, bool)
    for name in ("symbol", "interval", "ts", "open", "high", "low", "close", "volume"):
        null |= ~_np(pc.is_valid(t.column(name)))
    m[null] |= np.uint16(Rule.NULL_FIELD)
    ok = {}
    for name in ("open", "high", "low", "close", "adj_close"):
        col = t.column(name)
        m[_np(pc.invert(pc.is_finite(col)), False)] |= np.uint16(Rule.NON_FINITE)
        ok[name] = _np(pc.is_finite(col), False)
        m[ok[name] & _np(pc.less_equal(col, 0.0), False)] |= np.uint16(Rule.NON_POSITIVE_PRICE)

    def lt(a, b):
        return ok[a] & ok[b] & _np(pc.less(t.column(a), t.column(b)), False)

    m[lt("high", "open") | lt("high", "close") | lt("high", "low")] |= np.uint16(
        Rule.HIGH_INCONSISTENT
    )
    m[lt("open", "low") | lt("close", "low") | lt("high", "low")] |= np.uint16(
        Rule.LOW_INCONSISTENT
    )
    m[_np(pc.less(t.column("volume"), 0), False)] |= np.uint16(Rule.NEGATIVE_VOLUME)
    ts = t.column("ts").cast(pa.int64()).to_pylist()
    close = t.column("close").to_pylist()
    for start, stop in _runs(t):
        best = None
        for i in range(start, stop):
            if ts[i] is not None:
                if best is not None and ts[i] < best:
                    m[i] |= np.uint16(Rule.TS_NOT_INCREASING)
                elif best is not None and ts[i] == best:
                    m[i] |= np.uint16(Rule.DUPLICATE_TS)
                best = ts[i] if best is None else max(best, ts[i])
            if thr is not None and i > start:
                a, b = close[i - 1], close[i]
                if (
                    a is not None
                    and b is not None
                    and math.isfinite(a)
                    and math.isfinite(b)
                    and a > 0
                    and b > 0
                    and abs(b / a - 1) > thr
                ):
                    m[i] |= np.uint16(Rule.PRICE_SPIKE)
    return m


@SETTINGS
@given(tables(), st.sampled_from([None, 0.3]))
def test_validate_matches_oracle(load, data, thr):
    want = oracle_validate(data, thr)
    k = load("kernels")
    r = k.validate(data, spike_threshold=thr)
    np.testing.assert_array_equal(r.mask, want, err_msg=k.__name__)
    for rule in Rule:
        if rule.name in r.counts:
            assert r.counts[rule.name] == int(np.count_nonzero(want & np.uint16(rule)))
    assert r.valid.num_rows == int(np.count_nonzero(want == 0))
    assert r.rejected.num_rows == int(np.count_nonzero(want))


def assert_floats(got: pa.Array, want: list, what=""):
    got = got.to_pylist()
    assert len(got) == len(want), what
    for g, w in zip(got, want, strict=True):
        if w is None or g is None:
            assert g is None and w is None, (what, got, want)
        elif math.isnan(w):
            assert math.isnan(g), (what, got, want)
        elif math.isinf(w):
            assert g == w, (what, got, want)
        else:
            assert g == pytest.approx(w, rel=RTOL, abs=1e-300), (what, got, want)


def oracle_returns(data, log: bool, column="close") -> list:
    t = _table(data).combine_chunks()
    x = t.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
    valid = _np(pc.is_valid(t.column(column)), False)
    out = [None] * t.num_rows
    for start, stop in _runs(t):
        seg, ok = x[start:stop], valid[start:stop]
        with np.errstate(all="ignore"):
            ratio = seg[1:] / seg[:-1]
            r = np.log(ratio) if log else ratio - 1.0
        for j in range(1, stop - start):
            if ok[j] and ok[j - 1]:
                out[start + j] = float(r[j - 1])
    return out


@SETTINGS
@given(tables(), st.booleans())
def test_returns_match_numpy(load, data, log):
    want = oracle_returns(data, log)
    k = load("kernels")
    got = (k.log_returns if log else k.returns)(data)
    assert got.type == pa.float64()
    assert_floats(got, want, k.__name__)


def _rows(table: pa.Table) -> list:
    """Rows as tuples with NaN made comparable."""
    return [
        tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in row.values())
        for row in table.to_pylist()
    ]


@SETTINGS
@given(tables(), st.booleans())
def test_normalize_matches_pandas(load, data, adjust):
    t = _table(data).combine_chunks()
    if pa.types.is_string_view(t.schema.field("symbol").type):  # the oracle's take needs it
        t = t.set_column(0, "symbol", t.column("symbol").cast(pa.string()))
    keys = pd.DataFrame(
        {
            "symbol": t.column("symbol").cast(pa.string()).to_pylist(),
            "interval": t.column("interval").to_pylist(),
            "ts": t.column("ts").cast(pa.int64()).to_pylist(),
            "row": range(t.num_rows),
        }
    )
    ordered = keys.sort_values(["symbol", "interval", "ts"], kind="stable", na_position="last")
    kept = ordered.drop_duplicates(["symbol", "interval", "ts"], keep="last")
    want = t.take(pa.array(kept["row"].to_numpy(), pa.int64()))
    if adjust:
        close, adj = want.column("close"), want.column("adj_close")
        factor = pc.divide(adj, close)
        factor = pc.if_else(pc.is_finite(factor), factor, 1.0).fill_null(1.0)
        for name in ("open", "high", "low", "close"):
            i = want.schema.get_field_index(name)
            want = want.set_column(i, name, pc.multiply(want.column(name), factor))
    is_sorted = list(ordered["row"]) != list(range(t.num_rows))
    k = load("kernels")
    res = k.normalize(data, adjust=adjust)
    assert res.duplicates_dropped == t.num_rows - len(kept)
    assert res.sorted == is_sorted
    got = res.table
    assert got.column("symbol").to_pylist() == want.column("symbol").to_pylist()
    assert _rows(got.drop_columns(["open", "high", "low", "close"])) == _rows(
        want.drop_columns(["open", "high", "low", "close"])
    )
    for name in ("open", "high", "low", "close"):
        assert_floats(got.column(name).combine_chunks(), want.column(name).to_pylist(), name)


_POLARS_EVERY = {"5m": "5m", "1h": "1h", "1d": "1d", "1wk": "1w", "1mo": "1mo"}


def oracle_resample(data, to: str, tz: str | None) -> pl.DataFrame:
    df = (
        pl.from_arrow(_table(data).combine_chunks())
        .with_columns(pl.col("symbol").cast(pl.String))
        .filter(pl.col("ts").is_not_null())
    )
    if tz and to in ("1d", "1wk", "1mo"):  # intraday buckets stay on the UTC grid
        df = df.with_columns(pl.col("ts").dt.convert_time_zone(tz))
    out = df.group_by_dynamic(
        "ts",
        every=_POLARS_EVERY[to],
        group_by="symbol",
        closed="left",
        label="left",
        start_by="window",
    ).agg(
        pl.col("open").drop_nulls().first(),
        pl.col("high").nan_max(),
        pl.col("low").nan_min(),
        pl.col("close").drop_nulls().last(),
        pl.col("adj_close").drop_nulls().last(),
        pl.when(pl.col("volume").count() > 0).then(pl.col("volume").sum()).alias("volume"),
    )
    return out.with_columns(pl.col("ts").dt.convert_time_zone("UTC")).sort(
        "symbol", "ts", maintain_order=True
    )


@SETTINGS
@given(
    st.data(),
    st.sampled_from(["5m", "1h", "1d", "1wk", "1mo"]),
    st.sampled_from([None, None, "America/New_York", "Asia/Kolkata"]),
)
def test_resample_matches_polars(load, data, to, tz):
    step = {"5m": 1, "1h": 7, "1d": 97, "1wk": 600, "1mo": 2900}[to]
    t = data.draw(tables(sort_ts=True, null_keys=False, ts_step=step))
    # start the clock a little before the 2026 DST change in New York
    table = _table(t)
    shift = pa.scalar(1_772_800_000_000_000, pa.int64())
    table = table.set_column(
        2, "ts", pc.add(table.column("ts").cast(pa.int64()), shift).cast(UTC_US)
    )
    want = oracle_resample(table, to, tz)
    k = load("kernels")
    got = k.resample(table, to=to, tz=tz)
    # buckets come out run by run, in the input's (arrival) order of symbols
    runs = list(dict.fromkeys(table.column("symbol").to_pylist()))
    assert list(dict.fromkeys(got.column("symbol").to_pylist())) == runs
    keys = pa.table({"symbol": got.column("symbol").cast(pa.string()), "ts": got.column("ts")})
    got = got.take(pc.sort_indices(keys, sort_keys=[("symbol", "ascending"), ("ts", "ascending")]))
    assert got.num_rows == want.height, k.__name__
    assert got.column("symbol").to_pylist() == want["symbol"].to_list()
    assert set(got.column("interval").to_pylist()) <= {to}
    assert got.column("ts").to_pylist() == want["ts"].to_list()
    assert got.column("volume").to_pylist() == want["volume"].to_list()
    for name in ("open", "high", "low", "close", "adj_close"):
        assert_floats(got.column(name), want[name].to_list(), name)


@pytest.mark.parametrize("to", ["1h", "1d", "1mo"])
def test_resample_long_buckets_with_nulls_match_polars(load, to):
    # buckets of hundreds of rows (the compiled kernel takes bucket bounds found in its first
    # pass and reduces column by column when only some columns hold nulls)
    rng = np.random.default_rng(11)
    per, n = 3_000, 6_000
    sym = pa.array(["ZZ"] * per + ["AA"] * per)  # arrival order, not symbol order
    ts = np.concatenate([np.sort(rng.integers(0, 40 * 1440, per)) for _ in range(2)]) * MIN
    ts += 1_772_800_000_000_000
    cols = {
        "symbol": sym,
        "interval": pa.array(["1m"] * n),
        "ts": pa.array(ts, pa.int64()).cast(UTC_US),
    }
    for name in ("open", "high", "low", "close", "adj_close"):
        x = rng.uniform(1.0, 100.0, n)
        x[rng.integers(0, n, 3)] = np.nan
        cols[name] = pa.array(x, mask=rng.random(n) < (0.002 if name != "high" else 0.0))
    cols["volume"] = pa.array(rng.integers(0, 1000, n), mask=rng.random(n) < 0.001)
    table = pa.table(cols)
    want = oracle_resample(table, to, "America/New_York")
    got = load("kernels").resample(table, to=to, tz="America/New_York")
    assert got.column("symbol").to_pylist()[0] == "ZZ"
    keys = pa.table({"symbol": got.column("symbol"), "ts": got.column("ts")})
    got = got.take(pc.sort_indices(keys, sort_keys=[("symbol", "ascending"), ("ts", "ascending")]))
    assert got.column("ts").to_pylist() == want["ts"].to_list()
    assert got.column("volume").to_pylist() == want["volume"].to_list()
    for name in ("open", "high", "low", "close", "adj_close"):
        assert_floats(got.column(name), want[name].to_list(), name)
