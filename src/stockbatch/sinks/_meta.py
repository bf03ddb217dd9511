"""Exchange calendars as stored: trading dates, per-symbol metadata, corporate actions.

Daily bars are keyed at exchange-local midnight as a UTC instant (as the provider sends
them), so a Tokyo bar of 2026-11-30 is ``2026-11-29T15:00Z``. Every bars row therefore also
stores its ``date``: the calendar day of ``ts`` in the exchange's time zone (for daily and
longer bars the trading date, for intraday bars the exchange-local day). The zone comes from
the provider's metadata (``stockbatch.tz`` on decoded batches), kept per symbol in the
``symbols`` table; a symbol whose zone was never reported is dated in UTC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .._arrow import array, fill_null, pylist, values
from ..schema import UTC_US, local_dates

__all__ = [
    "local_dates",
    "SymbolMeta",
    "meta_from_batch",
    "with_carried",
    "carried",
    "actions_table",
    "date_bound",
    "merge_symbols",
    "SYMBOL_FIELDS",
    "SYMBOLS",
    "ACTIONS",
    "SCHEMAS",
    "INDICATORS",
    "indicators_long",
]

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

#: The provider metadata a ``symbols`` row keeps (schema-metadata key → column).
SYMBOL_FIELDS = {
    "exchange": "exchange",
    "tz": "timezone",
    "currency": "currency",
    "instrument_type": "instrument_type",
}

SymbolMeta = dict  # {"timezone": ..., "exchange": ..., "currency": ..., ...}

#: Arrow schema of the ``symbols`` table as read back.
SYMBOLS = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        ("exchange", pa.string()),
        ("timezone", pa.string()),
        ("currency", pa.string()),
        ("instrument_type", pa.string()),
        ("first_bar", UTC_US),
        ("last_bar", UTC_US),
        ("last_ingested", UTC_US),
        ("source", pa.string()),
    ]
)
#: Arrow schema of the ``actions`` table: ``split_ratio`` is new shares per old share.
ACTIONS = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        ("ts", UTC_US),
        ("dividend", pa.float64()),
        ("split_ratio", pa.float64()),
        ("source", pa.string()),
    ]
)
#: Arrow schema of the ``indicators`` table (long: one value per bar and indicator).
INDICATORS = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("interval", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("ts", UTC_US, nullable=False),
        ("value", pa.float64()),
    ]
)
SCHEMAS = {"symbols": SYMBOLS, "actions": ACTIONS, "indicators": INDICATORS}
_KEY = ("symbol", "interval", "ts")


def indicators_long(wide: pa.Table) -> pa.Table:
    """Indicator columns beside the bar key (what :func:`stockbatch.indicators.compute`
    adds) as ``indicators`` rows: one per bar and indicator, warm-up nulls and NaN left
    out."""
    parts = []
    for name in wide.column_names:
        if name in _KEY:
            continue
        col = wide.column(name)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            continue
        value = col.cast(pa.float64())
        keep = pc.and_kleene(pc.is_valid(value), pc.invert(pc.is_nan(value)))
        keep = fill_null(keep, False)
        n = pc.sum(keep).as_py() or 0
        if not n:
            continue
        parts.append(
            pa.Table.from_arrays(
                [
                    wide.column("symbol").filter(keep).cast(pa.string()),
                    wide.column("interval").filter(keep).cast(pa.string()),
                    array([name] * n, pa.string()),
                    wide.column("ts").filter(keep).cast(UTC_US),
                    value.filter(keep),
                ],
                schema=INDICATORS,
            )
        )
    return pa.concat_tables(parts) if parts else INDICATORS.empty_table()


def meta_from_batch(batch: pa.RecordBatch | pa.Table) -> SymbolMeta:
    """The provider metadata a decoder left in ``batch``'s schema metadata
    (``stockbatch.tz`` …), as ``symbols`` columns; empty when there is none."""
    md = batch.schema.metadata or {}
    out = {}
    for key, column in SYMBOL_FIELDS.items():
        raw = md.get(f"stockbatch.{key}".encode())
        if raw:
            out[column] = raw.decode()
    raw = md.get(b"stockbatch.events")
    if raw:
        out["events"] = raw.decode()
    return out


#: schema metadata of :func:`stockbatch.fetch`'s tables: the provider metadata per symbol
CARRIED = b"stockbatch.meta"


def with_carried(table: pa.Table, meta: Mapping[str, SymbolMeta]) -> pa.Table:
    """``table`` carrying ``meta`` (symbol -> :func:`meta_from_batch`), so that a sink given
    it later dates each symbol in its exchange's zone without ``meta=``."""
    if not meta:
        return table
    plain = {
        sym: {**m, "events": json.loads(m["events"])} if "events" in m else m
        for sym, m in meta.items()
    }
    return table.replace_schema_metadata({CARRIED: json.dumps(plain, sort_keys=True)})


