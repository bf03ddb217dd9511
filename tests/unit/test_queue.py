"""BatchQueue on both backends: order, bounds, deadlines, cancel, close, threads, asyncio.

Waits in these tests are real and short (a blocked call must block, a timeout must pass);
nothing sleeps to pretend work.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockbatch import QueueClosed, QueueFull


@pytest.fixture
def mod(load):
    return load("queue")


def req(mod, sym="X", priority=3, **kw):
    return mod.Request("quote", "yahoo", sym, priority=priority, **kw)


def run_thread(fn, *args):
    box = {}

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


@given(st.lists(st.integers(1, 5), max_size=200), st.integers(1, 60))
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_priority_then_fifo(load, priorities, batch):
    mod = load("queue")
    q = mod.BatchQueue()
    reqs = [req(mod, f"S{i}", p) for i, p in enumerate(priorities)]
    # put in a mix of single puts and put_many
    q.put_many(reqs[: len(reqs) // 2])
    for r in reqs[len(reqs) // 2 :]:
        q.put(r)
    out = []
    while True:
        got = q.get_batch(batch, timeout=0)
        assert len(got) <= batch
        if not got:
            break
        out.extend(got)
    expected = sorted(reqs, key=lambda r: r.priority)  # stable: FIFO inside a priority
    assert [r.id for r in out] == [r.id for r in expected]
    assert all(r.state == "taken" for r in out)


def test_get_batch_arguments(mod):
    q = mod.BatchQueue()
    with pytest.raises(ValueError):
        q.get_batch(0, timeout=0)
    with pytest.raises(TypeError):
        q.get_batch("5", timeout=0)
    with pytest.raises(TypeError):
        q.put("not a request")
    with pytest.raises(ValueError):
        mod.BatchQueue(-1)


def test_bounded_put_nowait_and_put_many_all_or_nothing(mod):
    q = mod.BatchQueue(3)
    a, b, c, d = (req(mod, s) for s in "ABCD")
    q.put_many([a, b])
    with pytest.raises(QueueFull):
        q.put_many([c, d], timeout=0)
    assert len(q) == 2 and c.state == "new" and d.state == "new"  # nothing added
    q.put_nowait(c)
    with pytest.raises(QueueFull):
        q.put_nowait(d)
    with pytest.raises(ValueError, match="never fit"):
        q.put_many([req(mod) for _ in range(4)])
    assert [r.symbol for r in q.get_batch(10)] == ["A", "B", "C"]


def test_put_timeout_raises_queue_full_after_the_timeout(mod):
    q = mod.BatchQueue(1)
    q.put(req(mod))
    t0 = time.monotonic()
    with pytest.raises(QueueFull):
        q.put(req(mod), timeout=0.05)
    assert 0.04 <= time.monotonic() - t0 < 2.0


def test_blocked_put_resumes_when_a_consumer_takes(mod):
    q = mod.BatchQueue(1)
    q.put(req(mod, "A"))
    t, box = run_thread(q.put, req(mod, "B"))
    t.join(0.05)
    assert t.is_alive()  # really blocked
    assert [r.symbol for r in q.get_batch(5)] == ["A"]
    t.join(5)
    assert not t.is_alive() and "error" not in box
    assert [r.symbol for r in q.get_batch(5)] == ["B"]


def test_get_batch_timeout_and_wakeup(mod):
    q = mod.BatchQueue()
    t0 = time.monotonic()
    assert q.get_batch(5, timeout=0.05) == []
    assert 0.04 <= time.monotonic() - t0 < 2.0
    t, box = run_thread(q.get_batch, 5)
    t.join(0.05)
    assert t.is_alive()
    r = req(mod)
    q.put(r)
    t.join(5)
    assert box["value"] == [r]


def test_same_request_twice_is_refused(mod):
    q = mod.BatchQueue()
    r = req(mod)
    with pytest.raises(ValueError, match="twice"):
        q.put_many([r, r])
    assert len(q) == 0
    q.put(r)
    with pytest.raises(ValueError, match="already queued"):
        q.put(r)
    assert q.get_batch(5) == [r]
    q.put(r)  # a taken request may be queued again (a retry)
    assert q.get_batch(5) == [r]


def test_expired_at_put_is_reported_not_queued(mod):
    expired = []
    q = mod.BatchQueue(on_expire=expired.append)
    late = req(mod, "LATE", deadline=time.monotonic() - 1)
    ok = req(mod, "OK")
    q.put_many([late, ok])
    assert expired == [late] and late.state == "expired"
    assert q.get_batch(5) == [ok]
    assert q.stats()["expired"] == 1
    with pytest.raises(ValueError, match="expired"):
        q.put(late)


def test_raising_on_expire_loses_nothing(mod):
    seen = []

    def on_expire(r):
        seen.append(r)
        raise RuntimeError("callback failed")

    q = mod.BatchQueue(on_expire=on_expire)
    # a deadline far off is taken like any request (60 s: no stall of a loaded machine
    # between these lines can pass it)
    soon = req(mod, "SOON", priority=1, deadline=time.monotonic() + 60)
    keep = req(mod, "KEEP", priority=5)
    q.put_many([soon, keep])
    assert q.get_batch(5, timeout=0) == [soon, keep]  # not expired yet
    q.put_many([req(mod, "SOON2", priority=1, deadline=time.monotonic() + 0.02), keep])
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.03:  # let the deadline pass (a real wait, no work)
        threading.Event().wait(0.01)
    with pytest.raises(RuntimeError, match="callback failed"):
        q.get_batch(5, timeout=0)
    assert [r.symbol for r in seen] == ["SOON2"]
    assert q.get_batch(5, timeout=0) == [keep]  # nothing was taken by the failed call


def test_deadline_passes_while_queued(mod):
    q = mod.BatchQueue()
    short = req(mod, "SHORT", priority=1, deadline=time.monotonic() + 0.03)
    keep = req(mod, "KEEP", priority=5)
    q.put_many([short, keep])
    assert q.drain_expired() == []
    # wait for the deadline the way a producer would: blocked on a full queue
    full = mod.BatchQueue(1)
    full.put(req(mod, "F", deadline=time.monotonic() + 0.03))
    t0 = time.monotonic()
    full.put(req(mod, "G"), timeout=2)  # room appears when F expires
    assert time.monotonic() - t0 < 1.5
    assert [r.symbol for r in full.drain_expired()] == ["F"]
    # the first queue expires SHORT on its next operation
    assert q.get_batch(5) == [keep]
    assert q.drain_expired() == [short] and short.state == "expired"
    assert q.drain_expired() == []


def test_cancel(mod):
    q = mod.BatchQueue(2)
    a, b = req(mod, "A"), req(mod, "B")
    q.put_many([a, b])
    assert q.cancel(a.id) is a and a.state == "cancelled"
    assert q.cancel(a.id) is None
    assert q.cancel(10**12) is None
    assert q.cancel(b) is b
    assert len(q) == 0 and q.get_batch(5, timeout=0) == []
    with pytest.raises(ValueError, match="cancelled"):
        q.put(a)
    q.put_many([req(mod), req(mod)])  # the space came back
    s = q.stats()
    assert s["cancelled"] == 2 and s["depth"] == 2


def test_cancel_many_keeps_order_and_compacts(mod):
    q = mod.BatchQueue()
    reqs = [req(mod, f"S{i}") for i in range(2000)]
    q.put_many(reqs)
    for r in reqs[::2]:
        assert q.cancel(r.id) is r
    out = q.get_batch(5000)
    assert out == reqs[1::2]


def test_close_wakes_every_waiter(mod):
    q = mod.BatchQueue(1)
    getters = [run_thread(q.get_batch, 3) for _ in range(3)]
    for t, _ in getters:
        t.join(0.02)
    q2 = mod.BatchQueue(1)
    q2.put(req(mod))
    putters = [run_thread(q2.put, req(mod)) for _ in range(2)]
    for t, _ in putters:
        t.join(0.02)
    q.close()
    q2.close()
    for t, box in getters + putters:
        t.join(5)
        assert not t.is_alive()
        assert isinstance(box.get("error"), QueueClosed)
    with pytest.raises(QueueClosed):
        q.put(req(mod))
    assert q.closed


def test_closed_queue_drains_then_raises(mod):
    q = mod.BatchQueue()
    a = req(mod)
    q.put(a)
    q.close()
    assert q.get_batch(5) == [a]
    with pytest.raises(QueueClosed):
        q.get_batch(5)


def test_stats(mod):
    q = mod.BatchQueue(10)
    rs = [req(mod, priority=p) for p in (1, 1, 2, 5)]
    q.put_many(rs)
    s = q.stats()
    assert s["depth"] == 4 and s["depth_by_priority"] == {1: 2, 2: 1, 3: 0, 4: 0, 5: 1}
    assert s["put"] == 4 and s["maxsize"] == 10 and not s["closed"]
    q.get_batch(3)
    s = q.stats()
    assert s["got"] == 3 and s["depth"] == 1
    assert 0.0 <= s["mean_wait"] <= s["max_wait"] < 5.0


# -- asyncio front ---------------------------------------------------------------------------
def test_async_get_waits_without_blocking_the_loop(mod):
    q = mod.BatchQueue()

    async def main():
        ticks = 0
        r = req(mod)

        async def ticker():
            nonlocal ticks
            for _ in range(5):
                await asyncio.sleep(0.005)
                ticks += 1
            await q.put_async(r)  # only runs if the loop is free while the getter waits

        task = asyncio.ensure_future(ticker())
        got = await asyncio.wait_for(q.get_batch_async(5), 5)
        await task
        return got, ticks

    got, ticks = asyncio.run(main())
    assert ticks == 5 and len(got) == 1


def test_async_get_woken_from_another_thread_and_timeout(mod):
    q = mod.BatchQueue()

    async def main():
        t0 = time.monotonic()
        assert await q.get_batch_async(5, timeout=0.03) == []
        assert time.monotonic() - t0 >= 0.02
        r = req(mod)
        timer = threading.Timer(0.02, q.put, args=(r,))
        timer.start()
        got = await asyncio.wait_for(q.get_batch_async(5), 5)
        timer.join()
        return got == [r]

    assert asyncio.run(main())


def test_async_cancelled_getter_does_not_swallow_a_wakeup(mod):
    q = mod.BatchQueue()

    async def main():
        first = asyncio.ensure_future(q.get_batch_async(5))
        second = asyncio.ensure_future(q.get_batch_async(5))
        await asyncio.sleep(0.01)
        first.cancel()
        r = req(mod)
        q.put(r)
        got = await asyncio.wait_for(second, 5)
        with pytest.raises(asyncio.CancelledError):
            await first
        return got == [r]

    assert asyncio.run(main())


def test_async_put_blocks_until_room_and_close_wakes(mod):
    q = mod.BatchQueue(1)

    async def main():
        q.put(req(mod, "A"))
        putter = asyncio.ensure_future(q.put_many_async([req(mod, "B")]))
        await asyncio.sleep(0.01)
        assert not putter.done()
        assert [r.symbol for r in await q.get_batch_async(5)] == ["A"]
        await asyncio.wait_for(putter, 5)
        assert [r.symbol for r in await q.get_batch_async(5)] == ["B"]
        getter = asyncio.ensure_future(q.get_batch_async(5))
        await asyncio.sleep(0.01)
        q.close()
        with pytest.raises(QueueClosed):
            await asyncio.wait_for(getter, 5)
        with pytest.raises(QueueFull):
            q2 = mod.BatchQueue(1)
            q2.put(req(mod))
            await q2.put_async(req(mod), timeout=0.02)

    asyncio.run(main())
