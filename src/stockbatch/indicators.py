"""Technical indicators computed per (symbol, interval) segment of a bar table.

Every function takes bars sorted by (symbol, interval, ts) — a ``pyarrow.Table`` or
``RecordBatch``, or anything exporting Arrow through PyCapsules (polars, DuckDB, ...), or a
dict of columns — and returns ``pyarrow`` arrays as long as the input, aligned row for row.
A single series may also be passed as an array (``pyarrow.Array``, numpy array, list).
The segments are found once; an indicator never reads across a segment boundary.

Conventions (shared by the compiled kernels and their pure-Python twin):

* **Warm-up** rows are null, where TA-Lib's output starts: SMA and Bollinger bands at row
  ``period - 1`` of a segment, EMA at ``period - 1`` (seeded by the SMA of the first
  ``period`` values), RSI and ATR at ``period`` (Wilder seeding as TA-Lib), MACD at
  ``(slow - 1) + (signal - 1)`` = 33 for 12/26/9 (all three outputs), volatility at
  ``period`` (it needs ``period`` log returns).
* **Missing values** — null, NaN or ±inf in an input the indicator reads (for volatility
  also a price <= 0) — make that row null *and restart the indicator after it*: each run of
  present rows inside a segment is computed exactly as TA-Lib computes a series starting
  there, so a gap costs a new warm-up and no value is ever made up from across a gap.
  (TA-Lib itself would propagate NaN to every later row.) VWAP is cumulative instead: a
  missing row is null and adds nothing, the day's sums carry on.
* **Arithmetic** follows TA-Lib's definitions, so results agree with TA-Lib called per
  symbol to ~1e-14 relative on ordinary prices. Two deliberate differences: window sums
  (SMA, the Bollinger middle band) are recomputed every 1024 rows and whenever a large
  value leaves the window, so they do not drift as TA-Lib's running sum does (after
  prices fall from ~1e9 to ~1 TA-Lib's SMA is off by ~1e-6 relative, ours by ~1e-15);
  and recurrences are written with the shortest dependency chain (~1e-16 relative).
  An RSI window without any change is 0, as in TA-Lib.
* ``out=``: pass a writable, C-contiguous float64 buffer of ``len(data)`` elements (for
  MACD and Bollinger bands a tuple of three) to reuse memory; the returned arrays then
  wrap it zero-copy, so do not overwrite it while they are in use.

Use :func:`compute` to append several indicators to a table by name (``"sma20"``,
``"rsi14"``, ``"macd"``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._backend import load
from ._errors import SchemaError

__all__ = [
    "sma",
    "ema",
    "rsi",
    "macd",
    "bbands",
    "atr",
    "volatility",
    "vwap",
    "compute",
    "MACD",
    "BBands",
    "SPEC_FORMS",
]

_impl = load("indicators")

US_PER_DAY = 86_400_000_000


class MACD(NamedTuple):
    """The three outputs of :func:`macd`."""

    macd: pa.Array
    signal: pa.Array
    hist: pa.Array


class BBands(NamedTuple):
    """The three outputs of :func:`bbands`."""

    upper: pa.Array
    middle: pa.Array
    lower: pa.Array


# ------------------------------------------------------------------ input handling


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)


def _table_to_batch(table: pa.Table) -> pa.RecordBatch:
    if table.num_rows == 0:
        return _empty_batch(table.schema)
    batches = table.combine_chunks().to_batches()  # zero-copy when already one chunk
    return batches[0]


def _as_batch(data, column: str) -> pa.RecordBatch:
    """One record batch over the data (zero-copy for a batch or a one-chunk table)."""
    batch = _any_to_batch(data, column)
    # the kernels read utf8 / large_utf8 (or dictionaries of them) keys; polars exports
    # string_view, so those key columns are cast (a copy of the keys only)
    for key in ("symbol", "interval"):
        idx = batch.schema.get_field_index(key)
        if idx >= 0 and pa.types.is_string_view(batch.schema.field(idx).type):
            batch = batch.set_column(idx, key, batch.column(idx).cast(pa.string()))
    return batch


def _any_to_batch(data, column: str) -> pa.RecordBatch:
    if isinstance(data, pa.RecordBatch):
        return data
    if isinstance(data, pa.Table):
        return _table_to_batch(data)
    if isinstance(data, (pa.Array, pa.ChunkedArray, np.ndarray, list, tuple)):
        arr = data.combine_chunks() if isinstance(data, pa.ChunkedArray) else data
        if not isinstance(arr, pa.Array):
            arr = pa.array(arr)
        return pa.record_batch([arr], names=[column])
    if isinstance(data, dict):
        return _table_to_batch(pa.table(data))
    if hasattr(data, "__arrow_c_stream__"):
        return _table_to_batch(pa.table(data))
    if hasattr(data, "__arrow_c_array__"):
        return pa.record_batch(data)
    raise TypeError(
        "expected bars as a pyarrow Table/RecordBatch, an Arrow PyCapsule exporter, a dict "
        f"of columns, or one series as an array; got {type(data).__name__}"
    )


def _need(batch: pa.RecordBatch, names: Iterable[str]) -> None:
    """SchemaError naming every required column that is missing or not numeric."""
    problems = {}
    for name in names:
        idx = batch.schema.get_field_index(name)
        if idx < 0:
            problems[name] = "missing"
            continue
        t = batch.schema.field(idx).type
        if not (pa.types.is_floating(t) or pa.types.is_integer(t)) or pa.types.is_float16(t):
            problems[name] = f"type {t} is not numeric (float64, float32 or integer needed)"
    if problems:
        detail = "; ".join(f"{k}: {v}" for k, v in problems.items())
        raise SchemaError(f"indicator input columns are unusable — {detail}", problems)


def _need_ts(batch: pa.RecordBatch) -> None:
    idx = batch.schema.get_field_index("ts")
    if idx < 0:
        raise SchemaError("indicator input columns are unusable — ts: missing", {"ts": "missing"})
    t = batch.schema.field(idx).type
    if not pa.types.is_timestamp(t):
        why = f"type {t} is not a timestamp"
        raise SchemaError(f"indicator input columns are unusable — ts: {why}", {"ts": why})


def _day_keys(batch: pa.RecordBatch, tz: str | None):
    """Session-day key per row for VWAP: None for UTC days (the kernel derives them)."""
    _need_ts(batch)
    if tz is None or tz.upper() == "UTC":
        return None
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {tz!r} (use an IANA name such as 'America/New_York')"
        ) from exc
    ts = batch.column("ts")
    unit = ts.type.unit
    aware = ts.cast(pa.timestamp(unit, tz="UTC")) if ts.type.tz is None else ts
    local = pc.local_timestamp(aware.cast(pa.timestamp(unit, tz=tz)))
    us = local.cast(pa.timestamp("us")).cast(pa.int64()).fill_null(0).to_numpy()
    return np.floor_divide(us, US_PER_DAY)


# ------------------------------------------------------------------ one indicator each


def sma(data, period: int = 20, *, column: str = "close", out=None) -> pa.Array:
    """Simple moving average of ``column`` over ``period`` rows, per segment.

    Parameters
    ----------
    data
        Bars sorted by (symbol, interval, ts), or one series as an array.
    period
        Window length, >= 1. The first value is at row ``period - 1`` of a segment.
    column
        The price column to average.
    out
        Optional writable float64 buffer of ``len(data)`` elements to write into.

    Returns
    -------
    pyarrow.Array
        float64, null during the warm-up and where the window meets a missing value.
    """
    batch = _as_batch(data, column)
    _need(batch, [column])
    return _impl.sma(batch, period, column=column, out=out)


def ema(data, period: int = 20, *, column: str = "close", out=None) -> pa.Array:
    """Exponential moving average (k = 2 / (period + 1)), seeded by the SMA of the first
    ``period`` values; first value at row ``period - 1`` of a segment (TA-Lib EMA)."""
    batch = _as_batch(data, column)
    _need(batch, [column])
    return _impl.ema(batch, period, column=column, out=out)


def rsi(data, period: int = 14, *, column: str = "close", out=None) -> pa.Array:
    """Wilder's relative strength index, 0–100; first value at row ``period`` (TA-Lib RSI).

    The average gain and loss start as plain means of the first ``period`` changes, then
    follow Wilder's smoothing. A window without any change gives 0, as TA-Lib does.
    ``period=1`` (which TA-Lib refuses) follows the same formula: 100 on a rise, else 0."""
    batch = _as_batch(data, column)
    _need(batch, [column])
    return _impl.rsi(batch, period, column=column, out=out)


def macd(
    data, fast: int = 12, slow: int = 26, signal: int = 9, *, column: str = "close", out=None
) -> MACD:
    """Moving average convergence/divergence, exactly as TA-Lib's MACD.

    Returns
    -------
    MACD
        ``(macd, signal, hist)``: the fast EMA minus the slow EMA, its ``signal``-period
        EMA, and their difference. All three start at row ``(slow - 1) + (signal - 1)``
        of a segment (33 for 12/26/9). As in TA-Lib, ``fast`` and ``slow`` are swapped
        when ``slow < fast``, and the fast EMA is seeded at row ``slow - 1``.
    """
    batch = _as_batch(data, column)
    _need(batch, [column])
    return MACD(*_impl.macd(batch, fast, slow, signal, column=column, out=out))


def bbands(
    data, period: int = 20, nbdev: float = 2.0, *, column: str = "close", out=None
) -> BBands:
    """Bollinger bands: the SMA ± ``nbdev`` population standard deviations (TA-Lib BBANDS).

    Returns
    -------
    BBands
        ``(upper, middle, lower)``, starting at row ``period - 1`` of a segment.
    """
    batch = _as_batch(data, column)
    _need(batch, [column])
    return BBands(*_impl.bbands(batch, period, nbdev, column=column, out=out))


def atr(data, period: int = 14, *, out=None) -> pa.Array:
    """Average true range from the ``high``, ``low`` and ``close`` columns (TA-Lib ATR).

    The true range needs the previous close, so the first value is at row ``period``: the
    mean of the first ``period`` true ranges, then Wilder's smoothing."""
    batch = _as_batch(data, "close")
    _need(batch, ["high", "low", "close"])
    return _impl.atr(batch, period, out=out)


