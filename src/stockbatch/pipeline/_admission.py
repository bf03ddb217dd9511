"""Job admission: at most ``limit`` jobs run at once; the others wait, most urgent priority
first (first come, first served within a priority)."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Admission"]


class Admission:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._waiting: list[tuple[int, int]] = []  # (priority, arrival)
        self._seq = 0
        self._cond = threading.Condition()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def enter(self, priority: int, cancelled: Callable[[], bool]) -> bool:
        """Wait for a turn; False (without a turn) once ``cancelled()`` is true."""
        with self._cond:
            self._seq += 1
            me = (priority, self._seq)
            self._waiting.append(me)
            while True:
                if cancelled():
                    self._waiting.remove(me)
                    self._cond.notify_all()
                    return False
                if self.running < self.limit and min(self._waiting) == me:
                    self._waiting.remove(me)
                    self.running += 1
                    self._cond.notify_all()  # the next in line may fit too
                    return True
                self._cond.wait()

    def leave(self) -> None:
        with self._cond:
            self.running -= 1
            self._cond.notify_all()

    def wake(self) -> None:
        """Let waiters look at their ``cancelled()`` again."""
        with self._cond:
            self._cond.notify_all()
