"""conform(): safe widenings are applied, everything else is refused naming the column."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from stockbatch import BARS, QUOTES, SchemaError, conform
from stockbatch.schema import to_table

T0 = dt.datetime(2024, 3, 1, 14, 30)


def bars(**over):
    cols = {
        "symbol": pa.array(["AAPL", "AAPL"]),
        "interval": pa.array(["1d", "1d"]),
        "ts": pa.array([T0, T0 + dt.timedelta(days=1)], pa.timestamp("us", tz="UTC")),
        "open": pa.array([1.0, 2.0]),
        "high": pa.array([2.0, 3.0]),
        "low": pa.array([0.5, 1.5]),
        "close": pa.array([1.5, 2.5]),
        "adj_close": pa.array([1.4, 2.4]),
        "volume": pa.array([100, 200], pa.int64()),
        "source": pa.array(["test", "test"]),
    }
    cols.update(over)
    return {k: v for k, v in cols.items() if v is not None}


def test_exact_schema_passes_through_without_copy():
    table = pa.table(bars())
    out = conform(table)
    assert out.schema.equals(BARS)
    assert (
        out.column("close").chunk(0).buffers()[1].address
        == table.column("close").chunk(0).buffers()[1].address
    )


@pytest.mark.parametrize(
    "name,array",
    [
        ("volume", pa.array([100, 200], pa.int32())),
        ("volume", pa.array([100.0, 200.0])),
        ("close", pa.array([1.5, 2.5], pa.float32())),
        ("symbol", pa.array(["AAPL", "AAPL"], pa.large_string())),
        ("symbol", pa.array(["AAPL", "AAPL"], pa.string_view())),
        ("symbol", pa.array(["AAPL", "AAPL"]).dictionary_encode()),
        ("ts", pa.array([T0, T0 + dt.timedelta(days=1)], pa.timestamp("ns", tz="UTC"))),
        ("ts", pa.array([T0, T0 + dt.timedelta(days=1)], pa.timestamp("s", tz="UTC"))),
    ],
)
def test_safe_widenings(name, array):
    out = conform(bars(**{name: array}))
    assert out.schema.equals(BARS)
    assert out.column(name).to_pylist() == pa.table(bars()).column(name).to_pylist()


def test_tz_aware_timestamps_become_utc_instants():
    tokyo = pa.array([T0], pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us", tz="Asia/Tokyo"))
    out = conform({**{k: v[:1] for k, v in bars().items()}, "ts": tokyo})
    assert out.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert out.column("ts")[0].as_py() == T0.replace(tzinfo=dt.timezone.utc)


def test_naive_timestamps_need_tz():
    naive = pa.array([T0, T0 + dt.timedelta(days=1)], pa.timestamp("us"))
    with pytest.raises(SchemaError) as err:
        conform(bars(ts=naive))
    assert "ts" in str(err.value) and "tz=" in str(err.value)
    assert set(err.value.problems) == {"ts"}
    out = conform(bars(ts=naive), tz="America/New_York")
    # 14:30 in New York in March (EST, before DST) is 19:30 UTC
    assert out.column("ts")[0].as_py() == dt.datetime(2024, 3, 1, 19, 30, tzinfo=dt.timezone.utc)


def test_lossy_nanoseconds_need_truncate():
    ns = pa.array([1_700_000_000_000_000_123], pa.timestamp("ns", tz="UTC"))
    data = {**{k: v[:1] for k, v in bars().items()}, "ts": ns}
    with pytest.raises(SchemaError) as err:
        conform(data)
    assert "ts" in err.value.problems and "truncate=True" in str(err.value)
    assert conform(data, truncate=True).column("ts")[0].value == 1_700_000_000_000_000


def test_every_offending_column_is_named():
    bad = bars(
        volume=pa.array([1.5, 2.0]),
        close=pa.array(["1.5", "2.5"]),
        high=None,
        ts=pa.array(["2024-01-01", "2024-01-02"]),
    )
    with pytest.raises(SchemaError) as err:
        conform(bad)
    problems = err.value.problems
    assert set(problems) == {"volume", "close", "high", "ts"}
    assert problems["high"] == "missing required column"
    assert "fractional" in problems["volume"] and "double" in problems["volume"]
    assert "string" in problems["close"]
    for name in problems:
        assert f"- {name}:" in str(err.value)


def test_integer_prices_widen_to_float():
    out = conform(bars(close=pa.array([1, 2], pa.int32())))
    assert out.column("close").to_pylist() == [1.0, 2.0]


def test_int64_beyond_float_precision_refused():
    with pytest.raises(SchemaError, match="close"):
        conform(bars(close=pa.array([2**60, 1], pa.int64())))


def test_uint64_volume_out_of_range_refused():
    with pytest.raises(SchemaError, match="volume"):
        conform(bars(volume=pa.array([2**64 - 1, 1], pa.uint64())))


def test_missing_interval_and_source_can_be_supplied():
    data = bars(interval=None, source=None, adj_close=None)
    with pytest.raises(SchemaError, match="interval"):
        conform(data)
    out = conform(data, interval="1h", source="mine")
    assert out.column("interval").to_pylist() == ["1h", "1h"]
    assert out.column("source").to_pylist() == ["mine", "mine"]
    assert out.column("adj_close").null_count == 2


def test_extra_columns_dropped_and_order_fixed():
    data = dict(reversed(list(bars().items())))
    data["extra"] = pa.array([1, 2])
    out = conform(data)
    assert out.column_names == BARS.names


def test_capsule_producers():
    pl = pytest.importorskip("polars")
    pd = pytest.importorskip("pandas")
    table = pa.table(bars())
    assert conform(pl.from_arrow(table)).equals(conform(table))
    assert conform(table.to_pandas()).equals(conform(table))
    assert conform(table.to_batches()[0]).equals(conform(table))
    assert conform(pa.RecordBatchReader.from_batches(table.schema, table.to_batches())).equals(
        conform(table)
    )
    assert isinstance(pd.DataFrame, type)


def test_duckdb_relation():
    duckdb = pytest.importorskip("duckdb")
    src = pa.table(bars())  # noqa: F841 - read by DuckDB's replacement scan
    rel = duckdb.sql("select * from src")
    assert conform(rel).equals(conform(pa.table(bars())))


def test_quotes_schema():
    out = conform(
        {"symbol": ["AAPL"], "ts": pa.array([T0], pa.timestamp("ms", tz="UTC")), "price": [190.5]},
        QUOTES,
    )
    assert out.schema.equals(QUOTES)
    assert out.column("currency").null_count == 1


def test_unreadable_input():
    with pytest.raises(TypeError, match="Arrow"):
        to_table(42)
