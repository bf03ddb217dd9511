"""The batch processing engine: jobs of fetch → transform → validate → store → analyze.

Threads and loops::

    engine I/O thread (one asyncio loop per engine)      job thread (the caller's, or a pool's)
    ─────────────────────────────────────────────        ──────────────────────────────────────
    BatchQueue ─► Coalescer ─► Source calls ──answers──► inbox ─► chunk ─► normalize ─► validate
         ▲ admission sized by the BatchOptimizer          (bounded: ─► Sink.ingest (one writer,
         └── waits for a free slot ◄──── slot released ──  slots)     one transaction per chunk)
                                                                    ─► quarantine ─► indicators

Fetching is async and concurrent on the engine's own loop (shared by every job, so identical
requests of concurrent jobs share one provider call through the Coalescer). Each job's
answers go through a bounded hand-off (``slots``) to the job's thread, where the compiled
kernels (GIL released) and the sink run. Memory is bounded by ``slots`` answers plus one
chunk of at most ``chunk_rows`` rows, however many symbols a job has.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import resource
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .. import _kernels as kernels
from .._errors import (
    JobCancelled,
    JobTimeout,
    ProviderError,
    QueueClosed,
    RateLimited,
    SinkError,
    SymbolNotFound,
)
from ..queueing import BatchOptimizer, BatchQueue, Coalescer, Request
from ..sinks import IngestResult, Sink, connect
from ._job import (
    PipelineJob,
    check_interval,
    check_table_name,
    clean_symbols,
    resolve_source,
    resolve_window,
)
from ._result import JobResult, Progress, SymbolOutcome

__all__ = ["BatchProcessingEngine"]

_DONE = object()
_KEY_COLS = ("symbol", "interval", "ts")


class BatchProcessingEngine:
    """Runs pipeline jobs; safe to share between threads and event loops.

    Parameters
    ----------
    max_concurrent_jobs : int
        Jobs running at once; more wait their turn (most urgent priority first).
    slots : int
        Answers a job may hold between fetch and store that its thread has not taken yet
        (backpressure on fetching). A slot is freed when the job's thread takes the answer,
        so the hand-off can never wait on itself.
    chunk_rows : int
        Most rows validated and stored in one transaction; ``min_chunk_rows`` the fewest a
        job gathers before storing, unless its fetching is done or its oldest waiting
        answer has waited ``flush_seconds`` (so a slow symbol never holds others' rows
        back).
    store_attempts : int
        Tries per chunk; the last one bisects a failing chunk and quarantines the rows the
        database refuses (``on_error="split"``).

    Examples
    --------
    >>> engine = BatchProcessingEngine(max_concurrent_jobs=2)            # doctest: +SKIP
    >>> job = engine.create_stock_data_pipeline_job(["AAPL", "MSFT"], period="1y",
    ...                                             sink="stockbatch.db")
    >>> result = engine.run(job)                 # or: await engine.execute_job(job)
    >>> print(result.summary())
    """

    def __init__(self, *, max_concurrent_jobs: int = 4, slots: int = 256,
                 chunk_rows: int = 65_536, min_chunk_rows: int = 16_384,
                 flush_seconds: float = 1.0, store_attempts: int = 3,
                 coalescer: Coalescer | None = None,
                 optimizer: BatchOptimizer | None = None) -> None:
        if max_concurrent_jobs < 1:
            raise ValueError("max_concurrent_jobs must be at least 1")
        if slots < 1 or chunk_rows < 1 or min_chunk_rows < 1:
            raise ValueError("slots, chunk_rows and min_chunk_rows must be at least 1")
        if not flush_seconds > 0:
            raise ValueError("flush_seconds must be positive")
        self.max_concurrent_jobs = max_concurrent_jobs
        self.slots = slots
        self.chunk_rows = chunk_rows
        self.min_chunk_rows = min(min_chunk_rows, chunk_rows)
        self.flush_seconds = flush_seconds
        self.store_attempts = max(1, store_attempts)
        self.coalescer = coalescer or Coalescer()
        self.optimizer = optimizer or BatchOptimizer(min_size=1, max_size=1024, initial=64)
        self._jobs: dict[str, PipelineJob] = {}
        self._admit = threading.Condition()
        self._running = 0
        self._waiting: list[tuple[int, int, PipelineJob]] = []
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._source_sems: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._closed = False
        self._finished = {"completed": 0, "failed": 0, "cancelled": 0, "timed_out": 0}

    # -- jobs ----------------------------------------------------------------------------
    def create_stock_data_pipeline_job(
            self, symbols: Iterable[str] | str, *, source: Any = None,
            base_url: str | None = None, sink: Sink | str | None = None,
            include_historical: bool = True, store_data: bool = True, interval: str = "1d",
            period: str | None = None, start: Any = None, end: Any = None,
            mode: str = "upsert", table: str | None = None,
            indicators: Iterable[str] | str | None = None, validate: bool = True,
            spike_threshold: float | None = None, priority: int = 3,
            timeout: float | None = None, on_progress: Callable[[Progress], Any] | None = None,
            job_id: str | None = None, concurrency: int | None = None) -> PipelineJob:
        """Describe a job (nothing runs yet).

        Parameters
        ----------
        symbols : str or iterable of str
            Provider symbols; duplicates are dropped, order kept.
        source : name, Source, or list of them
            ``"yahoo"`` (default), ``"yfinance"``, ``"alphavantage"``, a
            :class:`~stockbatch.sources.Source`, or a list (failover in that order).
        base_url : str, optional
            Base URL for a source given by name (e.g. a local fixture server).
        sink : Sink, URI or path, optional
            Where to store (default ``stockbatch.db``, a local SQLite file). A URI is opened
            for the job and closed after it; a :class:`~stockbatch.sinks.Sink` is left open.
        include_historical : bool
            True: bars (``interval``, ``period`` or ``start``/``end``). False: latest quotes.
        store_data : bool
            False: nothing is written; the bars are returned in ``JobResult.table``.
        mode : str
            Sink mode (default ``upsert``, so re-running a job is idempotent). ``append``
            creates the table when it is missing.
        indicators : spec strings, optional
            Computed per symbol on the stored bars (``"sma20"``, ``"rsi14"``, ``"macd"`` …,
            see :func:`stockbatch.indicators.compute`); returned in ``JobResult.indicators``.
        validate, spike_threshold
            Run the validation kernel (rejected rows are quarantined with their reasons);
            ``spike_threshold`` turns on the PRICE_SPIKE rule.
        priority : int
            1 (most urgent) to 5; orders jobs waiting for a run slot.
        timeout : float, optional
            Seconds for the whole job; symbols not done by then are reported failed.
        on_progress : callable, optional
            Called with a :class:`Progress` as symbols finish (from the job's thread).
        concurrency : int, optional
            This job's provider requests in flight at once (default: the source's own
            ``concurrency``, shared by every job using that source). The source is not
            changed.
        """
        syms = clean_symbols(symbols)
        if concurrency is not None and concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if table is not None:
            check_table_name(table)
        src, owned = resolve_source(source, base_url=base_url)
        if include_historical:
            check_interval(src, interval)
        if include_historical:
            start_us, end_us = resolve_window(interval, period, start, end)
        else:
            start_us = end_us = 0
        if isinstance(indicators, str):
            indicators = [i for i in indicators.split(",") if i.strip()]
        specs = tuple(i.strip() for i in indicators or ())
        if specs:
            from ..indicators import _plan
            _plan(specs)  # an unknown spec fails now, not after the fetch
        if store_data and sink is None:
            sink = "stockbatch.db"
        job = PipelineJob(
            symbols=syms, source=src, sink=sink if store_data else None,
            kind="bars" if include_historical else "quotes", interval=interval,
            start_us=start_us, end_us=end_us, store_data=store_data, mode=mode, table=table,
            indicators=specs, validate=validate, spike_threshold=spike_threshold,
            priority=priority, timeout=timeout, on_progress=on_progress,
            job_id=job_id or "", owns_source=owned, concurrency=concurrency)
        if specs and not include_historical:
            raise ValueError("indicators need bars (include_historical=True)")
        return job

    async def execute_job(self, job: PipelineJob) -> JobResult:
        """Run ``job`` to the end without blocking the event loop; return its result."""
        return await asyncio.to_thread(self.run, job)

    def submit(self, job: PipelineJob) -> concurrent.futures.Future:
        """Start ``job`` in the background; the future's result is its :class:`JobResult`."""
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.max_concurrent_jobs * 2, thread_name_prefix="stockbatch-job")
            pool = self._pool
        self._register(job)
        return pool.submit(self.run, job)

    def cancel(self, job_id: str, *, reason: str = "cancelled") -> bool:
        """Cancel a pending or running job. Symbols already stored stay stored (each chunk
        is its own transaction, committed or rolled back whole); nothing more is stored and
        the rest are reported ``cancelled``."""
        job = self._jobs.get(job_id)
        if job is None or job.state not in ("pending", "running"):
            return False
        job._cancel_reason = f"job {job_id} was {reason}"
        job._cancel.set()
        if job._abort is not None:
            job._abort(JobCancelled(job._cancel_reason))
        with self._admit:
            self._admit.notify_all()
        return True

    def status(self, job_id: str) -> str:
        """``pending``, ``running``, ``completed``, ``failed``, ``cancelled`` or
        ``timed_out``."""
        job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(f"unknown job {job_id!r}")
        return job.state

    def health_check(self) -> dict[str, Any]:
        """Engine health: ``status`` (healthy / degraded / unhealthy, from
        :func:`stockbatch.stats.health`), running and waiting jobs, finished jobs by status,
        and the coalescer's figures."""
        from ..stats import health

        verdict = health(self.coalescer)
        return {"status": verdict.status, "reasons": list(verdict.reasons),
                "running": self._running, "waiting": len(self._waiting),
                "finished": dict(self._finished), "coalescer": self.coalescer.stats(),
                "loop_alive": bool(self._thread and self._thread.is_alive())}

    def close(self) -> None:
        """Stop the engine's I/O loop and worker threads (running jobs finish first)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._loop is not None:
            try:  # provider calls nobody waits for any more end now, not with the process
                self.run_coroutine(_cancel_tasks(), 10)
            except (TimeoutError, RuntimeError):
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
            self._loop = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running a job -------------------------------------------------------------------
    def run(self, job: PipelineJob) -> JobResult:
        """Run ``job`` to the end and return its result. Never raises for a symbol's
        failure: see ``JobResult.symbols``.

        The job runs in a thread of its own (fetching on the engine's loop) while the caller
        waits, so that Ctrl-C reaches the caller at once: a ``KeyboardInterrupt`` cancels the
        job (the chunk being stored is committed or rolled back whole, nothing else is
        stored), waits for it to end, and is raised again; ``job.result`` then says what was
        stored. A second ``KeyboardInterrupt`` while waiting is raised at once.
        """
        self._register(job)
        done = threading.Event()
        failure: list[BaseException] = []

        def target() -> None:
            try:
                self._run_here(job)
            except BaseException as exc:  # handed to the caller's thread below
                failure.append(exc)
            finally:
                done.set()

        worker = threading.Thread(target=target, name=f"stockbatch-job-{job.job_id}",
                                  daemon=True)  # a second Ctrl-C must not wait for it
        worker.start()
        try:
            _wait(done)
        except KeyboardInterrupt:
            self.cancel(job.job_id, reason="interrupted (Ctrl-C)")
            _wait(done)
            raise
        if failure:
            raise failure[0]
        assert job.result is not None
        return job.result

    def _run_here(self, job: PipelineJob) -> JobResult:
        """The body of :meth:`run`, in the calling thread."""
        t0 = time.perf_counter()
        result = JobResult(job_id=job.job_id,
                           symbols={s: SymbolOutcome(s) for s in job.symbols})
        job.result = result
        if not self._wait_turn(job):
            return self._finish(job, result, t0, "cancelled", "cancelled before it started")
        try:
            job.state = "running"
            sink, owns_sink = self._open_sink(job)
        except Exception as exc:  # a bad URI, an unreachable database: the job cannot run
            self._leave_turn()
            for o in result.symbols.values():
                o.status, o.error = "failed", f"not run: {exc}"
            return self._finish(job, result, t0, "failed", str(exc))
        try:
            status, error = _JobRun(self, job, result, sink).run()
        finally:
            if owns_sink:
                sink.close()
            if job.owns_source:
                self.run_coroutine(job.source.aclose(), 30)
            self._leave_turn()
        return self._finish(job, result, t0, status, error)

    def _register(self, job: PipelineJob) -> None:
        if self._closed:
            raise RuntimeError("the engine is closed")
        known = self._jobs.get(job.job_id)
        if known is not None and known is not job:
            raise ValueError(f"a different job with id {job.job_id!r} is already known")
        self._jobs[job.job_id] = job

    def _wait_turn(self, job: PipelineJob) -> bool:
        with self._admit:
            self._seq += 1
            me = (job.priority, self._seq, job)
            self._waiting.append(me)
            while True:
                if job._cancel.is_set():
                    self._waiting.remove(me)
                    return False
                first = min(self._waiting, key=lambda w: w[:2])
                if self._running < self.max_concurrent_jobs and first is me:
                    self._waiting.remove(me)
                    self._running += 1
                    return True
                self._admit.wait()

    def _leave_turn(self) -> None:
        with self._admit:
            self._running -= 1
            self._admit.notify_all()

    def _finish(self, job, result, t0, status, error) -> JobResult:
        result.status, result.error = status, error
        result.total_processing_time_ms = (time.perf_counter() - t0) * 1e3
        job.state = status
        self._finished[status] = self._finished.get(status, 0) + 1
        return result

    def _open_sink(self, job: PipelineJob) -> tuple[Sink | None, bool]:
        if not job.store_data:
            return None, False
        if isinstance(job.sink, Sink):
            job.sink.check()
            return job.sink, False
        sink = connect(job.sink)
        try:
            sink.check()  # an unreachable database fails the job before anything is fetched
        except BaseException:
            sink.close()
            raise
        return sink, True

    def run_coroutine(self, coro, timeout: float | None = None) -> Any:
        """Run ``coro`` on the engine's I/O loop (where its jobs use their sources) and
        return its result; for code that calls a source directly beside the engine's jobs
        (an httpx client must stay on one loop). ``TimeoutError`` after ``timeout`` s;
        ``RuntimeError`` when called from the loop's own thread (it would wait forever)."""
        if self._thread is not None and self._thread is threading.current_thread():
            coro.close()
            raise RuntimeError("run_coroutine was called on the engine's own loop thread: "
                               "await the coroutine there instead")
        fut = self._call_soon(coro)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"no answer within {timeout:g} s") from None

    # -- the engine's I/O loop -----------------------------------------------------------
    def _call_soon(self, coro) -> concurrent.futures.Future:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def main():
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name="stockbatch-io", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _source_sem(self, source) -> asyncio.Semaphore:
        sem = self._source_sems.get(source)
        if sem is None:
            sem = self._source_sems[source] = asyncio.Semaphore(max(1, source.concurrency))
        return sem

    async def _run_call(self, co: Coalescer, source, call, bound: asyncio.Semaphore) -> None:
        """One provider call within ``bound``; every waiter is answered whatever happens."""
        try:
            async with bound:
                if call.kind == "quote":
                    value = await source.fetch_quotes(list(call.symbols))
                else:
                    value = await source.fetch_history(call.symbol, interval=call.interval,
                                                       start=call.start, end=call.end)
        except ProviderError as exc:
            co.fail(call, exc)
        except asyncio.CancelledError:
            co.fail(call, JobCancelled("the fetch was cancelled"))
            raise
        except Exception as exc:  # a bug or an unexpected library error: still an answer
            co.fail(call, ProviderError(f"{type(exc).__name__}: {exc}",
                                        provider=source.name, symbol=call.symbol))
        else:
            co.complete(call, value)