def volatility(
    data,
    period: int = 20,
    *,
    ddof: int = 1,
    annualize: float | None = None,
    column: str = "close",
    out=None,
) -> pa.Array:
    """Rolling standard deviation of log returns ``log(x[i] / x[i-1])``.

    Parameters
    ----------
    period
        Number of returns in the window (needs ``period + 1`` prices; first value at row
        ``period`` of a segment).
    ddof
        Delta degrees of freedom: 1 (the default) is the sample standard deviation, as
        ``pandas.Series.rolling(n).std()``; 0 the population one.
    annualize
        Periods per year (e.g. 252 for daily bars); the result is then multiplied by
        ``sqrt(annualize)``. None (default) leaves it per bar.
    """
    batch = _as_batch(data, column)
    _need(batch, [column])
    return _impl.volatility(batch, period, ddof=ddof, annualize=annualize, column=column, out=out)


def vwap(data, *, tz: str | None = None, out=None) -> pa.Array:
    """Volume-weighted average price of the day so far, reset at each session day.

    Uses the typical price ``(high + low + close) / 3`` weighted by ``volume``. Days are
    UTC days of ``ts`` by default, or calendar days in the exchange time zone ``tz`` (an
    IANA name such as ``"America/New_York"``). Rows with a missing price, volume or ts are
    null and add nothing; rows are null while the day's volume so far is 0."""
    batch = _as_batch(data, "close")
    _need(batch, ["high", "low", "close", "volume"])
    day = _day_keys(batch, tz)
    return _impl.vwap(batch, day=day, out=out)


