"""Token bucket, retry policy, circuit breaker and response cache, on their own."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from stockbatch import DecodeError, ProviderUnavailable, RateLimited, SymbolNotFound
from stockbatch.schema import BARS
from stockbatch.sources import CircuitBreaker, ResponseCache, RetryPolicy, TokenBucket, _reliability


class Clock:
    """A clock the test moves by hand (monotonic seconds, or epoch seconds as time.time)."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self):
        return self.t

    def time(self):  # stands in for the time module inside _reliability
        return self.t

    monotonic = time


def test_token_bucket_paces_calls_after_the_burst(monkeypatch):
    clock = Clock()
    slept = []

    async def sleep(seconds):  # the bucket's waits advance the clock, not the test
        slept.append(seconds)
        clock.t += seconds

    monkeypatch.setattr(asyncio, "sleep", sleep)

    async def run():
        bucket = TokenBucket(rate=50.0, burst=5, clock=clock)
        t0 = clock()
        for _ in range(15):
            await bucket.acquire()
        return clock() - t0, bucket.waited

    elapsed, waited = asyncio.run(run())
    # 5 at once, then 10 more at 50/s, one token (0.02 s) each
    assert slept == pytest.approx([0.02] * 10)
    assert elapsed == pytest.approx(0.2) and waited == pytest.approx(0.2)


def test_token_bucket_rejects_bad_settings():
    with pytest.raises(ValueError):
        TokenBucket(rate=0)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0)


def test_retry_policy_backoff_jitter_and_retry_after():
    p = RetryPolicy(attempts=4, base=0.1, max_delay=1.0, jitter=0.5, max_retry_after=5)
    err = ProviderUnavailable("x")
    delays = [p.delay(i, err) for i in (1, 2, 3)]
    for i, d in enumerate(delays):
        full = min(1.0, 0.1 * 2**i)
        assert full * 0.5 <= d <= full
    assert p.delay(4, err) is None  # attempts exhausted
    assert p.delay(1, SymbolNotFound("x")) is None  # never retried
    assert p.delay(1, DecodeError("x")) is not None
    assert p.delay(1, RateLimited("x", retry_after=3.0)) == 3.0  # Retry-After honoured
    assert p.delay(1, RateLimited("x", retry_after=60.0)) is None  # too long: give up now


def test_circuit_breaker_opens_half_opens_and_closes():
    clock = Clock()
    b = CircuitBreaker(failure_threshold=3, reset_timeout=10, clock=clock)
    for _ in range(3):
        b.check("p")
        b.failure()
    assert b.state == "open" and b.times_opened == 1
    with pytest.raises(ProviderUnavailable, match="circuit breaker open"):
        b.check("p", "AAPL")
    clock.t += 10
    assert b.state == "half-open"
    b.check("p")  # one trial call
    with pytest.raises(ProviderUnavailable):
        b.check("p")  # but only one
    b.failure()
    assert b.state == "open" and b.times_opened == 2
    clock.t += 10
    b.check("p")
    b.success()
    assert b.state == "closed"
    b.check("p")


def _batch(n: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "symbol": ["A"] * n,
            "interval": ["1d"] * n,
            "ts": pa.array(range(n), pa.int64()).cast(BARS.field("ts").type),
            "open": [1.0] * n,
            "high": [1.0] * n,
            "low": [1.0] * n,
            "close": [1.0] * n,
            "adj_close": [None] * n,
            "volume": [1] * n,
            "source": ["t"] * n,
        },
        schema=BARS,
    )


def test_cache_lru_ttl_and_counts(monkeypatch):
    wall = Clock(1_800_000_000.0)
    monkeypatch.setattr(_reliability, "time", wall)
    c = ResponseCache(maxsize=2, ttl=60)
    c.put("a", _batch(1))
    c.put("b", _batch(2))
    assert c.get("a").num_rows == 1  # a is now most recent
    c.put("c", _batch(3))  # evicts b
    assert c.get("b") is None
    assert c.get("c").num_rows == 3
    assert (c.hits, c.misses) == (2, 1)
    wall.t += 59
    assert c.get("a").num_rows == 1  # younger than the ttl: still fresh
    wall.t += 2
    assert c.get("a") is None  # expired
    assert (c.hits, c.misses) == (3, 2)


def test_cache_on_disk_survives_a_new_cache(tmp_path):
    c = ResponseCache(ttl=60, directory=tmp_path / "cache")
    c.put("yahoo|AAPL|1d", _batch(5))
    fresh = ResponseCache(ttl=60, directory=tmp_path / "cache")
    got = fresh.get("yahoo|AAPL|1d")
    assert got is not None and got.equals(_batch(5)) and fresh.disk_hits == 1
    assert fresh.get("other") is None
    fresh.clear()
    assert ResponseCache(ttl=60, directory=tmp_path / "cache").get("yahoo|AAPL|1d") is None