def carried(data: Any, first: pa.RecordBatch | None) -> dict:
    """The provider metadata ``data`` carries itself (``meta=None`` of an ingest): the
    per-symbol metadata of :func:`with_carried`, or the ``stockbatch.tz`` … keys a decoder
    leaves on one symbol's bars (only when all of ``data`` is that symbol:
    ``pa.concat_tables`` keeps the first table's metadata for every symbol)."""
    if first is None:
        return {}
    raw = (first.schema.metadata or {}).get(CARRIED)
    if raw is not None:
        try:
            return json.loads(raw)
        except ValueError:
            raise ValueError("the data's stockbatch.meta schema metadata is not JSON") from None
    if isinstance(data, (pa.Table, pa.RecordBatch)) and "symbol" in data.schema.names:
        found = meta_from_batch(data)
        if found:  # (the symbols are looked at only then: a big table has none of this)
            symbols = values(pc.unique(data.column("symbol")))
            if len(symbols) == 1 and symbols[0] is not None:
                return {symbols[0]: found}
    return {}


def actions_table(
    events: Mapping[str, Mapping[str, Any]],
    zones: Mapping[str, str | None],
    source: str | None,
) -> pa.Table:
    """Rows of the ``actions`` table from the decoders' events of many symbols
    (``{symbol: {"dividends": [[ts, amount]], "splits": [[ts, num, den]]}}``): one row per
    symbol and exchange date (its zone from ``zones``), ``split_ratio`` = numerator /
    denominator (2.0 for a 2-for-1 split). Built as one table: a chunk's actions cost a
    few Arrow calls, not a few per symbol."""
    syms: list[str] = []
    tss: list[int] = []
    divs: list[float | None] = []
    ratios: list[float | None] = []
    for symbol in sorted(events):
        ev = events[symbol]
        rows: dict[int, list] = {}  # epoch seconds -> [dividend, split ratio]
        for ts, amount in ev.get("dividends") or ():
            rows.setdefault(int(ts), [None, None])[0] = amount
        for ts, num, den in ev.get("splits") or ():
            rows.setdefault(int(ts), [None, None])[1] = (
                num / den if num is not None and den else None
            )
        for t in sorted(rows):
            syms.append(symbol)
            tss.append(t * 1_000_000)
            divs.append(rows[t][0])
            ratios.append(rows[t][1])
    sym = array(syms, pa.string())
    ts_arr = array(tss, pa.int64()).cast(UTC_US)
    table = pa.Table.from_pydict(
        {
            "symbol": sym,
            "date": local_dates(sym, ts_arr, zones),
            "ts": ts_arr,
            "dividend": array(divs, pa.float64()),
            "split_ratio": array(ratios, pa.float64()),
            "source": array([source] * len(syms), pa.string()),
        },
        schema=ACTIONS,
    )
    return _last_per_date(table)


def _last_per_date(table: pa.Table) -> pa.Table:
    # two events of one symbol on one exchange day: keep one row, both values
    symbols, dates = table.column("symbol").to_pylist(), table.column("date").to_pylist()
    keys = list(zip(symbols, dates, strict=True))
    if len(set(keys)) == len(keys):
        return table
    merged: dict[Any, dict] = {}
    for key, r in zip(keys, pylist(table), strict=True):
        m = merged.setdefault(key, dict(r))
        for k in ("dividend", "split_ratio"):
            if r[k] is not None:
                m[k] = r[k]
    return pa.Table.from_pylist(list(merged.values()), schema=table.schema)


def date_bound(name: str, value: Any) -> date | None:
    """``value`` as a calendar date when it names a day (a ``datetime.date``, or text
    ``YYYY-MM-DD``), else None (an instant: a datetime, text with a time)."""
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE_ONLY.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{name}={value!r} is not a date (YYYY-MM-DD)") from None
    return None


def merge_symbols(
    existing: Iterable[dict],
    seen: Mapping[str, tuple[Any, Any]],
    meta: Mapping[str, SymbolMeta],
    source: str | None,
) -> list[dict]:
    """The new ``symbols`` rows: stored rows updated with this ingest's bar range
    (``seen``: symbol → (first ts, last ts)) and provider metadata (``meta``)."""
    now = datetime.now(timezone.utc)
    rows = {r["symbol"]: dict(r) for r in existing}
    for sym in set(seen) | set(meta):
        r = rows.setdefault(sym, {"symbol": sym})
        for column in SYMBOL_FIELDS.values():
            value = (meta.get(sym) or {}).get(column)
            if value:
                r[column] = value
            else:
                r.setdefault(column, None)
        if sym in seen:
            lo, hi = seen[sym]
            r["first_bar"] = min(x for x in (r.get("first_bar"), lo) if x is not None)
            r["last_bar"] = max(x for x in (r.get("last_bar"), hi) if x is not None)
        else:
            r.setdefault("first_bar", None)
            r.setdefault("last_bar", None)
        r["last_ingested"] = now
        r["source"] = source or r.get("source")
    return [rows[s] for s in sorted(rows) if s in seen or s in meta]
