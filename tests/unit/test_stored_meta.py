"""Pure parts of issue 14: exchange-local dates, actions from decoder events, read bounds,
indicator rows, adjusted prices (oracles: zoneinfo and hand arithmetic)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from stockbatch.adjust import adjusted
from stockbatch.schema import local_dates
from stockbatch.sinks._meta import actions_table, date_bound, indicators_long

UTC = timezone.utc
US = pa.timestamp("us", tz="UTC")


def test_local_dates_follow_each_zone_across_dst():
    zones = {
        "A": "America/New_York",
        "T": "Asia/Tokyo",
        "B": "Europe/Berlin",
        "S": "Australia/Sydney",
        "U": None,
    }
    days = [
        date(2026, 3, 6),
        date(2026, 3, 9),
        date(2026, 3, 27),
        date(2026, 3, 30),
        date(2026, 4, 3),
        date(2026, 4, 6),
    ]
    syms, ts, want = [], [], []
    for s, z in zones.items():
        for d in days:
            zone = ZoneInfo(z or "UTC")
            syms.append(s)
            ts.append(datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC))
            want.append(d)
    got = local_dates(pa.array(syms), pa.array(ts, US), zones)
    assert got.type == pa.date32() and got.to_pylist() == want


def test_local_dates_of_interleaved_rows_nulls_and_chunks():
    # rows of several zones interleaved (each zone converts its own rows), a symbol with
    # no zone, a null symbol (dated in UTC) and a null ts (null date), in two chunks
    zones = {"T": "Asia/Tokyo", "A": "America/New_York", "U": None}
    rows = [
        ("T", datetime(2026, 11, 29, 15, 0, tzinfo=UTC)),  # Tokyo midnight of the 30th
        ("A", datetime(2026, 3, 9, 4, 0, tzinfo=UTC)),  # New York midnight, DST began
        ("U", datetime(2026, 11, 29, 23, 0, tzinfo=UTC)),
        (None, datetime(2026, 11, 29, 23, 0, tzinfo=UTC)),
        ("T", None),
        ("A", datetime(2026, 3, 8, 4, 59, tzinfo=UTC)),  # still the 7th in New York
        ("T", datetime(2026, 11, 30, 14, 59, tzinfo=UTC)),
    ]
    want = [
        date(2026, 11, 30),
        date(2026, 3, 9),
        date(2026, 11, 29),
        date(2026, 11, 29),
        None,
        date(2026, 3, 7),
        date(2026, 11, 30),
    ]
    sym = pa.chunked_array([pa.array([r[0] for r in rows[:3]]), pa.array([r[0] for r in rows[3:]])])
    ts = pa.chunked_array(
        [pa.array([r[1] for r in rows[:4]], US), pa.array([r[1] for r in rows[4:]], US)]
    )
    assert local_dates(sym, ts, zones).to_pylist() == want
    # one zone for every row, and none at all
    one = local_dates(pa.array(["T", "T"]), pa.array([rows[0][1], rows[6][1]], US), zones)
    assert one.to_pylist() == [date(2026, 11, 30)] * 2
    assert local_dates(pa.array(["U"]), pa.array([rows[2][1]], US), {}).to_pylist() == [
        date(2026, 11, 29)
    ]


def test_actions_table_one_row_per_symbol_and_exchange_day():
    ex = int(datetime(2026, 3, 30, tzinfo=ZoneInfo("Asia/Tokyo")).timestamp())
    ny = int(datetime(2026, 3, 30, 9, 30, tzinfo=ZoneInfo("America/New_York")).timestamp())
    t = actions_table(
        {
            "7203.T": {"dividends": [[ex, 30.0]], "splits": [[ex, 3, 2]]},
            "AAPL": {"dividends": [[ny, 0.25], [ny + 60, 0.26]], "splits": []},
            "X": {"dividends": [], "splits": []},
        },
        {"7203.T": "Asia/Tokyo", "AAPL": "America/New_York"},
        "yahoo",
    )
    assert t.to_pylist() == [
        {
            "symbol": "7203.T",
            "date": date(2026, 3, 30),
            "ts": datetime.fromtimestamp(ex, UTC),
            "dividend": 30.0,
            "split_ratio": 1.5,
            "source": "yahoo",
        },
        {  # two events on one exchange day: one row, the later value
            "symbol": "AAPL",
            "date": date(2026, 3, 30),
            "ts": datetime.fromtimestamp(ny, UTC),
            "dividend": 0.26,
            "split_ratio": None,
            "source": "yahoo",
        },
    ]
    assert actions_table({"X": {"dividends": [], "splits": []}}, {}, None).num_rows == 0


@pytest.mark.parametrize(
    "value, want",
    [
        ("2026-11-30", date(2026, 11, 30)),
        (date(2026, 11, 30), date(2026, 11, 30)),
        (datetime(2026, 11, 30, tzinfo=UTC), None),
        ("2026-11-30T15:00:00Z", None),
        (0, None),
    ],
)
def test_date_bound(value, want):
    assert date_bound("start", value) == want


def test_date_bound_refuses_a_bad_day():
    with pytest.raises(ValueError, match="start='2026-02-30' is not a date"):
        date_bound("start", "2026-02-30")


def test_indicators_long_drops_warmup_nulls_and_nan():
    wide = pa.table(
        {
            "symbol": ["A", "A"],
            "interval": ["1d", "1d"],
            "ts": pa.array([0, 86_400_000_000], pa.int64()).cast(US),
            "sma2": [None, 1.5],
            "rsi": [float("nan"), 40.0],
        }
    )
    got = indicators_long(wide).to_pylist()
    assert [(r["name"], r["value"]) for r in got] == [("sma2", 1.5), ("rsi", 40.0)]


def test_adjusted_dividends_and_splits_by_hand():
    ts = [datetime(2026, 3, d, tzinfo=UTC) for d in (2, 3, 4)]
    bars = pa.table(
        {
            "symbol": ["A"] * 3,
            "interval": ["1d"] * 3,
            "ts": pa.array(ts, US),
            "open": [10.0, 10.0, 5.0],
            "high": [10.0, 10.0, 5.0],
            "low": [10.0, 10.0, 5.0],
            "close": [10.0, 10.0, 5.0],
            "adj_close": [None, None, None],
            "volume": [100, 100, 200],
        }
    )
    acts = pa.table(
        {
            "symbol": ["A", "A"],
            "date": [date(2026, 3, 3), date(2026, 3, 4)],
            "ts": pa.array([None, None], US),
            "dividend": [1.0, None],
            "split_ratio": [None, 2.0],
        }
    )
    div = adjusted(bars, acts)
    # the bar before the ex-date scales by 1 - 1/10; later bars are unchanged
    assert div.column("adj_close").to_pylist() == pytest.approx([9.0, 10.0, 5.0])
    both = adjusted(bars, acts, splits=True)
    assert both.column("close").to_pylist() == pytest.approx([4.5, 5.0, 5.0])
    assert both.column("volume").to_pylist() == [200, 200, 200]
