"""Many threads (and an asyncio front) through BatchQueue + Coalescer: every request is
answered exactly once — a result, an error, an expiry or a cancellation — none lost, none
duplicated. Both backends."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter

import pytest

from stockbatch import ProviderError, QueueClosed

PRODUCERS = 8
CONSUMERS = 4


N = 100_000  # requests per run, on both backends (the twin takes a few seconds)


def make_requests(mod, n, seed):
    """30 % of requests repeat the key of a recent one; 2 % are already past their deadline,
    2 % have a deadline that may pass while queued."""
    rng = random.Random(seed)
    now = time.monotonic()
    out, symbols = [], []
    for i in range(n):
        if symbols and rng.random() < 0.3:
            sym = symbols[-1 - rng.randrange(min(len(symbols), 500))]
        else:
            sym = f"S{i}"
            symbols.append(sym)
        u = rng.random()
        deadline = now - 1 if u < 0.02 else now + 0.001 if u < 0.04 else None
        out.append(
            mod.Request("quote", "yahoo", sym, priority=rng.randint(1, 5), deadline=deadline)
        )
    return out


def fails(symbol):
    return int(symbol[1:]) % 13 == 0


def fetch(call):
    """The provider: one value per symbol; every 13th symbol fails — the whole call when it
    is alone in it, else just its entry of the per-symbol answer."""
    if len(call.symbols) == 1 and fails(call.symbol):
        return ProviderError("provider refused", provider=call.provider)
    return {
        s: ProviderError("no such symbol", symbol=s) if fails(s) else f"v:{s}" for s in call.symbols
    }


def classify(value):
    return ("error", value) if isinstance(value, BaseException) else ("result", value)


def check(reqs, outcomes, qstats, cstats):
    by_id = {r.id: r for r in reqs}
    counts = Counter(rid for rid, _ in outcomes)
    assert len(counts) == len(reqs), "some requests were never answered"
    assert max(counts.values()) == 1, "some requests were answered twice"
    kinds = Counter()
    for rid, outcome in outcomes:
        r = by_id[rid]
        kind, value = outcome
        kinds[kind] += 1
        if kind == "result":
            assert value == f"v:{r.symbol}"
        elif kind == "error":
            assert isinstance(value, ProviderError) and fails(r.symbol)
    assert kinds["result"] > 0.5 * len(reqs)
    assert kinds["error"] > 0 and kinds["expired"] >= 0.015 * len(reqs)
    assert kinds["cancelled"] > 0
    assert qstats["got"] + qstats["expired"] + qstats["cancelled"] == len(reqs)
    assert qstats["expired"] == kinds["expired"]
    assert cstats["calls_out"] < cstats["requests_in"]  # identical keys shared fetches
    return kinds


def produce(q, chunk, rng, outcomes):
    i = 0
    while i < len(chunk):
        k = rng.randint(1, 100)
        part = chunk[i : i + k]
        if k == 1:
            q.put(part[0])
        else:
            q.put_many(part)
        for r in part:
            if rng.random() < 0.01 and q.cancel(r.id) is r:
                outcomes.append((r.id, ("cancelled", None)))
        i += k


def test_threads_every_request_answered_once(load):
    qmod, cmod = load("queue"), load("coalesce")
    n = N
    reqs = make_requests(qmod, n, seed=1)
    outcomes = []  # (request id, (kind, value)); list.append is atomic
    q = qmod.BatchQueue(1000, on_expire=lambda r: outcomes.append((r.id, ("expired", None))))
    co = cmod.Coalescer(batch_limits={("yahoo", "quote"): 20})
    errors = []

    def consumer():
        try:
            while True:
                try:
                    batch = q.get_batch(50)
                except QueueClosed:
                    return
                co.add_many(batch)
                for call in co.take_calls():
                    result = fetch(call)
                    if isinstance(result, Exception):
                        answers = co.fail(call, result)
                        outcomes.extend((r.id, ("error", v)) for r, v in answers)
                    else:
                        answers = co.complete(call, result)
                        outcomes.extend((r.id, classify(v)) for r, v in answers)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def producer(k):
        try:
            produce(q, reqs[k::PRODUCERS], random.Random(k), outcomes)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    consumers = [threading.Thread(target=consumer) for _ in range(CONSUMERS)]
    producers = [threading.Thread(target=producer, args=(k,)) for k in range(PRODUCERS)]
    for t in consumers + producers:
        t.start()
    for t in producers:
        t.join(120)
    q.close()
    for t in consumers:
        t.join(120)
    assert not any(t.is_alive() for t in consumers + producers)
    assert not errors, errors
    kinds = check(reqs, outcomes, q.stats(), co.stats())
    assert kinds["cancelled"] == q.stats()["cancelled"]
    assert co.stats()["in_flight"] == 0 and co.stats()["pending"] == 0


def test_asyncio_front_every_request_answered_once(load):
    qmod, cmod = load("queue"), load("coalesce")
    n = N
    reqs = make_requests(qmod, n, seed=2)
    outcomes = []
    q = qmod.BatchQueue(1000, on_expire=lambda r: outcomes.append((r.id, ("expired", None))))
    co = cmod.Coalescer(batch_limits={"yahoo": 20})
    rng = random.Random(3)

    async def consumer():
        pending = []
        while True:
            try:
                batch = await q.get_batch_async(50)
            except QueueClosed:
                break
            for r in batch:
                fut = co.submit_async(r)
                if rng.random() < 0.01:
                    fut.cancel()  # this waiter gives up; others sharing the fetch do not
                pending.append((r, fut))
            for call in co.take_calls():
                await asyncio.sleep(0)  # the fetch would await here
                result = fetch(call)
                if isinstance(result, Exception):
                    co.fail(call, result)
                else:
                    co.complete(call, result)
        for r, fut in pending:
            if fut.cancelled():
                outcomes.append((r.id, ("cancelled", None)))
                continue
            try:
                outcomes.append((r.id, ("result", await fut)))
            except ProviderError as exc:
                outcomes.append((r.id, ("error", exc)))

    async def main():
        tasks = [asyncio.ensure_future(consumer()) for _ in range(CONSUMERS)]
        loop = asyncio.get_running_loop()
        producers = [
            loop.run_in_executor(None, produce, q, reqs[k::PRODUCERS], random.Random(k), outcomes)
            for k in range(PRODUCERS)
        ]
        await asyncio.wait_for(asyncio.gather(*producers), 120)
        q.close()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)

    asyncio.run(main())
    check(reqs, outcomes, q.stats(), co.stats())
    assert co.stats()["in_flight"] == 0


@pytest.mark.parametrize("n_waiters", [2, 5])
def test_cancelled_waiter_does_not_cancel_the_shared_fetch(load, n_waiters):
    qmod, cmod = load("queue"), load("coalesce")
    co = cmod.Coalescer()
    reqs = [qmod.Request("quote", "yahoo", "AAPL") for _ in range(n_waiters)]
    futs = [co.submit(r) for r in reqs]
    assert futs[0].cancel()
    (call,) = co.take_calls()
    answers = co.complete(call, 42)
    assert futs[0].cancelled()
    assert [f.result(timeout=1) for f in futs[1:]] == [42] * (n_waiters - 1)
    assert sorted(r.id for r, _ in answers) == sorted(r.id for r in reqs[1:])
