"""What a pipeline job reports: :class:`JobResult`, per-symbol and per-stage figures, and the
:class:`Progress` snapshots handed to progress callbacks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

__all__ = ["JobResult", "SymbolOutcome", "StageStats", "Progress", "STAGES"]

#: The five stages, in data-flow order.
STAGES = ("fetch", "transform", "validate", "store", "analyze")


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running job, given to ``on_progress`` callbacks."""

    job_id: str
    symbols_total: int
    symbols_done: int
    symbols_failed: int
    rows_fetched: int
    rows_stored: int
    rows_rejected: int
    stage: str
    elapsed_s: float


@dataclass
class SymbolOutcome:
    """What happened to one symbol.

    ``status`` is ``"stored"`` (its rows are committed, or in the result of a job without
    storage), ``"empty"`` (the provider had no bars for the range, or only bars without
    any price, which are quarantined), ``"refused"`` (the
    database refused every one of its rows: they are in the quarantine table with the
    database's error), ``"rejected"`` (validation rejected every one of its rows: they are
    in the quarantine table with their reasons), ``"failed"`` (``error`` says why; nothing
    of it was stored) or ``"cancelled"`` (the job was cancelled before it was stored).

    Counts are the database's truth: ``rows`` are rows committed; ``quarantined`` counts
    its rows in the quarantine table: those validation rejected plus the ``refused`` ones
    the database would not take (``error`` then gives the database's reason); ``kept``
    (``insert_new``) its rows whose key was stored already, left as they were.
    ``exception`` keeps the exception behind a failure.
    """

    symbol: str
    status: str = "pending"
    rows: int = 0
    quarantined: int = 0
    refused: int = 0
    kept: int = 0
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "status": self.status,
            "rows": self.rows,
            "quarantined": self.quarantined,
            "refused": self.refused,
            "kept": self.kept,
            "error": self.error,
        }


@dataclass
class StageStats:
    """Rows into and out of one stage, rows it rejected, and the seconds spent in it."""

    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    seconds: float = 0.0


@dataclass
class JobResult:
    """The outcome of a pipeline job.

    Attributes
    ----------
    job_id : str
    status : str
        ``"completed"``, ``"failed"`` (the job could not run: bad sink, bad options),
        ``"cancelled"`` or ``"timed_out"``.
    success : bool
        Completed, no symbol failed and the database refused no row.
    symbols : dict of str to SymbolOutcome
    stages : dict of str to StageStats
        ``fetch``, ``transform``, ``validate``, ``store``, ``analyze``.
    total_processing_time_ms : float
    stats : dict
        ``requests``, ``provider_calls``, ``calls_saved_by_coalescing``, ``cache_hits``,
        ``cache_hit_rate``, ``retries``, ``error_rate``, ``duplicates_dropped``,
        ``store_attempts``, ``out_of_window`` (bars the provider sent outside the asked
        window, dropped), ``rows_refused_by_db`` (rows the database refused on the last,
        bisecting store attempt: quarantined by the sink with the database's error; they are
        not in any symbol's ``rows``), ``peak_rss_mb`` (the process's peak resident size), ``batch_size``
        (the optimizer's last recommendation), ``alerts`` (the alert edges of this job, as
        dicts of :class:`stockbatch.alerts.Alert`).
    error : str or None
        Why the job failed, timed out or was cancelled.
    table : pyarrow.Table or None
        The fetched bars, for jobs run with ``store_data=False`` (:func:`stockbatch.fetch`).
    rejected : pyarrow.Table or None
        For jobs run with ``store_data=False``: the rows validation rejected, with their
        ``reasons`` (a storing job puts them in the quarantine table instead).
    indicators : pyarrow.Table or None
        ``symbol``, ``interval``, ``ts`` and one column per requested indicator.
    """

    job_id: str
    status: str = "completed"
    symbols: dict[str, SymbolOutcome] = field(default_factory=dict)
    stages: dict[str, StageStats] = field(default_factory=lambda: {s: StageStats() for s in STAGES})
    total_processing_time_ms: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    table: pa.Table | None = field(default=None, repr=False)
    rejected: pa.Table | None = field(default=None, repr=False)
    indicators: pa.Table | None = field(default=None, repr=False)

    @property
    def success(self) -> bool:
        return self.status == "completed" and not self.failed_symbols and not self.rows_refused

    @property
    def failed_symbols(self) -> list[str]:
        """Symbols not stored: failed, cancelled, refused whole by the database, or
        rejected whole by validation."""
        return [
            s
            for s, o in self.symbols.items()
            if o.status in ("failed", "cancelled", "refused", "rejected")
        ]

    @property
    def rows_refused(self) -> int:
        """Rows the database refused (quarantined with its error; not in ``rows_stored``)."""
        return sum(o.refused for o in self.symbols.values())

    @property
    def rows_kept(self) -> int:
        """Rows ``insert_new`` left as stored (their key was): not in ``rows_stored``."""
        return sum(o.kept for o in self.symbols.values())

    @property
    def rows_stored(self) -> int:
        return sum(o.rows for o in self.symbols.values() if o.status == "stored")

    @property
    def rows_rejected(self) -> int:
        """Rows in the quarantine table: rejected by validation or refused by the database."""
        return sum(o.quarantined for o in self.symbols.values())

    def count(self, status: str) -> int:
        """Symbols with this outcome status."""
        return sum(1 for o in self.symbols.values() if o.status == status)

    def summary(self) -> str:
        """A few human-readable lines: outcome, rows, failures, time per stage."""
        lines = [
            f"job {self.job_id}: {self.status}{' (' + self.error + ')' if self.error else ''}",
            f"symbols: {self.count('stored')} stored, {self.count('empty')} empty, "
            f"{len(self.failed_symbols)} failed of {len(self.symbols)}",
            f"rows: {self.rows_stored} stored, {self.rows_rejected} quarantined"
            + (f" ({self.rows_refused} refused by the database)" if self.rows_refused else "")
            + (f", {self.rows_kept} kept as stored (insert_new)" if self.rows_kept else ""),
            "ms per stage: "
            + ", ".join(f"{k} {v.seconds * 1e3:.1f}" for k, v in self.stages.items()),
            f"total: {self.total_processing_time_ms:.1f} ms",
        ]
        for s in self.failed_symbols[:20]:
            lines.append(f"  failed {s}: {self.symbols[s].error}")
        if len(self.failed_symbols) > 20:
            lines.append(f"  ... and {len(self.failed_symbols) - 20} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): everything but the tables."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "success": self.success,
            "error": self.error,
            "total_processing_time_ms": self.total_processing_time_ms,
            "symbols": {s: o.to_dict() for s, o in self.symbols.items()},
            "stages": {s: asdict(v) for s, v in self.stages.items()},
            "stats": dict(self.stats),
        }

    def __repr__(self) -> str:
        return (
            f"JobResult(job_id={self.job_id!r}, status={self.status!r}, "
            f"symbols={len(self.symbols)}, failed={len(self.failed_symbols)}, "
            f"rows_stored={self.rows_stored}, rows_rejected={self.rows_rejected}, "
            f"ms={self.total_processing_time_ms:.1f})"
        )
