"""Type stub of the compiled kernels (twin: stockbatch._py.kernels)."""

from typing import Any

import numpy as np
import pyarrow as pa

from stockbatch._validation import NormalizeResult, Rule, ValidationReport

__all__ = ["validate", "normalize", "resample", "returns", "log_returns"]

def validate(
    data: Any,
    *,
    rules: Rule = ...,
    spike_threshold: float | None = ...,
    out: np.ndarray | None = ...,
) -> ValidationReport: ...
def normalize(data: Any, *, adjust: bool = ...) -> NormalizeResult: ...
def resample(data: Any, *, to: str, tz: str | None = ...) -> pa.Table: ...
def returns(data: Any, *, column: str = ..., out: np.ndarray | None = ...) -> pa.Array: ...
def log_returns(data: Any, *, column: str = ..., out: np.ndarray | None = ...) -> pa.Array: ...
