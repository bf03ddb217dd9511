"""Adjusted prices rebuilt from stored raw bars and corporate actions.

The provider's ``close`` is already split-adjusted (Yahoo's convention); its ``adjclose``
additionally scales every bar before an ex-dividend date by ``1 - dividend / close of the
last bar before that date``. :func:`adjusted` rebuilds that from the bars and the
``actions`` table (``stockbatch.read(db, kind="actions")``), so ``adj_close`` can be
recomputed, checked, or produced for bars that arrived without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .schema import local_dates

__all__ = ["adjusted"]

_PRICES = ("open", "high", "low", "close")


def adjusted(
    bars: pa.Table,
    actions: pa.Table,
    *,
    zones: Mapping[str, str | None] | None = None,
    dividends: bool = True,
    splits: bool = False,
) -> pa.Table:
    """``bars`` with ``open``/``high``/``low``/``close`` (and ``adj_close``) adjusted.

    Parameters
    ----------
    bars : pyarrow.Table
        Bars of one interval (``stockbatch.read``), any number of symbols.
    actions : pyarrow.Table
        Rows of the ``actions`` table (symbol, date, dividend, split_ratio): an action
        applies to the bars of earlier exchange dates.
    zones : dict, optional
        Symbol → exchange time zone (the ``timezone`` of ``read(kind="symbols")``), to
        date the bars; a symbol without one is dated in UTC.
    dividends : bool
        Scale each bar before an ex-dividend date by ``1 - dividend / previous close``
        (the provider's ``adjclose``).
    splits : bool
        Also divide prices before a split by its ratio and multiply volume by it — only for
        raw prices that are *not* split-adjusted already (the provider's are).

    Returns
    -------
    pyarrow.Table
        Same rows and columns; ``adj_close`` holds the adjusted close.
    """
    if bars.num_rows == 0:
        return bars
    order = pc.sort_indices(bars, [("symbol", "ascending"), ("ts", "ascending")])
    bars = bars.take(order)
    days = local_dates(bars.column("symbol"), bars.column("ts"), zones or {})
    days = np.asarray(days.cast(pa.int32()).to_numpy(zero_copy_only=False))
    symbols = bars.column("symbol").to_pylist()
    close = _floats(bars.column("close"))
    factor = np.ones(bars.num_rows)
    vol_factor = np.ones(bars.num_rows)
    by_symbol = _actions_by_symbol(actions)
    start = 0
    n = bars.num_rows
    while start < n:
        sym = symbols[start]
        stop = start
        while stop < n and symbols[stop] == sym:
            stop += 1
        for day, dividend, ratio in by_symbol.get(sym, ()):
            # bars of exchange dates before the action's
            k = int(np.searchsorted(days[start:stop], day, side="left")) + start
            if k == start:
                continue
            if dividends and dividend:
                prev = close[start:k]
                valid = np.flatnonzero(~np.isnan(prev))
                if len(valid):
                    factor[start:k] *= 1.0 - dividend / prev[valid[-1]]
            if splits and ratio:
                factor[start:k] /= ratio
                vol_factor[start:k] *= ratio
        start = stop
    out = bars
    for name in _PRICES:
        if name in out.column_names:
            i = out.schema.get_field_index(name)
            out = out.set_column(i, name, pa.array(_floats(out.column(name)) * factor))
    adj = pa.array(close * factor)
    if "adj_close" in out.column_names:
        out = out.set_column(out.schema.get_field_index("adj_close"), "adj_close", adj)
    else:
        out = out.append_column("adj_close", adj)
    if splits and "volume" in out.column_names:
        v = out.column("volume").to_numpy(zero_copy_only=False).astype(float) * vol_factor
        out = out.set_column(
            out.schema.get_field_index("volume"),
            "volume",
            pa.array(np.round(v), pa.float64()).cast(pa.int64()),
        )
    return out


def _floats(col: Any) -> np.ndarray:
    return np.asarray(col.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False))


def _actions_by_symbol(actions: pa.Table) -> dict[str, list[tuple[int, float, float]]]:
    out: dict[str, list[tuple[int, float, float]]] = {}
    if actions.num_rows == 0:
        return out
    days = actions.column("date").cast(pa.int32()).to_pylist()
    for sym, day, div, ratio in zip(
        actions.column("symbol").to_pylist(),
        days,
        actions.column("dividend").to_pylist(),
        actions.column("split_ratio").to_pylist(),
        strict=True,
    ):
        out.setdefault(sym, []).append((day, div or 0.0, ratio or 0.0))
    return out
