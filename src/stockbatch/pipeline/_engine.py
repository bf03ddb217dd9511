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
import os
import queue
import resource
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

from .. import _kernels as kernels
from .._errors import JobCancelled, JobTimeout
from ..alerts import Alert, AlertMonitor, Thresholds
from ..queueing import BatchOptimizer, Coalescer
from ..sinks import Sink, connect
from ..sinks._meta import with_carried
from ..sources import Source
from ._admission import Admission
from ._fetch import FetchStage, provider_key
from ._job import (
    PipelineJob,
    check_interval,
    check_table_name,
    clean_symbols,
    provider_symbols,
    resolve_source,
    resolve_window,
)
from ._loop import IOLoop
from ._result import JobResult, Progress, SymbolOutcome
from ._stages import ChunkStages

__all__ = ["BatchProcessingEngine"]


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

    def __init__(
        self,
        *,
        max_concurrent_jobs: int = 4,
        slots: int = 256,
        chunk_rows: int = 65_536,
        min_chunk_rows: int = 16_384,
        flush_seconds: float = 1.0,
        store_attempts: int = 3,
        coalescer: Coalescer | None = None,
        optimizer: BatchOptimizer | None = None,
        alert_thresholds: Thresholds | None = None,
    ) -> None:
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
        self.alerts = AlertMonitor(alert_thresholds)  # see stockbatch.alerts
        self._jobs: dict[str, PipelineJob] = {}
        self._admission = Admission(max_concurrent_jobs)
        self._io = IOLoop()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._source_sems: weakref.WeakKeyDictionary[Source, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._closed = False
        self._finished = {"completed": 0, "failed": 0, "cancelled": 0, "timed_out": 0}

    def on_alert(self, callback: Callable[[Alert], Any]) -> Callable[[Alert], Any]:
        """Call ``callback(alert)`` when a threshold of ``alert_thresholds`` is crossed and
        when it recovers (one :class:`~stockbatch.alerts.Alert` per edge of an episode, also
        logged once); see :mod:`stockbatch.alerts`. Returns ``callback`` (a decorator)."""
        return self.alerts.subscribe(callback)

    # -- jobs ----------------------------------------------------------------------------
    def create_stock_data_pipeline_job(
        self,
        symbols: Iterable[str] | str,
        *,
        source: Any = None,
        base_url: str | None = None,
        sink: Sink | str | os.PathLike[str] | None = None,
        include_historical: bool = True,
        store_data: bool = True,
        interval: str = "1d",
        period: str | None = None,
        start: Any = None,
        end: Any = None,
        mode: str = "upsert",
        table: str | None = None,
        indicators: Iterable[str] | str | None = None,
        validate: bool = True,
        spike_threshold: float | None = None,
        priority: int = 3,
        timeout: float | None = None,
        on_progress: Callable[[Progress], Any] | None = None,
        job_id: str | None = None,
        concurrency: int | None = None,
    ) -> PipelineJob:
        """Describe a job (nothing runs yet).

        Parameters
        ----------
        symbols : str or iterable of str
            Provider symbols, in the provider's spelling (``source.normalize_symbol``:
            Yahoo upper-cases, so ``aapl`` is ``AAPL``); duplicates are dropped, order kept.
            A symbol the provider cannot have (``XYZ/../GOOD``, ``A?b=c``) fails with the
            rule it breaks; the others run.
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
        raw = clean_symbols(symbols)
        if concurrency is not None and concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if table is not None:
            check_table_name(table, sink)
        src, owned = resolve_source(source, base_url=base_url)
        if include_historical:
            check_interval(src, interval)
        syms, invalid = provider_symbols(src, raw)
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
            symbols=syms,
            source=src,
            sink=sink if store_data else None,
            kind="bars" if include_historical else "quotes",
            interval=interval,
            start_us=start_us,
            end_us=end_us,
            store_data=store_data,
            mode=mode,
            table=table,
            indicators=specs,
            validate=validate,
            spike_threshold=spike_threshold,
            priority=priority,
            timeout=timeout,
            on_progress=on_progress,
            job_id=job_id or "",
            owns_source=owned,
            concurrency=concurrency,
            invalid=invalid,
        )
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
                    max_workers=self.max_concurrent_jobs * 2, thread_name_prefix="stockbatch-job"
                )
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
        self._admission.wake()
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
        return {
            "status": verdict.status,
            "reasons": list(verdict.reasons),
            "running": self._admission.running,
            "waiting": self._admission.waiting,
            "finished": dict(self._finished),
            "coalescer": self.coalescer.stats(),
            "loop_alive": self._io.alive,
        }

    def close(self) -> None:
        """Stop the engine's I/O loop and worker threads (running jobs finish first)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._io.close()

    def __enter__(self) -> BatchProcessingEngine:
        return self

    def __exit__(self, *exc: object) -> None:
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
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
                failure.append(exc)
            finally:
                done.set()

        worker = threading.Thread(
            target=target, name=f"stockbatch-job-{job.job_id}", daemon=True
        )  # a second Ctrl-C must not wait for it
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

    def run_coroutine(self, coro: Any, timeout: float | None = None) -> Any:
        """Run ``coro`` on the engine's I/O loop (where its jobs use their sources) and
        return its result; for code that calls a source directly beside the engine's jobs
        (an HTTP client must stay on one loop). ``TimeoutError`` after ``timeout`` s;
        ``RuntimeError`` when called from the loop's own thread (it would wait forever)."""
        return self._io.run(coro, timeout)

    def _run_here(self, job: PipelineJob) -> JobResult:
        """The body of :meth:`run`, in the calling thread."""
        t0 = time.perf_counter()
        result = JobResult(job_id=job.job_id, symbols={s: SymbolOutcome(s) for s in job.symbols})
        for s, why in job.invalid.items():  # refused when the job was made
            result.symbols[s] = SymbolOutcome(s, status="failed", error=f"invalid symbol: {why}")
        job.result = result
        if not self._admission.enter(job.priority, job._cancel.is_set):
            return self._finish(job, result, t0, "cancelled", "cancelled before it started")
        try:
            job.state = "running"
            sink, owns_sink = self._open_sink(job)
        except Exception as exc:  # noqa: BLE001 - a bad URI, an unreachable database: the job cannot run
            self._admission.leave()
            for o in result.symbols.values():
                o.status, o.error, o.exception = "failed", f"not run: {exc}", exc
            return self._finish(job, result, t0, "failed", str(exc))
        try:
            status, error = _JobRun(self, job, result, sink).run()
        finally:
            if owns_sink and sink is not None:
                sink.close()
            if job.owns_source:
                self.run_coroutine(job.source.aclose(), 30)
            self._admission.leave()
        return self._finish(job, result, t0, status, error)

    def _register(self, job: PipelineJob) -> None:
        if self._closed:
            raise RuntimeError("the engine is closed")
        known = self._jobs.get(job.job_id)
        if known is not None and known is not job:
            raise ValueError(f"a different job with id {job.job_id!r} is already known")
        self._jobs[job.job_id] = job

    def _finish(
        self, job: PipelineJob, result: JobResult, t0: float, status: str, error: str | None
    ) -> JobResult:
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
        assert job.sink is not None  # a storing job always has one (the default file)
        sink = connect(job.sink)
        try:
            if job.table is not None:
                sink.check_table(job.table)  # this database's rules (temporary schemas)
            sink.check()  # an unreachable database fails the job before anything is fetched
        except BaseException:
            sink.close()
            raise
        return sink, True

    def _bound(self, job: PipelineJob) -> asyncio.Semaphore:
        """Provider calls in flight: the job's own bound, or its source's (shared by every
        job using that source)."""
        if job.concurrency is not None:
            return asyncio.Semaphore(job.concurrency)
        with self._lock:
            sem = self._source_sems.get(job.source)
            if sem is None:
                sem = self._source_sems[job.source] = asyncio.Semaphore(
                    max(1, job.source.concurrency)
                )
            return sem


class _JobRun:
    """One run of one job: its fetch stage on the engine's loop, its chunk stages in this
    thread, and the result they make together."""

    def __init__(
        self, engine: BatchProcessingEngine, job: PipelineJob, result: JobResult, sink: Sink | None
    ) -> None:
        self.engine, self.job, self.result = engine, job, result
        if job.kind == "quotes":  # grouping limits are fixed when a Coalescer is made
            limit = max(1, job.source.max_symbols_per_call)
            self.co = Coalescer(batch_limits={(provider_key(job), "quote"): limit})
        else:  # shared: concurrent jobs asking for the same bars share one call
            self.co = engine.coalescer
        self.co_before = self.co.stats()
        self.src_before = _source_counts(job.source)
        self.fetch = FetchStage(
            job,
            queue.SimpleQueue(),
            coalescer=self.co,
            optimizer=engine.optimizer,
            bound=engine._bound(job),
            slots=engine.slots,
            observe=engine.alerts.observe_call,
        )
        self.stages = ChunkStages(
            job,
            result,
            sink,
            self.fetch,
            chunk_rows=engine.chunk_rows,
            min_chunk_rows=engine.min_chunk_rows,
            flush_seconds=engine.flush_seconds,
            store_attempts=engine.store_attempts,
        )

    def run(self) -> tuple[str, str | None]:
        job, fetch, stages = self.job, self.fetch, self.stages
        fetching = fetch.start(self.engine._io)
        job._abort = fetch.abort
        if job._cancel.is_set():
            fetch.abort(JobCancelled(job._cancel_reason))
        deadline = None if job.timeout is None else time.monotonic() + job.timeout
        alerts = self.engine.alerts
        seen = len(alerts.history)
        try:
            with alerts.watch(job.source, fetch.fill):
                stages.prepare()
                stages.consume(deadline)
        except BaseException as exc:
            # nobody takes answers any more: stop the fetch (it may wait for hand-off slots)
            fetch.abort(JobCancelled(f"the job failed: {type(exc).__name__}"))
            raise
        finally:
            job._abort = None
            fetching.result()  # the fetch stage has ended (it put DONE last)
        self.collect_stats()
        self.result.stats["alerts"] = [a.to_dict() for a in alerts.history[seen:]]
        if stages.tables:  # each chunk is sorted; the whole is sorted once more
            whole = pa.concat_tables(stages.tables)
            if job.kind == "bars":
                whole = with_carried(kernels.normalize(whole).table, stages.meta)
            self.result.table = whole
        elif not job.store_data:
            from ..schema import BARS, QUOTES

            self.result.table = (BARS if job.kind == "bars" else QUOTES).empty_table()
        if stages.rejected_tables:
            self.result.rejected = pa.concat_tables(stages.rejected_tables)
        if stages.analysis:
            self.result.indicators = pa.concat_tables(stages.analysis)
        if isinstance(fetch.abort_reason, JobTimeout):
            return "timed_out", str(fetch.abort_reason)
        if isinstance(fetch.abort_reason, JobCancelled):
            return "cancelled", str(fetch.abort_reason)
        return "completed", None

    def collect_stats(self) -> None:
        job, st = self.job, self.stages
        now = _source_counts(job.source)
        src = {k: v - self.src_before.get(k, 0) for k, v in now.items()}
        co = {k: v - self.co_before[k] for k, v in self.co.stats().items() if isinstance(v, int)}
        n = len(job.symbols)
        calls = src["requests"]
        lookups = src["cache_hits"] + calls
        fetch = self.result.stages["fetch"]
        fetch.rows_in = n
        fetch.seconds = (st.fetch_end or time.perf_counter()) - st.t0  # wall, overlapped
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.result.stats.update(
            {
                "requests": n,
                "provider_calls": calls,
                "calls_saved_by_coalescing": co["requests_in"] - co["calls_out"],
                "cache_hits": src["cache_hits"],
                "calls_saved_by_cache": src["saved_calls"],
                "cache_hit_rate": src["cache_hits"] / lookups if lookups else 0.0,
                "retries": src["retries"],
                "rate_limited": src["rate_limited"],
                "error_rate": (
                    len(self.result.failed_symbols) / len(self.result.symbols)
                    if self.result.symbols
                    else 0.0
                ),
                "duplicates_dropped": st.dups,
                "store_attempts": st.attempts,
                "rows_refused_by_db": st.refused,
                "out_of_window": st.out_of_window,
                "peak_rss_mb": peak / (1024 * 1024 if sys.platform == "darwin" else 1024),
                "batch_size": self.engine.optimizer.recommend(f"fetch:{job.source.name}"),
            }
        )


def _source_counts(source: Source) -> dict[str, int]:
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
