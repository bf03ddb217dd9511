"""Request layer: priority queue + coalescing, 1e6 requests with 30 % duplicate keys.

One group, ``queue-coalesce``; every peer does the same work on the same seeded requests:

* requests arrive in chunks of 10,000 (priorities 1-5; 30 % repeat the key and priority of
  one of the 1,000 fresh requests before them, as when several jobs ask for the same symbol
  at about the same time);
* a consumer takes them in priority order (FIFO inside a priority) in batches of 50;
* identical keys pending or in flight share one provider call;
* up to 1,000 calls are in flight; the oldest are completed when there are more, and every
  request gets its (request, value) answer. The run checks that all 1e6 were answered.

Peers:
  compiled_batch     stockbatch compiled BatchQueue.put_many / get_batch + Coalescer
                     add_many / take_calls / complete_many
  compiled_single    the same objects, one call per operation: put, get_batch, add, complete
  python_twin        the pure-Python twins through the batch API
  heapq_dict         heapq of (priority, seq, request) + dict key -> waiters
  priorityqueue_dict queue.PriorityQueue + dict key -> waiters

Run:
    PYTHONPATH=src python -m pytest bench/test_queue.py --benchmark-only \
        --benchmark-columns=min,median,rounds --benchmark-sort=name
"""

from __future__ import annotations

import heapq
import queue
import random
from collections import deque

import pytest
from benchutil import quick, sized

from stockbatch import _backend

N = sized(1_000_000)
CHUNK = 10_000
BATCH = 50
WINDOW = 1_000  # calls in flight
DUP = 0.3
T0 = 1_704_067_200_000_000
T1 = 1_735_689_600_000_000
GROUP = "queue-coalesce"
ROUNDS = 1 if quick() else 3


def specs(n, seed=42):
    """(symbol, priority): 30 % repeat one of the 1,000 fresh requests before them, with its
    priority (the same kind of job asking again), so they meet it pending or in flight."""
    rng = random.Random(seed)
    out, fresh = [], []
    for i in range(n):
        if fresh and rng.random() < DUP:
            out.append(fresh[-1 - rng.randrange(min(len(fresh), 1000))])
        else:
            spec = (f"S{i}", rng.randint(1, 5))
            fresh.append(spec)
            out.append(spec)
    return out


def build(which, n):
    Request = _backend.load_from(which, "queue").Request
    return [Request("history", "yahoo", sym, "1d", T0, T1, priority=p) for sym, p in specs(n)]


@pytest.fixture(scope="module")
def compiled_requests():
    try:
        return build("cython", N)
    except ImportError:
        pytest.skip("compiled backend not built")


@pytest.fixture(scope="module")
def python_requests():
    return build("python", N)


# -- stockbatch ------------------------------------------------------------------------------
def stockbatch_batch(which, reqs):
    q = _backend.load_from(which, "queue").BatchQueue()
    co = _backend.load_from(which, "coalesce").Coalescer()
    flying, n_flying, answered, value = deque(), 0, 0, object()
    for i in range(0, len(reqs), CHUNK):
        q.put_many(reqs[i : i + CHUNK])
        while batch := q.get_batch(BATCH, timeout=0):
            co.add_many(batch)
            calls = co.take_calls()
            flying.append(calls)
            n_flying += len(calls)
            while n_flying > WINDOW:
                calls = flying.popleft()
                n_flying -= len(calls)
                answered += len(co.complete_many(calls, [value] * len(calls)))
    while flying:
        calls = flying.popleft()
        answered += len(co.complete_many(calls, [value] * len(calls)))
    return answered, co.stats()["calls_out"]


def stockbatch_single(reqs):
    q = _backend.load_from("cython", "queue").BatchQueue()
    co = _backend.load_from("cython", "coalesce").Coalescer()
    put, get, add, complete = q.put, q.get_batch, co.add, co.complete
    flying, answered, value = deque(), 0, object()
    for i in range(0, len(reqs), CHUNK):
        for r in reqs[i : i + CHUNK]:
            put(r)
        while batch := get(BATCH, timeout=0):
            for r in batch:
                add(r)
            flying.extend(co.take_calls())
            while len(flying) > WINDOW:
                answered += len(complete(flying.popleft(), value))
    while flying:
        answered += len(complete(flying.popleft(), value))
    return answered, co.stats()["calls_out"]


# -- peers -----------------------------------------------------------------------------------
def coalesce_batch(batch, waiting, flying):
    """The dict half of the peers: identical keys pending or in flight share one call."""
    calls = []
    for r in batch:
        key = r.key
        w = waiting.get(key)
        if w is None:
            waiting[key] = [r]
            calls.append(key)
        else:
            w.append(r)
    flying.extend(calls)


def answer(key, waiting, value):
    return [(r, value) for r in waiting.pop(key)]


def heapq_dict(reqs):
    heap, seq, waiting, flying, answered, value = [], 0, {}, deque(), 0, object()
    push, pop = heapq.heappush, heapq.heappop
    for i in range(0, len(reqs), CHUNK):
        for r in reqs[i : i + CHUNK]:
            push(heap, (r.priority, seq, r))
            seq += 1
        while heap:
            batch = [pop(heap)[2] for _ in range(min(BATCH, len(heap)))]
            coalesce_batch(batch, waiting, flying)
            while len(flying) > WINDOW:
                answered += len(answer(flying.popleft(), waiting, value))
    while flying:
        answered += len(answer(flying.popleft(), waiting, value))
    return answered, None


def priorityqueue_dict(reqs):
    pq, seq, waiting, flying, answered, value = queue.PriorityQueue(), 0, {}, deque(), 0, object()
    for i in range(0, len(reqs), CHUNK):
        for r in reqs[i : i + CHUNK]:
            pq.put((r.priority, seq, r))
            seq += 1
        while not pq.empty():
            batch = []
            for _ in range(BATCH):
                try:
                    batch.append(pq.get_nowait()[2])
                except queue.Empty:
                    break
            coalesce_batch(batch, waiting, flying)
            while len(flying) > WINDOW:
                answered += len(answer(flying.popleft(), waiting, value))
    while flying:
        answered += len(answer(flying.popleft(), waiting, value))
    return answered, None


def run(benchmark, fn, *args):
    answered, calls = benchmark.pedantic(
        fn, args=args, rounds=ROUNDS, iterations=1, warmup_rounds=0
    )
    assert answered == N
    benchmark.extra_info.update(requests=N, answered=answered)
    if calls is not None:
        benchmark.extra_info.update(calls=calls, saving_ratio=round(1 - calls / N, 4))


@pytest.mark.benchmark(group=GROUP)
def test_compiled_batch(benchmark, compiled_requests):
    run(benchmark, stockbatch_batch, "cython", compiled_requests)


@pytest.mark.benchmark(group=GROUP)
def test_compiled_single(benchmark, compiled_requests):
    run(benchmark, stockbatch_single, compiled_requests)


@pytest.mark.benchmark(group=GROUP)
def test_python_twin(benchmark, python_requests):
    run(benchmark, stockbatch_batch, "python", python_requests)


@pytest.mark.benchmark(group=GROUP)
def test_heapq_dict(benchmark, compiled_requests):
    run(benchmark, heapq_dict, compiled_requests)


@pytest.mark.benchmark(group=GROUP)
def test_priorityqueue_dict(benchmark, compiled_requests):
    run(benchmark, priorityqueue_dict, compiled_requests)
