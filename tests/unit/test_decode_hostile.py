"""Hostile payloads on both backends: every malformed value is a DecodeError for that symbol,
never a raw OverflowError / ArrowInvalid / UnicodeEncodeError (issue 12, item 5)."""

from __future__ import annotations

import copy
import json
import random

import pytest

from stockbatch import DecodeError, ProviderError
from stockbatch.sources import normalize_daily
from stockbatch.testing._hostile import mutate
from stockbatch.testing._payloads import PayloadBuilder

NOW = 1740787200  # 2025-03-01
PB = PayloadBuilder(now=NOW)
CHART = json.loads(
    PB.chart(
        "AAPL",
        {"period1": "1735689600", "period2": str(NOW), "interval": "1d", "events": "div,splits"},
    )[2]
)
AV = json.loads(
    PB.alphavantage({"function": "TIME_SERIES_DAILY", "symbol": "IBM", "apikey": "k"})[2]
)


def _chart(**change) -> bytes:
    doc = copy.deepcopy(CHART)
    res = doc["chart"]["result"][0]
    for key, value in change.items():
        if key == "timestamp0":
            res["timestamp"][0] = value
        else:
            res["meta"][key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "ts", [2**62, -(2**62), 10**13, -(10**13), 2**63 - 1, -(2**63), 9223372036855, -9223372036855]
)
def test_timestamp_whose_microseconds_overflow_is_a_decode_error(load, ts):
    decode = load("decode")
    with pytest.raises(DecodeError, match="out of range") as err:
        decode.decode_yahoo_chart(_chart(timestamp0=ts), symbol="AAPL", interval="1d")
    assert err.value.symbol == "AAPL" and err.value.provider == "yahoo"


@pytest.mark.parametrize("ts", [9223372036854, -9223372036854, -86400, 253402300799])
def test_timestamps_at_the_edge_still_decode(load, ts):
    batch = load("decode").decode_yahoo_chart(_chart(timestamp0=ts), symbol="AAPL", interval="1d")
    assert batch.column("ts").cast("int64")[0].as_py() == ts * 1_000_000


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "America/Nowhere", "x" * 200, "../etc"])
def test_unknown_exchange_time_zone_is_a_decode_error(load, tz):
    with pytest.raises(DecodeError, match="time zone") as err:
        load("decode").decode_yahoo_chart(
            _chart(exchangeTimezoneName=tz), symbol="AAPL", interval="1d"
        )
    assert err.value.symbol == "AAPL"


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Tokyo", "UTC", "+09:00"])
def test_known_zones_decode_and_normalize(load, tz):
    batch = load("decode").decode_yahoo_chart(
        _chart(exchangeTimezoneName=tz), symbol="AAPL", interval="1d"
    )
    assert normalize_daily(batch).num_rows == batch.num_rows


@pytest.mark.parametrize(
    "field", ["currency", "exchangeName", "instrumentType", "symbol", "dataGranularity"]
)
def test_lone_surrogate_strings_are_a_decode_error(load, field):
    with pytest.raises(DecodeError, match="surrogate"):
        load("decode").decode_yahoo_chart(_chart(**{field: "\ud800"}))


def test_alphavantage_unknown_zone_is_a_decode_error(load):
    doc = copy.deepcopy(AV)
    doc["Meta Data"]["5. Time Zone"] = "Mars/Olympus"
    with pytest.raises(DecodeError, match="time zone"):
        load("decode").decode_alphavantage(json.dumps(doc).encode(), symbol="IBM")


@pytest.mark.parametrize("seed", range(4))
def test_seeded_mutations_only_ever_raise_provider_errors(load, seed):
    """Mutated real payloads: a batch that survives normalizing and reading back, or a
    ProviderError — on both backends."""
    decode = load("decode")
    rng = random.Random(seed)
    for _ in range(300):
        kind = rng.choice(("chart", "av"))
        doc = mutate(CHART if kind == "chart" else AV, rng)  # the fixture server's fuzzer
        raw = json.dumps(doc).encode("utf-8", "surrogatepass")
        fn = decode.decode_yahoo_chart if kind == "chart" else decode.decode_alphavantage
        try:
            batch = fn(raw, symbol="X", interval="1d")
        except ProviderError:
            continue
        normalize_daily(batch)
        batch.to_pylist()


def test_normalize_daily_answers_by_zone_and_stamps(load):
    """Batches of the same stamps share one zone conversion: the answer is the one the
    conversion gives, for each zone (the stamps alone are not the key), and the same again."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def expected(batch, tz):
        local = batch.column("ts").view(pa.timestamp("us", tz=tz))
        return pc.floor_temporal(local, unit="day").view(batch.column("ts").type)

    decode = load("decode")
    for tz in ("America/New_York", "Asia/Tokyo", "America/New_York", "Europe/London"):
        batch = decode.decode_yahoo_chart(
            _chart(exchangeTimezoneName=tz), symbol="AAPL", interval="1d"
        )
        for _ in range(2):
            out = normalize_daily(batch)
            assert out.column("ts").equals(expected(batch, tz))
            assert out.schema == batch.schema
        sliced = batch.slice(3)  # an offset into the same buffer
        assert normalize_daily(sliced).column("ts").equals(expected(sliced, tz))