class _JobRun:
    """One run of one job: the fetch stage on the engine loop, the rest in this thread."""

    def __init__(self, engine: BatchProcessingEngine, job: PipelineJob, result: JobResult,
                 sink: Sink | None) -> None:
        self.engine, self.job, self.result, self.sink = engine, job, result, sink
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.t0 = time.perf_counter()
        self.fetched = self.stored = self.rejected = self.done = self.failed = 0
        self.tables: list[pa.Table] = []
        self.rejected_tables: list[pa.Table] = []
        self.analysis: list[pa.Table] = []
        self.dups = 0
        self.attempts = 0
        self.refused = 0
        self.task: asyncio.Task | None = None
        self.abort_reason: BaseException | None = None
        self.fetch_end: float | None = None
        if job.kind == "quotes":  # grouping limits are fixed when a Coalescer is made
            limit = max(1, job.source.max_symbols_per_call)
            self.co = Coalescer(batch_limits={(_provider(job), "quote"): limit})
        else:  # shared: concurrent jobs asking for the same bars share one call
            self.co = engine.coalescer
        self.co_before = self.co.stats()
        self.src_before = _source_counts(job.source)

    # -- fetch stage (engine loop) -------------------------------------------------------
    async def fetch(self, slots_ready: threading.Event) -> None:
        eng, job = self.engine, self.job
        loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.slots = asyncio.Semaphore(eng.slots)
        self.loop = loop
        slots_ready.set()
        provider = _provider(job)
        kind = "history" if job.kind == "bars" else "quote"
        co = self.co
        bound = (asyncio.Semaphore(job.concurrency) if job.concurrency is not None
                 else eng._source_sem(job.source))
        deadline = None if job.timeout is None else time.monotonic() + job.timeout
        reqs = [Request(kind, provider, s, job.interval if kind == "history" else None,
                        job.start_us or None, job.end_us or None, priority=job.priority,
                        deadline=deadline) for s in job.symbols]
        pending = {r.id: r for r in reqs}
        all_answered = loop.create_future()

        def answer(req, value) -> None:
            if pending.pop(req.id, None) is None:
                return
            self.inbox.put((req.symbol, value))
            if not pending and not all_answered.done():
                all_answered.set_result(None)

        def on_done(req, fut) -> None:
            if fut.cancelled():
                answer(req, self.abort_reason or JobCancelled("cancelled"))
            else:
                answer(req, fut.exception() or fut.result())

        q = BatchQueue(max(len(reqs), 1), on_expire=lambda r: answer(
            r, JobTimeout(f"not fetched before the job's timeout ({job.timeout:g} s)")))
        op = f"fetch:{job.source.name}"
        try:
            q.put_many(reqs)
            q.close()
            calls: set[asyncio.Task] = set()

            def launch() -> None:
                for call in co.take_calls():
                    t = loop.create_task(eng._run_call(co, job.source, call, bound))
                    calls.add(t)
                    t.add_done_callback(calls.discard)

            while True:
                size = eng.optimizer.recommend(op)
                try:
                    wave = await q.get_batch_async(size)
                except QueueClosed:
                    break
                futs = []
                for r in wave:
                    if self.slots.locked():
                        launch()  # what is planned must run before we wait for the store
                    await self.slots.acquire()  # backpressure: the store stage keeps up
                    fut = co.submit_async(r)
                    fut.add_done_callback(lambda f, r=r: on_done(r, f))
                    futs.append(fut)
                launch()
                t = loop.create_task(self._observe(op, futs, time.perf_counter()))
                calls.add(t)  # the loop keeps only weak references to tasks
                t.add_done_callback(calls.discard)
            if pending:
                await all_answered
        except asyncio.CancelledError:
            reason = self.abort_reason or JobCancelled("cancelled")
            for r in list(pending.values()):
                co.cancel(r)
                answer(r, reason)
        finally:
            self.inbox.put(_DONE)

    async def _observe(self, op, futs, t0) -> None:
        """Teach the optimizer how long a wave of this size took, and how it went."""
        await asyncio.wait(futs)
        errs = [f.exception() for f in futs if not f.cancelled() and f.exception()]
        self.engine.optimizer.record(op, len(futs), time.perf_counter() - t0,
                                     ok=all(isinstance(e, SymbolNotFound) for e in errs),
                                     rate_limited=any(isinstance(e, RateLimited) for e in errs))

    def abort(self, reason: BaseException) -> None:
        """Cancel the fetch stage from any thread; unanswered symbols get ``reason``."""
        self.abort_reason = reason
        task, loop = self.task, getattr(self, "loop", None)
        if task is not None and loop is not None:
            loop.call_soon_threadsafe(task.cancel)

    # -- the rest (this thread) ----------------------------------------------------------
    def run(self) -> tuple[str, str | None]:
        job, eng = self.job, self.engine
        ready = threading.Event()
        fut = eng._call_soon(self.fetch(ready))
        ready.wait()
        job._abort = self.abort
        if job._cancel.is_set():
            self.abort(JobCancelled(job._cancel_reason))
        deadline = None if job.timeout is None else time.monotonic() + job.timeout
        try:
            self.consume(deadline)
        finally:
            job._abort = None
            fut.result()  # the fetch stage has ended (it put _DONE last)
        self.collect_stats()
        if self.tables:  # each chunk is sorted; the whole is sorted once more
            whole = pa.concat_tables(self.tables)
            self.result.table = kernels.normalize(whole).table if job.kind == "bars" else whole
        elif not job.store_data:
            from ..schema import BARS, QUOTES
            self.result.table = (BARS if job.kind == "bars" else QUOTES).empty_table()
        if self.rejected_tables:
            self.result.rejected = pa.concat_tables(self.rejected_tables)
        if self.analysis:
            self.result.indicators = pa.concat_tables(self.analysis)
        if isinstance(self.abort_reason, JobTimeout):
            return "timed_out", str(self.abort_reason)
        if isinstance(self.abort_reason, JobCancelled):
            return "cancelled", str(self.abort_reason)
        return "completed", None

    def consume(self, deadline: float | None) -> None:
        """Take answers from the inbox and push them through the stages in chunks.

        A chunk is stored when it reaches ``chunk_rows`` rows; when the inbox is empty and it
        holds ``min_chunk_rows``; when its oldest answer has waited ``flush_seconds``; and
        when fetching is done. Each answer's hand-off slot is freed once it is taken (in
        batches, and always before this thread waits), so fetching never waits on a chunk
        that waits on fetching, whatever the answer sizes.
        """
        eng = self.engine
        chunk: list[tuple[str, pa.RecordBatch]] = []
        rows = 0
        since = 0.0  # when the chunk's oldest answer arrived
        taken = 0  # answers taken whose slots are not yet freed
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                if taken:
                    self.loop.call_soon_threadsafe(_release, self.slots, taken)
                    taken = 0
                waited = time.monotonic() - since
                if chunk and (rows >= eng.min_chunk_rows or waited >= eng.flush_seconds):
                    self.flush(chunk)
                    chunk, rows = [], 0
                    continue
                item = self._get(deadline, max(0.0, eng.flush_seconds - waited) if chunk else None)
                if item is None:  # the chunk's time is up
                    continue
            if item is _DONE:
                self.fetch_end = time.perf_counter()
                break
            taken += 1
            if taken >= 64:
                self.loop.call_soon_threadsafe(_release, self.slots, taken)
                taken = 0
            if not chunk:
                since = time.monotonic()
            rows += self.accept(item, chunk)
            if rows >= eng.chunk_rows:
                self.flush(chunk)
                chunk, rows = [], 0
        if chunk:
            self.flush(chunk)

    def flush(self, chunk: list[tuple[str, pa.RecordBatch]]) -> None:
        """Store a chunk, or, once the job is cancelled, report its symbols not stored."""
        if isinstance(self.abort_reason, JobCancelled):
            for symbol, _ in chunk:
                o = self.result.symbols[symbol]
                o.status, o.error = "cancelled", "cancelled before it was stored"
                self.done += 1
                self.failed += 1
        else:
            self.process(chunk)
        self.progress("store")

    def _get(self, deadline: float | None, wait: float | None) -> Any:
        """The next inbox item, waiting at most ``wait`` seconds (None: as long as it takes;
        returns None when the wait is over). Past the job's deadline, abort with JobTimeout
        and keep taking what the aborted fetch stage still hands over."""
        while True:
            limit = wait
            if deadline is not None and self.abort_reason is None:
                left = max(0.0, deadline - time.monotonic())
                limit = left if limit is None else min(limit, left)
            try:
                return self.inbox.get(timeout=limit) if limit is not None else self.inbox.get()
            except queue.Empty:
                if deadline is not None and self.abort_reason is None \
                        and time.monotonic() >= deadline:
                    self.abort(JobTimeout(f"job {self.job.job_id} timed out after "
                                          f"{self.job.timeout:g} s"))
                    continue
                return None

    def accept(self, item, chunk) -> int:
        """Record one symbol's answer; add its bars to the chunk. Returns rows added."""
        symbol, value = item
        outcome = self.result.symbols.setdefault(symbol, SymbolOutcome(symbol))
        if isinstance(value, BaseException):
            outcome.status = "cancelled" if isinstance(value, JobCancelled) else "failed"
            outcome.error = f"{type(value).__name__}: {value}"
            outcome.exception = value
            self.failed += 1
            self.done += 1
            self.progress("fetch")
            return 0
        n = value.num_rows
        self.fetched += n
        st = self.result.stages["fetch"]
        st.rows_out += n
        if n == 0:
            outcome.status = "empty"
            self.done += 1
            n = 0
        else:
            chunk.append((symbol, value))
        self.progress("fetch")
        return n

    def process(self, chunk: list[tuple[str, pa.RecordBatch]]) -> None:
        job, stages = self.job, self.result.stages
        symbols = [s for s, _ in chunk]
        t = time.perf_counter()
        table = pa.Table.from_batches([b.replace_schema_metadata(None) for _, b in chunk])
        rows_in = table.num_rows
        if job.kind == "bars":
            norm = kernels.normalize(table)
            table, self.dups = norm.table, self.dups + norm.duplicates_dropped
        _add(stages["transform"], rows_in, table.num_rows, 0, time.perf_counter() - t)

        t = time.perf_counter()
        rows_in = table.num_rows
        rejected = None
        if job.kind == "bars" and job.validate:
            report = kernels.validate(table, spike_threshold=job.spike_threshold)
            if report.n_rejected:
                table, rejected = report.valid, report.rejected
        n_rej = 0 if rejected is None else rejected.num_rows
        _add(stages["validate"], rows_in, table.num_rows, n_rej, time.perf_counter() - t)

        t = time.perf_counter()
        error, stored = self.store(table, rejected)
        refused = stored.rejected if stored is not None else 0
        by_symbol = stored.refused_by_symbol if stored is not None else {}
        _add(stages["store"], table.num_rows + n_rej,
             0 if error else table.num_rows - refused, n_rej + refused, time.perf_counter() - t)
        valid_counts = _counts(table)
        rej_counts = _counts(rejected)
        for s in symbols:
            o = self.result.symbols[s]
            self.done += 1
            if error is not None:
                o.status, o.error, o.exception = "failed", f"SinkError: {error}", error
                self.failed += 1
                continue
            # the database's truth: rows it refused are quarantined, not stored
            o.refused = by_symbol.get(s, 0)
            o.rows = valid_counts.get(s, 0) - o.refused
            o.quarantined = rej_counts.get(s, 0) + o.refused
            o.status = "refused" if o.refused and not o.rows else "stored"
            if o.refused:
                o.error = (f"the database refused {o.refused} of its rows: "
                           f"{stored.refused_errors.get(s, '')}")
                self.failed += o.status == "refused"
        if error is None:
            self.refused += refused
            self.stored += table.num_rows - refused
            self.rejected += n_rej + refused
            if not job.store_data:  # nothing is stored: the rows travel in the result
                self.tables.append(table)
                if rejected is not None:
                    self.rejected_tables.append(rejected)
            if job.indicators and table.num_rows:
                self.analyze(table)

    def store(self, table: pa.Table, rejected: pa.Table | None
              ) -> tuple[SinkError | None, IngestResult | None]:
        """Write a chunk and its rejected rows in one transaction; retry, and on the last
        try bisect so that only the rows the database refuses are quarantined (with its
        error). Returns the error when the chunk could not be stored, else what the sink
        did (None for a job without storage)."""
        job, sink, eng = self.job, self.sink, self.engine
        if sink is None:
            return None, None
        mode = "create_append" if job.mode == "append" else job.mode
        error = None
        for attempt in range(1, eng.store_attempts + 1):
            self.attempts += 1
            split = attempt == eng.store_attempts and attempt > 1
            try:
                return None, sink.ingest(
                    table, table=job.table, kind=job.kind, mode=mode,
                    on_error="split" if split else "raise", job_id=job.job_id,
                    source=job.source.name,
                    quarantine=rejected if rejected is not None and rejected.num_rows else None)
            except SinkError as exc:
                error = exc
                if mode == "create":  # a second try would find the table it made
                    break
        return error, None

    def analyze(self, table: pa.Table) -> None:
        from ..indicators import compute

        t = time.perf_counter()
        out = compute(table, list(self.job.indicators))
        keep = list(_KEY_COLS) + out.schema.names[table.num_columns:]
        self.analysis.append(out.select(keep))
        _add(self.result.stages["analyze"], table.num_rows, table.num_rows, 0,
             time.perf_counter() - t)

    def progress(self, stage: str) -> None:
        cb = self.job.on_progress
        if cb is None:
            return
        cb(Progress(job_id=self.job.job_id, symbols_total=len(self.job.symbols),
                    symbols_done=self.done, symbols_failed=self.failed,
                    rows_fetched=self.fetched, rows_stored=self.stored,
                    rows_rejected=self.rejected, stage=stage,
                    elapsed_s=time.perf_counter() - self.t0))

    def collect_stats(self) -> None:
        now = _source_counts(self.job.source)
        src = {k: v - self.src_before.get(k, 0) for k, v in now.items()}
        co = {k: v - self.co_before[k] for k, v in self.co.stats().items()
              if isinstance(v, int)}
        n = len(self.job.symbols)
        calls = src["requests"]
        lookups = src["cache_hits"] + calls
        fetch = self.result.stages["fetch"]
        fetch.rows_in = n
        fetch.seconds = (self.fetch_end or time.perf_counter()) - self.t0  # wall, overlapped
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.result.stats.update({
            "requests": n,
            "provider_calls": calls,
            "calls_saved_by_coalescing": co["requests_in"] - co["calls_out"],
            "cache_hits": src["cache_hits"],
            "calls_saved_by_cache": src["saved_calls"],
            "cache_hit_rate": src["cache_hits"] / lookups if lookups else 0.0,
            "retries": src["retries"],
            "rate_limited": src["rate_limited"],
            "error_rate": self.failed / n if n else 0.0,
            "duplicates_dropped": self.dups,
            "store_attempts": self.attempts,
            "rows_refused_by_db": self.refused,
            "peak_rss_mb": peak / (1024 * 1024 if sys.platform == "darwin" else 1024),
            "batch_size": self.engine.optimizer.recommend(f"fetch:{self.job.source.name}"),
        })


