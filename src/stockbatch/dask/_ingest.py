"""Client side of :func:`ingest`: check the options, cut the symbols into shards, run one
engine job per shard on the workers, and merge their results into one :class:`JobResult`."""

from __future__ import annotations

import math
import os
import queue
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

from .._errors import SinkError
from ..pipeline import STAGES, BatchProcessingEngine, JobResult, Progress, SymbolOutcome
from ..sinks import Sink, connect
from ._limit import TokenMinter
from ._worker import run_shard

__all__ = ["ingest", "merge"]

#: Loopback sources are not limited (the engine gives them rate 1e9); at or above this rate a
#: source counts as unlimited and no cluster bucket is made.
UNLIMITED = 1e6


def ingest(
    symbols: Iterable[str] | str,
    *,
    client: Any,
    db: str | os.PathLike,
    source: Any = None,
    base_url: str | None = None,
    interval: str = "1d",
    period: str | None = None,
    start: Any = None,
    end: Any = None,
    mode: str = "upsert",
    table: str | None = None,
    indicators: Iterable[str] | str | None = None,
    validate: bool = True,
    spike_threshold: float | None = None,
    on_progress: Callable[[Progress], Any] | None = None,
    job_id: str | None = None,
    timeout: float | None = None,
    concurrency: int | None = None,
    shard_size: int | None = None,
    rate: float | None = None,
    burst: int | None = None,
) -> JobResult:
    """:func:`stockbatch.ingest` on a Dask cluster: the same options, the same
    :class:`~stockbatch.JobResult`, one engine job per shard of symbols on the workers.

    Parameters
    ----------
    client : distributed.Client
        The cluster to run on (``Client("tcp://scheduler:8786")`` or a ``LocalCluster``'s).
    db : URI
        Where every worker stores (``postgresql://…``, ``duckdb:///…``, …). Each worker opens
        it once and keeps it (one connection pool per worker) for the worker's lifetime. An
        open :class:`~stockbatch.sinks.Sink` cannot cross processes: give its URI.
    shard_size : int, optional
        Symbols per shard (one task, one engine job). Default: the symbols spread over four
        shards per worker thread, at most 500 per shard, so a lost worker costs little and
        the last shards do not hold the job up.
    rate, burst : optional
        Provider calls per second for the **whole cluster**, and how many may go out back to
        back. Default: the source's own rate and burst (Yahoo 50/s); none for a source on
        loopback. Every worker takes its tokens from one bucket on the scheduler, and a 429
        seen by one worker pauses them all (see :mod:`stockbatch.dask._limit`).
    on_progress : callable, optional
        Called in the calling thread with a :class:`~stockbatch.pipeline.Progress` for the
        whole job (the sum over shards) as the workers report.
    mode : str
        As :func:`stockbatch.ingest`'s, with the tables made once before the shards run:
        ``replace`` drops the table first and the shards upsert into the new one;
        ``create`` is refused (each shard would create the table). A shard run again after
        its worker died is exact with ``upsert`` (default), ``insert_new`` and ``replace``;
        with ``append`` its rows stored before the worker died are refused the second time.
    Other options
        Those of :func:`stockbatch.ingest`; ``concurrency`` is per worker.

    Returns
    -------
    JobResult
        Per-symbol outcomes of every shard; ``stages`` summed over shards (``seconds`` is
        worker time); ``stats`` summed (rates recomputed, ``peak_rss_mb`` the largest
        worker's) plus ``shards``, ``shard_attempts`` (more than ``shards`` when a lost worker's
        shard ran again) and ``workers``. ``status`` is ``failed`` only when every shard
        failed; a shard that could not run (its worker could not reach the database) fails
        its own symbols, with the reason.

    Raises
    ------
    ValueError, TypeError
        Bad options, before anything is sent to the cluster.
    """
    t0 = time.perf_counter()
    if isinstance(db, Sink):
        raise TypeError("db must be a URI (an open Sink cannot cross to the workers)")
    db = os.fspath(db)
    if shard_size is not None and shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    if rate is not None and not rate > 0:
        raise ValueError("rate must be positive")
    if burst is not None and burst < 1:
        raise ValueError("burst must be at least 1")
    job_id = job_id or f"dask-{uuid.uuid4().hex[:12]}"
    # what every shard is given as it is (the rest is settled once, below)
    shared: dict[str, Any] = dict(
        source=source,
        base_url=base_url,
        interval=interval,
        table=table,
        validate=validate,
        spike_threshold=spike_threshold,
        concurrency=concurrency,
    )
    # the options are checked here, once, exactly as sb.ingest checks them
    with BatchProcessingEngine(max_concurrent_jobs=1) as engine:
        job = engine.create_stock_data_pipeline_job(
            symbols,
            sink=db,
            period=period,
            start=start,
            end=end,
            mode=mode,
            indicators=indicators,
            timeout=timeout,
            job_id=job_id,
            **shared,
        )
        limit_rate, limit_burst = _source_limit(job.source)
        if job.owns_source:
            engine.run_coroutine(job.source.aclose(), 30)
    try:
        shard_mode = _prepare(db, table, mode)
    except SinkError as exc:  # the database cannot be reached from here: as sb.ingest does
        return _not_run(job_id, [*job.symbols, *job.invalid], exc, t0)
    rate = rate if rate is not None else limit_rate
    burst = (
        burst
        if burst is not None
        else (limit_burst if rate == limit_rate else max(1, int(rate or 1)))
    )
    # every shard asks for the same window, whatever the time it starts
    options = dict(
        shared,
        start=job.start_us / 1e6,
        end=job.end_us / 1e6,
        mode=shard_mode,
        indicators=list(job.indicators),
    )
    syms = list(job.symbols)
    shards = _shards(syms, shard_size, _threads(client))
    topic = f"stockbatch-{job_id}"
    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    client.subscribe_topic(topic, events.put)
    minter = (
        TokenMinter(client, f"stockbatch-{job_id}", rate, burst or 1)
        if rate is not None and rate < UNLIMITED
        else None
    )
    deadline = None if timeout is None else time.time() + timeout
    submitted: list[Any] = []
    try:

        def submit(i: int, attempt: int) -> Any:
            fut = client.submit(
                run_shard,
                i,
                shards[i],
                options,
                db,
                minter.spec if minter else None,
                topic,
                job_id,
                deadline,
                key=f"stockbatch-shard-{job_id}-{i}-{attempt}",
                pure=False,
            )
            submitted.append(fut)
            return fut

        watch = _Watch(job_id, len(syms) + len(job.invalid), t0, on_progress)
        watch.shards = shards
        results = _gather(submit, len(shards), events, watch, job_id)
    finally:
        # Forget the shards' results on the cluster now (not when the garbage collector gets
        # to the futures): a result still held when its worker dies would be computed again.
        for fut in submitted:
            fut.release()
        if minter is not None:
            minter.close()
        try:
            client.unsubscribe_topic(topic)
        except Exception:  # noqa: BLE001 - the client is already closed
            pass
    merged = merge(job_id, results, shards)
    for s, why in job.invalid.items():  # refused when the job was made, as sb.ingest does
        merged.symbols[s] = SymbolOutcome(s, status="failed", error=f"invalid symbol: {why}")
    merged.symbols = {
        s: merged.symbols[s]
        for s in [*syms, *job.invalid]  # sb.ingest's order
        if s in merged.symbols
    }
    _rates(merged)
    merged.stats.update(shards=len(shards), shard_attempts=watch.starts, workers=len(watch.workers))
    if minter is not None:
        merged.stats.update(cluster_rate=rate, cluster_paused_s=round(minter.paused_s, 3))
    merged.total_processing_time_ms = (time.perf_counter() - t0) * 1e3
    return merged


