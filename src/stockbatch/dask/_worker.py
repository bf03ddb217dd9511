"""Worker side: one engine and one sink per database for the worker process's lifetime, and
the task that runs one shard as one engine job on them."""

from __future__ import annotations

import atexit
import dataclasses
import pickle
import threading
import time
from typing import Any

from ..pipeline import BatchProcessingEngine, JobResult, Progress, SymbolOutcome
from ..pipeline._job import resolve_source
from ..sinks import Sink, connect
from ._limit import LimitSpec, install

__all__ = ["run_shard", "worker_state"]

PROGRESS_EVERY = 0.25  # seconds between a shard's progress events (and one when it ends)


class _WorkerState:
    """What a worker process keeps between tasks: one engine, one sink per database URI
    (each sink holds its own connection pool). Closed when the process exits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: BatchProcessingEngine | None = None
        self.sinks: dict[str, Sink] = {}
        self.shards_run = 0

    def engine(self, jobs: int) -> BatchProcessingEngine:
        with self._lock:
            if self._engine is None:
                self._engine = BatchProcessingEngine(max_concurrent_jobs=max(1, jobs))
            return self._engine

    def sink(self, uri: str) -> Sink:
        with self._lock:
            sink = self.sinks.get(uri)
            if sink is None:
                sink = self.sinks[uri] = connect(uri)
            return sink

    def close(self) -> None:
        with self._lock:
            sinks, self.sinks = list(self.sinks.values()), {}
            engine, self._engine = self._engine, None
        for sink in sinks:
            sink.close()
        if engine is not None:
            engine.close()


_STATE: _WorkerState | None = None
_STATE_LOCK = threading.Lock()


def worker_state() -> _WorkerState:
    """This process's engine and sinks (made on first use)."""
    global _STATE
    with _STATE_LOCK:
        if _STATE is None:
            _STATE = _WorkerState()
            atexit.register(_STATE.close)
        return _STATE


def run_shard(
    index: int,
    symbols: list[str],
    options: dict[str, Any],
    db: str,
    limit: LimitSpec | None,
    topic: str,
    job_id: str,
    deadline: float | None,
) -> JobResult:
    """One shard as one engine job on this worker; its :class:`JobResult` (exceptions that
    cannot cross processes are dropped, their text stays in ``error``)."""
    from distributed import get_client, get_worker

    worker = get_worker()
    state = worker_state()
    state.shards_run += 1
    t0 = time.perf_counter()
    _event(worker, topic, {"kind": "start", "shard": index, "worker": worker.address})
    shard_id = f"{job_id}.{index}"
    options = dict(options)
    source, owned = None, False
    try:
        if deadline is not None:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("the job's timeout passed before this shard started")
            options["timeout"] = left
        engine = state.engine(worker.state.nthreads)
        sink = state.sink(db)
        # a Source given by the caller arrives as this task's own copy: closed after it too
        source, _ = resolve_source(options.pop("source"), base_url=options.pop("base_url"))
        owned = True
        if limit is not None:
            install(source, limit, get_client())
        job = engine.create_stock_data_pipeline_job(
            symbols,
            source=source,
            sink=sink,
            job_id=shard_id,
            on_progress=_reporter(worker, topic, index),
            **options,
        )
    except Exception as exc:  # noqa: BLE001 - an unreachable database, a closed cluster: the shard fails
        if owned and source is not None:
            _close_source(state, source)
        result = JobResult(job_id=shard_id, status="failed", error=f"not run: {exc}")
        for s in symbols:
            result.symbols[s] = SymbolOutcome(s, status="failed", error=f"not run: {exc}")
        result.total_processing_time_ms = (time.perf_counter() - t0) * 1e3
        return _portable(result)
    try:
        result = engine.run(job)
    finally:
        if owned:
            _close_source(state, source)
    return _portable(result)


def _close_source(state: _WorkerState, source: Any) -> None:
    state.engine(1).run_coroutine(source.aclose(), 30)


def _reporter(worker: Any, topic: str, index: int) -> Any:
    last = [0.0]

    def report(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_EVERY and p.symbols_done < p.symbols_total:
            return
        last[0] = now
        _event(
            worker,
            topic,
            {
                "kind": "progress",
                "shard": index,
                "worker": worker.address,
                "progress": dataclasses.asdict(p),
            },
        )

    return report


def _event(worker: Any, topic: str, msg: dict[str, Any]) -> None:
    try:
        worker.log_event(topic, msg)
    except Exception:  # noqa: BLE001 - progress is best effort, never a shard's failure
        pass


def _portable(result: JobResult) -> JobResult:
    """Drop exceptions that would not survive pickling (the text is in ``error``)."""
    for outcome in result.symbols.values():
        if outcome.exception is not None:
            try:
                pickle.loads(pickle.dumps(outcome.exception))
            except Exception:  # noqa: BLE001 - any failure to round-trip
                outcome.exception = None
    return result