def _provider(job: PipelineJob) -> str:
    """The Request provider: one per source instance (two differently configured sources of
    one provider must not share fetches)."""
    return f"{job.source.name}#{id(job.source):x}"


def _source_counts(source) -> dict[str, int]:
    """Integer counters of a source; a failover source's calls are its members' calls."""
    counts: dict[str, int] = {}
    for src in [source, *getattr(source, "sources", ())]:
        for k, v in src.stats.as_dict().items():
            if isinstance(v, int):
                counts[k] = counts.get(k, 0) + v
    return counts


def _wait(event: threading.Event) -> None:
    """Wait for ``event`` in short steps: a signal that the OS hands to another thread only
    raises in the main thread once it runs Python code again, so it must wake up often."""
    while not event.wait(0.05):
        pass


async def _cancel_tasks() -> None:
    """Cancel every other task of the running loop and wait for them to end."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _release(sem: asyncio.Semaphore, n: int) -> None:
    for _ in range(n):
        sem.release()


def _add(st, rows_in: int, rows_out: int, rejected: int, seconds: float) -> None:
    st.rows_in += rows_in
    st.rows_out += rows_out
    st.rejected += rejected
    st.seconds += seconds


def _counts(table: pa.Table | None) -> dict[str, int]:
    if table is None or table.num_rows == 0:
        return {}
    vc = pc.value_counts(table.column("symbol").combine_chunks())
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))
