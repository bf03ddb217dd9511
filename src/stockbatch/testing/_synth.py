"""Deterministic synthetic market data for the fixture server.

Every symbol gets its own seeded random walk (the seed is a BLAKE2 hash of the symbol), laid on
the trading days of its exchange (Monday to Friday in the exchange's time zone; no holiday
calendar). A bar's value depends only on the symbol and the bar's day, never on the window that
was asked for, so overlapping requests agree.

Exchange by suffix: no suffix → NASDAQ (America/New_York, USD), ``.T`` → Tokyo, ``.L`` →
London, ``.DE`` → XETRA, ``.HK`` → Hong Kong, ``.PA`` → Paris, ``^`` prefix → an index.

Unknown symbols: names starting with ``UNKNOWN`` (any case) or ``INVALID``, or containing a
character outside ``A-Z a-z 0-9 . - ^ = _``; a server may add more (``FixtureServer(unknown=...)``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

__all__ = [
    "Exchange",
    "exchange_of",
    "is_unknown",
    "daily",
    "intraday",
    "INTRADAY_MINUTES",
    "EPOCH_DATE",
]

EPOCH_DATE = dt.date(1995, 1, 2)  # first synthetic trading day of every symbol

_VALID = re.compile(r"^[A-Za-z0-9.\-^=_]{1,32}$")

INTRADAY_MINUTES = {"1m": 1, "2m": 2, "5m": 5, "15m": 15, "30m": 30, "60m": 60, "90m": 90, "1h": 60}


@dataclass(frozen=True)
class Exchange:
    code: str  # Yahoo exchangeName
    full_name: str  # fullExchangeName
    tz: str  # exchangeTimezoneName
    tz_short: str  # timezone (abbreviation Yahoo prints)
    currency: str
    open_hm: tuple[int, int]
    close_hm: tuple[int, int]


_EXCHANGES = {
    "": Exchange("NMS", "NasdaqGS", "America/New_York", "EST", "USD", (9, 30), (16, 0)),
    ".T": Exchange("JPX", "Tokyo", "Asia/Tokyo", "JST", "JPY", (9, 0), (15, 30)),
    ".L": Exchange("LSE", "LSE", "Europe/London", "GMT", "GBp", (8, 0), (16, 30)),
    ".DE": Exchange("GER", "XETRA", "Europe/Berlin", "CET", "EUR", (9, 0), (17, 30)),
    ".HK": Exchange("HKG", "HKSE", "Asia/Hong_Kong", "HKT", "HKD", (9, 30), (16, 0)),
    ".PA": Exchange("PAR", "Paris", "Europe/Paris", "CET", "EUR", (9, 0), (17, 30)),
}


def exchange_of(symbol: str) -> Exchange:
    """The exchange a symbol trades on, from its suffix."""
    dot = symbol.rfind(".")
    if dot > 0:
        ex = _EXCHANGES.get(symbol[dot:].upper())
        if ex is not None:
            return ex
    return _EXCHANGES[""]


def is_unknown(symbol: str, extra: frozenset[str] | set[str] = frozenset()) -> bool:
    """True when the fixture server answers 404 for ``symbol``."""
    up = symbol.upper()
    return (
        not _VALID.match(symbol)
        or up.startswith("UNKNOWN")
        or up.startswith("INVALID")
        or up in extra
    )


def seed_of(*parts: object) -> int:
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


@lru_cache(maxsize=16)
def trading_days(ex: Exchange, last: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """(ordinal day numbers, UTC epoch seconds of the regular open) from EPOCH_DATE to ``last``."""
    zone = ZoneInfo(ex.tz)
    first = EPOCH_DATE.toordinal()
    ords = np.arange(first, last.toordinal() + 1, dtype=np.int64)
    ords = ords[(ords % 7 != 0) & (ords % 7 != 6)]  # ordinal % 7: 0 = Sunday, 6 = Saturday
    opens = np.empty(len(ords), dtype=np.int64)
    h, m = ex.open_hm
    for i, o in enumerate(ords.tolist()):
        d = dt.date.fromordinal(o)
        opens[i] = int(dt.datetime(d.year, d.month, d.day, h, m, tzinfo=zone).timestamp())
    return ords, opens


def _f32(a: np.ndarray) -> np.ndarray:
    # Yahoo's prices are float32 values widened to float64 (e.g. 185.63999938964844)
    return a.astype(np.float32).astype(np.float64)


@dataclass
class DailySeries:
    ords: np.ndarray  # int64 day ordinals
    ts: np.ndarray  # int64 epoch seconds (regular open)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    adjclose: np.ndarray
    volume: np.ndarray  # int64
    null: np.ndarray  # bool: Yahoo's all-null rows
    div_idx: np.ndarray  # indices of dividend days
    div_amount: np.ndarray
    split_idx: np.ndarray
    split_ratio: tuple[int, int]


@lru_cache(maxsize=8192)
def daily(symbol: str, last: dt.date) -> DailySeries:
    """The whole daily history of ``symbol`` up to ``last`` (cached)."""
    ex = exchange_of(symbol)
    ords, ts = trading_days(ex, last)
    n = len(ords)
    seed = seed_of("daily", symbol)
    rng = np.random.default_rng(seed)
    base = 20.0 + (seed % 50_000) / 100.0
    if ex.currency == "JPY":
        base *= 30
    vol = 0.012 + (seed >> 20) % 100 / 10_000.0
    rets = rng.normal(0.0001, vol, n)
    close = base * np.exp(np.cumsum(rets) - rets.sum() / 2)
    gap = rng.normal(0.0, vol / 3, n)
    open_ = np.empty(n)
    open_[0] = close[0]
    open_[1:] = close[:-1] * np.exp(gap[1:])
    wick = np.abs(rng.normal(0.0, vol / 2, (2, n)))
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    volume = rng.lognormal(15.0, 0.6, n).astype(np.int64)
    null = rng.random(n) < 0.002
    null[-1] = False
    open_, high, low, close = _f32(open_), _f32(high), _f32(low), _f32(close)
    if seed % 3 == 0:
        div_idx = np.arange(40, n, 63, dtype=np.int64)
    else:
        div_idx = np.zeros(0, dtype=np.int64)
    div_amount = np.round(close[div_idx] * 0.005, 4)
    # adjclose: each dividend scales every earlier close by (1 - amount / previous close)
    factor = np.ones(n)
    if len(div_idx):
        step = np.ones(n)
        step[div_idx] = 1.0 - div_amount / close[np.maximum(div_idx - 1, 0)]
        # factor[i] = product of step[j] for j > i
        rev = np.cumprod(step[::-1])[::-1]
        factor[:-1] = rev[1:]
    adjclose = _f32(close * factor)
    split_idx = (
        np.array([n - 400], dtype=np.int64)
        if seed % 7 == 0 and n > 500
        else np.zeros(0, dtype=np.int64)
    )
    return DailySeries(
        ords,
        ts,
        open_,
        high,
        low,
        close,
        adjclose,
        volume,
        null,
        div_idx,
        div_amount,
        split_idx,
        (4, 1),
    )


def intraday(symbol: str, last: dt.date, day_index: int, minutes: int, *, prepost: bool = False):
    """Bars of one trading day: (ts, open, high, low, close, volume) arrays.

    The day's path starts at the daily open and ends at the daily close; pre/post-market bars
    (``prepost``) extend 5.5 h before and 4 h after the session at the edge prices.
    """
    series = daily(symbol, last)
    ex = exchange_of(symbol)
    oh, om = ex.open_hm
    ch, cm = ex.close_hm
    session = (ch * 60 + cm) - (oh * 60 + om)
    nbars = max(1, math.ceil(session / minutes))
    start = int(series.ts[day_index])
    ts = start + np.arange(nbars, dtype=np.int64) * minutes * 60
    rng = np.random.default_rng(seed_of("intraday", symbol, int(series.ords[day_index]), minutes))
    o, c = series.open[day_index], series.close[day_index]
    if not np.isfinite(o) or series.null[day_index]:
        o = c = float(series.close[max(day_index - 1, 0)])
    steps = rng.normal(0, 0.002, nbars)
    walk = np.cumsum(steps)
    bridge = walk - np.linspace(0, 1, nbars) * walk[-1]
    path = np.linspace(o, c, nbars + 1)
    closes = path[1:] * np.exp(bridge)
    opens = np.empty(nbars)
    opens[0] = o
    opens[1:] = closes[:-1]
    wick = np.abs(rng.normal(0, 0.001, (2, nbars)))
    highs = np.maximum(opens, closes) * (1 + wick[0])
    lows = np.minimum(opens, closes) * (1 - wick[1])
    vols = (series.volume[day_index] / nbars * rng.uniform(0.5, 1.5, nbars)).astype(np.int64)
    if prepost:
        pre_n = 330 // minutes
        post_n = 240 // minutes
        pre_ts = start - np.arange(pre_n, 0, -1, dtype=np.int64) * minutes * 60
        post_ts = ts[-1] + np.arange(1, post_n + 1, dtype=np.int64) * minutes * 60
        ts = np.concatenate([pre_ts, ts, post_ts])
        opens = np.concatenate([np.full(pre_n, o), opens, np.full(post_n, closes[-1])])
        closes = np.concatenate([np.full(pre_n, o), closes, np.full(post_n, closes[-1])])
        highs = np.concatenate([np.full(pre_n, o), highs, np.full(post_n, closes[-1])])
        lows = np.concatenate([np.full(pre_n, o), lows, np.full(post_n, closes[-1])])
        vols = np.concatenate([np.zeros(pre_n, np.int64), vols, np.zeros(post_n, np.int64)])
    return ts, _f32(opens), _f32(highs), _f32(lows), _f32(closes), vols
