"""Provider payloads (bytes) to canonical Arrow record batches — the readable spec.

Pure-Python twin of the compiled ``stockbatch._ext.decode``: same names, same results, same
errors (the compiled module also reports the exact byte position of every syntax error).

Rules shared by both backends
-----------------------------
* The payload is UTF-8 JSON as the standard library reads it, except that ``NaN`` and
  ``Infinity`` are refused. Anything ``json.loads`` would refuse raises :class:`DecodeError`
  naming the provider, the symbol and (where known) the byte position.
* Yahoo chart: ``chart.error`` set → :class:`SymbolNotFound` (code ``Not Found``) or
  :class:`ProviderError`; ``chart.result`` null or empty without an error → DecodeError.
  ``timestamp`` holds integers; ``indicators.quote[0]`` open/high/low/close (numbers or null),
  volume (integers, integral floats or null), ``indicators.adjclose[0].adjclose`` optional.
  A missing column is all null; a column whose length differs from ``timestamp`` is an error.
  No ``timestamp`` means no bars (0 rows) — but values without timestamps are an error.
  A timestamp whose microseconds overflow int64 (beyond about ±292,000 years) and an
  ``exchangeTimezoneName`` Arrow does not know are DecodeErrors (never a raw OverflowError /
  ArrowInvalid later in normalizing or resampling).
* Alpha Vantage: ``Error Message`` → SymbolNotFound ("Invalid API call") or ProviderError;
  ``Note`` / ``Information`` → :class:`RateLimited`. Values are strings holding JSON numbers.
  Dates are local to the ``Time Zone`` of ``Meta Data`` and become UTC instants; rows come
  out oldest first.
* Schema: exactly ``stockbatch.schema.BARS``, with extra schema metadata ``stockbatch.tz``,
  ``stockbatch.currency``, ``stockbatch.exchange``, ``stockbatch.instrument_type``,
  ``stockbatch.gmtoffset`` (when the provider sent them) and ``stockbatch.events`` (JSON
  ``{"dividends": [[ts, amount], ...], "splits": [[ts, numerator, denominator], ...]}``,
  sorted by ts, only when there are events).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .._errors import DecodeError, ProviderError, RateLimited, SymbolNotFound
from .._time import known_zone as _known_tz  # the compiled backend asks it too
from ..schema import BARS, QUOTES

__all__ = [
    "decode_yahoo_chart",
    "decode_alphavantage",
    "decode_yahoo_quote",
    "events_from_metadata",
]

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?\Z")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# epoch seconds whose microseconds fit int64 (the ts column is timestamp[us])
_TS_MIN, _TS_MAX = -(2**63 // 1_000_000), (2**63 - 1) // 1_000_000
_AV_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?: ([0-9]{2}):([0-9]{2}):([0-9]{2}))?\Z")


class _Bad(Exception):
    """A semantic problem found after parsing (no byte position)."""


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _fail(provider: str, symbol, reason: str, position=None) -> DecodeError:
    where = f" at byte {position}" if position is not None else ""
    return DecodeError(
        f"{provider}: cannot decode the payload for {symbol or '?'}: {reason}{where}",
        provider=provider,
        symbol=symbol,
        position=position,
    )


def _load(data, provider: str, symbol):
    if isinstance(data, str):
        raw = data.encode("utf-8", "surrogatepass")
    else:
        raw = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(provider, symbol, "invalid UTF-8", exc.start) from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise _fail(provider, symbol, "nesting too deep") from None
    except ValueError as exc:  # JSONDecodeError or a refused NaN/Infinity
        pos = getattr(exc, "pos", None)
        bpos = len(text[:pos].encode("utf-8", "surrogatepass")) if pos is not None else None
        reason = exc.msg if hasattr(exc, "msg") else str(exc)
        raise _fail(provider, symbol, f"invalid JSON ({reason})", bpos) from None


def _float_or_none(v, what: str):
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(f"{what} holds a {type(v).__name__}, not a number")
    return float(v)


def _int_or_none(v, what: str):
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(f"{what} holds a {type(v).__name__}, not an integer")
    if isinstance(v, float):
        if not v.is_integer():
            raise _Bad(f"{what} holds a fractional number")
        v = int(v)
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise _Bad(f"{what} is out of the int64 range")
    return v


def _str_or_none(v):
    if not isinstance(v, str):
        return None
    _utf8(v)
    return v


def _utf8(v: str) -> str:
    """``v``, or _Bad when it holds a lone surrogate (valid JSON ``"\\ud800"``, but no
    UTF-8 string: Arrow would refuse it later with a raw UnicodeEncodeError)."""
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise _Bad(f"string {v!r} holds a lone surrogate") from None
    return v


def _obj(v) -> dict:
    return v if isinstance(v, dict) else {}


def _first(v) -> dict:
    return v[0] if isinstance(v, list) and v and isinstance(v[0], dict) else {}


def _repeat(value: str, n: int) -> pa.Array:
    return pa.array([value] * n, pa.string())


def _schema(extra: dict[str, str]) -> pa.Schema:
    md = dict(BARS.metadata)
    md.update({f"stockbatch.{k}".encode(): v.encode() for k, v in extra.items()})
    return BARS.with_metadata(md)


def _events(ev) -> str | None:
    ev = _obj(ev)
    divs, splits = [], []
    for key, item in _obj(ev.get("dividends")).items():
        item = _obj(item)
        date = _int_or_none(item.get("date", None), "dividend date")
        if date is None:
            if not _INT.match(key):
                raise _Bad(f"dividend {key!r} has no date")
            date = _int_or_none(int(key), "dividend date")
        amount = _float_or_none(item.get("amount"), "dividend amount")
        divs.append([date, amount])
    for key, item in _obj(ev.get("splits")).items():
        item = _obj(item)
        date = _int_or_none(item.get("date", None), "split date")
        if date is None:
            if not _INT.match(key):
                raise _Bad(f"split {key!r} has no date")
            date = _int_or_none(int(key), "split date")
        num = _float_or_none(item.get("numerator"), "split numerator")
        den = _float_or_none(item.get("denominator"), "split denominator")
        splits.append([date, num, den])
    if not divs and not splits:
        return None
    divs.sort(key=lambda r: r[0])
    splits.sort(key=lambda r: r[0])
    return json.dumps({"dividends": divs, "splits": splits}, separators=(",", ":"))


def events_from_metadata(batch: pa.RecordBatch) -> dict:
    """The dividends and splits a decoder stored in ``batch``'s schema metadata.

    Returns ``{"dividends": [[ts_seconds, amount], ...], "splits": [[ts, num, den], ...]}``
    (empty lists when there were none).
    """
    md = batch.schema.metadata or {}
    raw = md.get(b"stockbatch.events")
    return json.loads(raw) if raw else {"dividends": [], "splits": []}


def decode_yahoo_chart(
    data, *, symbol: str | None = None, interval: str | None = None, source: str = "yahoo"
) -> pa.RecordBatch:
    """Decode a Yahoo ``/v8/finance/chart`` payload into a BARS record batch.

    Parameters
    ----------
    data : bytes
        The response body.
    symbol, interval : str, optional
        Values for the ``symbol`` / ``interval`` columns; default ``meta.symbol`` /
        ``meta.dataGranularity``.
    source : str
        The ``source`` column and the provider named in errors.

    Raises
    ------
    SymbolNotFound, ProviderError
        The payload is Yahoo's error answer.
    DecodeError
        Malformed JSON or values of the wrong type.
    """
    doc = _load(data, source, symbol)
    try:
        return _chart(doc, symbol, interval, source)
    except _Bad as exc:
        raise _fail(source, symbol, str(exc)) from None


def _chart(doc, symbol, interval, source):
    if not isinstance(doc, dict) or not isinstance(doc.get("chart"), dict):
        raise _Bad("no chart object")
    chart = doc["chart"]
    err = chart.get("error")
    if isinstance(err, dict):
        code = _str_or_none(err.get("code")) or "error"
        desc = _str_or_none(err.get("description")) or ""
        cls = SymbolNotFound if code == "Not Found" else ProviderError
        raise cls(f"{source}: {symbol or '?'}: {code}: {desc}", provider=source, symbol=symbol)
    result = chart.get("result")
    if not isinstance(result, list) or not result or not isinstance(result[0], dict):
        raise _Bad("the chart result is empty")
    res = result[0]
    meta = _obj(res.get("meta"))
    sym = symbol if symbol is not None else _str_or_none(meta.get("symbol"))
    ivl = interval if interval is not None else _str_or_none(meta.get("dataGranularity"))
    if sym is None:
        raise _Bad("no symbol (not in meta, none given)")
    if ivl is None:
        raise _Bad("no interval (not in meta, none given)")
    _utf8(sym)
    _utf8(ivl)
    ts_raw = res.get("timestamp")
    if ts_raw is not None and not isinstance(ts_raw, list):
        raise _Bad("timestamp is not an array")
    ts = [_int_or_none(v, "timestamp") for v in (ts_raw or [])]
    if any(v is None for v in ts):
        raise _Bad("timestamp holds null")
    for v in ts:
        if not _TS_MIN <= v <= _TS_MAX:
            raise _Bad(f"timestamp {v} is out of range (its microseconds overflow int64)")
    n = len(ts)
    ind = _obj(res.get("indicators"))
    quote = _first(ind.get("quote"))
    adj = _first(ind.get("adjclose"))
    cols = {}
    for name, raw, conv in (
        ("open", quote.get("open"), _float_or_none),
        ("high", quote.get("high"), _float_or_none),
        ("low", quote.get("low"), _float_or_none),
        ("close", quote.get("close"), _float_or_none),
        ("adj_close", adj.get("adjclose"), _float_or_none),
        ("volume", quote.get("volume"), _int_or_none),
    ):
        if raw is None:
            cols[name] = [None] * n
            continue
        if not isinstance(raw, list):
            raise _Bad(f"{name} is not an array")
        if len(raw) != n:
            raise _Bad(f"{name} has {len(raw)} values for {n} timestamps")
        cols[name] = [conv(v, name) for v in raw]
    extra = {}
    for key, field in (
        ("tz", "exchangeTimezoneName"),
        ("currency", "currency"),
        ("exchange", "exchangeName"),
        ("instrument_type", "instrumentType"),
    ):
        v = _str_or_none(meta.get(field))
        if v is not None:
            extra[key] = v
    if "tz" in extra and not _known_tz(extra["tz"]):
        raise _Bad(f"unknown exchange time zone {extra['tz']!r}")
    off = meta.get("gmtoffset")
    if isinstance(off, int) and not isinstance(off, bool) and _INT64_MIN <= off <= _INT64_MAX:
        extra["gmtoffset"] = str(off)
    events = _events(res.get("events"))
    if events is not None:
        extra["events"] = events
    arrays = [
        _repeat(sym, n),
        _repeat(ivl, n),
        pa.array([v * 1_000_000 for v in ts], pa.int64()).cast(BARS.field("ts").type)
        if n
        else pa.array([], BARS.field("ts").type),
        pa.array(cols["open"], pa.float64()),
        pa.array(cols["high"], pa.float64()),
        pa.array(cols["low"], pa.float64()),
        pa.array(cols["close"], pa.float64()),
        pa.array(cols["adj_close"], pa.float64()),
        pa.array(cols["volume"], pa.int64()),
        _repeat(source, n),
    ]
    try:
        return pa.RecordBatch.from_arrays(arrays, schema=_schema(extra))
    except (pa.ArrowInvalid, OverflowError) as exc:  # ts * 1e6 beyond int64
        raise _Bad(f"timestamp out of range ({exc})") from None


# -- Alpha Vantage -------------------------------------------------------------------------

_AV_FIELDS = (("1. open", "open"), ("2. high", "high"), ("3. low", "low"), ("4. close", "close"))


def decode_alphavantage(
    data, *, symbol: str | None = None, interval: str | None = None, source: str = "alphavantage"
) -> pa.RecordBatch:
    """Decode an Alpha Vantage TIME_SERIES_DAILY / TIME_SERIES_INTRADAY payload.

    ``interval`` defaults to ``1d`` for daily series and e.g. ``5m`` for ``5min``.

    Raises
    ------
    RateLimited
        ``Note`` / ``Information`` answers (HTTP 200 quota messages).
    SymbolNotFound, ProviderError
        ``Error Message`` answers.
    DecodeError
        Malformed JSON or values.
    """
    doc = _load(data, source, symbol)
    try:
        return _av(doc, symbol, interval, source)
    except _Bad as exc:
        raise _fail(source, symbol, str(exc)) from None


def _av_error(doc, symbol, source):
    if "Error Message" in doc:
        msg = str(doc["Error Message"])
        cls = SymbolNotFound if msg.startswith("Invalid API call") else ProviderError
        raise cls(f"{source}: {symbol or '?'}: {msg}", provider=source, symbol=symbol)
    for key in ("Note", "Information"):
        if key in doc:
            raise RateLimited(
                f"{source}: {symbol or '?'}: {doc[key]}",
                provider=source,
                symbol=symbol,
                retry_after=60.0,
            )


def _av(doc, symbol, interval, source):
    if not isinstance(doc, dict):
        raise _Bad("the payload is not an object")
    _av_error(doc, symbol, source)
    meta = doc.get("Meta Data")
    if not isinstance(meta, dict):
        raise _Bad("no Meta Data object")
    series_key = None
    for key in doc:
        if key.startswith("Time Series ("):
            series_key = key
    if series_key is None or not isinstance(doc[series_key], dict):
        raise _Bad("no Time Series object")
    tz = None
    sym = None
    for key, value in meta.items():
        if key.endswith("Time Zone") and isinstance(value, str):
            tz = value
        elif key.endswith("Symbol") and isinstance(value, str):
            sym = value
    if tz is None:
        raise _Bad("Meta Data has no Time Zone")
    sym = symbol if symbol is not None else sym
    if sym is None:
        raise _Bad("no symbol (not in Meta Data, none given)")
    _utf8(sym)
    label = series_key[len("Time Series (") : -1]
    ivl = interval if interval is not None else _av_interval(label)
    _utf8(ivl)
    rows = []
    for stamp, values in doc[series_key].items():
        m = _AV_DATE.match(stamp)
        if m is None:
            raise _Bad(f"bad date {stamp!r}")
        parts = [int(x) if x is not None else 0 for x in m.groups()]
        if not (
            1 <= parts[1] <= 12
            and 1 <= parts[2] <= 31
            and parts[3] < 24
            and parts[4] < 60
            and parts[5] < 60
        ):
            raise _Bad(f"bad date {stamp!r}")
        if not isinstance(values, dict):
            raise _Bad(f"values of {stamp} are not an object")
        row: list[Any] = [_naive_seconds(*parts)]  # seconds, then numbers or None
        for key, name in _AV_FIELDS:
            row.append(_av_number(values.get(key), name, stamp))
        vol = values.get("5. volume")
        if vol is None:
            row.append(None)
        elif isinstance(vol, str) and _INT.match(vol):
            v = int(vol)
            if not _INT64_MIN <= v <= _INT64_MAX:
                raise _Bad(f"volume of {stamp} is out of the int64 range")
            row.append(v)
        else:
            raise _Bad(f"volume of {stamp} is not an integer string")
        rows.append(row)
    rows.reverse()  # newest first on the wire; oldest first out
    n = len(rows)
    naive = pa.array([r[0] * 1_000_000 for r in rows], pa.int64()).cast(pa.timestamp("us"))
    try:
        ts = pc.assume_timezone(naive, tz, ambiguous="earliest", nonexistent="earliest")
    except (pa.ArrowInvalid, ValueError) as exc:
        raise _Bad(f"unknown time zone {tz!r} ({exc})") from None
    ts = ts.cast(BARS.field("ts").type)
    arrays = [_repeat(sym, n), _repeat(ivl, n), ts]
    for i in range(1, 5):
        arrays.append(pa.array([r[i] for r in rows], pa.float64()))
    arrays.append(pa.nulls(n, pa.float64()))
    arrays.append(pa.array([r[5] for r in rows], pa.int64()))
    arrays.append(_repeat(source, n))
    return pa.RecordBatch.from_arrays(arrays, schema=_schema({"tz": tz}))


def _av_interval(label: str) -> str:
    if label == "Daily":
        return "1d"
    if label.endswith("min"):
        return label[:-3] + "m"
    return label


def _av_number(v, name, stamp):
    if v is None:
        return None
    if not isinstance(v, str) or not _NUMBER.match(v):
        raise _Bad(f"{name} of {stamp} is not a number string")
    return float(v)


def _naive_seconds(y, mo, d, h, mi, s) -> int:
    # days from civil (proleptic Gregorian), as the compiled backend computes it
    y -= mo <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + h * 3600 + mi * 60 + s


# -- Yahoo quote ---------------------------------------------------------------------------


def decode_yahoo_quote(data, *, source: str = "yahoo") -> pa.RecordBatch:
    """Decode a Yahoo ``/v7/finance/quote`` payload into a QUOTES record batch.

    Symbols Yahoo does not know are simply absent from its answer (and so from the batch).
    """
    doc = _load(data, source, None)
    try:
        resp = doc["quoteResponse"]
        err = resp.get("error")
        if isinstance(err, dict):
            raise ProviderError(
                f"{source}: quote: {err.get('code')}: {err.get('description')}", provider=source
            )
        items = resp["result"]
        if not isinstance(items, list):
            raise TypeError("result is not an array")
        cols: dict[str, list] = {f.name: [] for f in QUOTES}
        for q in items:
            sym = q["symbol"]
            if not isinstance(sym, str):
                raise TypeError("symbol is not a string")
            _utf8(sym)
            cols["symbol"].append(sym)
            t = _int_or_none(q.get("regularMarketTime"), "regularMarketTime")
            if t is None:
                raise TypeError(f"{sym} has no regularMarketTime")
            cols["ts"].append(t * 1_000_000)
            cols["price"].append(_float_or_none(q.get("regularMarketPrice"), "price"))
            cols["previous_close"].append(
                _float_or_none(q.get("regularMarketPreviousClose"), "previous close")
            )
            cols["change"].append(_float_or_none(q.get("regularMarketChange"), "change"))
            cols["change_percent"].append(
                _float_or_none(q.get("regularMarketChangePercent"), "change percent")
            )
            cols["volume"].append(_int_or_none(q.get("regularMarketVolume"), "volume"))
            cols["market_cap"].append(_float_or_none(q.get("marketCap"), "market cap"))
            cols["currency"].append(_str_or_none(q.get("currency")))
            cols["source"].append(source)
    except (KeyError, TypeError, AttributeError, _Bad) as exc:
        raise _fail(source, None, f"unexpected quote payload ({exc})") from None
    ts = pa.array(cols.pop("ts"), pa.int64()).cast(QUOTES.field("ts").type)
    arrays = [pa.array(cols["symbol"], pa.string()), ts]
    arrays += [pa.array(cols[f.name], f.type) for f in list(QUOTES)[2:]]
    return pa.RecordBatch.from_arrays(arrays, schema=QUOTES)
