"""The fetch stage of one job, on the engine's I/O loop.

Requests go through a :class:`~stockbatch.queueing.BatchQueue` (waves sized by the
:class:`~stockbatch.queueing.BatchOptimizer`) and the shared
:class:`~stockbatch.queueing.Coalescer` (concurrent jobs asking for the same bars share one
provider call) to the source. Every symbol gets exactly one answer in the job's inbox — its
bars, or its error — and :data:`DONE` comes last. A hand-off slot is taken per request and
given back by the job's thread when it takes the answer (:meth:`FetchStage.release`), which
bounds what waits in the inbox.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from .._errors import (
    JobCancelled,
    JobTimeout,
    ProviderError,
    QueueClosed,
    RateLimited,
    SymbolNotFound,
)
from .._types import RequestKind
from ..queueing import BatchOptimizer, BatchQueue, Coalescer, Request
from ._job import PipelineJob
from ._loop import IOLoop

__all__ = ["FetchStage", "DONE", "run_call"]

#: The last item a fetch stage puts in its inbox.
DONE = object()


class FetchStage:
    """Fetch ``job``'s symbols into ``inbox``; see the module docstring."""

    def __init__(
        self,
        job: PipelineJob,
        inbox: queue.SimpleQueue,
        *,
        coalescer: Coalescer,
        optimizer: BatchOptimizer,
        bound: asyncio.Semaphore,
        slots: int,
        observe: Callable[[float, bool], Any] | None = None,
    ) -> None:
        self.job, self.inbox, self.co, self.optimizer = job, inbox, coalescer, optimizer
        self.observe = observe  # told each provider call's seconds and whether it failed
        self.bound = bound
        self.slot_count = slots
        self.provider = provider_key(job)
        self.abort_reason: BaseException | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._started = threading.Event()

    def start(self, loop: IOLoop) -> concurrent.futures.Future:
        """Start fetching on ``loop``; returns once :meth:`abort` and :meth:`release` work."""
        fut = loop.submit(self._run())
        self._started.wait()
        return fut

    def abort(self, reason: BaseException) -> None:
        """Stop fetching, from any thread; unanswered symbols get ``reason``."""
        self.abort_reason = reason
        if self._task is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)

    def fill(self) -> float:
        """Share of the hand-off slots in use (answers the job's thread has not given back),
        0-1: near 1 means fetching waits for the database (read from any thread)."""
        sem = self._slots
        return 0.0 if sem is None else 1.0 - sem._value / self.slot_count  # (a gauge)

    def release(self, n: int) -> None:
        """Give back ``n`` hand-off slots (from the job's thread, as it takes answers)."""
        if self._loop is not None and self._slots is not None:
            self._loop.call_soon_threadsafe(_release, self._slots, n)

    async def _run(self) -> None:
        job, co = self.job, self.co
        loop = asyncio.get_running_loop()
        self._loop, self._task = loop, asyncio.current_task()
        self._slots = slots = asyncio.Semaphore(self.slot_count)
        self._started.set()
        kind: RequestKind = "history" if job.kind == "bars" else "quote"
        deadline = None if job.timeout is None else time.monotonic() + job.timeout
        reqs = [
            Request(
                kind,
                self.provider,
                s,
                job.interval if kind == "history" else None,
                job.start_us or None,
                job.end_us or None,
                priority=job.priority,
                deadline=deadline,
            )
            for s in job.symbols
        ]
        pending = {r.id: r for r in reqs}
        all_answered = loop.create_future()

        def answer(req: Request, value: Any) -> None:
            if pending.pop(req.id, None) is None:
                return
            self.inbox.put((req.symbol, value))
            if not pending and not all_answered.done():
                all_answered.set_result(None)

        def on_done(req: Request, fut: asyncio.Future) -> None:
            if fut.cancelled():
                answer(req, self.abort_reason or JobCancelled("cancelled"))
            else:
                answer(req, fut.exception() or fut.result())

        q = BatchQueue(
            max(len(reqs), 1),
            on_expire=lambda r: answer(
                r, JobTimeout(f"not fetched before the job's timeout ({job.timeout:g} s)")
            ),
        )
        op = f"fetch:{job.source.name}"
        tasks: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

        def keep(t: asyncio.Task) -> None:
            tasks.add(t)
            t.add_done_callback(tasks.discard)

        def launch() -> None:
            for call in co.take_calls():
                keep(
                    loop.create_task(
                        run_call(co, job.source, call, self.bound, observe=self.observe)
                    )
                )

        try:
            q.put_many(reqs)
            q.close()
            while True:
                try:
                    wave = await q.get_batch_async(self.optimizer.recommend(op))
                except QueueClosed:
                    break
                futs = []
                for r in wave:
                    if slots.locked():
                        launch()  # what is planned must run before we wait for a slot
                    await slots.acquire()  # backpressure: the job's thread keeps up
                    fut = co.submit_async(r)
                    fut.add_done_callback(functools.partial(on_done, r))
                    futs.append(fut)
                launch()
                keep(loop.create_task(self._observe(op, futs, time.perf_counter())))
            if pending:
                await all_answered
        except asyncio.CancelledError:
            reason = self.abort_reason or JobCancelled("cancelled")
            for r in list(pending.values()):
                co.cancel(r)
                answer(r, reason)
        finally:
            self.inbox.put(DONE)

    async def _observe(self, op: str, futs: list[asyncio.Future], t0: float) -> None:
        """Teach the optimizer how long a wave of this size took, and how it went."""
        await asyncio.wait(futs)
        errs = [f.exception() for f in futs if not f.cancelled() and f.exception()]
        self.optimizer.record(
            op,
            len(futs),
            time.perf_counter() - t0,
            ok=all(isinstance(e, SymbolNotFound) for e in errs),
            rate_limited=any(isinstance(e, RateLimited) for e in errs),
        )


async def run_call(
    co: Coalescer,
    source: Any,
    call: Any,
    bound: asyncio.Semaphore,
    *,
    observe: Callable[[float, bool], Any] | None = None,
) -> None:
    """One provider call within ``bound``; every waiter is answered whatever happens.
    ``observe(seconds, failed)`` is told how it went (a symbol not found is no failure)."""
    t0 = 0.0
    try:
        async with bound:
            t0 = time.perf_counter()
            if call.kind == "quote":
                value = await source.fetch_quotes(list(call.symbols))
            else:
                value = await source.fetch_history(
                    call.symbol, interval=call.interval, start=call.start, end=call.end
                )
    except ProviderError as exc:
        if observe is not None:
            observe(time.perf_counter() - t0, not isinstance(exc, SymbolNotFound))
        co.fail(call, exc)
    except asyncio.CancelledError:
        co.fail(call, JobCancelled("the fetch was cancelled"))
        raise
    except Exception as exc:  # noqa: BLE001 - a bug here or in a library: the symbol fails, others go on
        err = ProviderError(
            f"unexpected {type(exc).__name__} in source {source.name}: {exc}",
            provider=source.name,
            symbol=call.symbol,
        )
        err.__cause__ = exc  # kept for debugging (SymbolOutcome.exception.__cause__)
        co.fail(call, err)
    else:
        if observe is not None:
            observe(time.perf_counter() - t0, False)
        co.complete(call, value)


def provider_key(job: PipelineJob) -> str:
    """The Request provider: one per source instance (two differently configured sources of
    one provider must not share fetches)."""
    return f"{job.source.name}#{id(job.source):x}"


def _release(sem: asyncio.Semaphore, n: int) -> None:
    for _ in range(n):
        sem.release()
