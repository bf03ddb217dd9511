"""Hand-written cases for the kernels (validate, normalize, resample, returns), both backends.

Property tests against outside oracles are in test_kernels_props.py.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pytest

import stockbatch
from stockbatch import Rule, SchemaError
from stockbatch._validation import NormalizeResult, ValidationReport

UTC_US = pa.timestamp("us", tz="UTC")
MIN = 60_000_000
NAN = float("nan")
INF = float("inf")


def bars(rows, *, dictionary=False, adj=True):
    """rows: (symbol, ts_minutes, open, high, low, close, volume[, adj_close])."""
    cols = [[r[j] for r in rows] for j in range(7)]
    sym = pa.array(cols[0], pa.string())
    data = {
        "symbol": sym.dictionary_encode() if dictionary else sym,
        "interval": pa.array(["1m"] * len(rows), pa.string()),
        "ts": pa.array([None if t is None else t * MIN for t in cols[1]], pa.int64()).cast(UTC_US),
        "open": pa.array(cols[2], pa.float64()),
        "high": pa.array(cols[3], pa.float64()),
        "low": pa.array(cols[4], pa.float64()),
        "close": pa.array(cols[5], pa.float64()),
    }
    if adj:
        data["adj_close"] = pa.array([r[7] if len(r) > 7 else r[5] for r in rows], pa.float64())
    data["volume"] = pa.array(cols[6], pa.int64())
    return pa.table(data)


GOOD = ("A", 0, 10.0, 11.0, 9.0, 10.5, 100)


@pytest.fixture
def k(load):
    return load("kernels")


# ---------------------------------------------------------------------------------- validate


def test_public_names_map_to_kernels():
    assert stockbatch.Rule is Rule
    assert stockbatch.ValidationReport is ValidationReport
    for name in ("validate", "normalize", "resample", "returns", "log_returns"):
        assert callable(getattr(stockbatch, name))


def test_validate_each_rule(k):
    rows = [
        GOOD,  # 0 ok
        ("A", 1, None, 11.0, 9.0, 10.5, 100),  # 1 NULL_FIELD
        ("A", 2, 10.0, NAN, 9.0, 10.5, 100),  # 2 NON_FINITE only
        ("A", 3, 10.0, 11.0, 9.0, -INF, 100),  # 3 NON_FINITE only
        ("A", 4, 0.0, 11.0, 9.0, 10.5, 100),  # 4 NON_POSITIVE_PRICE + LOW (0 < 9)
        ("A", 5, 10.0, 9.5, 9.0, 10.5, 100),  # 5 HIGH_INCONSISTENT
        ("A", 6, 10.0, 11.0, 10.2, 10.5, 100),  # 6 LOW_INCONSISTENT
        ("A", 7, 10.0, 11.0, 9.0, 10.5, -1),  # 7 NEGATIVE_VOLUME
        ("A", 7, 10.0, 11.0, 9.0, 10.5, 100),  # 8 DUPLICATE_TS
        ("A", 6, 10.0, 11.0, 9.0, 10.5, 100),  # 9 TS_NOT_INCREASING
        ("B", 0, 10.0, 11.0, 9.0, 10.5, 100),  # 10 new segment: ok
        ("B", 1, 10.0, 11.0, 9.0, 10.5, 100, None),  # 11 null adj_close is allowed
        ("B", 2, 10.0, 11.0, 9.0, 10.5, 100, NAN),  # 12 adj_close NaN: NON_FINITE
    ]
    r = k.validate(bars(rows))
    R = Rule
    # row 4: open 0 is below low 9, so low is above open: LOW_INCONSISTENT as well
    expect = [
        0,
        R.NULL_FIELD,
        R.NON_FINITE,
        R.NON_FINITE,
        R.NON_POSITIVE_PRICE | R.LOW_INCONSISTENT,
        R.HIGH_INCONSISTENT,
        R.LOW_INCONSISTENT,
        R.NEGATIVE_VOLUME,
        R.DUPLICATE_TS,
        R.TS_NOT_INCREASING,
        0,
        0,
        R.NON_FINITE,
    ]
    assert r.mask.dtype == np.uint16
    assert [int(m) for m in r.mask] == [int(e) for e in expect]
    assert r.counts["NULL_FIELD"] == 1 and r.counts["NON_FINITE"] == 3
    assert r.counts["LOW_INCONSISTENT"] == 2 and r.counts["DUPLICATE_TS"] == 1
    assert "PRICE_SPIKE" not in r.counts  # not checked without a threshold
    assert r.n_rejected == 10 and r.n_valid == 3
    assert r.valid.num_rows + r.rejected.num_rows == len(rows)
    reasons = r.rejected.column("reasons").to_pylist()
    assert reasons[0] == "NULL_FIELD"
    assert "NON_POSITIVE_PRICE,LOW_INCONSISTENT" in reasons
    assert r.rejected.column_names[-1] == "reasons"
    assert r.valid.column("ts").to_pylist()[0] == dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def test_validate_high_below_low_flags_both(k):
    r = k.validate(bars([("A", 0, 10.0, 9.0, 11.0, 10.0, 1)]))
    assert int(r.mask[0]) == Rule.HIGH_INCONSISTENT | Rule.LOW_INCONSISTENT
    assert r.rejected.column("reasons").to_pylist() == ["HIGH_INCONSISTENT,LOW_INCONSISTENT"]


def test_validate_ts_running_max_and_null_ts(k):
    rows = [("A", t, 10.0, 11.0, 9.0, 10.5, 1) for t in (5, 3, 4, 5, None, 6, 6)]
    r = k.validate(bars(rows))
    R = Rule
    assert [int(m) for m in r.mask] == [
        0,
        R.TS_NOT_INCREASING,
        R.TS_NOT_INCREASING,
        R.DUPLICATE_TS,
        R.NULL_FIELD,
        0,
        R.DUPLICATE_TS,
    ]


def test_validate_price_spike(k):
    closes = [10.0, 10.5, 20.0, 19.0, None, 19.5, 0.0, 30.0]
    rows = [("A", i, c, c, c, c, 1) for i, c in enumerate(closes)] + [("B", 0, 50.0, 50, 50, 50, 1)]
    off = k.validate(bars(rows))
    assert "PRICE_SPIKE" not in off.counts
    r = k.validate(bars(rows), spike_threshold=0.5)
    spikes = [bool(m & Rule.PRICE_SPIKE) for m in r.mask]
    # 10.5 -> 20 is +90 %; null and zero closes never take part; B starts a new segment
    assert spikes == [False, False, True, False, False, False, False, False, False]
    assert r.counts["PRICE_SPIKE"] == 1
    with pytest.raises(ValueError, match="spike_threshold"):
        k.validate(bars(rows), spike_threshold=-1)


def test_validate_rules_subset_and_out_buffer(k):
    rows = [GOOD, ("A", 1, 10.0, 9.0, 9.5, 10.0, -5)]
    out = np.full(10, 7, np.uint16)
    r = k.validate(bars(rows), rules=Rule.NEGATIVE_VOLUME, out=out)
    assert np.shares_memory(r.mask, out)
    assert list(out[:2]) == [0, Rule.NEGATIVE_VOLUME]
    assert list(out[2:]) == [7] * 8  # untouched beyond the data
    assert r.counts == {"NEGATIVE_VOLUME": 1}
    with pytest.raises(ValueError, match="holds 1"):
        k.validate(bars(rows), out=np.zeros(1, np.uint16))
    with pytest.raises(TypeError, match="uint16"):
        k.validate(bars(rows), out=np.zeros(2, np.int32))


def test_validate_valid_is_input_when_clean(k):
    t = bars([GOOD, ("A", 1, 10.0, 11.0, 9.0, 10.5, 100)])
    r = k.validate(t)
    assert r.ok and r.valid.num_rows == 2
    assert r.valid is r.table
    assert r.rejected.num_rows == 0 and "reasons" in r.rejected.column_names
    assert "rejected=0" in repr(r)


def test_validate_empty_one_row_and_all_null(k):
    r = k.validate(bars([]))
    assert len(r.mask) == 0 and r.n_rejected == 0 and set(r.counts.values()) == {0}
    r = k.validate(bars([GOOD]))
    assert list(r.mask) == [0]
    t = bars([GOOD, GOOD[:1] + (1,) + GOOD[2:]]).set_column(3, "open", pa.nulls(2))
    r = k.validate(t)  # a null-typed column is conformed to float64
    assert [int(m) for m in r.mask] == [Rule.NULL_FIELD] * 2


def test_validate_inputs_dictionary_sliced_chunked_polars(k):
    rows = [
        GOOD,
        ("A", 1, 10.0, 9.8, 9.5, 9.6, 1),
        ("B", 0, 1.0, 2.0, 0.5, 1.0, -1),
        ("B", 0, 1.0, 2.0, 0.5, 1.0, 1),
        ("C", 3, 1.0, 2.0, 0.5, 1.0, 1),
    ]
    plain = bars(rows)
    want = [int(m) for m in k.validate(plain).mask]
    assert want == [0, Rule.HIGH_INCONSISTENT, Rule.NEGATIVE_VOLUME, Rule.DUPLICATE_TS, 0]
    d = bars(rows, dictionary=True)
    assert [int(m) for m in k.validate(d).mask] == want
    sliced = plain.slice(1, 3)
    assert [int(m) for m in k.validate(sliced).mask] == want[1:4]
    batch = plain.to_batches()[0].slice(2)
    assert [int(m) for m in k.validate(batch).mask] == want[2:]
    chunked = pa.Table.from_batches(
        [plain.slice(0, 3).to_batches()[0], plain.slice(3).to_batches()[0]]
    )
    assert chunked.column(0).num_chunks == 2
    assert [int(m) for m in k.validate(chunked).mask] == want
    pl = pytest.importorskip("polars")
    assert [int(m) for m in k.validate(pl.from_arrow(plain)).mask] == want


def test_validate_schema_errors(k):
    t = bars([GOOD])
    with pytest.raises(SchemaError, match="volume") as exc:
        k.validate(t.drop_columns(["volume"]))
    assert "volume" in exc.value.problems
    naive = t.set_column(2, "ts", t.column("ts").cast(pa.timestamp("us")))
    with pytest.raises(SchemaError, match="ts"):
        k.validate(naive)
    with pytest.raises(TypeError):
        k.validate(42)


# --------------------------------------------------------------------------------- normalize


def test_normalize_sorted_input_is_not_copied(k):
    t = bars([GOOD, ("A", 1, 10.0, 11.0, 9.0, 10.5, 1), ("B", 0, 10.0, 11.0, 9.0, 10.5, 1)])
    res = k.normalize(t)
    assert isinstance(res, NormalizeResult)
    assert res.duplicates_dropped == 0 and res.sorted is False
    assert res.table.equals(t)
    assert (
        res.table.column("close").chunk(0).buffers()[1].address
        == t.column("close").chunk(0).buffers()[1].address
    )


def test_normalize_sorts_stably_and_keeps_last_duplicate(k):
    rows = [
        ("B", 1, 1.0, 1, 1, 1.0, 1),
        ("A", 2, 1.0, 1, 1, 2.0, 1),
        ("A", 1, 1.0, 1, 1, 3.0, 1),
        ("A", 2, 1.0, 1, 1, 4.0, 1),
        ("B", None, 1.0, 1, 1, 5.0, 1),
        ("A", 1, 1.0, 1, 1, 6.0, 1),
        ("B", None, 1.0, 1, 1, 7.0, 1),
    ]
    for dictionary in (False, True):
        res = k.normalize(bars(rows, dictionary=dictionary))
        assert res.sorted is True
        assert res.duplicates_dropped == 3
        got = res.table
        assert got.column("symbol").to_pylist() == ["A", "A", "B", "B"]
        assert got.column("close").to_pylist() == [6.0, 4.0, 1.0, 7.0]  # last wins, nulls last


def test_normalize_adjust(k):
    rows = [
        ("A", 0, 10.0, 12.0, 8.0, 10.0, 1, 5.0),  # factor 0.5
        ("A", 1, 10.0, 12.0, 8.0, 10.0, 1, None),  # no adj_close: unchanged
        ("A", 2, None, 12.0, 8.0, 0.0, 1, 1.0),
    ]  # close 0: unchanged, null stays
    t = bars(rows).slice(0)
    res = k.normalize(t, adjust=True)
    out = res.table
    assert out.column("open").to_pylist() == [5.0, 10.0, None]
    assert out.column("high").to_pylist() == [6.0, 12.0, 12.0]
    assert out.column("close").to_pylist() == [5.0, 10.0, 0.0]
    assert out.column("adj_close").to_pylist() == [5.0, None, 1.0]
    sliced = k.normalize(bars(rows).slice(1), adjust=True).table
    assert sliced.column("open").to_pylist() == [10.0, None]


def test_normalize_empty_and_one_row(k):
    assert k.normalize(bars([])).table.num_rows == 0
    res = k.normalize(bars([GOOD]), adjust=True)
    assert res.table.num_rows == 1 and res.duplicates_dropped == 0 and not res.sorted


# ----------------------------------------------------------------------------------- returns


def test_returns_per_segment(k):
    closes = [
        ("A", 10.0),
        ("A", 11.0),
        ("A", None),
        ("A", 12.1),
        ("A", 13.31),
        ("B", 5.0),
        ("B", 10.0),
    ]
    rows = [(s, i, 1.0, 1, 1, c, 1) for i, (s, c) in enumerate(closes)]
    r = k.returns(bars(rows)).to_pylist()
    assert r[0] is None and r[2] is None and r[3] is None and r[5] is None
    assert r[1] == pytest.approx(0.1) and r[4] == pytest.approx(0.1) and r[6] == pytest.approx(1.0)
    lr = k.log_returns(bars(rows)).to_pylist()
    assert lr[6] == pytest.approx(math.log(2.0))
    assert k.returns(bars([])).to_pylist() == []
    assert k.returns(bars([GOOD])).to_pylist() == [None]
    assert k.returns(bars(rows), column="open").to_pylist()[1] == 0.0
    vol = k.returns(bars(rows), column="volume")  # integer column
    assert vol.type == pa.float64() and vol.to_pylist()[1] == 0.0


# ---------------------------------------------------------------------------------- resample


def test_resample_5m(k):
    rows = [
        ("A", 0, 10.0, 11.0, 9.0, 10.5, 100),
        ("A", 3, 10.5, 12.0, 10.0, 11.0, 50),
        ("A", 4, None, None, None, None, None),
        ("A", 5, 11.0, 11.5, 10.5, 11.2, 10),
        ("A", None, 99.0, 99.0, 99.0, 99.0, 99),
        ("B", 7, 5.0, 6.0, 4.0, 5.5, 1),
    ]
    out = k.resample(bars(rows), to="5m")
    assert out.column_names == [
        "symbol",
        "interval",
        "ts",
        "open",
        "high",
        "low",
        "close",
        "adj_close",
        "volume",
    ]
    assert out.schema.field("ts").type == UTC_US
    assert out.column("symbol").to_pylist() == ["A", "A", "B"]
    assert out.column("interval").to_pylist() == ["5m"] * 3
    assert [t.timestamp() for t in out.column("ts").to_pylist()] == [0, 300, 300]
    assert out.column("open").to_pylist() == [10.0, 11.0, 5.0]
    assert out.column("high").to_pylist() == [12.0, 11.5, 6.0]
    assert out.column("low").to_pylist() == [9.0, 10.5, 4.0]
    assert out.column("close").to_pylist() == [11.0, 11.2, 5.5]
    assert out.column("volume").to_pylist() == [150, 10, 1]


def test_resample_all_null_bucket_and_nan(k):
    rows = [
        ("A", 0, None, None, None, None, None),
        ("A", 5, 1.0, NAN, 1.0, 1.0, 1),
        ("A", 6, 1.0, 2.0, 0.5, 1.0, 1),
    ]
    out = k.resample(bars(rows), to="5m")
    assert out.column("open").to_pylist()[0] is None
    assert out.column("volume").to_pylist() == [None, 2]
    assert math.isnan(out.column("high").to_pylist()[1])
    assert out.column("low").to_pylist()[1] == 0.5


def test_resample_unsorted_and_bad_arguments(k):
    rows = [("A", 5, 1.0, 1, 1, 1.0, 1), ("A", 1, 1.0, 1, 1, 1.0, 1)]
    with pytest.raises(ValueError, match="normalize"):
        k.resample(bars(rows), to="1h")
    with pytest.raises(ValueError, match="normalize"):  # the later row in an earlier bucket
        k.resample(bars(rows), to="5m")
    late = rows + [("A", 12, 1.0, 1, 1, 1.0, 1), ("A", 11, 1.0, 1, 1, 1.0, 1)]
    with pytest.raises(ValueError, match="normalize"):
        k.resample(bars([late[1], late[0], late[2], late[3]]), to="5m")
    with pytest.raises(ValueError, match="normalize"):
        k.resample(bars([late[1], late[0], late[2], late[3]]), to="1d", tz="Asia/Tokyo")
    with pytest.raises(ValueError, match="unknown interval"):
        k.resample(bars(rows[:1]), to="7x")
    with pytest.raises(ValueError, match="unknown interval"):
        k.resample(bars(rows[:1]), to="0m")
    with pytest.raises(ValueError, match="time zone"):
        k.resample(bars(rows[:1]), to="1d", tz="Mars/Olympus")
    assert k.resample(bars([]), to="1d").num_rows == 0


def _utc(*args):
    return dt.datetime(*args, tzinfo=dt.timezone.utc)


def test_resample_daily_in_exchange_tz_across_dst(k):
    # hourly bars from 2026-03-07 12:00Z to 2026-03-10 00:00Z; New York moves to EDT on 03-08
    start = int(_utc(2026, 3, 7, 12).timestamp()) // 60
    rows = [("A", start + 60 * i, 1.0 + i, 1.0 + i, 1.0 + i, 1.0 + i, 1) for i in range(61)]
    out = k.resample(bars(rows), to="1d", tz="America/New_York")
    assert out.column("ts").to_pylist() == [
        _utc(2026, 3, 7, 5),
        _utc(2026, 3, 8, 5),
        _utc(2026, 3, 9, 4),
    ]
    # 03-08 local has 23 hours: 05:00Z .. 03:00Z next day (exclusive 04:00Z)
    assert out.column("volume").to_pylist() == [17, 23, 21]
    assert sum(out.column("volume").to_pylist()) == 61
    utc_days = k.resample(bars(rows), to="1d")
    assert utc_days.column("ts").to_pylist() == [
        _utc(2026, 3, 7),
        _utc(2026, 3, 8),
        _utc(2026, 3, 9),
        _utc(2026, 3, 10),
    ]


def test_resample_week_and_month(k):
    start = int(_utc(2026, 1, 28).timestamp()) // 60
    rows = [("A", start + 1440 * d, 1.0, 2.0, 0.5, 1.0, 1) for d in range(10)]
    weeks = k.resample(bars(rows), to="1wk")
    assert weeks.column("ts").to_pylist() == [_utc(2026, 1, 26), _utc(2026, 2, 2)]
    assert weeks.column("volume").to_pylist() == [5, 5]
    months = k.resample(bars(rows), to="1mo")
    assert months.column("ts").to_pylist() == [_utc(2026, 1, 1), _utc(2026, 2, 1)]
    assert months.column("volume").to_pylist() == [4, 6]
    tokyo = k.resample(bars(rows), to="1mo", tz="Asia/Tokyo")
    assert tokyo.column("ts").to_pylist() == [_utc(2025, 12, 31, 15), _utc(2026, 1, 31, 15)]
    assert tokyo.column("volume").to_pylist() == [4, 6]


@pytest.mark.parametrize("dictionary", [False, True])
def test_segments_long_runs_of_equal_length_strings(k, dictionary):
    # runs longer than the 64-row blocks the compiled segment finder compares at once;
    # neighbours of equal length differ in one byte, an interval change splits a run
    rng = np.random.default_rng(7)
    lengths = rng.integers(1, 200, 12)
    names = [f"S{i:04d}" for i in range(12)] + [""]
    syms = [names[i] for i, m in enumerate(lengths) for _ in range(m)] + ["", ""]
    n = len(syms)
    intervals = ["1m"] * n
    intervals[100:130] = ["5m"] * 30
    rows = [(s, i, 1.0, 1.0, 1.0, 1.0 + i % 3, 1) for i, s in enumerate(syms)]
    t = bars(rows, dictionary=dictionary)
    t = t.set_column(1, "interval", pa.array(intervals))
    starts = [
        i for i in range(n) if i == 0 or (syms[i], intervals[i]) != (syms[i - 1], intervals[i - 1])
    ]
    for offset in (0, 3):
        got = k.returns(t.slice(offset)).to_pylist()
        want = [i - offset for i in starts if i >= offset]
        if 0 not in want:
            want = [0, *want]
        assert [i for i, r in enumerate(got) if r is None] == want


# ------------------------------------------------------------- symbols in arrival order


def _arrival_batches(dictionary=False):
    """Per-symbol batches as a pipeline receives them (not in symbol order), each sorted by
    ts except where noted; MSFT comes back at the end (a new run)."""
    msft = [
        ("MSFT", 0, 400.0, 401.0, 399.0, 400.5, 10),
        ("MSFT", 1, 400.0, 401.0, 399.0, 400.5, 10),
        ("MSFT", 1, 400.0, 401.0, 399.0, 400.5, 10),  # DUPLICATE_TS
        ("MSFT", 3, 400.0, 401.0, 399.0, 400.5, 10),
    ]
    aapl = [
        ("AAPL", 0, 200.0, 201.0, 199.0, 200.5, 10),  # close halves: not a spike (new run)
        ("AAPL", 2, 200.0, 201.0, 199.0, 200.5, 10),
        ("AAPL", 1, 200.0, 201.0, 199.0, 200.5, 10),
    ]  # TS_NOT_INCREASING
    ibm = [("IBM", 2, 100.0, 101.0, 99.0, 100.5, 10)]  # ts below MSFT's/AAPL's: fine
    again = [("MSFT", 0, 400.0, 401.0, 399.0, 400.5, 10)]  # ts restarts in a new run: fine
    return [bars(part, dictionary=dictionary) for part in (msft, aapl, ibm, again)]


@pytest.mark.parametrize("dictionary", [False, True])
def test_validate_symbols_in_arrival_order(k, dictionary):
    parts = _arrival_batches(dictionary)
    # each batch has its own dictionary when dictionary-encoded; combining unifies them
    t = pa.concat_tables(parts).combine_chunks()
    assert t.column("symbol").to_pylist()[3:5] == ["MSFT", "AAPL"]
    r = k.validate(t, spike_threshold=0.2)
    R = Rule
    want = [0, 0, R.DUPLICATE_TS, 0, 0, 0, R.TS_NOT_INCREASING, 0, 0]
    assert [int(m) for m in r.mask] == [int(w) for w in want]
    # the same flags as validating each batch on its own
    alone = np.concatenate([k.validate(p, spike_threshold=0.2).mask for p in parts])
    np.testing.assert_array_equal(r.mask, alone)
    assert r.counts["DUPLICATE_TS"] == 1 and r.counts["TS_NOT_INCREASING"] == 1
    assert r.counts["PRICE_SPIKE"] == 0
    assert r.rejected.column("symbol").to_pylist() == ["MSFT", "AAPL"]
    assert r.rejected.column("reasons").to_pylist() == ["DUPLICATE_TS", "TS_NOT_INCREASING"]
    # the chunked table (one chunk per arrival) gives the same
    np.testing.assert_array_equal(
        k.validate(pa.concat_tables(parts), spike_threshold=0.2).mask, alone
    )
    got = k.returns(t).to_pylist()
    assert [i for i, x in enumerate(got) if x is None] == [0, 4, 7, 8]


def test_other_kernels_on_symbols_in_arrival_order(k):
    rows = [("MSFT", t, 400.0 + t, 401.0 + t, 399.0, 400.0 + t, 1) for t in range(0, 12, 2)] + [
        ("AAPL", t, 200.0 + t, 201.0 + t, 199.0, 200.0 + t, 1) for t in range(1, 12, 2)
    ]
    t = bars(rows)
    out = k.resample(t, to="5m")  # one run after another, in arrival order
    assert out.column("symbol").to_pylist() == ["MSFT"] * 3 + ["AAPL"] * 3
    assert out.column("open").to_pylist() == [400.0, 406.0, 410.0, 201.0, 205.0, 211.0]
    assert out.column("volume").to_pylist() == [3, 2, 1, 2, 3, 1]
    res = k.normalize(t)  # normalize establishes symbol order
    assert res.sorted is True and res.duplicates_dropped == 0
    assert res.table.column("symbol").to_pylist() == ["AAPL"] * 6 + ["MSFT"] * 6
    assert k.validate(res.table).ok and k.validate(t).ok


@pytest.mark.parametrize(
    "kind", ["large", "view", "dict8", "dict16", "dict64", "dict_u32", "dict_large"]
)
def test_symbol_string_types(k, kind):
    rows = [
        GOOD,
        ("A", 1, 10.0, 9.8, 9.5, 9.6, 1),
        ("B", 0, 1.0, 2.0, 0.5, 1.0, -1),
        ("B", 0, 1.0, 2.0, 0.5, 1.0, 1),
        ("A", 3, 1.0, 2.0, 0.5, 1.0, 1),
    ]
    plain = bars(rows)
    sym = plain.column("symbol").chunk(0)
    if kind == "large":
        sym = sym.cast(pa.large_string())
    elif kind == "view":
        sym = sym.cast(pa.string_view())
    else:
        d = sym.dictionary_encode()
        index = {
            "dict8": pa.int8(),
            "dict16": pa.int16(),
            "dict64": pa.int64(),
            "dict_u32": pa.uint32(),
        }.get(kind, pa.int32())
        values = d.dictionary.cast(pa.large_string()) if kind == "dict_large" else d.dictionary
        sym = pa.DictionaryArray.from_arrays(d.indices.cast(index), values)
    t = plain.set_column(0, "symbol", sym)
    want = [0, Rule.HIGH_INCONSISTENT, Rule.NEGATIVE_VOLUME, Rule.DUPLICATE_TS, 0]
    assert [int(m) for m in k.validate(t).mask] == [int(w) for w in want]
    assert k.returns(t).to_pylist()[2:4] == [None, 0.0]
    assert k.returns(t).to_pylist()[4] is None  # A again: a new run
    res = k.normalize(t)
    assert res.sorted and res.duplicates_dropped == 1
    assert res.table.column("symbol").to_pylist() == ["A", "A", "A", "B"]


def test_returns_into_caller_buffer(k):
    rows = [("A", i, 1.0, 1, 1, c, 1) for i, c in enumerate([10.0, 11.0, None, 12.1])] + [
        ("B", 0, 1.0, 1, 1, 5.0, 1),
        ("B", 1, 1.0, 1, 1, 10.0, 1),
    ]
    t = bars(rows)
    want = k.returns(t).to_pylist()
    buf = np.full(8, -7.0)
    got = k.returns(t, out=buf)
    assert got.to_pylist() == want
    assert got.buffers()[1].address == buf.ctypes.data  # the caller's memory, no copy
    assert buf[1] == pytest.approx(0.1) and list(buf[6:]) == [-7.0, -7.0]
    lr = k.log_returns(t, out=buf)
    assert lr.to_pylist()[5] == pytest.approx(math.log(2.0)) and buf[5] == lr.to_pylist()[5]
    with pytest.raises(ValueError, match="holds 2"):
        k.returns(t, out=np.zeros(2))
    with pytest.raises(TypeError, match="float64"):
        k.returns(t, out=np.zeros(6, np.float32))
