"""stockbatch — fetch, check and bulk-store market data for many symbols, fast.

Data between stages is Arrow (``pyarrow.RecordBatch`` / ``Table``) in the canonical schema
of :mod:`stockbatch.schema`; compiled Cython kernels validate, transform and analyze it; ADBC
bulk-ingests it. ``stockbatch.backend`` tells whether the compiled modules (``"cython"``) or
their pure-Python twins (``"python"``, with ``STOCKBATCH_PURE_PYTHON=1``) are in use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._backend import backend
from ._errors import (
    DecodeError,
    JobCancelled,
    JobError,
    JobTimeout,
    ProviderError,
    ProviderUnavailable,
    QueueClosed,
    QueueError,
    QueueFull,
    RateLimited,
    SchemaError,
    SinkError,
    StockbatchError,
    SymbolNotFound,
)
from ._version import __version__

if TYPE_CHECKING:
    # What the lazy __getattr__ below serves, spelt out for type checkers (never run).
    from . import alerts as alerts
    from . import compat as compat
    from . import indicators as indicators
    from . import pipeline as pipeline
    from . import queueing as queueing
    from . import schema as schema
    from . import sinks as sinks
    from . import sources as sources
    from . import stats as stats
    from . import testing as testing
    from ._api import fetch, ingest, read
    from ._kernels import (
        NormalizeResult,
        Rule,
        ValidationReport,
        log_returns,
        normalize,
        resample,
        returns,
        validate,
    )
    from .pipeline import (
        BatchProcessingEngine,
        JobResult,
        execute_stock_batch_pipeline,
        run_pipeline,
    )
    from .queueing import BatchOptimizer, BatchQueue, Coalescer, Request
    from .schema import BARS, QUOTES, conform
    from .stats import health
    from .tuning import tune

# Public names served lazily from their modules, so that `import stockbatch` stays cheap
# and a missing optional dependency only matters to the feature that needs it.
_LAZY = {
    # the canonical schema (stockbatch.schema; lazy too, so that `import stockbatch` and the
    # CLI's first lines need no pyarrow: Ctrl-C is handled from the very start)
    "BARS": ".schema",
    "QUOTES": ".schema",
    "conform": ".schema",
    # kernels (stockbatch._kernels, stockbatch.indicators)
    "validate": "._kernels",
    "ValidationReport": "._kernels",
    "NormalizeResult": "._kernels",
    "Rule": "._kernels",
    "normalize": "._kernels",
    "resample": "._kernels",
    "returns": "._kernels",
    "log_returns": "._kernels",
    # request layer (stockbatch.queueing)
    "Request": ".queueing",
    "BatchQueue": ".queueing",
    "Coalescer": ".queueing",
    "BatchOptimizer": ".queueing",
    # API and engine
    "fetch": "._api",
    "ingest": "._api",
    "read": "._api",
    "tune": ".tuning",
    "BatchProcessingEngine": ".pipeline",
    "JobResult": ".pipeline",
    "execute_stock_batch_pipeline": ".pipeline",
    "run_pipeline": ".pipeline",
    "health": ".stats",
}
# Subpackages and modules reachable as attributes (``sb.sources.YahooChartSource``) but not
# names of ``from stockbatch import *``: a star import must not drag in the fixture server.
_SUBMODULES = (
    "indicators",
    "sources",
    "sinks",
    "pipeline",
    "compat",
    "testing",
    "stats",
    "queueing",
    "schema",
    "alerts",
)

# Written out (not built from _LAZY) so that type checkers and readers see the names.
__all__ = [
    "backend",
    "__version__",
    "BARS",
    "QUOTES",
    "conform",
    "validate",
    "ValidationReport",
    "NormalizeResult",
    "Rule",
    "normalize",
    "resample",
    "returns",
    "log_returns",
    "Request",
    "BatchQueue",
    "Coalescer",
    "BatchOptimizer",
    "fetch",
    "ingest",
    "read",
    "BatchProcessingEngine",
    "JobResult",
    "execute_stock_batch_pipeline",
    "run_pipeline",
    "health",
    "tune",
    "StockbatchError",
    "SchemaError",
    "ProviderError",
    "RateLimited",
    "SymbolNotFound",
    "DecodeError",
    "ProviderUnavailable",
    "SinkError",
    "QueueError",
    "QueueFull",
    "QueueClosed",
    "JobError",
    "JobTimeout",
    "JobCancelled",
]


if not TYPE_CHECKING:  # a module __getattr__ would make every misspelt name Any to mypy

    def __getattr__(name: str) -> Any:
        if name in _SUBMODULES:
            value = importlib.import_module(f".{name}", __name__)
        elif name in _LAZY:
            value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        else:
            raise AttributeError(f"module 'stockbatch' has no attribute {name!r}")
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
