"""stockbatch — fetch, check and bulk-store market data for many symbols, fast.

Data between stages is Arrow (``pyarrow.RecordBatch`` / ``Table``) in the canonical schema
of :mod:`stockbatch.schema`; compiled Cython kernels validate, transform and analyze it; ADBC
bulk-ingests it. ``stockbatch.backend`` tells whether the compiled modules (``"cython"``) or
their pure-Python twins (``"python"``, with ``STOCKBATCH_PURE_PYTHON=1``) are in use.
"""

from __future__ import annotations

import importlib

from ._backend import backend
from ._errors import *  # noqa: F403
from ._errors import __all__ as _errors_all
from .schema import BARS, QUOTES, conform

__version__ = "0.1.0"

# Public names served lazily from their modules, so that `import stockbatch` stays cheap
# and a missing optional dependency only matters to the feature that needs it.
_LAZY = {
    # kernels (stockbatch._kernels, stockbatch.indicators)
    "validate": "._kernels",
    "ValidationReport": "._kernels",
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
    "BatchProcessingEngine": ".pipeline",
    "JobResult": ".pipeline",
    "execute_stock_batch_pipeline": ".pipeline",
    "run_pipeline": ".pipeline",
    "health": ".stats",
    # subpackages and modules
    "indicators": ".indicators",
    "sources": ".sources",
    "sinks": ".sinks",
    "pipeline": ".pipeline",
    "compat": ".compat",
    "testing": ".testing",
    "stats": ".stats",
    "queueing": ".queueing",
    "schema": ".schema",
}

__all__ = ["backend", "BARS", "QUOTES", "conform", "__version__", *_errors_all, *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stockbatch' has no attribute {name!r}")
    mod = importlib.import_module(module, __name__)
    value = mod if module.lstrip(".") == name else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
