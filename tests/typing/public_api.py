"""What a type checker must see of the public API (checked by `python -m mypy`, never run).

The names below are served lazily at run time (a module ``__getattr__`` and the backend
façades); without the ``TYPE_CHECKING`` imports of ``stockbatch/__init__.py`` they were all
``Any``. ``assert_type`` fails on ``Any``, so each line pins a real type.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

import stockbatch as sb
from stockbatch import _types
from stockbatch.pipeline import JobResult
from stockbatch.stats import Health
from stockbatch.tuning import TuneReport


def check(table: Any, queue: sb.BatchQueue, request: sb.Request) -> None:
    assert_type(sb.validate(table), sb.ValidationReport)
    assert_type(sb.normalize(table), sb.NormalizeResult)
    assert_type(sb.ingest(["AAPL"], db="x.db", mode="upsert"), JobResult)
    assert_type(sb.run_pipeline(["AAPL"]), JobResult)
    assert_type(sb.BatchQueue(10), sb.BatchQueue)
    assert_type(queue.get_batch(5, timeout=0), list[sb.Request])
    assert_type(request.state, _types.RequestState)
    assert_type(sb.Coalescer().take_calls(), list[sb.queueing.Call])
    assert_type(sb.BatchOptimizer().recommend("fetch"), int)
    assert_type(sb.health(), Health)
    assert_type(sb.tune("x.db", budget_s=5), TuneReport)
    assert_type(sb.BatchProcessingEngine().alerts.firing, list[sb.alerts.Alert])
    assert_type(sb.health().status, _types.HealthStatus)
    assert_type(sb.__version__, str)
    sb.indicators.sma(table, 20)
    sb.sources.YahooChartSource()
    sb.BatchQueue("ten")  # type: ignore[arg-type]  # caught: maxsize is an int
    print(sb.not_a_name)  # type: ignore[attr-defined]  # caught: no catch-all __getattr__
