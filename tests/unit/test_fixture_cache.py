"""The fixture server's payload cache is keyed by what a payload contains, not by the minute:
served through the cache or rendered afresh, every answer is the same bytes, at any clock."""

from __future__ import annotations

import random

from stockbatch.testing._payloads import PayloadBuilder

T0 = 1_767_000_000  # 2025-12-29 09:20 UTC, a Monday
CHART = [
    ("AAPL", {"interval": "1d", "range": "1y", "events": "div,splits"}),
    ("7203.T", {"interval": "1d", "range": "5d"}),
    ("AAPL", {"interval": "1wk", "range": "1mo"}),
    ("MSFT", {"interval": "1m", "range": "1d", "includePrePost": "true"}),
    ("MSFT", {"interval": "5m", "period1": str(T0 - 86_400), "period2": str(T0 + 86_400)}),
    ("SAP.DE", {"interval": "1d"}),
    ("AAPL", {"interval": "1d", "range": "ytd"}),
]
AV = [
    {"function": "TIME_SERIES_DAILY", "symbol": "IBM", "apikey": "k"},
    {"function": "TIME_SERIES_INTRADAY", "symbol": "IBM", "interval": "5min", "apikey": "k"},
]


def test_cached_answers_equal_fresh_renders_as_the_clock_moves():
    rng = random.Random(7)
    times = sorted(
        {T0 + 60 * k for k in range(0, 3 * 24 * 60, 53)}
        | {T0 + rng.randrange(3 * 86_400) for _ in range(40)}
        | {T0 + 5 * 3600 + 10 * 60 + d for d in (-61, -1, 0, 1, 59, 60, 61)}
    )
    cached = PayloadBuilder(now=float(T0))
    for t in times:
        cached.now = float(t)
        fresh = PayloadBuilder(now=float(t))
        for sym, q in CHART:
            assert cached.chart(sym, q) == fresh._chart(sym, q, float(t)), (t, sym, q)
        assert cached.quote(["AAPL", "7203.T", "UNKNOWNX"]) == fresh._quote(
            ["AAPL", "7203.T", "UNKNOWNX"], float(t)
        )
        for q in AV:
            assert cached.alphavantage(q) == PayloadBuilder(now=float(t)).alphavantage(q), (t, q)
    assert cached.renders < len(times) * (len(CHART) + 3) / 2  # most answers were lookups


def test_a_fixed_clock_renders_each_shape_once_and_the_cache_is_bounded_by_bytes():
    b = PayloadBuilder(now=float(T0), cache_bytes=1_000_000)
    q = {"interval": "1d", "range": "1y", "events": "div,splits"}
    for _ in range(3):
        for i in range(20):
            b.chart(f"S{i}", q)
    assert b.renders == 20
    for i in range(20, 80):
        b.chart(f"S{i}", q)
    assert b._bytes <= 1_000_000 and len(b._cache) < 80
    assert b._bytes == sum(len(v[2]) for v in b._cache.values())