# ------------------------------------------------------------------ by name

#: The spec strings :func:`compute` understands.
SPEC_FORMS = (
    "sma<N>, ema<N>, rsi<N>, atr<N>, bbands<N>, vol<N> (N optional; defaults sma20, ema20, "
    "rsi14, atr14, bbands20, vol20), macd or macd<fast>_<slow>_<signal>, vwap"
)
_DEFAULTS = {"sma": 20, "ema": 20, "rsi": 14, "atr": 14, "bbands": 20, "vol": 20}
_PERIODIC = re.compile(r"(sma|ema|rsi|atr|bbands|vol)(\d*)")
_MACD = re.compile(r"macd(?:(\d+)_(\d+)_(\d+))?")


def _plan(specs: Iterable[str] | str) -> list[tuple[str, tuple[int, ...], list[str]]]:
    """Parse every spec first: (kind, parameters, output column names)."""
    if isinstance(specs, str):
        specs = [specs]
    plan: list[tuple[str, tuple[int, ...], list[str]]] = []
    for spec in specs:
        if not isinstance(spec, str):
            raise ValueError(f"indicator spec {spec!r} is not a string; valid forms: {SPEC_FORMS}")
        s = spec.strip().lower()
        m = _PERIODIC.fullmatch(s)
        if m:
            kind = m.group(1)
            period = int(m.group(2)) if m.group(2) else _DEFAULTS[kind]
            name = f"{kind}{period}"
            names = (
                [f"{name}_{p}" for p in ("upper", "middle", "lower")]
                if kind == "bbands"
                else [name]
            )
            plan.append((kind, (period,), names))
            continue
        m = _MACD.fullmatch(s)
        if m:
            params = tuple(int(g) for g in m.groups()) if m.group(1) else (12, 26, 9)
            plan.append(("macd", params, [s, f"{s}_signal", f"{s}_hist"]))
            continue
        if s == "vwap":
            plan.append(("vwap", (), ["vwap"]))
            continue
        raise ValueError(f"unknown indicator spec {spec!r}; valid forms: {SPEC_FORMS}")
    seen: set[str] = set()
    for _, params, names in plan:
        if any(p < 1 for p in params):
            raise ValueError(f"indicator {names[0]!r}: a period must be >= 1")
        for name in names:
            if name in seen:
                raise ValueError(f"indicator column {name!r} already exists (asked for twice)")
            seen.add(name)
    return plan


