"""stockbatch.stats: snapshots, rates and health grades over real queues and coalescers."""

from __future__ import annotations

import time

import pytest

import stockbatch
from stockbatch import ProviderError, stats


@pytest.fixture
def mods(load):
    return load("queue"), load("coalesce")


def run_calls(qmod, co, n, n_fail):
    """n distinct quote fetches through the coalescer, the first n_fail failing."""
    co.add_many([qmod.Request("quote", "yahoo", f"S{i}") for i in range(n)])
    for i, call in enumerate(sorted(co.take_calls(), key=lambda c: int(c.symbol[1:]))):
        if i < n_fail:
            co.fail(call, ProviderError("down"))
        else:
            co.complete(call, {"price": 1.0})


def test_top_level_names():
    assert stockbatch.health is stats.health
    assert stockbatch.stats is stats


def test_fresh_objects_are_healthy(mods):
    qmod, cmod = mods
    q, co = qmod.BatchQueue(100), cmod.Coalescer()
    h = stats.health(q, co)
    assert h.status == "healthy" and bool(h) and h.reasons == ()
    assert str(h) == "healthy"


@pytest.mark.parametrize("n_fail, status", [(0, "healthy"), (6, "degraded"), (30, "unhealthy")])
def test_error_rate_grades(mods, n_fail, status):
    qmod, cmod = mods
    co = cmod.Coalescer()
    run_calls(qmod, co, 100, n_fail)
    snap = stats.snapshot(co)
    assert snap.calls_done == 100 and snap.error_rate == pytest.approx(n_fail / 100)
    h = stats.health(co)
    assert h.status == status
    if n_fail:
        assert "error_rate" in str(h)


def test_small_samples_do_not_degrade(mods):
    qmod, cmod = mods
    co = cmod.Coalescer()
    run_calls(qmod, co, 3, 2)  # 2 of 3 failed, but only 3 calls
    assert stats.health(co).status == "healthy"
    assert stats.health(co, min_sample=1).status == "unhealthy"


def test_expiry_rate_and_queue_fill(mods):
    qmod, _ = mods
    q = qmod.BatchQueue(100)
    past = time.monotonic() - 1
    q.put_many(
        [
            qmod.Request("quote", "yahoo", f"S{i}", deadline=past if i < 5 else None)
            for i in range(85)
        ]
    )
    snap = stats.snapshot(q)
    assert snap.expired == 5 and snap.expiry_rate == pytest.approx(5 / 85)
    assert snap.queue_depth == 80 and snap.queue_fill == pytest.approx(0.8)
    h = stats.health(q)
    assert h.status == "degraded" and "expiry_rate" in str(h) and "queue_fill" in str(h)
    q.put_many([qmod.Request("quote", "yahoo", "X") for _ in range(16)])
    assert stats.health(q).status == "unhealthy"  # 96 % full


def test_closed_queue_still_holding_requests_is_degraded(mods):
    qmod, _ = mods
    q = qmod.BatchQueue()
    q.put(qmod.Request("quote", "yahoo", "A"))
    q.close()
    assert stats.health(q).status == "degraded"


def test_monitor_rates_and_coalescing_ratio(mods):
    qmod, cmod = mods
    q, co = qmod.BatchQueue(), cmod.Coalescer()
    mon = stats.Monitor(q, co)
    first = mon.snapshot()
    assert first.ops_per_s == 0.0
    reqs = [qmod.Request("quote", "yahoo", f"S{i % 10}") for i in range(100)]
    q.put_many(reqs)
    co.add_many(q.get_batch(100))
    for call in co.take_calls():
        co.complete(call, 1)
    snap = mon.snapshot()
    assert snap.got == 100 and snap.ops_per_s > 0
    assert snap.coalescing_ratio == pytest.approx(0.9)  # 100 requests, 10 calls
    assert snap.as_dict()["coalescing_ratio"] == pytest.approx(0.9)
    assert mon.health().status == "healthy"
    assert stats.health(mon).status == "healthy"


def test_custom_thresholds_and_bad_ones(mods):
    qmod, cmod = mods
    co = cmod.Coalescer()
    run_calls(qmod, co, 100, 6)
    assert stats.health(co).status == "degraded"
    assert stats.health(co, thresholds={"error_rate": (0.5, 0.9)}).status == "healthy"
    with pytest.raises(ValueError):
        stats.health(co, thresholds={"latency": (1, 2)})
    with pytest.raises(ValueError):
        stats.health(co, thresholds={"error_rate": (0.9, 0.5)})
    with pytest.raises(TypeError):
        stats.snapshot(object())


def test_process_wide_view_sees_live_objects(mods):
    qmod, _ = mods
    q = qmod.BatchQueue()
    q.put(qmod.Request("quote", "yahoo", "A"))
    snap = stats.snapshot()
    assert snap.queues >= 1 and snap.queue_depth >= 1
