"""Provider payloads built from the synthetic data: Yahoo chart and quote, Alpha Vantage.

Each builder returns ``(status, content_type, body_bytes, extra_headers)``. Bodies are compact
JSON in the providers' own shapes; see :mod:`stockbatch.testing._synth` for the data.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import OrderedDict
from zoneinfo import ZoneInfo

import numpy as np

from . import _synth

__all__ = ["PayloadBuilder", "RANGES", "INTERVAL_WINDOW_DAYS"]

JSON_CT = "application/json;charset=utf-8"

RANGES = {
    "1d": 1,
    "5d": 5,
    "1mo": 31,
    "3mo": 92,
    "6mo": 183,
    "1y": 365,
    "2y": 730,
    "5y": 1826,
    "10y": 3652,
}
VALID_RANGES = ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"]
VALID_INTERVALS = ["1m", "2m", "5m", "15m", "30m", "60m", "90m", "1h", "1d", "1wk", "1mo"]
#: Yahoo refuses wider windows for these intervals (HTTP 422).
INTERVAL_WINDOW_DAYS = {
    "1m": 8,
    "2m": 60,
    "5m": 60,
    "15m": 60,
    "30m": 60,
    "60m": 730,
    "90m": 60,
    "1h": 730,
}
_DAY = 86_400

# Company profiles of the quoteSummary route (picked by a hash of the symbol).
_PROFILE_SECTORS = [
    ("Consumer Cyclical", "Auto Manufacturers"),
    ("Technology", "Consumer Electronics"),
    ("Communication Services", "Telecom Services"),
    ("Financial Services", "Banks - Diversified"),
    ("Healthcare", "Drug Manufacturers - General"),
    ("Industrials", "Specialty Industrial Machinery"),
]
_PROFILE_PLACES = {
    "JPX": ("Tokyo", "Japan"),
    "LSE": ("London", "United Kingdom"),
    "GER": ("Frankfurt", "Germany"),
    "HKG": ("Hong Kong", "Hong Kong"),
    "PAR": ("Paris", "France"),
}


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _window(q: dict[str, str], now: float) -> tuple[int, int] | None:
    """``(period1, period2)`` of a chart query: its epoch bounds, its ``range`` counted back
    from ``now``, or the last 31 days; None for a range Yahoo does not know. ValueError for
    bounds that are not numbers."""
    if "period1" in q:
        return int(float(q["period1"])), int(float(q.get("period2", now)))
    p2 = int(now)
    rng = q.get("range")
    if not rng:
        return p2 - 31 * _DAY, p2
    if rng == "max":
        return 0, p2
    if rng == "ytd":
        year = dt.datetime.fromtimestamp(now, dt.timezone.utc).year
        return int(dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc).timestamp()), p2
    if rng in RANGES:
        return p2 - RANGES[rng] * _DAY, p2
    return None


def _chart_error(status: int, code: str, description: str):
    body = _dumps({"chart": {"result": None, "error": {"code": code, "description": description}}})
    return status, JSON_CT, body, ()


def _list(a: np.ndarray, null: np.ndarray | None):
    out = a.tolist()
    if null is not None and null.any():
        for i in np.flatnonzero(null).tolist():
            out[i] = None
    return out


class PayloadBuilder:
    """Builds (and caches) provider responses.

    A payload is rendered once per symbol and shape and kept until its content changes: the
    cache key is the request (time-relative parts left out) plus the bar indices the answer is
    made of (first and last bar of the window, the latest started bar, and for intraday bars
    the minute, and the day of the clock, on which the synthetic series depends), so a
    wall-clock server renders a 1y daily payload once a day, not once a minute. The cache is bounded by bytes (``cache_bytes``), not entries, so 2,000 symbols x a
    few shapes stay cached.

    Parameters
    ----------
    now : float, optional
        Fixed clock (epoch seconds) for ``range=`` requests and "latest" data; default: the
        wall clock at each request.
    unknown : iterable of str
        Extra symbols answered as unknown (404), besides the rule of ``_synth.is_unknown``.
    """

    def __init__(
        self,
        *,
        now: float | None = None,
        unknown=(),
        cache_size: int = 1 << 17,
        cache_bytes: int = 256 << 20,
    ):
        self.now = now
        self.unknown = frozenset(s.upper() for s in unknown)
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache_size
        self._cache_bytes = cache_bytes
        self._bytes = 0
        self.renders = 0  # payloads rendered (cache misses), for the server's stats

    # -- helpers ---------------------------------------------------------------------------
    def clock(self) -> float:
        return self.now if self.now is not None else time.time()

    def _cached(self, key, make):
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        value = make()
        self.renders += 1
        if value[0] == 200 and key is not None:
            self._cache[key] = value
            self._bytes += len(value[2])
            while len(self._cache) > self._cache_size or self._bytes > self._cache_bytes:
                self._bytes -= len(self._cache.popitem(last=False)[1][2])
        return value

    def is_unknown(self, symbol: str) -> bool:
        return _synth.is_unknown(symbol, self.unknown)

    # -- Yahoo chart -----------------------------------------------------------------------
    def chart(self, symbol: str, query: dict[str, str]):
        now = self.clock()
        key = self._chart_key(symbol, query, now)
        return self._cached(key, lambda: self._chart(symbol, query, now))

    def _chart_key(self, symbol: str, q: dict[str, str], now: float):
        """What a chart answer depends on (None: an error answer, not cached). The window is
        :meth:`_chart`'s (:func:`_window`); bar times are whole minutes, so ``now`` and
        time-relative bounds enter rounded to the minute in the direction each comparison
        uses."""
        interval = q.get("interval", "1d")
        if self.is_unknown(symbol) or interval not in VALID_INTERVALS:
            return None
        nowi = int(now)
        try:
            window = _window(q, now)
        except ValueError:
            return None
        if window is None:
            return None
        p1, p2 = window
        last = dt.datetime.fromtimestamp(now, dt.timezone.utc).date() + dt.timedelta(days=1)
        ts = _synth.daily(symbol, last).ts
        i_last = int(np.searchsorted(ts, nowi, side="right"))
        # (the synthetic series depends on ``last`` too: a new UTC day renders anew)
        shape = ("chart", symbol, tuple(sorted(q.items())), last, i_last)
        if interval in _synth.INTRADAY_MINUTES:
            lo = int(np.searchsorted(ts, p1 - _DAY, side="left"))
            hi = int(np.searchsorted(ts, p2, side="right"))
            return (*shape, p2 - p1, lo, hi, -(-p1 // 60), -(-p2 // 60), nowi // 60)
        lo = int(np.searchsorted(ts, p1, side="left"))
        hi = int(np.searchsorted(ts, p2, side="left"))
        return (*shape, p2 - p1, lo, hi)

    def _chart(self, symbol: str, q: dict[str, str], now: float):
        if self.is_unknown(symbol):
            return _chart_error(404, "Not Found", "No data found, symbol may be delisted")
        interval = q.get("interval", "1d")
        if interval not in VALID_INTERVALS:
            return _chart_error(
                400,
                "Bad Request",
                f"Invalid input - interval={interval} is not supported. "
                f"Valid intervals: [{', '.join(VALID_INTERVALS)}]",
            )
        try:
            window = _window(q, now)
        except ValueError:
            return _chart_error(
                400, "Bad Request", "Invalid input - period1/period2 must be epoch seconds"
            )
        if window is None:
            return _chart_error(
                400,
                "Bad Request",
                f"Invalid input - range={q.get('range')} is not supported. "
                f"Valid ranges: [{', '.join(VALID_RANGES)}]",
            )
        p1, p2 = window
        rng = None if "period1" in q else (q.get("range") or "1mo")
        if p2 < p1:
            return _chart_error(
                400, "Bad Request", "Invalid input - startTime cannot be after endTime"
            )
        limit = INTERVAL_WINDOW_DAYS.get(interval)
        if limit is not None and p2 - p1 > limit * _DAY and rng != "max":
            return _chart_error(
                422,
                "Unprocessable Entity",
                f"{interval} data not available for startTime={p1} and endTime={p2}. Only "
                f"{limit} days worth of {interval} granularity data are allowed to be fetched "
                "per request.",
            )
        events = q.get("events", "")
        prepost = q.get("includePrePost", "false").lower() == "true"
        last = dt.datetime.fromtimestamp(now, dt.timezone.utc).date() + dt.timedelta(days=1)
        ex = _synth.exchange_of(symbol)
        series = _synth.daily(symbol, last)
        nowi = int(now)
        i_last = int(np.searchsorted(series.ts, nowi, side="right"))  # bars that started
        meta = self._meta(symbol, ex, series, i_last, interval, rng or "", now)
        result: dict = {"meta": meta}
        if interval in _synth.INTRADAY_MINUTES:
            minutes = _synth.INTRADAY_MINUTES[interval]
            lo = int(np.searchsorted(series.ts, p1 - _DAY, side="left"))
            hi = min(int(np.searchsorted(series.ts, p2, side="right")), i_last)
            parts = [
                _synth.intraday(symbol, last, i, minutes, prepost=prepost) for i in range(lo, hi)
            ]
            if parts:
                ts, o, h, lo_, c, v = (np.concatenate(x) for x in zip(*parts, strict=True))
                keep = (ts >= p1) & (ts < p2) & (ts <= nowi)
                ts, o, h, lo_, c, v = ts[keep], o[keep], h[keep], lo_[keep], c[keep], v[keep]
            else:
                ts = np.zeros(0, np.int64)
            periods = []
            for i in range(lo, hi):
                start = int(series.ts[i])
                sess = _session_seconds(ex)
                periods.append(
                    [
                        {
                            "timezone": ex.tz_short,
                            "start": start,
                            "end": start + sess,
                            "gmtoffset": _gmtoffset(ex, start),
                        }
                    ]
                )
            meta["tradingPeriods"] = periods
            if len(ts):
                result["timestamp"] = ts.tolist()
                result["indicators"] = {
                    "quote": [
                        {
                            "open": o.tolist(),
                            "high": h.tolist(),
                            "low": lo_.tolist(),
                            "close": c.tolist(),
                            "volume": v.tolist(),
                        }
                    ]
                }
            else:
                result["indicators"] = {"quote": [{}]}
            return 200, JSON_CT, _dumps({"chart": {"result": [result], "error": None}}), ()
        # daily and coarser
        lo = int(np.searchsorted(series.ts, p1, side="left"))
        hi = min(int(np.searchsorted(series.ts, p2, side="left")), i_last)
        if lo > 0:
            meta["chartPreviousClose"] = float(series.close[lo - 1])
        sl = slice(lo, hi)
        ts = series.ts[sl]
        null = series.null[sl]
        cols = {
            "open": series.open[sl],
            "high": series.high[sl],
            "low": series.low[sl],
            "close": series.close[sl],
            "volume": series.volume[sl],
            "adjclose": series.adjclose[sl],
        }
        if interval in ("1wk", "1mo"):
            ts, cols, null = _aggregate(ts, cols, null, interval, ex)
        if hi > lo:
            result["timestamp"] = ts.tolist()
            ev = {}
            if "div" in events:
                divs = {}
                for i, amount in zip(
                    series.div_idx.tolist(), series.div_amount.tolist(), strict=True
                ):
                    if lo <= i < hi:
                        t = int(series.ts[i])
                        divs[str(t)] = {"amount": amount, "date": t}
                if divs:
                    ev["dividends"] = divs
            if "split" in events:
                splits = {}
                num, den = series.split_ratio
                for i in series.split_idx.tolist():
                    if lo <= i < hi:
                        t = int(series.ts[i])
                        splits[str(t)] = {
                            "date": t,
                            "numerator": num,
                            "denominator": den,
                            "splitRatio": f"{num}:{den}",
                        }
                if splits:
                    ev["splits"] = splits
            if ev:
                result["events"] = ev
            result["indicators"] = {
                "quote": [
                    {k: _list(cols[k], null) for k in ("open", "high", "volume", "close", "low")}
                ],
                "adjclose": [{"adjclose": _list(cols["adjclose"], null)}],
            }
        else:
            result["indicators"] = {"quote": [{}], "adjclose": [{}]}
        return 200, JSON_CT, _dumps({"chart": {"result": [result], "error": None}}), ()

    def _meta(self, symbol, ex, series, i_last, interval, rng, now):
        j = max(i_last - 1, 0)
        start = int(series.ts[j])
        sess = _session_seconds(ex)
        off = _gmtoffset(ex, start)
        year = slice(max(0, j - 252), j + 1)

        def period(s, e):
            return {"timezone": ex.tz_short, "start": s, "end": e, "gmtoffset": off}

        name = f"{symbol} Synthetic Holdings"
        return {
            "currency": ex.currency,
            "symbol": symbol,
            "exchangeName": ex.code,
            "fullExchangeName": ex.full_name,
            "instrumentType": "INDEX" if symbol.startswith("^") else "EQUITY",
            "firstTradeDate": int(series.ts[0]),
            "regularMarketTime": start + sess,
            "hasPrePostMarketData": ex.tz == "America/New_York",
            "gmtoffset": off,
            "timezone": ex.tz_short,
            "exchangeTimezoneName": ex.tz,
            "regularMarketPrice": float(series.close[j]),
            "fiftyTwoWeekHigh": float(np.nanmax(series.high[year])),
            "fiftyTwoWeekLow": float(np.nanmin(series.low[year])),
            "regularMarketDayHigh": float(series.high[j]),
            "regularMarketDayLow": float(series.low[j]),
            "regularMarketVolume": int(series.volume[j]),
            "longName": name,
            "shortName": name[:24],
            "chartPreviousClose": float(series.close[max(j - 1, 0)]),
            "previousClose": float(series.close[max(j - 1, 0)]),
            "scale": 3,
            "priceHint": 2,
            "currentTradingPeriod": {
                "pre": period(start - 19800, start),
                "regular": period(start, start + sess),
                "post": period(start + sess, start + sess + 14400),
            },
            "dataGranularity": interval,
            "range": rng,
            "validRanges": VALID_RANGES,
        }

    # -- Yahoo quote -----------------------------------------------------------------------
    def quote(self, symbols: list[str]):
        now = self.clock()
        last = dt.datetime.fromtimestamp(now, dt.timezone.utc).date() + dt.timedelta(days=1)
        # the answer depends on each symbol's latest started bar
        bars = tuple(
            int(np.searchsorted(_synth.daily(s, last).ts, int(now), side="right"))
            if s and not self.is_unknown(s)
            else -1
            for s in symbols
        )
        key = ("quote", tuple(symbols), last, bars)
        return self._cached(key, lambda: self._quote(symbols, now))

    def _quote(self, symbols, now):
        last = dt.datetime.fromtimestamp(now, dt.timezone.utc).date() + dt.timedelta(days=1)
        out = []
        for sym in symbols:
            if not sym or self.is_unknown(sym):
                continue  # Yahoo leaves unknown symbols out of the result
            ex = _synth.exchange_of(sym)
            s = _synth.daily(sym, last)
            j = max(int(np.searchsorted(s.ts, int(now), side="right")) - 1, 1)
            price, prev = float(s.close[j]), float(s.close[j - 1])
            out.append(
                {
                    "language": "en-US",
                    "region": "US",
                    "quoteType": "INDEX" if sym.startswith("^") else "EQUITY",
                    "typeDisp": "Equity",
                    "quoteSourceName": "Delayed Quote",
                    "currency": ex.currency,
                    "exchange": ex.code,
                    "shortName": f"{sym} Synthetic",
                    "longName": f"{sym} Synthetic Holdings",
                    "market": "us_market",
                    "regularMarketPrice": price,
                    "regularMarketTime": int(s.ts[j]) + 3600,
                    "regularMarketChange": price - prev,
                    "regularMarketChangePercent": (price - prev) / prev * 100.0,
                    "regularMarketPreviousClose": prev,
                    "regularMarketVolume": int(s.volume[j]),
                    "marketCap": price * 1e9,
                    "exchangeTimezoneName": ex.tz,
                    "exchangeTimezoneShortName": ex.tz_short,
                    "gmtOffSetMilliseconds": _gmtoffset(ex, int(s.ts[j])) * 1000,
                    "symbol": sym,
                }
            )
        body = _dumps({"quoteResponse": {"result": out, "error": None}})
        return 200, JSON_CT, body, ()

    # -- Yahoo quoteSummary and fundamentals-timeseries (company info) -----------------------
    # Added for stockbatch.compat.StockFetcher.get_company_info and yfinance's Ticker.info.
    # Prices in these modules are the quote endpoint's, so .info and /v7 quote agree.
    def quote_summary(self, symbol: str, query: dict[str, str]):
        """``/v10/finance/quoteSummary/{symbol}?modules=a,b``: the modules yfinance's
        ``Ticker.info`` asks for (quoteType, assetProfile, summaryDetail, financialData,
        defaultKeyStatistics); unknown symbols get Yahoo's 404 JSON error."""
        if not symbol or self.is_unknown(symbol):
            body = _dumps(
                {
                    "quoteSummary": {
                        "result": None,
                        "error": {
                            "code": "Not Found",
                            "description": f"Quote not found for symbol: {symbol}",
                        },
                    }
                }
            )
            return 404, JSON_CT, body, ()
        q = json.loads(self.quote([symbol])[2])["quoteResponse"]["result"][0]
        ex = _synth.exchange_of(symbol)
        seed = _synth.seed_of("profile", symbol.upper())
        sector, industry = _PROFILE_SECTORS[seed % len(_PROFILE_SECTORS)]
        city, country = _PROFILE_PLACES.get(ex.code, ("New York", "United States"))
        modules = {
            "quoteType": {
                "exchange": ex.code,
                "quoteType": q["quoteType"],
                "symbol": symbol,
                "shortName": q["shortName"],
                "longName": q["longName"],
                "timeZoneFullName": ex.tz,
                "timeZoneShortName": ex.tz_short,
                "market": q["market"],
            },
            "assetProfile": {
                "sector": sector,
                "industry": industry,
                "city": city,
                "country": country,
                "website": f"https://www.{symbol.lower().replace('.', '-')}.example",
                "fullTimeEmployees": 1000 + seed % 90000,
                "longBusinessSummary": f"{q['longName']} is a synthetic company "
                f"in {industry.lower()}.",
            },
            "summaryDetail": {
                "previousClose": q["regularMarketPreviousClose"],
                "regularMarketPreviousClose": q["regularMarketPreviousClose"],
                "volume": q["regularMarketVolume"],
                "regularMarketVolume": q["regularMarketVolume"],
                "marketCap": q["marketCap"],
                "currency": q["currency"],
            },
            "financialData": {
                "currentPrice": q["regularMarketPrice"],
                "financialCurrency": q["currency"],
            },
            "defaultKeyStatistics": {"sharesOutstanding": 1_000_000_000},
        }
        asked = [m for m in query.get("modules", "").split(",") if m]
        result = {m: modules[m] for m in asked if m in modules}
        return 200, JSON_CT, _dumps({"quoteSummary": {"result": [result], "error": None}}), ()

    def timeseries(self, symbol: str):
        """``/ws/fundamentals-timeseries/v1/finance/timeseries/{symbol}``: no series (what
        Yahoo answers for a key it has no data for)."""
        return 200, JSON_CT, _dumps({"timeseries": {"result": [], "error": None}}), ()

    # -- Alpha Vantage ---------------------------------------------------------------------
    def alphavantage(self, q: dict[str, str], *, keys: frozenset[str] | None = None):
        func = q.get("function", "")
        apikey = q.get("apikey", "")
        if not apikey or (keys is not None and apikey not in keys):
            return (
                200,
                JSON_CT,
                _dumps(
                    {
                        "Error Message": (
                            "the parameter apikey is invalid or missing. Please claim your free API key "
                            "on (https://www.alphavantage.co/support/#api-key). It should take less than "
                            "20 seconds."
                        )
                    }
                ),
                (),
            )
        symbol = q.get("symbol", "")
        invalid = _dumps(
            {
                "Error Message": (
                    "Invalid API call. Please retry or visit the documentation "
                    f"(https://www.alphavantage.co/documentation/) for {func or 'this function'}."
                )
            }
        )
        if (
            func not in ("TIME_SERIES_DAILY", "TIME_SERIES_INTRADAY")
            or not symbol
            or self.is_unknown(symbol)
            or q.get("datatype", "json") != "json"
        ):
            return 200, JSON_CT, invalid, ()
        now = self.clock()
        last = dt.datetime.fromtimestamp(now, dt.timezone.utc).date() + dt.timedelta(days=1)
        n = int(np.searchsorted(_synth.daily(symbol, last).ts, int(now), side="right"))
        key = (
            "av",
            tuple(sorted((k, v) for k, v in q.items() if k != "apikey")),
            last,
            n,
            int(now) // 60 if func == "TIME_SERIES_INTRADAY" else None,
        )
        return self._cached(key, lambda: self._alphavantage(func, symbol, q, now, invalid))

    def _alphavantage(self, func, symbol, q, now, invalid):
        full = q.get("outputsize", "compact") == "full"
        last = dt.datetime.fromtimestamp(now, dt.timezone.utc).date() + dt.timedelta(days=1)
        ex = _synth.exchange_of(symbol)
        zone = ZoneInfo(ex.tz)
        s = _synth.daily(symbol, last)
        n = int(np.searchsorted(s.ts, int(now), side="right"))
        if func == "TIME_SERIES_DAILY":
            lo = 0 if full else max(0, n - 100)
            series = {}
            for i in range(n - 1, lo - 1, -1):
                if s.null[i]:
                    continue  # Alpha Vantage has no null bars: the day is simply absent
                day = dt.datetime.fromtimestamp(int(s.ts[i]), zone).strftime("%Y-%m-%d")
                series[day] = {
                    "1. open": f"{s.open[i]:.4f}",
                    "2. high": f"{s.high[i]:.4f}",
                    "3. low": f"{s.low[i]:.4f}",
                    "4. close": f"{s.close[i]:.4f}",
                    "5. volume": str(int(s.volume[i])),
                }
            meta = {
                "1. Information": "Daily Prices (open, high, low, close) and Volumes",
                "2. Symbol": symbol,
                "3. Last Refreshed": next(iter(series), ""),
                "4. Output Size": "Full size" if full else "Compact",
                "5. Time Zone": ex.tz,
            }
            body = _dumps({"Meta Data": meta, "Time Series (Daily)": series})
            return 200, JSON_CT, body, ()
        iv = q.get("interval", "")
        minutes = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "60min": 60}.get(iv)
        if minutes is None:
            return 200, JSON_CT, invalid, ()
        want = 100 if not full else 10**9
        days = 30 if full else max(1, 100 * minutes // 390 + 2)
        rows = []
        for i in range(n - 1, max(-1, n - 1 - days), -1):
            ts, o, h, lo_, c, v = _synth.intraday(symbol, last, i, minutes)
            for k in range(len(ts) - 1, -1, -1):
                if ts[k] > now:
                    continue
                rows.append((int(ts[k]), o[k], h[k], lo_[k], c[k], int(v[k])))
                if len(rows) >= want:
                    break
            if len(rows) >= want:
                break
        series = {}
        for t, o, h, lo_, c, v in rows:
            stamp = dt.datetime.fromtimestamp(t, zone).strftime("%Y-%m-%d %H:%M:%S")
            series[stamp] = {
                "1. open": f"{o:.4f}",
                "2. high": f"{h:.4f}",
                "3. low": f"{lo_:.4f}",
                "4. close": f"{c:.4f}",
                "5. volume": str(v),
            }
        meta = {
            "1. Information": f"Intraday ({iv}) open, high, low, close prices and volume",
            "2. Symbol": symbol,
            "3. Last Refreshed": next(iter(series), ""),
            "4. Interval": iv,
            "5. Output Size": "Full size" if full else "Compact",
            "6. Time Zone": ex.tz,
        }
        body = _dumps({"Meta Data": meta, f"Time Series ({iv})": series})
        return 200, JSON_CT, body, ()


def _session_seconds(ex) -> int:
    return ((ex.close_hm[0] * 60 + ex.close_hm[1]) - (ex.open_hm[0] * 60 + ex.open_hm[1])) * 60


def _gmtoffset(ex, epoch: int) -> int:
    off = dt.datetime.fromtimestamp(epoch, ZoneInfo(ex.tz)).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def _aggregate(ts, cols, null, interval, ex):
    """Weekly / monthly bars from daily ones (first open, max high, min low, last close)."""
    zone = ZoneInfo(ex.tz)
    keys = []
    for t in ts.tolist():
        d = dt.datetime.fromtimestamp(t, zone).date()
        keys.append(d.isocalendar()[:2] if interval == "1wk" else (d.year, d.month))
    groups: dict = {}
    for i, k in enumerate(keys):
        if not null[i]:
            groups.setdefault(k, []).append(i)
    order = sorted(groups)
    idx = [groups[k] for k in order]
    out_ts = np.array([ts[g[0]] for g in idx], dtype=np.int64)
    out = {
        "open": np.array([cols["open"][g[0]] for g in idx]),
        "high": np.array([cols["high"][g].max() for g in idx]),
        "low": np.array([cols["low"][g].min() for g in idx]),
        "close": np.array([cols["close"][g[-1]] for g in idx]),
        "adjclose": np.array([cols["adjclose"][g[-1]] for g in idx]),
        "volume": np.array([cols["volume"][g].sum() for g in idx], dtype=np.int64),
    }
    return out_ts, out, np.zeros(len(idx), dtype=bool)
