"""Canonical Arrow bars -> yfinance-style pandas frames, many symbols at once.

yfinance's ``Ticker.history()`` (defaults: ``auto_adjust=True``, ``keepna=False``) returns
Open, High, Low, Close, Volume, Dividends, Stock Splits (with ``auto_adjust=False`` also
Adj Close, after Close) indexed by bar start in the exchange's time zone; daily and longer bars
sit at midnight of the exchange-local date, and each dividend / split is on the bar whose
period holds its date (weekly and monthly bars sum their dividends). The original StockFetcher then
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

__all__ = [
    "COLUMNS",
    "ACTION_COLUMNS",
    "history_columns",
    "exchange_tz",
    "bars_to_frames",
    "is_intraday",
]

COLUMNS = ["Open", "High", "Low", "Close", "Volume"]
#: The corporate-action columns yfinance's ``history()`` appends.
ACTION_COLUMNS = ["Dividends", "Stock Splits"]


def history_columns(auto_adjust: bool = True) -> list[str]:
    """The columns of yfinance's ``Ticker.history()`` (and so of the original StockFetcher's
    frames) for ``auto_adjust``."""
    ohlc = COLUMNS[:4] + ([] if auto_adjust else ["Adj Close"])
    return ohlc + ["Volume"] + ACTION_COLUMNS


# How long one bar of a coarse interval lasts, for placing an event after the last bar.
_BUCKET = {"1d": 1, "5d": 5, "1wk": 7, "1mo": 31, "3mo": 92}

# The index units yfinance ends up with under the installed pandas: daily frames are built from
# python dates (pd.to_datetime(index.date)), intraday ones from epoch seconds.
_DAILY_UNIT = pd.to_datetime([_dt.date(2000, 1, 3)]).unit
_INTRADAY_UNIT = pd.to_datetime([946_857_600], unit="s").unit

# Yahoo symbol suffix -> exchange time zone (the zone yfinance reads from the chart meta).
_SUFFIX_TZ = {
    "T": "Asia/Tokyo",
    "OS": "Asia/Tokyo",
    "NG": "Asia/Tokyo",
    "FU": "Asia/Tokyo",
    "SP": "Asia/Tokyo",
    "HK": "Asia/Hong_Kong",
    "SS": "Asia/Shanghai",
    "SZ": "Asia/Shanghai",
    "KS": "Asia/Seoul",
    "KQ": "Asia/Seoul",
    "TW": "Asia/Taipei",
    "TWO": "Asia/Taipei",
    "SI": "Asia/Singapore",
    "NS": "Asia/Kolkata",
    "BO": "Asia/Kolkata",
    "AX": "Australia/Sydney",
    "NZ": "Pacific/Auckland",
    "L": "Europe/London",
    "IL": "Europe/London",
    "DE": "Europe/Berlin",
    "F": "Europe/Berlin",
    "PA": "Europe/Paris",
    "AS": "Europe/Amsterdam",
    "BR": "Europe/Brussels",
    "MI": "Europe/Rome",
    "MC": "Europe/Madrid",
    "SW": "Europe/Zurich",
    "ST": "Europe/Stockholm",
    "OL": "Europe/Oslo",
    "CO": "Europe/Copenhagen",
    "HE": "Europe/Helsinki",
    "VI": "Europe/Vienna",
    "TO": "America/Toronto",
    "V": "America/Toronto",
    "SA": "America/Sao_Paulo",
    "MX": "America/Mexico_City",
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
    return (
        col.to_numpy().astype(np.float64, copy=False)
        if col.null_count == 0
        else pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy()
    )


def bars_to_frames(
    table: pa.Table,
    *,
    interval: str,
    auto_adjust: bool = True,
    tz_of: Callable[[str], str] = exchange_tz,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    events: dict[str, dict] | None = None,
    actions: bool = True,
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
    events : dict, optional
        symbol -> ``{"dividends": [[ts, amount], ...], "splits": [[ts, num, den], ...]}``
        (the ``stockbatch.events`` metadata of the Yahoo source), for the action columns.
    actions : bool
        Add Dividends and Stock Splits (float64, 0.0 where there was none), like yfinance.

    Returns
    -------
    dict
        symbol -> DataFrame with the columns of :func:`history_columns` (prices float64,
        Volume int64) and a tz-naive DatetimeIndex in exchange wall time. Rows where every value is NaN or 0
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
    adj = _f64(table.column("adj_close"))
    adj_close = np.where(np.isnan(adj), close, adj)  # Adj Close is Close when not adjusted
    if auto_adjust:
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

    # yfinance keepna=False: drop rows where every data column is NaN or 0 (unless a dividend
    # or split sits on it: yfinance keeps those with NaN prices)
    data = np.column_stack([opn, high, low, close])
    empty = ((np.isnan(data) | (data == 0)).all(axis=1)) & (volume == 0)

    unit = _INTRADAY_UNIT if intraday else _DAILY_UNIT
    index_name = "Datetime" if intraday else "Date"
    bounds = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate(([0], bounds))
    stops = np.concatenate((bounds, [len(codes)]))
    frames: dict[str, pd.DataFrame] = {}
    for a, b in zip(starts, stops, strict=True):
        k = keep[a:b]  # in the window
        sl = slice(a, b)
        name = names[codes[a]]
        acts = (
            _actions(wall[sl][k], (events or {}).get(name), zone_of_code[codes[a]], interval)
            if actions
            else {}
        )
        held = ~empty[sl][k]
        for col in acts.values():
            held |= col != 0
        if not held.any():
            continue
        k = np.flatnonzero(k)[held]
        idx = pd.DatetimeIndex(wall[sl][k], name=index_name).as_unit(unit)
        cols = {"Open": opn[sl][k], "High": high[sl][k], "Low": low[sl][k], "Close": close[sl][k]}
        if not auto_adjust:
            cols["Adj Close"] = adj_close[sl][k]
        cols["Volume"] = volume[sl][k]
        cols.update({c: v[held] for c, v in acts.items()})
        frames[name] = pd.DataFrame(cols, index=idx)
    return frames


def _actions(
    bars: np.ndarray, events: dict | None, zone: str, interval: str
) -> dict[str, np.ndarray]:
    """Dividends and Stock Splits per bar: each event goes to the bar whose period holds its
    exchange-local time (daily bars: its date); dividends in one bar add up, splits multiply;
    events outside every bar are left out (as yfinance does for a window)."""
    divs = np.zeros(len(bars), dtype=np.float64)
    splits = np.zeros(len(bars), dtype=np.float64)
    if events and len(bars):
        intraday = is_intraday(interval)
        last_end = bars[-1] + (
            np.timedelta64(1, "D") if intraday else np.timedelta64(_BUCKET.get(interval, 1), "D")
        )

        def place(ts: list) -> np.ndarray:
            local = pd.DatetimeIndex(
                np.asarray(ts, dtype="int64") * 1_000_000, dtype="datetime64[us]"
            ).tz_localize("UTC")
            local = local.tz_convert(zone).tz_localize(None)
            if not intraday:
                local = local.normalize()
            at = local.as_unit("us").to_numpy()
            pos = np.searchsorted(bars, at, side="right") - 1
            ok = (pos >= 0) & (at < last_end)
            if intraday:  # same exchange-local day as its bar
                ok &= at.astype("datetime64[D]") == bars[np.maximum(pos, 0)].astype("datetime64[D]")
            elif interval == "1d":
                ok &= at == bars[np.maximum(pos, 0)]
            return np.where(ok, pos, -1)

        if events.get("dividends"):
            rows = np.asarray(events["dividends"], dtype=np.float64)
            pos = place(rows[:, 0].astype(np.int64).tolist())
            good = pos >= 0
            np.add.at(divs, pos[good], np.nan_to_num(rows[good, 1]))
        if events.get("splits"):
            rows = np.asarray(events["splits"], dtype=np.float64)
            pos = place(rows[:, 0].astype(np.int64).tolist())
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = rows[:, 1] / rows[:, 2]
            for p, r in zip(pos.tolist(), ratio.tolist(), strict=True):
                if p >= 0 and np.isfinite(r) and r > 0:
                    splits[p] = r if splits[p] == 0 else splits[p] * r
    return {"Dividends": divs, "Stock Splits": splits}