def _prepare(db: str, table: str | None, mode: str) -> str:
    """Make the tables once, here, before any shard runs (workers creating one table at the
    same moment race in the database's catalog); return the mode the shards run in.

    ``replace`` drops the table here and the shards upsert into the new one (so a shard run
    again changes nothing); ``create`` cannot be split into shards."""
    if mode == "create":
        raise ValueError(
            "mode 'create' cannot be split into shards (each would create the "
            "table): use 'create_append' (create it if missing) or 'replace'"
        )
    with connect(db, tables={"bars": table} if table else None) as sink:
        if mode == "replace":
            sink.drop_table(sink.tables["bars"])
        sink.ensure_tables("bars", "quarantine", "ingest_log")
    return {"replace": "upsert", "create_append": "append"}.get(mode, mode)


def _not_run(job_id: str, symbols: list[str], exc: BaseException, t0: float) -> JobResult:
    result = JobResult(job_id=job_id, status="failed", error=str(exc))
    for s in symbols:
        result.symbols[s] = SymbolOutcome(
            s, status="failed", error=f"not run: {exc}", exception=exc
        )
    result.total_processing_time_ms = (time.perf_counter() - t0) * 1e3
    return result


def _source_limit(source: Any) -> tuple[float | None, int | None]:
    """The smallest finite rate (and its burst) of ``source`` or its failover members."""
    best: tuple[float | None, int | None] = (None, None)
    for src in [source, *getattr(source, "sources", ())]:
        limiter = getattr(src, "limiter", None)
        r = getattr(limiter, "rate", None)
        if r is not None and r < UNLIMITED and (best[0] is None or r < best[0]):
            best = (float(r), int(getattr(limiter, "burst", 1)))
    return best


