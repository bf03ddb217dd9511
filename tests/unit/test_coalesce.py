"""Coalescer on both backends: shared fetches, range merging and slicing, symbol grouping,
futures, errors, and the property that merged ranges cover exactly the union."""

from __future__ import annotations

import asyncio
import threading

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockbatch import ProviderError, SchemaError, SymbolNotFound

DAY = 86_400_000_000
T0 = 1_704_067_200_000_000  # 2024-01-01
UTC_US = pa.timestamp("us", tz="UTC")


@pytest.fixture
def mods(load):
    return load("queue"), load("coalesce")


def hist(qmod, sym, start_day, end_day, **kw):
    return qmod.Request(
        "history", "yahoo", sym, "1d", T0 + start_day * DAY, T0 + end_day * DAY, **kw
    )


def bars(symbols, start_day, end_day):
    """One row per symbol and day in [start_day, end_day); close = day number."""
    rows = [(s, d) for s in symbols for d in range(start_day, end_day)]
    return pa.table(
        {
            "symbol": pa.array([s for s, _ in rows], pa.string()),
            "ts": pa.array([T0 + d * DAY for _, d in rows], pa.int64()).cast(UTC_US),
            "close": pa.array([float(d) for _, d in rows], pa.float64()),
        }
    )


def days(table):
    return sorted(int(x) for x in table.column("close").to_pylist())


def test_identical_keys_share_one_fetch_and_one_result(mods):
    qmod, cmod = mods
    co = cmod.Coalescer()
    reqs = [qmod.Request("quote", "yahoo", "AAPL", priority=p) for p in (3, 1, 5)]
    other = qmod.Request("quote", "yahoo", "MSFT")
    co.add_many(reqs + [other])
    calls = co.take_calls()
    assert len(calls) == 2
    aapl = next(c for c in calls if c.symbol == "AAPL")
    assert aapl.priority == 1 and len(aapl) == 3 and set(aapl.requests) == set(reqs)
    assert calls[0] is aapl  # most urgent first
    result = object()
    answers = co.complete(aapl, result)
    assert [r for r, _ in answers] == reqs and all(v is result for _, v in answers)
    exc = ProviderError("down", provider="yahoo")
    (msft,) = [c for c in calls if c is not aapl]
    assert co.fail(msft, exc) == [(other, exc)]
    s = co.stats()
    assert s["requests_in"] == 4 and s["calls_out"] == 2 and s["saving_ratio"] == 0.5
    assert s["deduplicated"] == 2 and s["calls_failed"] == 1 and s["answered"] == 4


def test_request_joins_identical_fetch_in_flight(mods):
    qmod, cmod = mods
    co = cmod.Coalescer()
    first = qmod.Request("quote", "yahoo", "AAPL")
    co.add(first)
    (call,) = co.take_calls()
    late = qmod.Request("quote", "yahoo", "AAPL")
    fut = co.submit(late)
    assert co.take_calls() == []  # no second fetch
    assert {r for r, _ in co.complete(call, 7)} == {first, late}
    assert fut.result(timeout=1) == 7
    # once answered, the same key is a new fetch
    co.add(qmod.Request("quote", "yahoo", "AAPL"))
    assert len(co.take_calls()) == 1


def test_every_future_gets_the_same_error(mods):
    qmod, cmod = mods
    co = cmod.Coalescer()
    futs = [co.submit(qmod.Request("profile", "yahoo", "IBM")) for _ in range(3)]
    (call,) = co.take_calls()
    exc = ProviderError("boom")
    co.fail(call, exc)
    for f in futs:
        assert f.exception(timeout=1) is exc
    with pytest.raises(TypeError):
        co.fail(call, "not an exception")


def test_all_waiters_cancelled_means_no_fetch(mods):
    qmod, cmod = mods
    co = cmod.Coalescer()
    a, b = qmod.Request("quote", "yahoo", "A"), qmod.Request("quote", "yahoo", "A")
    fa = co.submit(a)
    co.add(b)
    assert fa.cancel()
    assert co.cancel(b) is True and co.cancel(b) is False
    assert co.take_calls() == []
    assert co.stats()["cancelled"] == 2
    with pytest.raises(TypeError):
        co.cancel("A")


