"""accelerate(): plug stockbatch into an existing fetcher class or instance."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, TypeVar, cast

from ._backend import Backend
from ._fetcher import BulkMethods

__all__ = ["accelerate", "BULK_METHODS"]

#: The methods accelerate() replaces; everything else stays the host's own.
BULK_METHODS = ("bulk_get_historical_data", "bulk_get_current_prices", "get_realtime_data")

F = TypeVar("F")

# What the grafted methods need besides the public ones.
_HELPERS = ("_map_codes",)


def accelerate(
    target: F,
    *,
    source: Any = None,
    base_url: str | None = None,
    market_suffix: str | None = ".T",
    suffix_rule: Callable[[str], str] | None = None,
    auto_adjust: bool = True,
    timeout: float | None = 120.0,
) -> F:
    """Make an existing fetcher's bulk methods run through stockbatch.

    ``bulk_get_historical_data``, ``bulk_get_current_prices`` and ``get_realtime_data`` are
    replaced by methods that run through stockbatch's engine and return the same shapes (dict
    code -> yfinance-style DataFrame / price dict / None). Each instance gets one
    :class:`~stockbatch.pipeline.BatchProcessingEngine` (made on first use): bulk history is
    an engine job (concurrent, coalesced fetches; no storage; failed codes logged and
    returned as None), and the batched quote calls run on the engine's I/O loop. Every other
    method (single-symbol calls, caches, company info, your own additions) stays yours.

    Codes map to provider symbols with the fetcher's own ``_format_symbol(code)`` when it has
    one (the day_trade convention), else by ``suffix_rule`` / ``market_suffix``.

    Parameters
    ----------
    target : class or instance
        A class: a subclass with the same name is returned (the original is untouched).
        An instance: its bulk methods are rebound in place and the same object is returned.
    source, base_url, market_suffix, suffix_rule, auto_adjust, timeout
        As for :class:`stockbatch.compat.StockFetcher`.

    Examples
    --------
    A class, once, where it is defined or imported::

        from day_trade.data.stock_fetcher import StockFetcher as _Original
        from stockbatch.compat import accelerate

        StockFetcher = accelerate(_Original)
        frames = StockFetcher().bulk_get_historical_data(["7203", "6758"], period="1y")

    One instance, e.g. against a local fixture server::

        fetcher = accelerate(MyFetcher(), base_url="http://127.0.0.1:8765")
        prices = fetcher.bulk_get_current_prices(["7203", "AAPL"])

    Call ``stockbatch_close()`` on the instance (or let the process end) to close the
    connections stockbatch opened and stop its engine.
    """
    config = dict(
        source=source,
        base_url=base_url,
        market_suffix=market_suffix,
        suffix_rule=suffix_rule,
        timeout=timeout,
    )

    def setup(obj: Any, host_formats: bool) -> None:
        # the host's own code -> symbol rule wins unless the caller passed one
        rule = suffix_rule
        if rule is None and host_formats:
            rule = obj._format_symbol
        obj.__dict__["_sb"] = Backend(**{**config, "suffix_rule": rule})
        obj.__dict__["_auto_adjust"] = auto_adjust

    def stockbatch_close(self: Any) -> None:
        """Release the connections and event loop stockbatch opened for this fetcher."""
        sb = self.__dict__.get("_sb")
        if sb is not None:
            sb.close()

    if isinstance(target, type):
        cls: Any = target
        original_init = cls.__init__
        host_formats = hasattr(cls, "_format_symbol")

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            original_init(self, *args, **kwargs)
            setup(self, host_formats)

        namespace: dict[str, Any] = {
            "__init__": __init__,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
            "stockbatch_close": stockbatch_close,
            "_stockbatch_accelerated": True,
        }
        for name in BULK_METHODS + _HELPERS:
            namespace[name] = getattr(BulkMethods, name)
        if not host_formats:
            namespace["_format_symbol"] = BulkMethods._format_symbol
        return cast(F, types.new_class(cls.__name__, (cls,), {}, lambda ns: ns.update(namespace)))

    obj: Any = target
    if not hasattr(obj, "__dict__"):
        raise TypeError(
            f"cannot accelerate {type(obj).__name__}: its instances have no "
            "__dict__ (slots); accelerate the class instead"
        )
    host_formats = hasattr(obj, "_format_symbol")
    setup(obj, host_formats)
    for name in BULK_METHODS + _HELPERS:
        setattr(obj, name, types.MethodType(getattr(BulkMethods, name), obj))
    if not host_formats:
        obj._format_symbol = types.MethodType(BulkMethods._format_symbol, obj)
    obj.stockbatch_close = types.MethodType(stockbatch_close, obj)
    return obj
