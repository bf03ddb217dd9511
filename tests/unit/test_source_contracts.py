"""Source contracts without a network: the circuit breaker's bookkeeping, clip_window,
fetch_many's one-answer-per-symbol rule, normalize_symbol's base rule."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from stockbatch._errors import (
    DecodeError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    SymbolNotFound,
)
from stockbatch.schema import BARS
from stockbatch.sources import CircuitBreaker, Source
from stockbatch.sources._base import OUT_OF_WINDOW_KEY, clip_window


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.mark.parametrize("exc", [SymbolNotFound("x"), DecodeError("x"), ProviderError("400")])
def test_a_symbols_own_error_never_counts(exc):
    br = CircuitBreaker(failure_threshold=2)
    for _ in range(5):
        br.record(exc)
    assert br.state == "closed" and br.failures == 0


@pytest.mark.parametrize("exc", [ProviderUnavailable("503"), RateLimited("429")])
def test_provider_failures_count_and_the_open_message_carries_the_cause(exc):
    clock = Clock()
    br = CircuitBreaker(failure_threshold=2, reset_timeout=30, clock=clock)
    try:
        raise exc from ConnectionRefusedError(111, "Connection refused")
    except ProviderError as raised:
        br.record(raised)
        br.record(raised)
    assert br.state == "open"
    clock.t += 10
    with pytest.raises(ProviderUnavailable) as err:
        br.check("yahoo", "AAPL")
    text = str(err.value)
    assert "after 2 consecutive failures" in text and str(exc) in text
    assert "Connection refused" in text
    assert err.value.retry_after == pytest.approx(20.0) and err.value.symbol == "AAPL"


def test_the_cause_in_the_message_is_redacted():
    br = CircuitBreaker(failure_threshold=1)
    br.failure(ProviderUnavailable("cannot reach https://u:p@ss:w0rd@db.example/x?apikey=K"))
    with pytest.raises(ProviderUnavailable) as err:
        br.check("http")
    assert "p@ss" not in str(err.value) and "w0rd" not in str(err.value)
    assert "apikey=K" not in str(err.value)


def test_half_open_lets_one_trial_through_and_a_released_trial_frees_the_turn():
    clock = Clock()
    br = CircuitBreaker(failure_threshold=1, reset_timeout=30, clock=clock)
    br.failure(ProviderUnavailable("down"))
    clock.t += 30
    assert br.state == "half-open"
    br.check("p")  # the trial
    with pytest.raises(ProviderUnavailable):
        br.check("p")  # everyone else waits for it
    br.release()  # the trial was cancelled
    br.check("p")  # the next call is the trial
    clock.t += 31  # a trial lost for a whole reset timeout
    br.check("p")
    br.success()
    assert br.state == "closed"


def _bars(stamps) -> pa.RecordBatch:
    n = len(stamps)
    return pa.RecordBatch.from_pydict(
        {
            "symbol": ["X"] * n,
            "interval": ["1d"] * n,
            "ts": pa.array([s * 1_000_000 for s in stamps], pa.int64()).cast(BARS.field("ts").type),
            "open": [1.0] * n,
            "high": [1.0] * n,
            "low": [1.0] * n,
            "close": [1.0] * n,
            "adj_close": [1.0] * n,
            "volume": [1] * n,
            "source": ["t"] * n,
        },
        schema=BARS,
    )


def test_clip_window_explicit_bounds_with_one_bar_of_slack_before():
    day = 86400
    p1, p2 = 1735689600, 1740787200
    batch = _bars([-day, p1 - 9 * 3600, p1, p2 - day, p2, 253402214400])
    out, dropped = clip_window(batch, "1d", p1, p2)
    assert dropped == 3 and out.num_rows == 3
    assert out.schema.metadata[OUT_OF_WINDOW_KEY] == b"3"
    week, _ = clip_window(_bars([p1 - 6 * day, p1 - 8 * day]), "1wk", p1, p2)
    assert week.num_rows == 1  # the week holding p1 is kept, the one before is not


@pytest.mark.parametrize(
    "stamps",
    [
        [0, 10, 20, 30, 40, 50],  # in time order: the rows kept are one run
        [50, 10, 0, 40, 20, 30],  # out of order: kept rows are not contiguous
        [None, 10, 20, 60, 30, None],  # null stamps are outside any window
        [0, 1, 2],  # nothing inside
    ],
)
def test_clip_window_keeps_exactly_the_rows_inside(stamps):
    """Whatever the order, nulls and sizes: the rows kept are those with p1 - slack <= ts <
    p2, in their order, and the count dropped is the rest (a Python oracle)."""
    day = 86400
    p1, p2 = 20 * day, 50 * day
    secs = [None if s is None else s * day for s in stamps]
    batch = _bars([0] * len(secs))
    ts = pa.array([None if s is None else s * 1_000_000 for s in secs], pa.int64())
    batch = batch.set_column(2, "ts", ts.cast(BARS.field("ts").type))
    out, dropped = clip_window(batch, "1d", p1, p2)
    inside = [s for s in secs if s is not None and p1 - day <= s < p2]
    assert dropped == len(secs) - len(inside)
    kept = [v // 1_000_000 for v in out.column("ts").cast(pa.int64()).to_pylist()]
    assert kept == inside
    assert (OUT_OF_WINDOW_KEY in (out.schema.metadata or {})) == (dropped > 0)


def test_clip_window_for_periods():
    now = 1740787200
    batch = _bars([-86400, now - 20 * 86400, now, now + 2 * 86400])
    out, dropped = clip_window(batch, "1d", None, None, "1mo", now=now)
    assert dropped == 2 and out.num_rows == 2
    out, dropped = clip_window(batch, "1d", None, None, "max", now=now)
    assert dropped == 1  # max: no lower bound, but nothing from the future
    clean, dropped = clip_window(_bars([now - 86400]), "1d", None, None, "5d", now=now)
    assert dropped == 0 and OUT_OF_WINDOW_KEY not in (clean.schema.metadata or {})


class Flaky(Source):
    name = "flaky"

    async def fetch_history(self, symbol, **options):
        symbol = self.normalize_symbol(symbol)
        if symbol == "BUG":
            raise OverflowError("Python int too large to convert to C long")
        if symbol == "GONE":
            raise SymbolNotFound("gone", provider=self.name, symbol=symbol)
        return _bars([1735689600]).set_column(0, "symbol", pa.array([symbol]))


def test_fetch_many_answers_every_symbol_exactly_once():
    async def go():
        out = []
        async for sym, res in Flaky().fetch_many(["A", " A", "BUG", "GONE", "a b", "", "B"]):
            out.append((sym, res))
        return out

    out = run(go())
    names = [s for s, _ in out]
    assert sorted(names) == sorted(["A", "BUG", "GONE", "a b", "", "B"])
    got = dict(out)
    assert isinstance(got["A"], pa.RecordBatch) and isinstance(got["B"], pa.RecordBatch)
    assert isinstance(got["GONE"], SymbolNotFound)
    assert type(got["BUG"]) is ProviderError and "OverflowError" in str(got["BUG"])
    assert isinstance(got["BUG"].__cause__, OverflowError)
    for bad in ("a b", ""):
        assert isinstance(got[bad], SymbolNotFound) and "rule" in str(got[bad])


def test_fetch_many_refuses_bad_options_before_fetching():
    async def go():
        async for _ in Flaky().fetch_many(["A"], period="3 weeks"):
            pass

    with pytest.raises(ValueError, match="bad period"):
        run(go())


def run(coro):
    return asyncio.run(coro)


def test_generic_source_masks_its_header_token_and_template_key_in_any_encoding():
    from urllib.parse import quote

    from stockbatch.sources import HTTPJSONSource

    token, key = "t0k+/=&en", "k3y%2B/x"
    src = HTTPJSONSource(
        "https://u:pa@ss@api.example/v1/{symbol}?apikey=" + key,
        fields={"ts": "t"},
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        assert "pa@ss" not in repr(src)
        for text in (
            f"echo {token}",
            f"echo {quote(token, safe='')}",
            f"got {key}",
            f"got {quote(key, safe='')}",
            "password pa@ss refused",
        ):
            exc = src._scrub(ProviderError(text))
            assert token not in str(exc) and quote(token, safe="") not in str(exc)
            assert key not in str(exc) and "pa@ss" not in str(exc), str(exc)
    finally:
        run(src.aclose())
