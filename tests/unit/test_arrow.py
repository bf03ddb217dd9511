"""``stockbatch._arrow`` builds what ``pa.array`` / ``to_numpy`` / ``to_pylist`` would, from
buffers: the same arrays, values and nulls, for every input shape the ingest path hands it."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest

from stockbatch import _arrow

UTC = dt.timezone.utc
UTC_US = pa.timestamp("us", tz="UTC")

TYPED = [
    (["a", None, "é", ""], pa.string()),
    ([b"x", None, b""], pa.binary()),
    ([1, None, -(2**63), 2**63 - 1], pa.int64()),
    ([5, None], pa.int32()),
    ([1.5, None, float("nan"), -0.0], pa.float64()),
    ([True, None, False, True, True, False, False, False, True], pa.bool_()),
    (
        [
            dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
            None,
            dt.datetime(2024, 1, 2, 12, tzinfo=ZoneInfo("Asia/Tokyo")),
            dt.datetime(1960, 5, 5, 1, 2, 3, 7),  # naive: read as UTC
        ],
        UTC_US,
    ),
    ([dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)], pa.timestamp("ns", tz="UTC")),
    ([dt.datetime(1969, 12, 31, 23, 59, 59, 500000)], pa.timestamp("s")),
    ([1_700_000_000_000_000, None], UTC_US),
    ([dt.date(2024, 1, 2), None, dt.date(1900, 1, 1)], pa.date32()),
    ([], pa.string()),
    ([None, None], pa.int64()),
]


@pytest.mark.parametrize(("values", "type"), TYPED, ids=lambda x: str(x)[:30])
def test_typed_arrays_equal_pyarrows(values, type):
    got, want = _arrow.array(values, type), pa.array(values, type)
    assert got.type == want.type
    assert got.is_valid().equals(want.is_valid())
    # NaN-aware, unlike Array.equals
    np.testing.assert_array_equal(
        got.to_numpy(zero_copy_only=False), want.to_numpy(zero_copy_only=False)
    )
    assert got.null_count == sum(v is None for v in values)


@pytest.mark.parametrize(
    "values",
    [
        ["a", None],
        [1, 2],
        [1.0, None],
        [True],
        [None, None],
        [b"z"],
        [dt.date(2020, 1, 1)],
        [dt.datetime(2020, 1, 1, 9, 30), None],  # naive
        [dt.datetime(2020, 1, 1, tzinfo=UTC)],  # zoned: pyarrow's own inference
        [1, 2.5],  # mixed: pyarrow's own inference
        [],
    ],
    ids=repr,
)
def test_inferred_arrays_equal_pyarrows(values):
    got = _arrow.array(values)
    want = pa.array(values)
    assert got.type == want.type
    assert got.equals(want)


@pytest.mark.parametrize(
    ("values", "type"),
    [
        (np.arange(5, dtype=np.int64), None),
        (np.arange(5, dtype=np.int32), pa.int64()),
        (np.array([True, False, True]), None),
        (np.arange(3, dtype=np.int64), UTC_US),
        (np.arange(10, dtype=np.float64)[::2], None),  # not contiguous
    ],
    ids=repr,
)
def test_numpy_arrays_equal_pyarrows(values, type):
    assert _arrow.array(values, type).equals(pa.array(values, type))


def test_strings_bools_scalar_fill_null():
    assert _arrow.strings(["a", "héllo", ""]).equals(pa.array(["a", "héllo", ""]))
    mask = np.array([1, 0, 1, 1, 0, 0, 0, 0, 1], bool)
    assert _arrow.bools(mask).equals(pa.array(mask))
    assert _arrow.scalar(-1, pa.int32()) == pa.scalar(-1, pa.int32())
    col = pa.chunked_array([[1, None], [None, 4]])
    assert _arrow.fill_null(col, 0).to_pylist() == [1, 0, 0, 4]
    plain = pa.array([1, 2])
    assert _arrow.fill_null(plain, 0) is plain


@pytest.mark.parametrize(
    "col",
    [
        pa.array(np.arange(5)).slice(2),
        pa.array([1.5, 2.5], pa.float32()),
        pa.array(np.arange(4, dtype=np.uint8)),
        pa.array([True, False, True, True, False, False, False, False, True]).slice(3),
        pa.array(np.arange(3)).cast(pa.timestamp("s")),
        pa.array(np.arange(3)).cast(UTC_US),
        pa.array([dt.date(2020, 1, 1), dt.date(1960, 1, 1)]).slice(1),
        pa.chunked_array([pa.array(np.arange(3)), pa.array(np.arange(2))]),
        pa.chunked_array([], pa.int64()),
        pa.array([1, None, 3]),  # nulls: pyarrow's own conversion
    ],
    ids=lambda c: str(c.type),
)
def test_to_numpy_equals_pyarrows(col):
    got, want = _arrow.to_numpy(col), col.to_numpy(zero_copy_only=False)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_datetimes_values_pylist_equal_pyarrows():
    ts = pa.array([0, None, 1_700_000_000_123_456], pa.int64()).cast(UTC_US)
    assert _arrow.datetimes(ts) == ts.to_pylist()
    table = pa.table({"ts": ts, "s": ["a", None, "c"], "naive": ts.cast(pa.timestamp("us"))})
    assert _arrow.pylist(table) == table.to_pylist()
    assert _arrow.values(table.column("s")) == ["a", None, "c"]


def test_no_pandas_import():
    """The point of the module: none of it makes pyarrow import pandas."""
    code = """
import sys, datetime as dt, numpy as np, pyarrow as pa
from stockbatch import _arrow
ts = _arrow.array([dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), None], pa.timestamp("us", tz="UTC"))
_arrow.pylist(pa.table({"ts": ts, "n": _arrow.array([1, None])}))
_arrow.to_numpy(_arrow.fill_null(_arrow.array([1, None]), 0))
_arrow.to_numpy(_arrow.bools(np.array([True, False])))
_arrow.array([dt.datetime(2024, 1, 1)]); _arrow.array([dt.date(2024, 1, 1)])
assert "pandas" not in sys.modules
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
