"""The pipeline engine: jobs of fetch → transform → validate → store → analyze.

::

    import stockbatch as sb

    engine = sb.BatchProcessingEngine(max_concurrent_jobs=4)
    job = engine.create_stock_data_pipeline_job(["AAPL", "7203.T"], period="1y",
                                                sink="stockbatch.db", indicators=["sma20"])
    result = engine.run(job)               # or: await engine.execute_job(job)
    print(result.summary())

:func:`execute_stock_batch_pipeline` (async) and :func:`run_pipeline` (sync) run one job on a
fresh engine. See :class:`BatchProcessingEngine` for threads, backpressure and retries, and
:class:`JobResult` for what a job reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._engine import BatchProcessingEngine
from ._job import PipelineJob
from ._result import STAGES, JobResult, Progress, StageStats, SymbolOutcome

__all__ = [
    "BatchProcessingEngine",
    "PipelineJob",
    "JobResult",
    "SymbolOutcome",
    "StageStats",
    "Progress",
    "STAGES",
    "execute_stock_batch_pipeline",
    "run_pipeline",
]


def run_pipeline(symbols: Iterable[str] | str, **options: Any) -> JobResult:
    """Run one job on a fresh engine and return its result. ``options`` are those of
    :meth:`BatchProcessingEngine.create_stock_data_pipeline_job`."""
    with BatchProcessingEngine(max_concurrent_jobs=1) as engine:
        return engine.run(engine.create_stock_data_pipeline_job(symbols, **options))


async def execute_stock_batch_pipeline(symbols: Iterable[str] | str, **options: Any) -> JobResult:
    """Coroutine form of :func:`run_pipeline` (the event loop is never blocked)."""
    import asyncio

    return await asyncio.to_thread(run_pipeline, symbols, **options)