def _threads(client: Any) -> int:
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001 - an unusual client: assume one
        return 1


def _shards(symbols: list[str], size: int | None, threads: int) -> list[list[str]]:
    if not symbols:
        return []
    if size is None:
        size = min(500, max(1, math.ceil(len(symbols) / (4 * threads))))
    return [symbols[i : i + size] for i in range(0, len(symbols), size)]


class _Watch:
    """The cluster's progress: the latest snapshot of each shard, summed."""

    def __init__(
        self, job_id: str, total: int, t0: float, callback: Callable[[Progress], Any] | None
    ) -> None:
        self.job_id, self.total, self.t0, self.callback = job_id, total, t0, callback
        self.shards: list[list[str]] = []
        self.latest: dict[int, dict[str, Any]] = {}
        self.starts = 0
        self.workers: set[str] = set()

    def take(self, event: Any) -> bool:
        _, msg = event
        self.workers.add(msg.get("worker", ""))
        if msg.get("kind") == "start":
            self.starts += 1
            self.latest.pop(msg["shard"], None)  # a shard run again starts from nothing
            return False
        self.latest[msg["shard"]] = msg["progress"]
        return True

    def report(self, stage: str | None = None) -> None:
        if self.callback is None:
            return
        snaps = list(self.latest.values())
        if stage is None:
            stage = "store" if any(p.get("stage") == "store" for p in snaps) else "fetch"
        keys = ("symbols_done", "symbols_failed", "rows_fetched", "rows_stored", "rows_rejected")
        sums = {k: sum(int(p[k]) for p in snaps) for k in keys}
        self.callback(
            Progress(
                job_id=self.job_id,
                symbols_total=self.total,
                stage=stage,
                elapsed_s=time.perf_counter() - self.t0,
                **sums,
            )
        )


