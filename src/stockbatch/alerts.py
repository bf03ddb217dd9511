"""Threshold alerts: tell someone when a running ingest crosses a limit, and when it recovers.

A :class:`BatchProcessingEngine` owns one :class:`AlertMonitor`. Its jobs feed it every
provider call (how long it took, how it ended) and a sampler thread reads the source's
counters, the hand-off fill and the process's memory every ``sample_s`` seconds.
Subscribe with ``engine.on_alert(callback)``::

    engine = BatchProcessingEngine(alert_thresholds=Thresholds(latency_p95_s=2.0))
    engine.on_alert(lambda a: print(a.message))

Thresholds (:class:`Thresholds`, the defaults are the original request's)
--------------------------------------------------------------------------
=================  ========  ==========================================================
metric             default   meaning
=================  ========  ==========================================================
``latency_p95``    5 s       95th percentile of provider call time (retries included)
``error_rate``     10 %      calls that failed (a symbol not found is not a failure)
``rate_429``       10 %      HTTP requests answered 429 / quota, of requests sent
``queue_fill``     90 %      hand-off slots in use (answers fetched, not yet taken
                             back by the job's thread) for ``queue_fill_for_s`` (10 s) on
                             end: the database is not keeping up (a full hand-off for a
                             moment is only back-pressure, the normal state of a bulk load)
``rss_share``      90 %      resident memory / the machine's memory or the cgroup limit
``rss_mb``         off       resident memory in MiB (absolute)
=================  ========  ==========================================================

Rates and percentiles are over the calls of the last ``window_s`` seconds and need
``min_calls`` of them, so one early failure does not alert. An *episode* is the time between
crossing a threshold and coming back under it: its start is logged once as a WARNING (logger
``stockbatch.alerts``) and delivered as an :class:`Alert` with ``state="firing"``; its end as
INFO and ``state="resolved"``. Callbacks run in the thread that noticed (the engine's I/O
loop or the sampler): keep them short, and never let them raise (an exception is logged).
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["Alert", "AlertMonitor", "Thresholds", "memory_limit_bytes", "rss_bytes"]

log = logging.getLogger("stockbatch.alerts")

AlertState = Literal["firing", "resolved"]

_UNITS = {
    "latency_p95": "s",
    "error_rate": "%",
    "rate_429": "%",
    "queue_fill": "%",
    "rss_share": "%",
    "rss_mb": " MiB",
}


@dataclass(frozen=True)
class Thresholds:
    """Alert limits; ``None`` turns one off. ``memory_limit_bytes`` overrides the limit
    ``rss_share`` is measured against (default: the smaller of the machine's memory and
    the cgroup's ``memory.max``)."""

    latency_p95_s: float | None = 5.0
    error_rate: float | None = 0.10
    rate_429: float | None = 0.10
    queue_fill: float | None = 0.90
    queue_fill_for_s: float = 10.0
    rss_share: float | None = 0.90
    rss_mb: float | None = None
    memory_limit_bytes: int | None = None
    window_s: float = 60.0
    min_calls: int = 10

    def __post_init__(self) -> None:
        for name in (
            "latency_p95_s",
            "error_rate",
            "rate_429",
            "queue_fill",
            "rss_share",
            "rss_mb",
        ):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"threshold {name} must be positive or None, not {v!r}")
        if not self.queue_fill_for_s >= 0:
            raise ValueError("queue_fill_for_s must be >= 0")
        if not self.window_s > 0 or self.min_calls < 1:
            raise ValueError("window_s must be positive and min_calls at least 1")

    def limit_of(self, metric: str) -> float | None:
        return getattr(self, "latency_p95_s" if metric == "latency_p95" else metric)


@dataclass(frozen=True)
class Alert:
    """One edge of an episode: ``state`` is ``"firing"`` (``value`` crossed ``threshold``)
    or ``"resolved"`` (back under it)."""

    metric: str
    state: AlertState
    value: float
    threshold: float
    at: float = field(default_factory=time.time)

    @property
    def message(self) -> str:
        v, t = _fmt(self.metric, self.value), _fmt(self.metric, self.threshold)
        if self.state == "firing":
            return f"{self.metric} {v} is over its threshold {t}"
        return f"{self.metric} back to {v} (threshold {t})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "message": self.message}


def _fmt(metric: str, value: float) -> str:
    unit = _UNITS.get(metric, "")
    if unit == "%":
        return f"{value * 100:.1f} %"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:,.0f}{unit}"


def rss_bytes() -> int:
    """Resident memory of this process now (Linux: /proc; elsewhere the peak)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def memory_limit_bytes() -> int | None:
    """The memory this process may use: the smaller of the machine's and the cgroup's."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" or a huge number: no limit
            limits.append(int(text))
    return min(limits) if limits else None


