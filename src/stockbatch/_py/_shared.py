"""The parts of the request layer that the compiled modules and their twins share.

Constants of the contract and helpers off the hot path (answering calls, reading ranges back
as datetimes, checking constructor arguments): one copy, imported by ``stockbatch._py.queue``
/ ``coalesce`` / ``optimizer`` and by their compiled counterparts in ``ext/stockbatch/_ext``.
What runs per request (argument checks of ``Request``, ``to_us``, params freezing, the
queue and table operations) stays in each module: the compiled copies are measurably faster.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .._errors import SchemaError, SymbolNotFound
from .._time import micros_to_datetime

__all__ = [
    "KINDS",
    "MIN_PRIORITY",
    "MAX_PRIORITY",
    "STATE_NAMES",
    "us_to_datetime",
    "filter_symbol",
    "filter_range",
    "set_future",
    "check_size",
]

#: The request kinds a provider may serve.
KINDS = ("history", "quote", "profile")
MIN_PRIORITY = 1  # most urgent
MAX_PRIORITY = 5
#: Request states by number. Cancelled and expired are final: such a request cannot be put
#: again.
STATE_NAMES = ("new", "queued", "taken", "expired", "cancelled")


def us_to_datetime(us: int | None) -> datetime | None:
    """Microseconds since the epoch as an aware UTC datetime (None stays None)."""
    return None if us is None else micros_to_datetime(us)


# -- answering calls (the coalescer) ------------------------------------------------------
# Errors are returned, not raised: each becomes the answer of the one waiter it concerns.


def filter_symbol(result: Any, symbol: str) -> Any:
    """The part of a grouped call's ``result`` that belongs to ``symbol``."""
    if isinstance(result, Mapping):
        if symbol not in result:
            return SymbolNotFound(f"the provider's answer has no {symbol!r}", symbol=symbol)
        return result[symbol]
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(result, (pa.Table, pa.RecordBatch)):
        return SchemaError(
            f"cannot split a {type(result).__name__} by symbol: return a "
            "pyarrow Table or a mapping symbol -> result"
        )
    if "symbol" not in result.schema.names:
        return SchemaError(
            "cannot split the result by symbol: it has no 'symbol' column", {"symbol": "missing"}
        )
    return result.filter(pc.equal(result.column("symbol"), symbol))


def filter_range(result: Any, start_us: int | None, end_us: int | None) -> Any:
    """The rows of ``result`` with ``start_us <= ts < end_us``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(result, BaseException):
        return result
    if not isinstance(result, (pa.Table, pa.RecordBatch)):
        return SchemaError(
            f"cannot slice a {type(result).__name__} by ts: return a pyarrow "
            "Table with a 'ts' column"
        )
    if "ts" not in result.schema.names:
        return SchemaError(
            "cannot slice the result to the requested range: no 'ts' column", {"ts": "missing"}
        )
    ts = result.column("ts")
    if not pa.types.is_timestamp(ts.type):
        return SchemaError(f"'ts' must be a timestamp column, not {ts.type}", {"ts": str(ts.type)})
    ts_us = pc.cast(pc.cast(ts, pa.timestamp("us", tz=ts.type.tz), safe=False), pa.int64())
    mask = None
    if start_us is not None:
        mask = pc.greater_equal(ts_us, start_us)
    if end_us is not None:
        upper = pc.less(ts_us, end_us)
        mask = upper if mask is None else pc.and_(mask, upper)
    return result if mask is None else result.filter(mask)


def set_future(fut: Any, value: Any, is_error: bool) -> None:
    """Resolve a waiter's future unless its owner cancelled it (others are unaffected)."""
    if isinstance(fut, asyncio.Future):
        loop = fut.get_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            try:
                loop.call_soon_threadsafe(set_future, fut, value, is_error)
            except RuntimeError:  # its loop is closed: nobody is waiting any more
                pass
            return
    if fut.done():
        return
    try:
        if is_error:
            fut.set_exception(value)
        else:
            fut.set_result(value)
    except (concurrent.futures.InvalidStateError, asyncio.InvalidStateError):
        pass  # cancelled between the check and the set


# -- the optimizer's arguments ------------------------------------------------------------


def check_size(value: Any, name: str) -> int:
    """``value`` if it is an int >= 1 (not a bool), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, not {value!r}")
    return value
