"""A small thread-safe connection pool: bounded size, health check on checkout, reconnect.

Connections are created lazily by ``factory`` up to ``max_size``; a thread asking for one
when all are checked out waits (up to ``timeout`` seconds). Each checkout runs ``check`` on an
idle connection first; a connection failing it (the server restarted, a backend was
terminated) is closed and replaced by a fresh one, so callers never receive a dead
connection. A caller that saw its connection fail returns it with ``broken=True`` (the
``connection()`` context manager does this on any exception that ``is_broken`` recognises)
and it is discarded instead of reused.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .._errors import SinkError

__all__ = ["Pool"]


class Pool:
    """Thread-safe pool of DB-API connections.

    Parameters
    ----------
    factory : callable
        Returns a new open connection.
    check : callable
        ``check(conn)`` raises if ``conn`` is unusable (e.g. runs ``SELECT 1``).
    max_size : int
        Most connections open at once.
    timeout : float
        Seconds a checkout waits for a free connection before raising :class:`SinkError`.
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        *,
        check: Callable[[Any], None],
        max_size: int = 4,
        timeout: float = 60.0,
        name: str = "pool",
    ):
        if max_size < 1:
            raise SinkError("pool max_size must be at least 1")
        self._factory = factory
        self._check = check
        self.max_size = max_size
        self.timeout = timeout
        self._name = name
        self._idle: deque = deque()
        self._open = 0
        self._cond = threading.Condition()
        self._closed = False
        self.reconnects = 0  # connections replaced after a failed health check

    def __repr__(self) -> str:
        return f"<Pool {self._name} open={self._open} idle={len(self._idle)} max={self.max_size}>"

    @property
    def size(self) -> int:
        """Connections currently open (idle or checked out)."""
        return self._open

    def acquire(self) -> Any:
        """Check a healthy connection out (create one if below ``max_size``)."""
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while True:
                if self._closed:
                    raise SinkError(f"{self._name}: the sink is closed")
                if self._idle:
                    conn = self._idle.pop()
                    break
                if self._open < self.max_size:
                    self._open += 1
                    conn = None
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SinkError(
                        f"{self._name}: no free connection within {self.timeout} s "
                        f"(max_size={self.max_size})"
                    )
                self._cond.wait(left)
        if conn is not None:
            try:
                self._check(conn)
                return conn
            except Exception:  # noqa: BLE001 - any failure means the connection is dead
                _close_quietly(conn)
                self.reconnects += 1
        try:
            return self._factory()
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def release(self, conn: Any, *, broken: bool = False) -> None:
        """Give ``conn`` back; ``broken=True`` closes it instead of keeping it."""
        with self._cond:
            if broken or self._closed:
                self._open -= 1
                _close_quietly(conn)
            else:
                self._idle.append(conn)
            self._cond.notify()

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """``with pool.connection() as conn:`` — released (or discarded if broken) after."""
        conn = self.acquire()
        broken = False
        try:
            yield conn
        except BaseException:
            broken = _is_dead(conn, self._check)
            raise
        finally:
            self.release(conn, broken=broken)

    def close(self) -> None:
        """Close idle connections now and checked-out ones when they come back."""
        with self._cond:
            self._closed = True
            while self._idle:
                _close_quietly(self._idle.pop())
                self._open -= 1
            self._cond.notify_all()


def _is_dead(conn: Any, check: Callable[[Any], None]) -> bool:
    try:
        check(conn)
        return False
    except Exception:  # noqa: BLE001
        return True


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a dead connection may fail; nothing to do
        pass
