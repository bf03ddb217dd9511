"""Decoders on both backends: equal to stdlib-json decoding, typed errors, fuzzed input."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockbatch import DecodeError, ProviderError, RateLimited, SymbolNotFound
from stockbatch.schema import BARS
from stockbatch.testing._payloads import PayloadBuilder

NOW = 1767225600  # 2026-01-01T00:00:00Z
PB = PayloadBuilder(now=NOW)


def chart(symbol="AAPL", **q):
    status, _, body, _ = PB.chart(symbol, {k: str(v) for k, v in q.items()})
    assert status == 200
    return body


def expected_chart(payload: bytes, symbol=None, interval=None, source="yahoo"):
    """The oracle: stdlib json, then plain pyarrow arrays."""
    res = json.loads(payload)["chart"]["result"][0]
    ts = res.get("timestamp", [])
    q = (res.get("indicators", {}).get("quote") or [{}])[0]
    adj = (res.get("indicators", {}).get("adjclose") or [{}])[0].get("adjclose")
    n = len(ts)
    sym = symbol or res["meta"]["symbol"]
    ivl = interval or res["meta"]["dataGranularity"]

    def col(v, t):
        return pa.array(v if v is not None else [None] * n, t)

    return pa.table(
        {
            "symbol": pa.array([sym] * n, pa.string()),
            "interval": pa.array([ivl] * n),
            "ts": pa.array([t * 10**6 for t in ts], pa.int64()).cast(BARS.field("ts").type),
            "open": col(q.get("open"), pa.float64()),
            "high": col(q.get("high"), pa.float64()),
            "low": col(q.get("low"), pa.float64()),
            "close": col(q.get("close"), pa.float64()),
            "adj_close": col(adj, pa.float64()),
            "volume": col(q.get("volume"), pa.int64()),
            "source": pa.array([source] * n),
        }
    )


FIXTURES = [
    ("AAPL", {"range": "1y", "interval": "1d", "events": "div,splits"}),
    ("KO", {"range": "10y", "interval": "1d", "events": "div,splits"}),
    ("7203.T", {"range": "5d", "interval": "5m"}),
    ("VOD.L", {"range": "1mo", "interval": "1h"}),
    ("SAP.DE", {"range": "2y", "interval": "1wk"}),
    ("MSFT", {"range": "5y", "interval": "1mo"}),
    ("TSLA", {"range": "1d", "interval": "1m", "includePrePost": "true"}),
    ("0005.HK", {"period1": NOW - 400 * 86400, "period2": NOW - 200 * 86400}),
]


@pytest.mark.parametrize("symbol,query", FIXTURES, ids=[f[0] for f in FIXTURES])
def test_fixture_payloads_equal_json_decoding(load, symbol, query):
    dec = load("decode")
    payload = chart(symbol, **query)
    batch = dec.decode_yahoo_chart(payload)
    assert batch.schema.equals(BARS)  # fields and types; metadata extends BARS's
    assert batch.num_rows > 0
    assert pa.Table.from_batches([batch]).cast(BARS).equals(expected_chart(payload).cast(BARS))
    md = batch.schema.metadata
    assert md[b"stockbatch.tz"].decode() in (
        "America/New_York",
        "Asia/Tokyo",
        "Europe/London",
        "Europe/Berlin",
        "Asia/Hong_Kong",
    )
    assert md[b"stockbatch.schema"] == b"bars/1"


def test_both_backends_agree_exactly(load):
    from stockbatch._py import decode as twin

    dec = load("decode")
    for symbol, query in FIXTURES:
        payload = chart(symbol, **query)
        a, b = dec.decode_yahoo_chart(payload), twin.decode_yahoo_chart(payload)
        assert a.equals(b) and a.schema.metadata == b.schema.metadata


def test_events_kept_in_metadata(load):
    dec = load("decode")
    payload = chart("KO", range="10y", interval="1d", events="div,splits")
    res = json.loads(payload)["chart"]["result"][0]
    batch = dec.decode_yahoo_chart(payload)
    ev = dec.events_from_metadata(batch)
    want = sorted([v["date"], v["amount"]] for v in res["events"]["dividends"].values())
    assert ev["dividends"] == want and len(want) > 10
    assert ev["splits"] == sorted(
        [v["date"], v["numerator"], v["denominator"]]
        for v in res["events"].get("splits", {}).values()
    )


def doc(result, error=None):
    return json.dumps({"chart": {"result": result, "error": error}}).encode()


META = {
    "symbol": "X",
    "dataGranularity": "1d",
    "exchangeTimezoneName": "America/New_York",
    "currency": "USD",
    "gmtoffset": -18000,
}


def test_empty_result_window_is_zero_rows_not_an_error(load):
    dec = load("decode")
    b = dec.decode_yahoo_chart(
        doc([{"meta": META, "indicators": {"quote": [{}], "adjclose": [{}]}}])
    )
    assert b.num_rows == 0 and b.schema.equals(BARS)
    assert b.schema.metadata[b"stockbatch.gmtoffset"] == b"-18000"


def test_empty_result_list_is_a_decode_error(load):
    dec = load("decode")
    with pytest.raises(DecodeError) as ei:
        dec.decode_yahoo_chart(doc([]), symbol="X")
    assert ei.value.provider == "yahoo" and ei.value.symbol == "X"


def test_all_null_column_missing_adjclose_ints_and_exponents(load):
    dec = load("decode")
    payload = (
        b'{"chart":{"error":null,"result":[{"indicators":{"quote":[{"volume":[1,null,'
        b'3.0],"close":[1,2.5e1,-3.25E-2],"open":[null,null,null],"low":[1e300,0,'
        b'-0.0],"high":[12345678901234567890,1.7976931348623157e308,5e-324]}]},'
        b'"timestamp":[1,2,3],"meta":{"dataGranularity":"1d","symbol":"X"}}]}}'
    )
    b = dec.decode_yahoo_chart(payload)
    assert b.column("open").null_count == 3
    assert b.column("adj_close").null_count == 3
    assert b.column("close").to_pylist() == [1.0, 25.0, -0.0325]
    assert b.column("volume").to_pylist() == [1, None, 3]
    assert b.column("high").to_pylist() == [12345678901234567890.0, 1.7976931348623157e308, 5e-324]
    assert b.column("low").to_pylist() == [1e300, 0.0, 0.0]


def test_events_only_and_trailing_partial_bar(load):
    dec = load("decode")
    events = {"dividends": {"100": {"amount": 0.5, "date": 100}}}
    b = dec.decode_yahoo_chart(
        doc([{"meta": META, "events": events, "indicators": {"quote": [{}]}}])
    )
    assert b.num_rows == 0
    assert dec.events_from_metadata(b)["dividends"] == [[100, 0.5]]
    # a live (partial) last bar: prices so far, volume not yet known
    res = {
        "meta": META,
        "timestamp": [60, 120],
        "indicators": {
            "quote": [
                {
                    "open": [1.0, 2.0],
                    "high": [1.5, 2.0],
                    "low": [0.5, 2.0],
                    "close": [1.2, 2.0],
                    "volume": [10, None],
                }
            ]
        },
    }
    b = dec.decode_yahoo_chart(doc([res]))
    assert b.column("volume").to_pylist() == [10, None]
    assert b.column("close").to_pylist() == [1.2, 2.0]


def test_unicode_escapes_and_field_order(load):
    dec = load("decode")
    payload = (
        '{"chart":{"result":[{"timestamp":[5],"meta":{"currency":"\\u20acUR",'
        '"symbol":"\\u00c9T\\u00c9","dataGranularity":"1d","exchangeName":"P\u00e4r"},'
        '"indicators":{"adjclose":[{"adjclose":[2]}],"quote":[{"close":[1]}]}}],'
        '"error":null}}'
    ).encode()
    b = dec.decode_yahoo_chart(payload)
    assert b.column("symbol").to_pylist() == ["\u00c9T\u00c9"]
    assert b.schema.metadata[b"stockbatch.currency"].decode() == "\u20acUR"
    assert b.schema.metadata[b"stockbatch.exchange"].decode() == "P\u00e4r"
    assert b.column("adj_close").to_pylist() == [2.0]


def test_error_answers_are_typed(load):
    dec = load("decode")
    with pytest.raises(SymbolNotFound) as ei:
        dec.decode_yahoo_chart(PB.chart("UNKNOWN1", {})[2], symbol="UNKNOWN1")
    assert ei.value.symbol == "UNKNOWN1" and ei.value.provider == "yahoo"
    bad = PB.chart("AAPL", {"interval": "1m", "range": "1mo"})
    assert bad[0] == 422
    with pytest.raises(ProviderError) as ei:
        dec.decode_yahoo_chart(bad[2], symbol="AAPL")
    assert not isinstance(ei.value, (SymbolNotFound, DecodeError))


@pytest.mark.parametrize(
    "payload,why",
    [
        (b"", "empty"),
        (b'{"chart":', "truncated"),
        (b'{"chart":{"result":[{"timestamp":[1,2]}]}}}', "extra"),
        (
            b'{"chart":{"result":[{"meta":{"symbol":"X","dataGranularity":"1d"},"timestamp":[1],'
            b'"indicators":{"quote":[{"close":[NaN]}]}}]}}',
            "NaN",
        ),
        (b'{"chart":{"result":[{"meta":{"symbol":"X\xff","dataGranularity":"1d"}}]}}', "utf8"),
        (
            b'{"chart":{"result":[{"meta":{"symbol":"X","dataGranularity":"1d"},"timestamp":[1],'
            b'"indicators":{"quote":[{"close":["1"]}]}}]}}',
            "string price",
        ),
        (
            b'{"chart":{"result":[{"meta":{"symbol":"X","dataGranularity":"1d"},"timestamp":[1,2],'
            b'"indicators":{"quote":[{"close":[1]}]}}]}}',
            "length",
        ),
        (
            b'{"chart":{"result":[{"meta":{"symbol":"X","dataGranularity":"1d"},"timestamp":[1.5]'
            b"}]}}",
            "float ts",
        ),
        (
            b'{"chart":{"result":[{"meta":{"symbol":"X","dataGranularity":"1d"},"timestamp":[1],'
            b'"indicators":{"quote":[{"volume":[1.5]}]}}]}}',
            "fractional volume",
        ),
        (b"[1,2,3]", "not an object"),
    ],
)
def test_malformed_raises_decode_error_with_position(load, backend_name, payload, why):
    dec = load("decode")
    with pytest.raises(DecodeError) as ei:
        dec.decode_yahoo_chart(payload, symbol="X")
    err = ei.value
    assert err.provider == "yahoo" and err.symbol == "X"
    assert "yahoo" in str(err) and "X" in str(err)
    if why in ("truncated", "extra", "NaN", "utf8") and backend_name == "cython":
        assert isinstance(err.position, int) and 0 <= err.position <= len(payload)
        assert f"byte {err.position}" in str(err)


BASE = chart("AAPL", range="1mo", interval="1d", events="div,splits")


def oracle(data: bytes):
    """What the spec says: json-loadable UTF-8 (no NaN) → a result or a ProviderError."""
    from stockbatch._py import decode as twin

    try:
        return twin.decode_yahoo_chart(data, source="yahoo")
    except ProviderError as exc:
        return exc


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    cut=st.integers(0, len(BASE)),
    pos=st.integers(0, len(BASE) - 1),
    byte=st.integers(0, 255),
    mode=st.sampled_from(["truncate", "replace", "insert", "delete"]),
)
def test_fuzz_truncations_and_mutations(load, cut, pos, byte, mode):
    dec = load("decode")
    if mode == "truncate":
        data = BASE[:cut]
    elif mode == "replace":
        data = BASE[:pos] + bytes([byte]) + BASE[pos + 1 :]
    elif mode == "insert":
        data = BASE[:pos] + bytes([byte]) + BASE[pos:]
    else:
        data = BASE[:pos] + BASE[pos + 1 :]
    want = oracle(data)
    try:
        got = dec.decode_yahoo_chart(data)
    except ProviderError as exc:
        assert isinstance(want, ProviderError), f"refused a payload json accepts: {exc}"
        assert type(exc) is type(want)
        return
    assert not isinstance(want, Exception), f"accepted a payload json refuses: {want}"
    assert got.equals(want) and got.schema.metadata == want.schema.metadata


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-(2**63), 2**63 - 1),
            st.none(),
        ),
        max_size=40,
    )
)
def test_fuzz_numbers_parse_like_python(load, values):
    dec = load("decode")
    n = len(values)
    payload = doc(
        [{"meta": META, "timestamp": list(range(n)), "indicators": {"quote": [{"close": values}]}}]
    )
    got = dec.decode_yahoo_chart(payload).column("close").to_pylist()
    assert got == [None if v is None else float(v) for v in values]


# -- Alpha Vantage ---------------------------------------------------------------------------


def av(**q):
    status, _, body, _ = PB.alphavantage({"apikey": "k", **{k: str(v) for k, v in q.items()}})
    assert status == 200
    return body


@pytest.mark.parametrize(
    "query",
    [
        {"function": "TIME_SERIES_DAILY", "symbol": "IBM"},
        {"function": "TIME_SERIES_DAILY", "symbol": "IBM", "outputsize": "full"},
        {"function": "TIME_SERIES_INTRADAY", "symbol": "IBM", "interval": "5min"},
        {"function": "TIME_SERIES_INTRADAY", "symbol": "7203.T", "interval": "60min"},
    ],
)
def test_alphavantage_equals_json_decoding(load, query):
    import datetime as dt
    from zoneinfo import ZoneInfo

    dec = load("decode")
    payload = av(**query)
    batch = dec.decode_alphavantage(payload)
    d = json.loads(payload)
    key = next(k for k in d if k.startswith("Time Series"))
    tz = next(v for k, v in d["Meta Data"].items() if k.endswith("Time Zone"))
    rows = sorted(d[key].items())
    assert batch.num_rows == len(rows) > 0
    want_ts = []
    for stamp, _ in rows:
        fmt = "%Y-%m-%d %H:%M:%S" if " " in stamp else "%Y-%m-%d"
        local = dt.datetime.strptime(stamp, fmt).replace(tzinfo=ZoneInfo(tz))
        want_ts.append(local.astimezone(dt.timezone.utc))
    assert batch.column("ts").to_pylist() == want_ts
    assert batch.column("close").to_pylist() == [float(v["4. close"]) for _, v in rows]
    assert batch.column("volume").to_pylist() == [int(v["5. volume"]) for _, v in rows]
    assert batch.column("adj_close").null_count == batch.num_rows
    assert batch.column("interval")[0].as_py() in ("1d", "5m", "60m")
    from stockbatch._py import decode as twin

    assert batch.equals(twin.decode_alphavantage(payload))


def test_alphavantage_errors_are_typed(load):
    dec = load("decode")
    with pytest.raises(SymbolNotFound):
        dec.decode_alphavantage(
            PB.alphavantage({"apikey": "k", "function": "TIME_SERIES_DAILY", "symbol": "UNKNOWNX"})[
                2
            ],
            symbol="UNKNOWNX",
        )
    for key in ("Note", "Information"):
        with pytest.raises(RateLimited) as ei:
            dec.decode_alphavantage(json.dumps({key: "25 requests per day"}).encode(), symbol="IBM")
        assert ei.value.retry_after and ei.value.symbol == "IBM"
    with pytest.raises(DecodeError) as ei:
        dec.decode_alphavantage(av(function="TIME_SERIES_DAILY", symbol="IBM")[:500], symbol="IBM")
    assert ei.value.provider == "alphavantage"
    bad = (
        b'{"Meta Data":{"5. Time Zone":"US/Eastern"},"Time Series (Daily)":{"2024-01-0'
        b'5":{"4. close":"abc"}}}'
    )
    with pytest.raises(DecodeError):
        dec.decode_alphavantage(bad, symbol="IBM")


AV_BASE = av(function="TIME_SERIES_DAILY", symbol="IBM")[:3000].rsplit(b"},", 1)[0] + b"}}}"


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pos=st.integers(0, len(AV_BASE) - 1), byte=st.integers(0, 255), cut=st.integers(0, len(AV_BASE))
)
def test_fuzz_alphavantage(load, pos, byte, cut):
    from stockbatch._py import decode as twin

    dec = load("decode")
    for data in (AV_BASE[:pos] + bytes([byte]) + AV_BASE[pos + 1 :], AV_BASE[:cut]):
        try:
            want = twin.decode_alphavantage(data)
        except ProviderError as exc:
            want = exc
        try:
            got = dec.decode_alphavantage(data)
        except ProviderError as exc:
            assert type(exc) is type(want)
            continue
        assert not isinstance(want, Exception)
        assert got.equals(want)


def test_quotes(load):
    dec = load("decode")
    status, _, body, _ = PB.quote(["AAPL", "UNKNOWNZ", "7203.T"])
    b = dec.decode_yahoo_quote(body)
    assert b.column("symbol").to_pylist() == ["AAPL", "7203.T"]
    assert b.column("currency").to_pylist() == ["USD", "JPY"]
    with pytest.raises(DecodeError):
        dec.decode_yahoo_quote(body[:-5])


_DIGITS = st.text("0123456789", min_size=1, max_size=22)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            _DIGITS,
            st.one_of(st.none(), _DIGITS),
            st.one_of(st.none(), st.integers(-30, 30)),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_fuzz_number_text_parses_like_float(load, parts):
    """Decimal literals as a provider writes them (1-22 digits on either side of the point,
    leading zeros in the fraction, exponents), one to eight digits from the end of a chunk:
    the value equals Python's float() of the text, on both backends."""
    dec = load("decode")
    texts = []
    for neg, whole, frac, exp in parts:
        whole = whole.lstrip("0") or "0"
        t = ("-" if neg else "") + whole + ("." + frac if frac is not None else "")
        texts.append(t + (f"e{exp}" if exp is not None else ""))
    n = len(texts)
    payload = (
        b'{"chart":{"result":[{"meta":'
        + json.dumps(META).encode()
        + b',"timestamp":'
        + json.dumps(list(range(n))).encode()
        + b',"indicators":{"quote":[{"close":['
        + ",".join(texts).encode()
        + b']}]}}],"error":null}}'
    )
    got = dec.decode_yahoo_chart(payload).column("close").to_pylist()
    assert got == [float(t) for t in texts]
