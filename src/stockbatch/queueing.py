"""The request layer: :class:`Request`, :class:`BatchQueue`, :class:`Coalescer`,
:class:`BatchOptimizer`.

These are the compiled classes of ``stockbatch._ext`` (or, under
``STOCKBATCH_PURE_PYTHON=1``, their pure-Python twins in ``stockbatch._py``), re-exported.

::

    import stockbatch as sb

    q = sb.BatchQueue(maxsize=10_000)
    q.put_many([sb.Request("history", "yahoo", s, "1d", "2025-01-01", "2026-01-01")
                for s in symbols])
    co = sb.Coalescer(batch_limits={("yahoo", "quote"): 50})
    while batch := q.get_batch(50, timeout=0):
        co.add_many(batch)
        for call in co.take_calls():
            co.complete(call, fetch(call))          # answers: (request, slice) pairs

    opt = sb.BatchOptimizer(max_size=500)
    opt.record("fetch", 50, 0.8, ok=True)
    opt.recommend("fetch"); opt.explain("fetch")

Request ranges are half-open ``[start, end)``; deadlines are absolute :func:`time.monotonic`
times. See each class for the details.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._backend import load

__all__ = ["Request", "BatchQueue", "Coalescer", "Call", "BatchOptimizer", "KINDS"]

if TYPE_CHECKING:  # the classes both backends share, as the compiled modules' stubs type them
    from ._ext.coalesce import Call, Coalescer
    from ._ext.optimizer import BatchOptimizer
    from ._ext.queue import KINDS, BatchQueue, Request
else:
    _queue = load("queue")
    _coalesce = load("coalesce")
    _optimizer = load("optimizer")

    Request = _queue.Request
    BatchQueue = _queue.BatchQueue
    KINDS = _queue.KINDS
    Coalescer = _coalesce.Coalescer
    Call = _coalesce.Call
    BatchOptimizer = _optimizer.BatchOptimizer
