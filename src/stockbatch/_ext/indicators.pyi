"""Type stub of the compiled indicator kernels (twin: stockbatch._py.indicators)."""

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = ["segments", "sma", "ema", "rsi", "macd", "bbands", "atr", "volatility", "vwap"]

_Segments = npt.ArrayLike | None
_Out = Any  # a writable, contiguous float64 buffer of len(batch) elements

def segments(batch: Any) -> npt.NDArray[np.int64]: ...
def sma(
    batch: Any,
    period: int,
    *,
    column: str = "close",
    out: _Out | None = None,
    segments: _Segments = None,
) -> pa.Array: ...
def ema(
    batch: Any,
    period: int,
    *,
    column: str = "close",
    out: _Out | None = None,
    segments: _Segments = None,
) -> pa.Array: ...
def rsi(
    batch: Any,
    period: int,
    *,
    column: str = "close",
    out: _Out | None = None,
    segments: _Segments = None,
) -> pa.Array: ...
def macd(
    batch: Any,
    fast: int,
    slow: int,
    signal: int,
    *,
    column: str = "close",
    out: tuple[_Out, _Out, _Out] | None = None,
    segments: _Segments = None,
) -> tuple[pa.Array, pa.Array, pa.Array]: ...
def bbands(
    batch: Any,
    period: int,
    nbdev: float,
    *,
    column: str = "close",
    out: tuple[_Out, _Out, _Out] | None = None,
    segments: _Segments = None,
) -> tuple[pa.Array, pa.Array, pa.Array]: ...
def atr(
    batch: Any, period: int, *, out: _Out | None = None, segments: _Segments = None
) -> pa.Array: ...
def volatility(
    batch: Any,
    period: int,
    *,
    ddof: int = 1,
    annualize: float | None = None,
    column: str = "close",
    out: _Out | None = None,
    segments: _Segments = None,
) -> pa.Array: ...
def vwap(
    batch: Any,
    *,
    day: npt.ArrayLike | None = None,
    out: _Out | None = None,
    segments: _Segments = None,
) -> pa.Array: ...