def test_overlapping_and_touching_ranges_merge_and_slice_back(mods):
    qmod, cmod = mods
    co = cmod.Coalescer()
    r1 = hist(qmod, "AAPL", 0, 10)
    r2 = hist(qmod, "AAPL", 5, 15)  # overlaps r1
    r3 = hist(qmod, "AAPL", 15, 20)  # touches r2
    r4 = hist(qmod, "AAPL", 25, 30)  # gap: separate fetch
    r5 = hist(qmod, "MSFT", 0, 10)  # other symbol
    co.add_many([r1, r2, r3, r4, r5])
    calls = co.take_calls()
    spans = sorted((c.symbol, (c.start_us - T0) // DAY, (c.end_us - T0) // DAY) for c in calls)
    assert spans == [("AAPL", 0, 20), ("AAPL", 25, 30), ("MSFT", 0, 10)]
    merged = next(c for c in calls if c.symbol == "AAPL" and c.start_us == T0)
    assert len(merged) == 3 and co.stats()["merged"] == 2
    answers = dict(co.complete(merged, bars(["AAPL"], 0, 20)))
    assert days(answers[r1]) == list(range(0, 10))
    assert days(answers[r2]) == list(range(5, 15))
    assert days(answers[r3]) == list(range(15, 20))


def test_narrower_request_joins_a_covering_fetch_in_flight(mods):
    qmod, cmod = mods
    co = cmod.Coalescer()
    wide = hist(qmod, "AAPL", 0, 30)
    co.add(wide)
    (call,) = co.take_calls()
    narrow = hist(qmod, "AAPL", 3, 7)
    outside = hist(qmod, "AAPL", 25, 40)
    co.add_many([narrow, outside])
    (second,) = co.take_calls()  # only `outside` needs its own fetch
    assert second.requests == (outside,)
    answers = dict(co.complete(call, bars(["AAPL"], 0, 30)))
    assert days(answers[narrow]) == [3, 4, 5, 6] and len(answers[wide]) == 30


def test_slicing_needs_a_ts_column(mods):
    qmod, cmod = mods
    co = cmod.Coalescer()
    co.add_many([hist(qmod, "AAPL", 0, 10), hist(qmod, "AAPL", 5, 15)])
    (call,) = co.take_calls()
    answers = co.complete(call, pa.table({"close": [1.0]}))
    assert all(isinstance(v, SchemaError) for _, v in answers)


def test_quotes_group_up_to_the_declared_limit(mods):
    qmod, cmod = mods
    co = cmod.Coalescer(batch_limits={("yahoo", "quote"): 3})
    assert co.limit("yahoo", "quote") == 3 and co.limit("yahoo", "history") == 1
    reqs = [qmod.Request("quote", "yahoo", s) for s in "ABCDEFG"]
    co.add_many(reqs + [qmod.Request("quote", "other", "A")])
    calls = co.take_calls()
    yahoo = [c for c in calls if c.provider == "yahoo"]
    assert sorted(len(c.symbols) for c in yahoo) == [1, 3, 3] and all(c.grouped for c in yahoo)
    assert sorted(s for c in yahoo for s in c.symbols) == list("ABCDEFG")
    table = pa.table({"symbol": list("ABC"), "price": [1.0, 2.0, 3.0]})
    abc = next(c for c in yahoo if c.symbols == ("A", "B", "C"))
    got = {r.symbol: v.column("price").to_pylist() for r, v in co.complete(abc, table)}
    assert got == {"A": [1.0], "B": [2.0], "C": [3.0]}
    defg = [c for c in yahoo if c is not abc]
    answers = co.complete_many(defg, [{"D": 4, "E": 5, "F": 6}, {"G": 7}])
    assert {r.symbol: v for r, v in answers if not isinstance(v, Exception)} == {
        "D": 4,
        "E": 5,
        "F": 6,
        "G": 7,
    }
    other = next(c for c in calls if c.provider == "other")
    assert not other.grouped
    (waiter,) = other.requests
    # not split: that provider answers one symbol per call, whatever the result looks like
    assert co.complete(other, {"A": 1}) == [(waiter, {"A": 1})]


def test_missing_symbol_in_a_grouped_answer_is_that_waiters_error(mods):
    qmod, cmod = mods
    co = cmod.Coalescer(batch_limits={"yahoo": 10})
    co.add_many([qmod.Request("quote", "yahoo", s) for s in ("A", "B")])
    (call,) = co.take_calls()
    answers = {r.symbol: v for r, v in co.complete(call, {"A": 1})}
    assert answers["A"] == 1 and isinstance(answers["B"], SymbolNotFound)


def test_complete_twice_or_foreign_call_is_refused(mods):
    qmod, cmod = mods
    co, other = cmod.Coalescer(), cmod.Coalescer()
    co.add(qmod.Request("quote", "yahoo", "A"))
    (call,) = co.take_calls()
    with pytest.raises(ValueError):
        other.complete(call, 1)
    with pytest.raises(ValueError):
        co.complete_many([call, call], [1, 1])
    co.complete(call, 1)
    with pytest.raises(ValueError):
        co.complete(call, 1)
    with pytest.raises(ValueError):
        co.fail(call, RuntimeError())
    with pytest.raises(TypeError):
        co.add("A")
    with pytest.raises(ValueError):
        cmod.Coalescer(batch_limits={"yahoo": 0})


def test_async_future_resolved_from_another_thread(mods):
    qmod, cmod = mods
    co = cmod.Coalescer()

    async def main():
        fut = co.submit_async(qmod.Request("quote", "yahoo", "A"))
        (call,) = co.take_calls()
        threading.Timer(0.01, co.complete, args=(call, "done")).start()
        return await asyncio.wait_for(fut, 5)

    assert asyncio.run(main()) == "done"


intervals = st.lists(st.tuples(st.integers(0, 60), st.integers(1, 15)), min_size=1, max_size=25)


@given(intervals)
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_merged_ranges_cover_exactly_the_union(load, spans):
    qmod, cmod = load("queue"), load("coalesce")
    co = cmod.Coalescer()
    reqs = [hist(qmod, "AAPL", s, s + n) for s, n in spans]
    co.add_many(reqs)
    calls = co.take_calls()
    ranges = sorted(((c.start_us - T0) // DAY, (c.end_us - T0) // DAY) for c in calls)
    # disjoint and not touching: anything overlapping or touching was merged
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    covered = {d for lo, hi in ranges for d in range(lo, hi)}
    wanted = {d for s, n in spans for d in range(s, s + n)}
    assert covered == wanted
    # every request is answered by exactly one call whose range contains its own
    assert sorted(r.id for c in calls for r in c.requests) == sorted(r.id for r in reqs)
    answers = []
    for c in calls:
        lo, hi = (c.start_us - T0) // DAY, (c.end_us - T0) // DAY
        assert all(c.start_us <= r.start_us and r.end_us <= c.end_us for r in c.requests)
        answers += co.complete(c, bars(["AAPL"], lo, hi))
    for r, table in answers:  # slicing back is exact
        assert days(table) == list(range((r.start_us - T0) // DAY, (r.end_us - T0) // DAY))
        expected = bars(["AAPL"], 0, 80).filter(
            pc.and_(
                pc.greater_equal(
                    pc.cast(bars(["AAPL"], 0, 80).column("ts"), pa.int64()), r.start_us
                ),
                pc.less(pc.cast(bars(["AAPL"], 0, 80).column("ts"), pa.int64()), r.end_us),
            )
        )
        assert table.equals(expected)


def test_params_are_part_of_the_shared_key(mods):
    qmod, cmod = mods
    co = cmod.Coalescer()
    a = qmod.Request("quote", "yahoo", "AAPL", params={"fields": ("price", "volume")})
    b = qmod.Request("quote", "yahoo", "AAPL", params={"fields": ("price", "volume")})
    c = qmod.Request("quote", "yahoo", "AAPL", params={"fields": ("price",)})
    d = qmod.Request("quote", "yahoo", "AAPL")
    co.add_many([a, b, c, d])
    calls = co.take_calls()
    assert sorted(len(call) for call in calls) == [1, 1, 2]
    assert {call.params.get("fields") for call in calls} == {("price", "volume"), ("price",), None}