def compute(data, specs, *, tz: str | None = None) -> pa.Table:
    """Append indicator columns, named by spec, to the bars.

    Parameters
    ----------
    data
        Bars sorted by (symbol, interval, ts).
    specs
        Spec strings (or one string): ``"sma20"``, ``"ema12"``, ``"rsi14"``, ``"atr14"``,
        ``"bbands20"`` (adds ``bbands20_upper``/``_middle``/``_lower``), ``"vol20"``
        (sample std of log returns, per bar), ``"macd"`` (adds ``macd``, ``macd_signal``,
        ``macd_hist``; ``"macd5_35_5"`` for other periods), ``"vwap"``. The number may be
        left out for the defaults listed in :data:`SPEC_FORMS`.
    tz
        Exchange time zone for the VWAP session days (default: UTC days).

    Returns
    -------
    pyarrow.Table
        The input columns followed by one column per output, in spec order.

    Raises
    ------
    ValueError
        An unknown spec (the message lists the valid forms), a bad period, or an output
        name that is already a column or repeats.
    SchemaError
        A column an indicator needs is missing or not numeric.
    """
    plan = _plan(specs)
    batch = _as_batch(data, "close")
    seen = set(batch.schema.names)
    for _, _, names in plan:
        for name in names:
            if name in seen:
                raise ValueError(f"indicator column {name!r} already exists in the data")
            seen.add(name)
    needs = {"atr": ["high", "low", "close"], "vwap": ["high", "low", "close", "volume"]}
    _need(batch, sorted({c for kind, _, _ in plan for c in needs.get(kind, ["close"])}))
    segs = _impl.segments(batch)  # found once, shared by every indicator
    columns: list[tuple[str, pa.Array]] = []
    for kind, params, names in plan:
        if kind == "sma":
            arrays = [_impl.sma(batch, *params, segments=segs)]
        elif kind == "ema":
            arrays = [_impl.ema(batch, *params, segments=segs)]
        elif kind == "rsi":
            arrays = [_impl.rsi(batch, *params, segments=segs)]
        elif kind == "atr":
            arrays = [_impl.atr(batch, *params, segments=segs)]
        elif kind == "vol":
            arrays = [_impl.volatility(batch, *params, segments=segs)]
        elif kind == "bbands":
            arrays = list(_impl.bbands(batch, *params, 2.0, segments=segs))
        elif kind == "macd":
            arrays = list(_impl.macd(batch, *params, segments=segs))
        else:  # vwap
            arrays = [_impl.vwap(batch, day=_day_keys(batch, tz), segments=segs)]
        columns.extend(zip(names, arrays, strict=True))
    table = pa.Table.from_batches([batch])
    for name, array in columns:
        table = table.append_column(name, array)
    return table
