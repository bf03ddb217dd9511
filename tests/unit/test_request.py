"""Request: validation, identity (id, key), ranges and repr, on both backends."""

from __future__ import annotations

import datetime as dt
import math
import threading
import time

import pytest

DAY_US = 86_400_000_000
JAN1 = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z in microseconds


@pytest.fixture
def Request(load):
    return load("queue").Request


def test_fields_and_defaults(Request):
    r = Request("history", "yahoo", "AAPL", "1d", "2024-01-01", "2024-01-31")
    assert (r.kind, r.provider, r.symbol, r.interval) == ("history", "yahoo", "AAPL", "1d")
    assert r.priority == 3 and r.deadline is None
    assert r.start_us == JAN1 and r.end_us == JAN1 + 30 * DAY_US
    assert r.start == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert r.params == {} and r.state == "new"
    q = Request("quote", "yahoo", "MSFT")
    assert q.interval is None and q.start is None and q.end is None


@pytest.mark.parametrize("kind", ["bars", "", None, "HISTORY"])
def test_unknown_kind(Request, kind):
    with pytest.raises(ValueError, match="kind"):
        Request(kind, "yahoo", "AAPL", "1d")


@pytest.mark.parametrize("priority", [0, 6, -1, 100])
def test_priority_out_of_range(Request, priority):
    with pytest.raises(ValueError, match="priority"):
        Request("quote", "yahoo", "AAPL", priority=priority)


@pytest.mark.parametrize("priority", [True, 2.0, "3", None])
def test_priority_wrong_type(Request, priority):
    with pytest.raises(TypeError, match="priority"):
        Request("quote", "yahoo", "AAPL", priority=priority)


def test_bad_strings_and_history_without_interval(Request):
    with pytest.raises(TypeError, match="provider"):
        Request("quote", "", "AAPL")
    with pytest.raises(TypeError, match="symbol"):
        Request("quote", "yahoo", 7203)
    with pytest.raises(ValueError, match="interval"):
        Request("history", "yahoo", "AAPL")


def test_equivalent_date_spellings_give_one_key(Request):
    spellings = [
        ("2024-01-01", "2024-01-02"),
        (dt.date(2024, 1, 1), dt.date(2024, 1, 2)),
        (dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2)),  # naive = UTC
        (
            dt.datetime(2024, 1, 1, 9, tzinfo=dt.timezone(dt.timedelta(hours=9))),
            "2024-01-02T00:00:00+00:00",
        ),
        (JAN1, JAN1 + DAY_US),
    ]
    keys = {Request("history", "yahoo", "AAPL", "1d", s, e).key for s, e in spellings}
    assert len(keys) == 1


def test_bad_ranges(Request):
    with pytest.raises(ValueError, match="before end"):
        Request("history", "yahoo", "AAPL", "1d", "2024-02-01", "2024-01-01")
    with pytest.raises(ValueError, match="before end"):
        Request("history", "yahoo", "AAPL", "1d", JAN1, JAN1)
    with pytest.raises(ValueError, match="ISO 8601"):
        Request("history", "yahoo", "AAPL", "1d", "yesterday")
    with pytest.raises(TypeError, match="start"):
        Request("history", "yahoo", "AAPL", "1d", 1.5)


def test_key_covers_everything_that_makes_a_fetch(Request):
    base = dict(
        kind="history",
        provider="yahoo",
        symbol="AAPL",
        interval="1d",
        start=JAN1,
        end=JAN1 + DAY_US,
        params={"adjust": True, "events": "div"},
    )
    same = Request(**{**base, "params": {"events": "div", "adjust": True}}, priority=1)
    assert Request(**base).key == same.key  # priority and params order do not matter
    for field, other in [
        ("provider", "av"),
        ("symbol", "MSFT"),
        ("interval", "1h"),
        ("start", JAN1 - DAY_US),
        ("end", JAN1 + 2 * DAY_US),
        ("params", {"adjust": False, "events": "div"}),
        ("kind", "quote"),
    ]:
        changed = {**base, field: other}
        if field == "kind":
            changed.update(interval=None, start=None, end=None)
        assert Request(**changed).key != Request(**base).key, field
    r = Request(**base)
    assert hash(r.key) == hash(Request(**base).key)
    assert r.range_key == r.key[:4] + r.key[6:]


def test_params_must_be_plain_values(Request):
    with pytest.raises(TypeError, match="tuple, not a list"):
        Request("quote", "yahoo", "AAPL", params={"fields": ["a", "b"]})
    with pytest.raises(TypeError, match="params"):
        Request("quote", "yahoo", "AAPL", params={"when": dt.date(2024, 1, 1)})
    with pytest.raises(TypeError, match="params"):
        Request("quote", "yahoo", "AAPL", params={"nested": ("a", object())})
    ok = Request(
        "quote",
        "yahoo",
        "AAPL",
        params={"n": 1, "x": 1.5, "f": False, "t": ("a", (1,)), "none": None},
    )
    assert ok.params["t"] == ("a", (1,))
    with pytest.raises(TypeError, match="mapping"):
        Request("quote", "yahoo", "AAPL", params=[("a", 1)])
    r = Request("quote", "yahoo", "AAPL", params={"fields": ("a", "b")})
    with pytest.raises(TypeError):
        r.params["fields"] = "x"  # read-only view


def test_repr_hides_param_values(Request):
    r = Request("quote", "av", "IBM", params={"apikey": "SECRET-123"})
    text = repr(r)
    assert "apikey" in text and "SECRET-123" not in text


def test_ids_unique_and_never_time_based(Request):
    ids = [Request("quote", "yahoo", "X").id for _ in range(1000)]
    assert len(set(ids)) == 1000 and ids == sorted(ids)
    seen, lock = [], threading.Lock()

    def make():
        local = [Request("quote", "yahoo", "X").id for _ in range(2000)]
        with lock:
            seen.extend(local)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == len(seen) == 16_000


def test_ids_do_not_collide_across_backends():
    from stockbatch import _backend

    try:
        compiled = _backend.load_from("cython", "queue").Request
    except ImportError:
        pytest.skip("compiled backend not built")
    pure = _backend.load_from("python", "queue").Request
    a = {pure("quote", "y", "X").id for _ in range(100)}
    b = {compiled("quote", "y", "X").id for _ in range(100)}
    assert len(a) == len(b) == 100 and not a & b


def test_read_only(Request):
    r = Request("quote", "yahoo", "AAPL")
    with pytest.raises(AttributeError):
        r.priority = 1
    with pytest.raises(AttributeError):
        r.symbol = "MSFT"


def test_deadline(Request):
    now = time.monotonic()
    r = Request("quote", "yahoo", "AAPL", deadline=now + 60)
    assert r.deadline == pytest.approx(now + 60)
    assert not r.expired() and r.expired(now + 61)
    assert not Request("quote", "yahoo", "AAPL").expired(now + 1e9)
    with pytest.raises(ValueError, match="NaN"):
        Request("quote", "yahoo", "AAPL", deadline=math.nan)
    with pytest.raises(TypeError, match="deadline"):
        Request("quote", "yahoo", "AAPL", deadline="soon")
