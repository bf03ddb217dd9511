"""Flat windows after big moves: the rolling std of bbands and volatility is exactly 0.

Both kernels keep sliding sums and fall back to an exact two-pass sum when the variance
cancels heavily. Measured against the current sum of squares, that test missed the case where
big values had just left the window (the sum of squares was then rounding residue itself),
and a flat window reported a std of ~1e-9 (found by the property tests of test_indicators).
"""

from __future__ import annotations

import pyarrow as pa
import pytest


@pytest.fixture
def ind(load):
    return load("indicators")


def _batch(closes: list[float]) -> pa.RecordBatch:
    return pa.record_batch({"close": pa.array(closes, pa.float64())})


def test_volatility_of_a_flat_window_is_zero(ind):
    out = ind.volatility(_batch([94.0, 108.0, 113.0, 113.0, 113.0, 113.0]), 3, ddof=0)
    assert out.to_pylist()[-1] == 0.0
    assert out.to_pylist()[3] > 0.0


def test_bbands_width_of_a_flat_window_is_zero(ind):
    closes = [0.93, 0.86, 0.87, 1.04, 1.09, 1.18, 0.91, 1.03, 0.86, 0.86, 0.86]
    upper, middle, lower = ind.bbands(_batch(closes), 2, 1.0)
    assert upper.to_pylist()[-1] == middle.to_pylist()[-1] == lower.to_pylist()[-1]
    assert upper.to_pylist()[-3] > middle.to_pylist()[-3]
