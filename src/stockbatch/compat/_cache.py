"""The original's caches: ``DataCache`` and ``cache_with_ttl`` (same names, same behaviour),
and the per-method TTL caches of :class:`stockbatch.compat.StockFetcher`.

The original decorated ``get_current_price`` (30 s), ``get_historical_data`` and
``get_historical_data_range`` (300 s) and ``get_company_info`` (3600 s) with
``cache_with_ttl``; its key held ``self``, so each fetcher had its own entries, and each method
carried ``clear_cache()`` and ``cache_size()``. :func:`cached_method` keeps all of that.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["DataCache", "cache_with_ttl", "TTLCache", "cached_method"]

_log = logging.getLogger("stockbatch.compat")


class DataCache:
    """The original's TTL cache: ``get(key)`` (None when missing or older than
    ``ttl_seconds``), ``set(key, value)``, ``clear()``, ``size()``."""

    def __init__(self, ttl_seconds: int = 60):
        self.ttl_seconds = ttl_seconds
        self._cache: dict[Any, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            value, stamp = hit
            if time.time() - stamp < self.ttl_seconds:
                return value
            del self._cache[key]
            return None

    def set(self, key: Any, value: Any) -> None:
        with self._lock:
            self._cache[key] = (value, time.time())

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def size(self) -> int:
        return len(self._cache)


def cache_with_ttl(ttl_seconds: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The original's decorator: results that are not None are kept ``ttl_seconds``, keyed by
    the call's arguments; the wrapper has ``clear_cache()`` and ``cache_size()``."""

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        cache = DataCache(ttl_seconds)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = f"{func.__name__}:{args!s}:{sorted(kwargs.items())!s}"
            hit = cache.get(key)
            if hit is not None:
                return hit
            result = func(*args, **kwargs)
            if result is not None:
                cache.set(key, result)
            return result

        wrapper.clear_cache = cache.clear  # type: ignore[attr-defined]
        wrapper.cache_size = cache.size  # type: ignore[attr-defined]
        return wrapper

    return decorator


def _copy(value: Any) -> Any:
    copy = getattr(value, "copy", None)
    return copy() if callable(copy) and not isinstance(value, (str, bytes)) else value


class TTLCache:
    """One method's entries for one fetcher: at most ``maxsize`` (oldest dropped first),
    thread-safe; values are handed out as copies so a caller mutating a frame or a dict
    cannot change what the next caller gets."""

    def __init__(self, maxsize: int):
        self._data: dict[Any, tuple[float, Any]] = {}
        self._maxsize = max(0, int(maxsize))
        self._lock = threading.Lock()

    def get(self, key: Any, ttl: float) -> Any:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            stamp, value = hit
            if time.monotonic() - stamp >= ttl:
                del self._data[key]
                return None
        return _copy(value)

    def set(self, key: Any, value: Any) -> None:
        if self._maxsize == 0:
            return
        with self._lock:
            if key not in self._data and len(self._data) >= self._maxsize:
                self._data.pop(next(iter(self._data)))
            self._data[key] = (time.monotonic(), value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


#: Every live fetcher with method caches (for the methods' clear_cache / cache_size).
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def register(fetcher: Any) -> None:
    try:
        _LIVE.add(fetcher)
    except TypeError:  # an unhashable subclass: its own caches still work, clear_all_caches too
        pass


def cached_method(kind: str, ttl: Callable[[Any], float]) -> Callable[[Any], Any]:
    """Cache a fetcher method's results that are not None for ``ttl(self)`` seconds, keyed by
    its arguments as given (like the original). The fetcher needs ``_caches``, a dict
    kind -> :class:`TTLCache`. The method gets ``clear_cache()`` and ``cache_size()`` (over
    every fetcher, like the original's decorator-level cache)."""

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            cache: TTLCache = self._caches[kind]
            try:
                key: Any = (args, tuple(sorted(kwargs.items())))
                hash(key)
            except TypeError:  # unhashable arguments: no caching, as the original's fallback
                return func(self, *args, **kwargs)
            hit = cache.get(key, ttl(self))
            if hit is not None:
                _log.debug("cache hit: %s%r", func.__name__, args)
                return hit
            result = func(self, *args, **kwargs)
            if result is not None:
                cache.set(key, result)
                return _copy(result)
            return result

        def clear_cache() -> None:
            for fetcher in list(_LIVE):
                fetcher._caches[kind].clear()

        def cache_size() -> int:
            return sum(len(fetcher._caches[kind]) for fetcher in list(_LIVE))

        wrapper.clear_cache = clear_cache  # type: ignore[attr-defined]
        wrapper.cache_size = cache_size  # type: ignore[attr-defined]
        wrapper.__wrapped_kind__ = kind  # type: ignore[attr-defined]
        return wrapper

    return decorator
