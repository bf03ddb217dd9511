"""How a job turns period / start / end into the range it asks providers for."""

from __future__ import annotations

import pytest

from stockbatch.pipeline._job import clean_symbols, resolve_window

NOW = 1_795_935_123.4  # 2026-11-29 06:52:03 UTC


@pytest.mark.parametrize(
    "interval,period,days",
    [("1d", "1mo", 31), ("1wk", "1y", 365), ("1m", "5d", 5), ("1h", "3mo", 92)],
)
def test_a_period_covers_yahoos_range_and_is_stable_within_a_step(interval, period, days):
    start, end = resolve_window(interval, period, None, None, now=NOW)
    assert start / 1e6 <= NOW - days * 86400 and end / 1e6 > NOW
    step = 86400 if interval in ("1d", "1wk") else 60
    assert start % (step * 10**6) == 0 and end % (step * 10**6) == 0
    later = resolve_window(interval, period, None, None, now=NOW + 25)  # same minute
    assert later == (start, end)


def test_explicit_bounds_are_kept_and_checked():
    assert resolve_window("1d", None, "2025-01-01", "2025-02-01", now=NOW) == (
        1_735_689_600_000_000,
        1_738_368_000_000_000,
    )
    with pytest.raises(ValueError, match="either period or start"):
        resolve_window("1d", "1y", "2025-01-01", None)
    with pytest.raises(ValueError, match="not after start"):
        resolve_window("1d", None, "2025-02-01", "2025-01-01")


def test_symbols_are_cleaned_in_order_and_bad_ones_refused():
    assert clean_symbols([" AAPL", "7203.T", "AAPL"]) == ("AAPL", "7203.T")
    assert clean_symbols("MSFT") == ("MSFT",)
    for bad, err in (
        ([], ValueError),
        (["A B"], ValueError),
        ([""], ValueError),
        ([None], TypeError),
        (["X" * 65], ValueError),
    ):
        with pytest.raises(err):
            clean_symbols(bad)
