"""What a sink call reports, and how hard it works: :class:`IngestResult` and :class:`Level`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .._errors import SinkError

__all__ = ["Level", "IngestResult"]


class Level(enum.Enum):
    """How hard a sink works to move rows. Each level is a real, measured strategy.

    BASIC
        Bound ``executemany`` of a prepared INSERT, one transaction (the classic DB-API way;
        no bulk protocol).
    ADVANCED
        Bulk ingest per ~64k-row Arrow batch (ADBC COPY / bound Arrow batches / LOAD DATA);
        upserts through a staging table and one set-based ``INSERT … ON CONFLICT`` that skips
        unchanged rows.
    EXTREME
        Everything of ADVANCED plus what the database gains from: PostgreSQL upserts by
        read-compare-then-delete-range + COPY upserts and, for whole-table inputs at least
        as large as the target, primary-key work deferred to one rebuild (see
        :mod:`stockbatch.sinks._postgres`); SQLite a larger page cache only (WAL and
        ``synchronous=OFF`` measured slower or unsafe, see :mod:`stockbatch.sinks._sqlite`).
    """

    BASIC = "basic"
    ADVANCED = "advanced"
    EXTREME = "extreme"

    @classmethod
    def of(cls, value: Any) -> Level:
        if isinstance(value, Level):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise SinkError(f"unknown level {value!r}: use basic, advanced or extreme") from None


@dataclass
class IngestResult:
    """What one :meth:`Sink.ingest` call did.

    ``written`` new rows inserted; ``updated`` existing rows whose values changed;
    ``ignored`` input rows that changed nothing (duplicates superseded inside the input,
    rows identical to the stored ones, conflicts under ``insert_new``); ``rejected`` rows
    the database refused (``on_error="split"``), sent to the quarantine table with the
    database's error. ``written + updated + ignored + rejected`` equals the number of input
    rows.

    ``refused_by_symbol`` splits ``rejected`` per symbol (a row without a symbol counts
    under ``""``); ``refused_errors`` holds the database's first error per symbol
    (passwords redacted). ``quarantined`` counts the validation-rejected rows handed over
    with ``quarantine=`` and stored in the same transaction (a row quarantined before with
    the same reasons is counted here but kept once in the table, its ``seen_count``
    raised).
    """

    table: str
    mode: str
    written: int = 0
    updated: int = 0
    ignored: int = 0
    rejected: int = 0
    batches: int = 0
    seconds: float = 0.0
    job_id: str | None = None
    errors: list = field(default_factory=list)
    quarantined: int = 0
    refused_by_symbol: dict = field(default_factory=dict)
    refused_errors: dict = field(default_factory=dict)
    #: ``insert_new``: rows left as they were stored (their key was), per symbol
    kept_by_symbol: dict = field(default_factory=dict)
    #: indicator values (``ingest(indicators=…)``) inserted / changed / unchanged
    indicators_written: int = 0
    indicators_updated: int = 0
    indicators_ignored: int = 0

    @property
    def rows(self) -> int:
        """Input rows accounted for."""
        return self.written + self.updated + self.ignored + self.rejected

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def add(self, written=0, updated=0, ignored=0, rejected=0) -> None:
        self.written += written
        self.updated += updated
        self.ignored += ignored
        self.rejected += rejected
