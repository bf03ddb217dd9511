"""Yahoo chart ``events`` (dividends, splits): every shape gives the twin's metadata.

The compiled decoder reads the shape Yahoo sends itself and hands anything else (a key given
twice, nulls, fractional dates, non-objects, escapes, long lists) to the twin's rules; these
cases pin the result of both paths on both backends.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockbatch import DecodeError
from stockbatch._py import decode as twin

META = '{"symbol":"X","dataGranularity":"1d","exchangeTimezoneName":"America/New_York"}'


def payload(events_json: str) -> bytes:
    return (
        '{"chart":{"result":[{"meta":' + META + ',"timestamp":[60],'
        '"indicators":{"quote":[{"close":[1.5]}]},"events":' + events_json + "}],"
        '"error":null}}'
    ).encode()


def stored(dec, events_json: str):
    """The ``stockbatch.events`` metadata (bytes), None when none was stored, or the
    DecodeError."""
    try:
        batch = dec.decode_yahoo_chart(payload(events_json))
    except DecodeError as exc:
        return exc
    return (batch.schema.metadata or {}).get(b"stockbatch.events")


def same_as_twin(got, events_json: str) -> None:
    """Byte for byte what the twin stores, or the twin's error."""
    want = stored(twin, events_json)
    if isinstance(want, DecodeError):
        assert isinstance(got, DecodeError) and str(got) == str(want)
    else:
        assert got == want


D = {"dividends": [], "splits": []}

CASES = [
    # Yahoo's own shape, out of order: sorted by date
    (
        '{"dividends":{"200":{"amount":0.25,"date":200},"100":{"amount":0.5,"date":100}},'
        '"splits":{"150":{"date":150,"numerator":4,"denominator":1,"splitRatio":"4:1"}}}',
        {"dividends": [[100, 0.5], [200, 0.25]], "splits": [[150, 4.0, 1.0]]},
    ),
    # equal dates keep the payload's order (a stable sort)
    (
        '{"dividends":{"b":{"amount":2,"date":5},"a":{"amount":1,"date":5}}}',
        {**D, "dividends": [[5, 2.0], [5, 1.0]]},
    ),
    # a key given twice: json keeps the last value, in the first one's place
    (
        '{"dividends":{"5":{"amount":1,"date":5},"9":{"amount":3,"date":9},'
        '"5":{"amount":2,"date":5}}}',
        {**D, "dividends": [[5, 2.0], [9, 3.0]]},
    ),
    ('{"dividends":{"5":{"amount":1,"date":5}},"dividends":{}}', None),
    ('{"dividends":{"5":{"amount":1,"amount":7,"date":5}}}', {**D, "dividends": [[5, 7.0]]}),
    ('{"dividends":{"5":{"amount":1,"date":6,"date":5}}}', {**D, "dividends": [[5, 1.0]]}),
    # no date: the key is the date; a key that is no integer is an error
    ('{"dividends":{"7":{"amount":1}}}', {**D, "dividends": [[7, 1.0]]}),
    ('{"dividends":{"7":{"amount":1,"date":null}}}', {**D, "dividends": [[7, 1.0]]}),
    ('{"dividends":{"x":{"amount":1}}}', DecodeError),
    ('{"dividends":{"7":[1,2]}}', {**D, "dividends": [[7, None]]}),
    # nulls and number spellings
    ('{"dividends":{"5":{"amount":null,"date":5}}}', {**D, "dividends": [[5, None]]}),
    ('{"dividends":{"5":{"date":5}}}', {**D, "dividends": [[5, None]]}),
    ('{"dividends":{"5":{"amount":1,"date":5.0}}}', {**D, "dividends": [[5, 1.0]]}),
    ('{"dividends":{"5":{"amount":1,"date":5.5}}}', DecodeError),
    ('{"dividends":{"5":{"amount":1,"date":9223372036854775808}}}', DecodeError),
    ('{"dividends":{"5":{"amount":"1","date":5}}}', DecodeError),
    ('{"dividends":{"5":{"amount":true,"date":5}}}', DecodeError),
    (
        '{"dividends":{"5":{"amount":-0.0,"date":-5},"6":{"amount":1e-300,"date":6},'
        '"7":{"amount":12345678901234567890,"date":7},"8":{"amount":0.1E+2,"date":8}}}',
        {**D, "dividends": [[-5, -0.0], [6, 1e-300], [7, 1.2345678901234567e19], [8, 10.0]]},
    ),
    ('{"splits":{"5":{"date":5,"numerator":2}}}', {**D, "splits": [[5, 2.0, None]]}),
    # escapes in keys are read as the key they spell
    (
        '{"divid\\u0065nds":{"5":{"\\u0061mount":1,"date":5}}}',
        {**D, "dividends": [[5, 1.0]]},
    ),
    # what is not an object is no events; other kinds of events are not kept
    ('{"dividends":[],"splits":null}', None),
    ('{"dividends":{},"splits":{}}', None),
    ('{"capitalGains":{"5":{"amount":1,"date":5}}}', None),
    ("[]", None),
    ("null", None),
]


@pytest.mark.parametrize(("events", "want"), CASES)
def test_events_shapes(load, events, want):
    got = stored(load("decode"), events)
    if want is DecodeError:
        assert isinstance(got, DecodeError), got
    else:
        assert (None if got is None else json.loads(got)) == want
    same_as_twin(got, events)


def test_many_events_all_kept_in_order(load):
    n = 300  # more than the compiled reader holds itself
    items = ",".join(f'"{d}":{{"amount":{d / 8},"date":{d}}}' for d in range(n, 0, -1))
    events = '{"dividends":{' + items + "}}"
    got = stored(load("decode"), events)
    assert json.loads(got) == {**D, "dividends": [[d, d / 8] for d in range(1, n + 1)]}
    same_as_twin(got, events)


def test_an_infinite_amount_is_stored_as_the_twin_stores_it(load):
    events = '{"dividends":{"5":{"amount":1e400,"date":5}}}'
    got = stored(load("decode"), events)
    assert got == b'{"dividends":[[5,Infinity]],"splits":[]}'
    same_as_twin(got, events)


# -- any events object the JSON grammar allows, keys given twice included -----------------

NUMBERS = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["null", "1.0", "5.5", "1e3", "-0", '"7"', "true", "[]", "{}"]),
)
KEYS = st.one_of(st.integers(-5, 10**12).map(str), st.sampled_from(["x", "07", "-0", ""]))
FIELDS = st.sampled_from(["date", "amount", "numerator", "denominator", "splitRatio", "other"])


def render(pairs) -> str:
    """An object from (key, value-text) pairs, duplicates kept as written."""
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"


ITEMS = st.one_of(
    st.lists(st.tuples(FIELDS, NUMBERS), max_size=5).map(render),
    st.sampled_from(["null", "[]", "3"]),
)
LISTS = st.one_of(
    st.lists(st.tuples(KEYS, ITEMS), max_size=6).map(render),
    st.sampled_from(["null", "[]"]),
)
EVENTS = st.lists(
    st.tuples(st.sampled_from(["dividends", "splits", "capitalGains"]), LISTS), max_size=4
).map(render)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(EVENTS)
def test_fuzz_events_equal_the_twin(load, events):
    same_as_twin(stored(load("decode"), events), events)
