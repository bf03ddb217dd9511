"""Backend-independent parts of the kernels: the :class:`Rule` flags, the report types, input
preparation (one Arrow batch, checked column types) and resampling plans.

Both backends (``stockbatch._ext.kernels`` and ``stockbatch._py.kernels``) import from here,
so the two share one definition of every rule name, report shape and error message.

Rules, precisely
----------------
``NULL_FIELD``
    ``symbol``, ``interval``, ``ts``, ``open``, ``high``, ``low``, ``close`` or ``volume`` is
    null. ``adj_close`` may be null (many providers omit it) and ``source`` is not checked.
``NON_FINITE``
    a non-null ``open``/``high``/``low``/``close``/``adj_close`` is NaN or +-inf.
``NON_POSITIVE_PRICE``
    a finite price (the same five columns) is ``<= 0``.
``HIGH_INCONSISTENT``
    ``high`` is below ``open``, ``close`` or ``low``.
``LOW_INCONSISTENT``
    ``low`` is above ``open``, ``close`` or ``high``.
``NEGATIVE_VOLUME``
    ``volume < 0``.
``TS_NOT_INCREASING``
    ``ts`` is below the largest earlier ``ts`` of its (symbol, interval) segment.
``DUPLICATE_TS``
    ``ts`` equals the largest earlier ``ts`` of its segment (the later rows get the flag).
``PRICE_SPIKE``
    ``|close / previous close - 1| > spike_threshold`` against the previous row of the
    segment; checked only when ``spike_threshold`` is given.

Null and non-finite values never take part in a comparison: a row whose ``high`` is NaN gets
``NON_FINITE`` only, never also ``HIGH_INCONSISTENT``; a null ``open`` is ``NULL_FIELD`` and the
consistency rules compare the remaining finite fields. Rows with a null ``ts`` neither get nor
cause timestamp flags; ``PRICE_SPIKE`` needs both closes finite and positive. A segment is a
run of consecutive rows with equal (symbol, interval). Inputs are expected sorted by
(symbol, interval, ts), which :func:`stockbatch.normalize` establishes, but only the runs
matter to validate, returns and resample: per-symbol batches concatenated in arrival order
(MSFT rows, then AAPL rows) are checked run by run, exactly as each batch on its own.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._arrow import array, bools, from_numpy, strings, to_numpy
from ._errors import SchemaError
from .schema import conform, to_table

__all__ = [
    "Rule",
    "RULE_NAMES",
    "ValidationReport",
    "NormalizeResult",
    "prepare",
    "parse_interval",
    "Interval",
    "calendar_edges",
    "mask_buffer",
    "VALIDATE_COLUMNS",
    "RESAMPLE_COLUMNS",
    "KEY_COLUMNS",
]


class Rule(enum.IntFlag):
    """Validation rules; each is one bit of the per-row uint16 mask."""

    NULL_FIELD = 1
    NON_FINITE = 2
    NON_POSITIVE_PRICE = 4
    HIGH_INCONSISTENT = 8
    LOW_INCONSISTENT = 16
    NEGATIVE_VOLUME = 32
    TS_NOT_INCREASING = 64
    DUPLICATE_TS = 128
    PRICE_SPIKE = 256
    #: every rule (PRICE_SPIKE still needs ``spike_threshold``)
    ALL = 511
    DEFAULT = 511


#: The single rules in bit order (bit k of the mask is RULES[k]).
RULES: tuple[Rule, ...] = tuple(Rule(1 << k) for k in range(9))
RULE_NAMES: tuple[str, ...] = tuple(str(r.name) for r in RULES)

KEY_COLUMNS = ("symbol", "interval", "ts")
VALIDATE_COLUMNS = ("symbol", "interval", "ts", "open", "high", "low", "close", "volume")
RESAMPLE_COLUMNS = ("symbol", "interval", "ts", "open", "high", "low", "close", "volume")
_PRICE = ("open", "high", "low", "close", "adj_close")


def _reasons(masks: np.ndarray) -> pa.Array:
    """Readable reason strings ("HIGH_INCONSISTENT,NEGATIVE_VOLUME") for the given masks."""
    uniq, inverse = np.unique(masks, return_inverse=True)
    names = [",".join(n for k, n in enumerate(RULE_NAMES) if int(m) >> k & 1) for m in uniq]
    return strings(names).take(from_numpy(inverse.astype(np.int32)))


@dataclass(frozen=True, eq=False)
class ValidationReport:
    """Outcome of :func:`stockbatch.validate`.

    Attributes
    ----------
    mask : numpy.ndarray of uint16
        Per-row rule bits (0 = the row passed every checked rule).
    counts : dict of str to int
        Rows flagged per checked rule, by rule name (a row may count under several rules).
    rules : Rule
        The rules that were checked.
    table : pyarrow.Table
        The input as one batch (what ``valid`` / ``rejected`` are taken from).

    ``valid`` and ``rejected`` are built on first access (so validating costs no copy of the
    data): ``valid`` is the input itself when nothing was rejected; ``rejected`` carries the
    offending rows plus a ``reasons`` string column such as
    ``"HIGH_INCONSISTENT,NEGATIVE_VOLUME"``. Rows are never lost: every input row is in
    exactly one of the two.
    """

    mask: np.ndarray
    counts: dict[str, int]
    rules: Rule
    table: pa.Table = field(repr=False)

    @cached_property
    def n_rejected(self) -> int:
        """Number of rows with at least one rule bit set."""
        return int(np.count_nonzero(self.mask))

    @property
    def n_valid(self) -> int:
        """Number of rows that passed every rule."""
        return len(self.mask) - self.n_rejected

    @property
    def ok(self) -> bool:
        """True when no row was rejected."""
        return self.n_rejected == 0

    @cached_property
    def valid(self) -> pa.Table:
        """The rows that passed every checked rule (the input itself when all did)."""
        if self.n_rejected == 0:
            return self.table
        return self.table.filter(bools(self.mask == 0))

    @cached_property
    def rejected(self) -> pa.Table:
        """The failing rows, with a ``reasons`` column naming their rules."""
        if self.n_rejected == 0:
            return self.table.slice(0, 0).append_column("reasons", strings([]))
        keep = self.mask != 0
        rows = self.table.filter(bools(keep))
        return rows.append_column("reasons", _reasons(self.mask[keep]))

    def reasons(self) -> pa.Array:
        """A ``reasons`` string per input row (empty string for valid rows)."""
        return _reasons(self.mask)

    def __repr__(self) -> str:
        flagged = ", ".join(f"{k}={v}" for k, v in self.counts.items() if v)
        return (
            f"ValidationReport(rows={len(self.mask)}, valid={self.n_valid}, "
            f"rejected={self.n_rejected}{', ' + flagged if flagged else ''})"
        )


class NormalizeResult(NamedTuple):
    """Outcome of :func:`stockbatch.normalize`.

    ``table`` is sorted by (symbol, interval, ts) with exact duplicate keys dropped (the last
    one kept); ``duplicates_dropped`` counts them; ``sorted`` tells whether the input was out
    of order and had to be sorted.
    """

    table: pa.Table
    duplicates_dropped: int
    sorted: bool


# ---------------------------------------------------------------------------------------
# input preparation


def _readable(name: str, t: pa.DataType) -> bool:
    """The kernels read this column type directly (anything else goes through conform)."""
    if name in ("symbol", "interval", "source"):
        if pa.types.is_dictionary(t):
            return pa.types.is_integer(t.index_type) and (
                pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)
            )
        return pa.types.is_string(t) or pa.types.is_large_string(t)
    if name == "ts":
        return pa.types.is_timestamp(t) and t.unit == "us" and t.tz is not None
    if name == "volume":
        return pa.types.is_int64(t)
    if name in _PRICE:
        return pa.types.is_float64(t)
    return True


def prepare(data: Any, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> pa.RecordBatch:
    """``data`` as one record batch whose ``columns`` (and any present ``optional`` ones) the
    kernels can read zero-copy.

    One-chunk tables are not copied; several chunks are combined. Columns of other types are
    brought to the canonical schema with :func:`stockbatch.schema.conform`.

    Raises
    ------
    SchemaError
        A required column is missing, or a column cannot be conformed.
    """
    table = to_table(data)
    names = table.column_names
    missing = [c for c in columns if c not in names]
    if missing:
        raise SchemaError(
            "missing required column" + ("s " if len(missing) > 1 else " ") + ", ".join(missing),
            {c: "missing required column" for c in missing},
        )
    wanted = [c for c in (*columns, *optional) if c in names]
    if not all(_readable(c, table.schema.field(c).type) for c in wanted):
        conformed = conform(table)
        table = pa.Table.from_arrays(
            [conformed.column(c) if c in wanted else table.column(c) for c in names], names=names
        )
    arrays = [
        _signed_indices(col.chunk(0) if col.num_chunks == 1 else col.combine_chunks())
        for col in table.columns
    ]
    schema = pa.schema(
        [f.with_type(a.type) for f, a in zip(table.schema, arrays, strict=True)],
        metadata=table.schema.metadata,
    )
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# unsigned dictionary indices (polars exports Categorical with uint32) get the next wider
# signed type: only the indices are cast, the dictionary stays shared
_SIGNED = {8: pa.int16(), 16: pa.int32(), 32: pa.int64(), 64: pa.int64()}


def _signed_indices(arr: pa.Array) -> pa.Array:
    t = arr.type
    if not pa.types.is_dictionary(t) or not pa.types.is_unsigned_integer(t.index_type):
        return arr
    indices = arr.indices.cast(_SIGNED[t.index_type.bit_width])
    return pa.DictionaryArray.from_arrays(indices, arr.dictionary)


def mask_buffer(n: int, out: np.ndarray | None, dtype: Any = np.uint16) -> np.ndarray:
    """The output array to write (uint16 masks, float64 returns): ``out[:n]`` when given
    (checked), else a new one."""
    dtype = np.dtype(dtype)
    if out is None:
        return np.empty(n, dtype)
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.ndim != 1:
        raise TypeError(f"out must be a one-dimensional numpy array of {dtype}")
    if len(out) < n:
        raise ValueError(f"out holds {len(out)} values, the data has {n} rows")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be C-contiguous and writeable")
    return out[:n]


# ---------------------------------------------------------------------------------------
# resampling plans

_MINUTE = 60_000_000
_UNITS = {
    "m": _MINUTE,
    "min": _MINUTE,
    "h": 60 * _MINUTE,
    "d": 1440 * _MINUTE,
    "wk": 7 * 1440 * _MINUTE,
    "w": 7 * 1440 * _MINUTE,
    "mo": 0,
}
_INTERVAL_RE = re.compile(r"^(\d+)(m|min|h|d|wk|w|mo)$")
# 1970-01-01 was a Thursday: Monday-aligned weeks start 4 days after the epoch's week origin
_WEEK_ORIGIN = 4 * 1440 * _MINUTE


class Interval(NamedTuple):
    """A parsed bar interval: ``width`` in microseconds (0 for months), ``months``, and
    whether buckets follow calendar days (``calendar``: days, weeks, months)."""

    text: str
    width: int
    months: int
    calendar: bool
    origin: int


def parse_interval(to: str) -> Interval:
    """Parse ``"5m"``, ``"15m"``, ``"1h"``, ``"1d"``, ``"1wk"``, ``"1mo"`` and the like."""
    if not isinstance(to, str):
        raise TypeError(f"to must be an interval string such as '5m', not {type(to).__name__}")
    m = _INTERVAL_RE.match(to.strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(
            f"unknown interval {to!r}: use N followed by m, h, d, wk or mo (e.g. '5m', '1h', "
            "'1d', '1wk', '1mo')"
        )
    k, unit = int(m.group(1)), m.group(2)
    if unit == "mo":
        return Interval(to, 0, k, True, 0)
    width = k * _UNITS[unit]
    calendar = unit in ("d", "wk", "w")
    origin = _WEEK_ORIGIN if unit in ("wk", "w") else 0
    return Interval(to, width, 0, calendar, origin)


def _local(us: list[int], tz: str | None) -> list[int]:
    """Wall-clock microseconds in ``tz`` of the given UTC instants."""
    if tz is None:
        return us
    arr = array(us, pa.timestamp("us", tz="UTC"))
    try:
        local = pc.local_timestamp(arr.cast(pa.timestamp("us", tz=tz)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc
    return local.cast(pa.int64()).to_pylist()


def calendar_edges(ts: pa.Array, iv: Interval, tz: str | None) -> np.ndarray | None:
    """Sorted UTC starts (int64 microseconds) of every calendar bucket from before the
    earliest to after the latest ``ts``, or None for buckets on the fixed UTC grid.

    Intraday buckets (minutes, hours) always lie on the UTC epoch grid, as do days and weeks
    (starting Monday) without ``tz``. Months, and with ``tz`` days, weeks and months, follow
    the calendar: with ``tz`` a bucket starts at local midnight, whatever the UTC offset on
    that day (DST-correct; a midnight that DST skips starts the day at the transition). A row
    belongs to bucket k when ``edges[k] <= ts < edges[k + 1]``.
    """
    if not iv.calendar or (tz is None and iv.months == 0):
        return None
    if tz is not None:
        _local([0], tz)  # an unknown zone fails here even for empty data
    mm = pc.min_max(ts.cast(pa.int64()))
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    if lo is None:
        return np.zeros(2, np.int64)
    lo, hi = _local([lo, hi], tz)
    day = 1440 * _MINUTE
    # a day of margin on each side covers any UTC offset
    d0, d1 = lo // day - 2, hi // day + 2
    if iv.months:
        m0 = np.datetime64(d0, "D").astype("datetime64[M]").astype(np.int64)
        m1 = np.datetime64(d1, "D").astype("datetime64[M]").astype(np.int64)
        months = np.arange(m0 // iv.months * iv.months, m1 + iv.months + 1, iv.months)
        local = months.astype("datetime64[M]").astype("datetime64[us]").astype(np.int64)
    else:
        step = iv.width // day
        origin = iv.origin // day
        first = (d0 - origin) // step * step + origin
        local = np.arange(first, d1 + step + 1, step, dtype=np.int64) * day
    if tz is None:
        return local
    naive = array(local, pa.timestamp("us"))
    start = pc.assume_timezone(naive, tz, ambiguous="earliest", nonexistent="latest")
    return to_numpy(start.cast(pa.int64()))
