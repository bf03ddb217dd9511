"""Canonical Arrow bars -> yfinance-style pandas frames, many symbols at once.

yfinance's ``Ticker.history()`` (defaults: ``auto_adjust=True``, ``keepna=False``) returns
Open, High, Low, Close, Volume indexed by bar start in the exchange's time zone; daily and
longer bars sit at midnight of the exchange-local date. The original StockFetcher then
stripped the zone (``tz_localize(None)``), keeping the exchange wall time. This module
produces exactly that shape from :data:`stockbatch.schema.BARS` rows, vectorised over a whole
table and split per symbol, so 2,000 symbols cost one conversion, not 2,000.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    import pandas as pd
except ImportError as exc:  # pragma: no cover - pandas ships with the test/bench extras
    raise ImportError("stockbatch.compat returns pandas DataFrames: pip install pandas") from exc

__all__ = ["COLUMNS", "exchange_tz", "bars_to_frames", "is_intraday"]

COLUMNS = ["Open", "High", "Low", "Close", "Volume"]

# The index units yfinance ends up with under the installed pandas: daily frames are built from
# python dates (pd.to_datetime(index.date)), intraday ones from epoch seconds.
_DAILY_UNIT = pd.to_datetime([_dt.date(2000, 1, 3)]).unit
_INTRADAY_UNIT = pd.to_datetime([946_857_600], unit="s").unit

# Yahoo symbol suffix -> exchange time zone (the zone yfinance reads from the chart meta).
_SUFFIX_TZ = {
    "T": "Asia/Tokyo", "OS": "Asia/Tokyo", "NG": "Asia/Tokyo", "FU": "Asia/Tokyo",
    "SP": "Asia/Tokyo", "HK": "Asia/Hong_Kong", "SS": "Asia/Shanghai", "SZ": "Asia/Shanghai",
    "KS": "Asia/Seoul", "KQ": "Asia/Seoul", "TW": "Asia/Taipei", "TWO": "Asia/Taipei",
    "SI": "Asia/Singapore", "NS": "Asia/Kolkata", "BO": "Asia/Kolkata", "AX": "Australia/Sydney",
    "NZ": "Pacific/Auckland", "L": "Europe/London", "IL": "Europe/London",
    "DE": "Europe/Berlin", "F": "Europe/Berlin", "PA": "Europe/Paris", "AS": "Europe/Amsterdam",
    "BR": "Europe/Brussels", "MI": "Europe/Rome", "MC": "Europe/Madrid", "SW": "Europe/Zurich",
    "ST": "Europe/Stockholm", "OL": "Europe/Oslo", "CO": "Europe/Copenhagen",
    "HE": "Europe/Helsinki", "VI": "Europe/Vienna", "TO": "America/Toronto",
    "V": "America/Toronto", "SA": "America/Sao_Paulo", "MX": "America/Mexico_City",
}
_DEFAULT_TZ = "America/New_York"
_SUFFIX = re.compile(r"\.([A-Z]{1,3})$")


def exchange_tz(symbol: str) -> str:
    """The exchange time zone of a Yahoo symbol, from its suffix (US exchanges have none)."""
    m = _SUFFIX.search(symbol.upper())
    if m is None:
        return _DEFAULT_TZ
    return _SUFFIX_TZ.get(m.group(1), _DEFAULT_TZ)


def is_intraday(interval: str) -> bool:
    """Minute and hour bars keep their time of day; daily and longer sit at midnight."""
    return interval.endswith(("m", "h")) and not interval.endswith("mo")


def _f64(col: pa.ChunkedArray) -> np.ndarray:
    return col.to_numpy().astype(np.float64, copy=False) if col.null_count == 0 else \
        pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy()


def bars_to_frames(
    table: pa.Table,
    *,
    interval: str,
    auto_adjust: bool = True,
    tz_of: Callable[[str], str] = exchange_tz,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> dict[str, pd.DataFrame]:
    """Split canonical bars into one yfinance-style frame per symbol.

    Parameters
    ----------
    table : pyarrow.Table
        Rows of :data:`stockbatch.schema.BARS` (any symbol order).
    interval : str
        The bars' interval; decides the index name (``Date`` / ``Datetime``) and whether
        bars are placed at exchange-local midnight.
    auto_adjust : bool
        Like yfinance's default: scale Open/High/Low by adj_close/close and report adj_close
        as Close (rows without adj_close keep their raw prices).
    tz_of : callable
        Symbol -> exchange time zone.
    start, end : pandas.Timestamp, optional
        Keep only bars with ``start <= bar start < end`` (both tz-aware), like yfinance.

    Returns
    -------
    dict
        symbol -> DataFrame with columns Open, High, Low, Close (float64), Volume (int64)
        and a tz-naive DatetimeIndex in exchange wall time. Rows where every value is NaN or 0
        are dropped (yfinance's ``keepna=False``); a symbol left with no rows is absent.
    """
    if table.num_rows == 0:
        return {}
    table = table.sort_by([("symbol", "ascending"), ("ts", "ascending")])
    enc = pc.dictionary_encode(table.column("symbol")).combine_chunks()
    codes = enc.indices.to_numpy()
    names = enc.dictionary.to_pylist()

    close = _f64(table.column("close"))
    opn, high, low = (_f64(table.column(c)) for c in ("open", "high", "low"))
    if auto_adjust:
        adj = _f64(table.column("adj_close"))
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(np.isnan(adj), 1.0, adj / close)
        opn, high, low = opn * ratio, high * ratio, low * ratio
        close = np.where(np.isnan(adj), close, adj)
    volume = pc.fill_null(table.column("volume"), 0).to_numpy().astype(np.int64, copy=False)
    ts_us = table.column("ts").cast(pa.int64()).to_numpy()

    # one pass per distinct exchange zone, not per symbol
    zone_of_code = [tz_of(name) for name in names]
    wall = np.empty(len(ts_us), dtype="datetime64[us]")
    keep = np.ones(len(ts_us), dtype=bool)
    intraday = is_intraday(interval)
    for zone in set(zone_of_code):
        sel = np.isin(codes, [i for i, z in enumerate(zone_of_code) if z == zone])
        aware = pd.DatetimeIndex(ts_us[sel].astype("datetime64[us]")).tz_localize("UTC")
        if start is not None:
            keep[sel] &= np.asarray(aware >= start)
        if end is not None:
            keep[sel] &= np.asarray(aware < end)
        local = aware.tz_convert(zone).tz_localize(None)
        if not intraday:
            local = local.normalize()
        wall[sel] = local.as_unit("us").to_numpy()

    # yfinance keepna=False: drop rows where every data column is NaN or 0
    data = np.column_stack([opn, high, low, close])
    empty = ((np.isnan(data) | (data == 0)).all(axis=1)) & (volume == 0)
    keep &= ~empty

    unit = _INTRADAY_UNIT if intraday else _DAILY_UNIT
    index_name = "Datetime" if intraday else "Date"
    bounds = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate(([0], bounds))
    stops = np.concatenate((bounds, [len(codes)]))
    frames: dict[str, pd.DataFrame] = {}
    for a, b in zip(starts, stops, strict=True):
        k = keep[a:b]
        if not k.any():
            continue
        sl = slice(a, b)
        idx = pd.DatetimeIndex(wall[sl][k], name=index_name).as_unit(unit)
        frames[names[codes[a]]] = pd.DataFrame(
            {"Open": opn[sl][k], "High": high[sl][k], "Low": low[sl][k], "Close": close[sl][k],
             "Volume": volume[sl][k]},
            index=idx,
        )
    return frames
