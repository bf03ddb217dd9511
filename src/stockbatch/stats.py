"""Runtime statistics and health of the request layer.

Every :class:`~stockbatch.BatchQueue` and :class:`~stockbatch.Coalescer` registers itself here
(weakly) when created. :func:`snapshot` sums their counters, :class:`Monitor` turns two
snapshots into rates, and :func:`health` grades them.

Health thresholds (:data:`DEFAULT_THRESHOLDS`, all overridable)
----------------------------------------------------------------
=====================  =============  ==============  =======================================
metric                 degraded at    unhealthy at    meaning
=====================  =============  ==============  =======================================
``error_rate``         >= 0.05        >= 0.25         failed provider calls / finished calls
``expiry_rate``        >= 0.01        >= 0.10         expired requests / requests put
``queue_fill``         >= 0.80        >= 0.95         depth / maxsize of the fullest bounded
                                                      queue (backpressure is biting)
``mean_wait`` (s)      >= 5           >= 30           mean time a taken request was queued
=====================  =============  ==============  =======================================

Rates need a minimum sample (``min_sample``, default 20 finished calls / put requests) before
they can degrade health, so one early failure does not flag a fresh process. A closed queue
that still holds requests is ``degraded``. The worst grade wins; :class:`Health` lists why.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._types import HealthStatus

__all__ = [
    "Snapshot",
    "Health",
    "Monitor",
    "snapshot",
    "health",
    "grade",
    "DEFAULT_THRESHOLDS",
    "HEALTHY",
    "DEGRADED",
    "UNHEALTHY",
]

HEALTHY: HealthStatus = "healthy"
DEGRADED: HealthStatus = "degraded"
UNHEALTHY: HealthStatus = "unhealthy"
_RANK: dict[HealthStatus, int] = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}

#: metric -> (degraded at, unhealthy at); see the module docstring.
DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {
    "error_rate": (0.05, 0.25),
    "expiry_rate": (0.01, 0.10),
    "queue_fill": (0.80, 0.95),
    "mean_wait": (5.0, 30.0),
}

#: ``thresholds=`` of :func:`health`, :func:`grade` and :class:`Monitor`.
_Thresholds = Mapping[str, tuple[float, float]]

_tracked: weakref.WeakSet[Any] = weakref.WeakSet()
_tracked_lock = threading.Lock()


def _track(obj: Any) -> None:
    """Called by BatchQueue and Coalescer constructors (both backends)."""
    with _tracked_lock:
        _tracked.add(obj)


def _objects() -> list[Any]:
    with _tracked_lock:
        return list(_tracked)


@dataclass(frozen=True)
class Snapshot:
    """Counters summed over the queues and coalescers looked at, at time ``at``.

    ``ops_per_s`` is requests taken from queues per second since the previous snapshot of the
    same :class:`Monitor` (0.0 for a first or standalone snapshot).
    """

    at: float
    queues: int = 0
    coalescers: int = 0
    queue_depth: int = 0
    queue_fill: float = 0.0
    put: int = 0
    got: int = 0
    expired: int = 0
    cancelled: int = 0
    mean_wait: float = 0.0
    max_wait: float = 0.0
    closed_nonempty: int = 0
    requests_in: int = 0
    calls_out: int = 0
    calls_done: int = 0
    calls_failed: int = 0
    ops_per_s: float = 0.0

    @property
    def coalescing_ratio(self) -> float:
        """Share of requests that needed no provider call of their own: 1 - calls/requests."""
        return 1.0 - self.calls_out / self.requests_in if self.requests_in else 0.0

    @property
    def error_rate(self) -> float:
        """Failed provider calls / finished provider calls."""
        return self.calls_failed / self.calls_done if self.calls_done else 0.0

    @property
    def expiry_rate(self) -> float:
        """Expired requests / requests put into queues."""
        return self.expired / self.put if self.put else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out.update(
            coalescing_ratio=self.coalescing_ratio,
            error_rate=self.error_rate,
            expiry_rate=self.expiry_rate,
        )
        return out


@dataclass(frozen=True)
class Health:
    """``status`` is ``"healthy"``, ``"degraded"`` or ``"unhealthy"``; ``reasons`` says why."""

    status: HealthStatus
    reasons: tuple[str, ...] = ()
    snapshot: Snapshot | None = field(default=None, repr=False)

    def __bool__(self) -> bool:
        return self.status == HEALTHY

    def __str__(self) -> str:
        return self.status if not self.reasons else f"{self.status}: {'; '.join(self.reasons)}"


def _collect(objects: tuple[Any, ...] | list[Any], at: float) -> Snapshot:
    from ._backend import load_from

    kinds: dict[type, str] = {}
    for which in ("python", "cython"):
        try:
            mod_q = load_from(which, "queue")
            mod_c = load_from(which, "coalesce")
        except ImportError:
            continue
        kinds[mod_q.BatchQueue] = "queue"
        kinds[mod_c.Coalescer] = "coalescer"
    agg: dict[str, Any] = dict(
        queues=0,
        coalescers=0,
        queue_depth=0,
        queue_fill=0.0,
        put=0,
        got=0,
        expired=0,
        cancelled=0,
        max_wait=0.0,
        closed_nonempty=0,
        requests_in=0,
        calls_out=0,
        calls_done=0,
        calls_failed=0,
    )
    wait_total = 0.0
    for obj in objects:
        kind = kinds.get(type(obj))
        if kind is None:
            raise TypeError(
                f"cannot take stats of {type(obj).__name__}: give a BatchQueue or a Coalescer"
            )
        s = obj.stats()
        if kind == "queue":
            agg["queues"] += 1
            agg["queue_depth"] += s["depth"]
            if s["maxsize"]:
                agg["queue_fill"] = max(agg["queue_fill"], s["depth"] / s["maxsize"])
            for k in ("put", "got", "expired", "cancelled"):
                agg[k] += s[k]
            wait_total += s["mean_wait"] * s["got"]
            agg["max_wait"] = max(agg["max_wait"], s["max_wait"])
            if s["closed"] and s["depth"]:
                agg["closed_nonempty"] += 1
        else:
            agg["coalescers"] += 1
            agg["requests_in"] += s["requests_in"]
            agg["calls_out"] += s["calls_out"]
            agg["calls_done"] += s["calls_completed"] + s["calls_failed"]
            agg["calls_failed"] += s["calls_failed"]
    mean_wait = wait_total / agg["got"] if agg["got"] else 0.0
    return Snapshot(at=at, mean_wait=mean_wait, **agg)


def snapshot(*objects: Any) -> Snapshot:
    """Sum the counters of ``objects`` (BatchQueue / Coalescer), or of every live one."""
    return _collect(objects or _objects(), time.monotonic())


class Monitor:
    """Rates between successive snapshots of a fixed set of queues and coalescers.

    Parameters
    ----------
    *objects : BatchQueue or Coalescer
        What to watch; none means every live one at each snapshot.
    thresholds : dict, optional
        Overrides of :data:`DEFAULT_THRESHOLDS` (metric -> (degraded, unhealthy)).
    min_sample : int
        Finished calls / put requests needed before a rate may degrade health.
    """

    def __init__(
        self, *objects: Any, thresholds: _Thresholds | None = None, min_sample: int = 20
    ) -> None:
        self._objects = objects
        self._thresholds = _merge_thresholds(thresholds)
        self._min_sample = int(min_sample)
        self._last: Snapshot | None = None

    def snapshot(self) -> Snapshot:
        """A snapshot whose ``ops_per_s`` covers the time since the previous one."""
        snap = _collect(self._objects or _objects(), time.monotonic())
        last, self._last = self._last, snap
        if last is not None and snap.at > last.at:
            ops = max(0, snap.got - last.got) / (snap.at - last.at)
            snap = Snapshot(
                **{**{k: getattr(snap, k) for k in snap.__dataclass_fields__}, "ops_per_s": ops}
            )
            self._last = snap
        return snap

    def health(self) -> Health:
        return grade(self.snapshot(), thresholds=self._thresholds, min_sample=self._min_sample)


def _merge_thresholds(thresholds: _Thresholds | None) -> dict[str, tuple[float, float]]:
    merged = dict(DEFAULT_THRESHOLDS)
    for name, pair in (thresholds or {}).items():
        if name not in DEFAULT_THRESHOLDS:
            raise ValueError(f"unknown health metric {name!r}; known: {sorted(DEFAULT_THRESHOLDS)}")
        degraded, unhealthy = pair
        if not 0 <= degraded <= unhealthy:
            raise ValueError(f"threshold {name}: need 0 <= degraded <= unhealthy")
        merged[name] = (float(degraded), float(unhealthy))
    return merged


def grade(snap: Snapshot, *, thresholds: _Thresholds | None = None, min_sample: int = 20) -> Health:
    """Grade a :class:`Snapshot` against the thresholds (see the module docstring)."""
    th = _merge_thresholds(thresholds)
    status = HEALTHY
    reasons = []
    values = {
        "error_rate": snap.error_rate if snap.calls_done >= min_sample else 0.0,
        "expiry_rate": snap.expiry_rate if snap.put >= min_sample else 0.0,
        "queue_fill": snap.queue_fill,
        "mean_wait": snap.mean_wait,
    }
    for name, value in values.items():
        degraded, unhealthy = th[name]
        level = UNHEALTHY if value >= unhealthy else DEGRADED if value >= degraded else HEALTHY
        if level != HEALTHY:
            reasons.append(
                f"{name} {value:.3g} >= {unhealthy if level == UNHEALTHY else degraded:g}"
            )
            if _RANK[level] > _RANK[status]:
                status = level
    if snap.closed_nonempty:
        reasons.append(f"{snap.closed_nonempty} closed queue(s) still hold requests")
        if _RANK[DEGRADED] > _RANK[status]:
            status = DEGRADED
    return Health(status, tuple(reasons), snap)


def health(*objects: Any, thresholds: _Thresholds | None = None, min_sample: int = 20) -> Health:
    """Grade the request layer: ``healthy``, ``degraded`` or ``unhealthy``.

    ``objects`` are BatchQueue / Coalescer instances, or one :class:`Snapshot` or
    :class:`Monitor`; none means every live queue and coalescer of the process. Thresholds are
    in the module docstring.
    """
    if len(objects) == 1 and isinstance(objects[0], Monitor):
        return objects[0].health()
    if len(objects) == 1 and isinstance(objects[0], Snapshot):
        snap = objects[0]
    else:
        snap = snapshot(*objects)
    return grade(snap, thresholds=thresholds, min_sample=min_sample)