class AlertMonitor:
    """Evaluates :class:`Thresholds` over what it is fed; see the module docstring."""

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        *,
        sample_s: float = 0.25,
        rss: Callable[[], int] = rss_bytes,
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        self.sample_s = sample_s
        self._rss = rss
        self._limit = self.thresholds.memory_limit_bytes or memory_limit_bytes()
        self._calls: deque[tuple[float, float, bool]] = deque(maxlen=10_000)
        self._http: deque[tuple[float, int, int]] = deque(maxlen=10_000)  # (t, sent, 429s)
        self._subscribers: list[Callable[[Alert], Any]] = []
        self._firing: dict[str, Alert] = {}
        self._fill_over_since: float | None = None  # queue_fill above its limit since
        self.history: list[Alert] = []
        self._lock = threading.Lock()
        self._fills: dict[int, Callable[[], float]] = {}  # the running jobs' hand-offs

    def subscribe(self, callback: Callable[[Alert], Any]) -> Callable[[Alert], Any]:
        """Call ``callback(alert)`` at every episode's start and end; returns it."""
        if not callable(callback):
            raise ValueError("on_alert needs a callable")
        with self._lock:
            self._subscribers.append(callback)
        return callback

    @property
    def firing(self) -> list[Alert]:
        """The episodes going on now."""
        with self._lock:
            return list(self._firing.values())

    # -- feeding -------------------------------------------------------------------------
    def observe_call(self, seconds: float, failed: bool) -> None:
        """One provider call ended after ``seconds`` (``failed``: a real failure)."""
        with self._lock:
            self._calls.append((time.monotonic(), seconds, failed))

    def observe_http(self, sent: int, rate_limited: int) -> None:
        """``sent`` more requests went out, ``rate_limited`` of them were answered 429."""
        if sent or rate_limited:
            with self._lock:
                self._http.append((time.monotonic(), sent, rate_limited))

    @contextmanager
    def watch(self, source: Any, fill: Callable[[], float]) -> Iterator[None]:
        """Sample ``source``'s counters and ``fill()`` (the hand-off's fill, 0-1) while the
        block runs, evaluating the thresholds each time (with jobs running side by side, the
        fullest hand-off counts)."""
        stop = threading.Event()
        last = _http_counts(source)
        with self._lock:
            self._fills[id(stop)] = fill

        def sample() -> None:
            nonlocal last
            now = _http_counts(source)
            self.observe_http(now[0] - last[0], now[1] - last[1])
            last = now
            with self._lock:
                fills = list(self._fills.values())
            # no job running: no answer waits for a database
            self.evaluate(queue_fill=max((f() for f in fills), default=0.0))

        def loop() -> None:
            while not stop.wait(self.sample_s):
                sample()

        t = threading.Thread(target=loop, name="stockbatch-alerts", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join()
            with self._lock:  # the job is over: its hand-off is empty
                del self._fills[id(stop)]
            sample()

    # -- judging -------------------------------------------------------------------------
    def measure(self, *, queue_fill: float | None = None) -> dict[str, float | None]:
        """The metrics now (``None``: too few calls in the window to say)."""
        th = self.thresholds
        horizon = time.monotonic() - th.window_s
        with self._lock:
            calls = [c for c in self._calls if c[0] >= horizon]
            http = [h for h in self._http if h[0] >= horizon]
        out: dict[str, float | None] = dict.fromkeys(_UNITS)
        if len(calls) >= th.min_calls:
            secs = sorted(c[1] for c in calls)
            out["latency_p95"] = secs[min(len(secs) - 1, int(0.95 * len(secs)))]
            out["error_rate"] = sum(c[2] for c in calls) / len(calls)
        sent = sum(h[1] for h in http)
        if sent >= th.min_calls:
            out["rate_429"] = min(1.0, sum(h[2] for h in http) / sent)
        out["queue_fill"] = queue_fill
        rss = self._rss()
        out["rss_mb"] = rss / 2**20
        out["rss_share"] = rss / self._limit if self._limit else None
        return out

    def evaluate(self, *, queue_fill: float | None = None) -> list[Alert]:
        """Compare the metrics with the thresholds; deliver and return the new edges."""
        edges = []
        for metric, value in self.measure(queue_fill=queue_fill).items():
            limit = self.thresholds.limit_of(metric)
            if limit is None or value is None:
                continue
            with self._lock:
                was = metric in self._firing
                over = value > limit
                if metric == "queue_fill":  # only a hand-off full for a while alerts
                    now = time.monotonic()
                    since = (self._fill_over_since or now) if over else None
                    self._fill_over_since = since
                    if since is not None and not was:
                        over = now - since >= self.thresholds.queue_fill_for_s
                if over and not was:
                    alert = Alert(metric, "firing", value, limit)
                    self._firing[metric] = alert
                elif value <= limit and was:
                    del self._firing[metric]
                    alert = Alert(metric, "resolved", value, limit)
                else:
                    continue
                self.history.append(alert)
                subscribers = list(self._subscribers)
            edges.append(alert)
            if alert.state == "firing":
                log.warning("stockbatch alert: %s", alert.message)
            else:
                log.info("stockbatch alert resolved: %s", alert.message)
            for cb in subscribers:
                try:
                    cb(alert)
                except Exception:  # a subscriber's bug must not stop the job
                    log.exception("on_alert callback %r failed", cb)
        return edges


def _http_counts(source: Any) -> tuple[int, int]:
    """(requests sent, 429 answers) of a source and its failover members."""
    sent = limited = 0
    for src in [source, *getattr(source, "sources", ())]:
        stats = getattr(src, "stats", None)
        sent += getattr(stats, "requests", 0)
        limited += getattr(stats, "rate_limited", 0)
    return sent, limited