def _gather(
    submit: Callable[[int, int], Any],
    n: int,
    events: queue.SimpleQueue[Any],
    watch: _Watch,
    job_id: str,
) -> list[JobResult]:
    """Wait for every shard, handing progress to the callback in this thread. A shard whose
    task was lost (its worker died more often than the scheduler retries, or the scheduler
    cancelled it) is submitted again, up to :data:`SHARD_TRIES` times in all; after that its
    symbols fail with the reason."""
    from distributed import wait

    running = {submit(i, 1): (i, 1) for i in range(n)}
    results: dict[int, JobResult] = {}
    while running:
        try:
            wait(list(running), timeout=0.1, return_when="FIRST_COMPLETED")
        except TimeoutError:  # nothing finished: hand on the progress so far
            pass
        except Exception:  # noqa: BLE001 - FuturesCancelledError: a shard was lost (below)
            pass
        done = [f for f in running if f.done()]
        for fut in done:
            i, attempt = running.pop(fut)
            if fut.status == "finished":
                results[i] = fut.result()
                continue
            why = _lost(fut)
            if attempt < SHARD_TRIES:
                running[submit(i, attempt + 1)] = (i, attempt + 1)
            else:
                results[i] = _failed_shard(f"{job_id}.{i}", watch.shards[i], why)
        changed = False
        while True:
            try:
                changed = watch.take(events.get_nowait()) or changed
            except queue.Empty:
                break
        if changed:
            watch.report()
    while True:  # late events (starts of retried shards) still count
        try:
            watch.take(events.get_nowait())
        except queue.Empty:
            break
    ordered = [results[i] for i in range(n)]
    for i, r in enumerate(ordered):
        watch.latest[i] = _final(r)
    watch.report("done")
    return ordered


#: Submissions of one shard before its symbols are given up (each one also has the
#: scheduler's own retries when a worker dies: ``distributed.scheduler.allowed-failures``).
SHARD_TRIES = 3


def _lost(fut: Any) -> str:
    if fut.status == "cancelled":
        return "its task was cancelled by the cluster"
    try:
        exc = fut.exception(timeout=5)
    except Exception as e:  # noqa: BLE001 - whatever the cluster says
        exc = e
    return f"{type(exc).__name__}: {exc}"


def _failed_shard(shard_id: str, symbols: list[str], why: str) -> JobResult:
    result = JobResult(job_id=shard_id, status="failed", error=f"lost: {why}")
    for s in symbols:
        result.symbols[s] = SymbolOutcome(s, status="failed", error=f"lost: {why}")
    return result


def _final(r: JobResult) -> dict[str, Any]:
    return {
        "symbols_done": sum(1 for o in r.symbols.values() if o.status != "pending"),
        "symbols_failed": len(r.failed_symbols),
        "rows_fetched": r.stages["fetch"].rows_out,
        "rows_stored": r.rows_stored,
        "rows_rejected": r.rows_rejected,
    }


def merge(job_id: str, results: list[JobResult], shards: list[list[str]]) -> JobResult:
    """One :class:`JobResult` from the shards' results."""
    merged = JobResult(job_id=job_id)
    for r in results:
        merged.symbols.update(r.symbols)
        for name in STAGES:
            a, b = merged.stages[name], r.stages[name]
            a.rows_in += b.rows_in
            a.rows_out += b.rows_out
            a.rejected += b.rejected
            a.seconds += b.seconds
        for k, v in r.stats.items():
            if k == "peak_rss_mb" or k == "batch_size":
                merged.stats[k] = max(merged.stats.get(k, 0), v)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                merged.stats[k] = merged.stats.get(k, 0) + v
    tables = [r.indicators for r in results if r.indicators is not None]
    if tables:
        merged.indicators = pa.concat_tables(tables)
    statuses = [r.status for r in results]
    failed = [(i, r) for i, r in enumerate(results) if r.status == "failed"]
    if results and len(failed) == len(results):
        merged.status = "failed"
    elif "timed_out" in statuses:
        merged.status = "timed_out"
    elif "cancelled" in statuses:
        merged.status = "cancelled"
    others = [r.error for r in results if r.status in ("timed_out", "cancelled") and r.error]
    if failed:
        shown = "; ".join(f"shard {i} ({len(shards[i])} symbols): {r.error}" for i, r in failed[:3])
        merged.error = f"{len(failed)} of {len(results)} shards failed: {shown}"
    elif others:
        merged.error = others[0]
    return merged


def _rates(result: JobResult) -> None:
    st = result.stats
    lookups = st.get("cache_hits", 0) + st.get("provider_calls", 0)
    st["cache_hit_rate"] = st.get("cache_hits", 0) / lookups if lookups else 0.0
    st["error_rate"] = len(result.failed_symbols) / len(result.symbols) if result.symbols else 0.0
    st["requests"] = len(result.symbols)
