"""The one module of time conversions (``stockbatch._time``), against datetime arithmetic."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from stockbatch import _time

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
US = timedelta(microseconds=1)


def test_to_utc_micros():
    cases = {
        "1970-01-01T00:00:01Z": 1_000_000,
        "2024-01-02": (datetime(2024, 1, 2, tzinfo=timezone.utc) - EPOCH) // US,
        date(1969, 12, 31): -86_400_000_000,
        datetime(2024, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=9))): (
            datetime(2024, 1, 1, 0, 30, tzinfo=timezone.utc) - EPOCH
        )
        // US,
        datetime(2024, 1, 1, 0, 0, 0, 7): (datetime(2024, 1, 1, tzinfo=timezone.utc) - EPOCH) // US
        + 7,
        pa.scalar(1_234_567, pa.timestamp("us", tz="UTC")): 1_234_567,
    }
    for value, want in cases.items():
        assert _time.to_utc_micros(value) == want
    assert _time.micros_to_datetime(1_500_000) == EPOCH + timedelta(seconds=1.5)
    assert _time.micros_to_datetime(-1) == EPOCH - US
    with pytest.raises(TypeError):
        _time.to_utc_micros(12.5)
    with pytest.raises(ValueError):
        _time.to_utc_micros("not a time")


def test_to_us_reads_ints_as_microseconds():
    assert _time.to_us(None) is None
    assert _time.to_us(5) == 5
    assert _time.to_us(date(1970, 1, 2)) == 86_400_000_000
    assert _time.to_us("1970-01-01T00:00:01+00:00") == 1_000_000
    assert _time.to_us(datetime(1970, 1, 1, 0, 0, 2)) == 2_000_000  # naive: UTC
    with pytest.raises(TypeError, match="start must be a date/time"):
        _time.to_us(True, "start")
    with pytest.raises(ValueError, match="end is not an ISO 8601"):
        _time.to_us("soon", "end")
    with pytest.raises(TypeError):
        _time.to_us(1.5)


def test_to_epoch_reads_numbers_as_seconds():
    assert _time.to_epoch(None) is None
    assert _time.to_epoch(12.9) == 12
    assert _time.to_epoch(date(1970, 1, 2)) == 86_400
    assert _time.to_epoch("1970-01-01T01:00:00") == 3_600  # naive: UTC
    assert _time.to_epoch(datetime(1970, 1, 1, 9, tzinfo=timezone(timedelta(hours=9)))) == 0
    with pytest.raises(TypeError):
        _time.to_epoch(False)
    with pytest.raises(TypeError):
        _time.to_epoch([1])


@pytest.mark.parametrize(
    ("period", "days"),
    [("1d", 1), ("1y", 365), ("10y", 3652), ("3d", 3), ("2wk", 14), ("4mo", 124), ("3y", 1098)],
)
def test_period_days(period, days):
    assert _time.period_days(period) == days


def test_periods_and_their_pattern():
    assert _time.period_days("max") == 365 * 60
    assert 1 <= _time.period_days("ytd") <= 366
    for p in _time.PERIODS:
        assert _time.PERIOD_PATTERN.match(p)
        _time.period_days(p)
    for bad in ("", "1", "y", "1h", "ytd ", "-1d"):
        assert not _time.PERIOD_PATTERN.match(bad)
        with pytest.raises(ValueError, match="bad period"):
            _time.period_days(bad)
