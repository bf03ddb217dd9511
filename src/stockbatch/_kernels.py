"""Columnar kernels over bars: validate, normalize, resample, returns.

The implementation comes from the selected backend (``stockbatch._ext.kernels``, compiled, or
its pure-Python twin ``stockbatch._py.kernels``); rule definitions and report types live in
:mod:`stockbatch._validation` and are shared by both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._backend import load
from ._validation import NormalizeResult, Rule, ValidationReport

__all__ = [
    "validate",
    "ValidationReport",
    "Rule",
    "normalize",
    "NormalizeResult",
    "resample",
    "returns",
    "log_returns",
]

if TYPE_CHECKING:  # the signatures both backends share, from the compiled module's stub
    from ._ext.kernels import log_returns, normalize, resample, returns, validate
else:
    _impl = load("kernels")

    validate = _impl.validate
    normalize = _impl.normalize
    resample = _impl.resample
    returns = _impl.returns
    log_returns = _impl.log_returns
