"""Sinks: bulk ingestion of Arrow bars and quotes into SQLite, PostgreSQL, DuckDB and
MariaDB/MySQL.

>>> from stockbatch import sinks
>>> with sinks.connect("sqlite:///market.db") as sink:          # doctest: +SKIP
...     sink.ensure_tables()
...     result = sink.ingest(bars, mode="upsert", job_id="j1")
...     back = sink.read(symbols=["AAPL"], start="2026-01-01")

URIs: ``sqlite:///path`` or a bare path (the embedded default), ``postgresql://…`` (ADBC
PostgreSQL: binary COPY), ``duckdb:///path`` (DuckDB's own ADBC driver), ``mysql://…`` /
``mariadb://…`` (PyMySQL + ``LOAD DATA LOCAL INFILE`` of Arrow-written CSV: no ADBC driver
exists for them; see :mod:`stockbatch.sinks._mysql`). File paths follow SQLAlchemy's
convention for both ``sqlite`` and ``duckdb``: three slashes and a relative path
(``sqlite:///market.db``), four for an absolute one (``sqlite:////data/market.db``);
``sqlite:market.db`` / ``duckdb:market.duckdb`` are relative too, and a bare path ending
``.duckdb`` or ``.ddb`` opens DuckDB.

Durability (what a committed chunk survives) is documented per database in
:mod:`~stockbatch.sinks._sqlite`, :mod:`~stockbatch.sinks._postgres`,
:mod:`~stockbatch.sinks._duckdb` and :mod:`~stockbatch.sinks._mysql`: with each database's
default settings (which stockbatch does not change) a committed chunk survives a crash of the
process and of the machine.

Tables are created by us (:meth:`Sink.ensure_tables`): ``bars`` with PRIMARY KEY (symbol,
interval, ts), ``quotes`` (symbol, ts), ``quarantine`` (the rejected row as JSON, its
reasons, the database error, job id, time) and ``ingest_log`` (job id, source, rows
written/updated/ignored/rejected, started, finished). Names are configurable
(``tables={"bars": "daily_bars"}``), validated and quoted; values are always bound.

Modes (ADBC's words plus two): ``append``, ``create``, ``replace``, ``create_append``,
``upsert``, ``insert_new``. Each :meth:`Sink.ingest` is one transaction: all or nothing —
the data, the rows validation rejected (``quarantine=``) and the ingest log row — and
failures raise :class:`~stockbatch.SinkError` with the database's reason (passwords
redacted); ``on_error="split"`` bisects failing batches and quarantines exactly the bad rows,
counted per symbol (``IngestResult.refused_by_symbol``).

Optimisation levels (:class:`Level`), measured in bench/test_ingest.py: BASIC (bound
executemany in one transaction), ADVANCED (Arrow batches of ~64k rows through ADBC
ingest / LOAD DATA, staged set-based upserts), EXTREME (PostgreSQL: read-compare +
delete-range + COPY upserts that skip unchanged rows, deferred primary-key rebuild for large
whole-table inputs).
Parallel connections inside one ingest are not used: they would break the all-or-nothing
guarantee (a transaction lives on one connection), and on PostgreSQL a keyed table's index
insertion, not the client, is the bottleneck. Concurrency across calls comes from the
thread-safe pool (``pool_size``, health check on checkout, reconnect).
"""

from __future__ import annotations

import os
from typing import Any

from .._errors import SinkError
from .._redact import redact
from .._types import MODES
from ._base import Sink
from ._batches import DEFAULT_BATCH_ROWS
from ._pool import Pool
from ._result import IngestResult, Level

__all__ = [
    "connect",
    "Sink",
    "IngestResult",
    "Level",
    "MODES",
    "Pool",
    "DEFAULT_BATCH_ROWS",
    "BASIC",
    "ADVANCED",
    "EXTREME",
]

BASIC, ADVANCED, EXTREME = Level.BASIC, Level.ADVANCED, Level.EXTREME


def connect(uri: str | os.PathLike, **options: Any) -> Sink:
    """Open a sink for ``uri``.

    Parameters
    ----------
    uri : str or path
        ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``sqlite:relative.db``, a
        bare file path (``.duckdb`` / ``.ddb`` opens DuckDB, anything else SQLite),
        ``postgresql://user:pass@host:5432/db``, ``duckdb:///relative.duckdb``,
        ``duckdb:////abs/path.duckdb``, ``duckdb:relative.duckdb`` (or
        ``duckdb://:memory:``), ``mysql://…`` / ``mariadb://…``.
    **options
        ``pool_size`` (default 4), ``pool_timeout``, ``level`` (``"basic"``,
        ``"advanced"``, ``"extreme"``; default per database), ``batch_rows``,
        ``tables`` (role → name), and per database: ``busy_timeout`` (SQLite: seconds a
        write waits for another writer's lock, default 30, then SinkError),
        ``upsert_strategy`` (PostgreSQL: ``"range"``, ``"on_conflict"``, ``"merge"``),
        ``tmpdir`` (MariaDB CSV files).

    Raises
    ------
    SinkError
        Unknown scheme or a missing driver. A file in a directory that does not exist, or
        a file of another database, is reported when the first connection opens.
    """
    text = os.fspath(uri)
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower() if sep else ""
    _check_options(scheme, text, options)
    if scheme in ("postgresql", "postgres"):
        from ._postgres import PostgresSink

        return PostgresSink(text if scheme == "postgresql" else "postgresql://" + rest, **options)
    if scheme in ("mysql", "mariadb"):
        from ._mysql import MysqlSink

        return MysqlSink(text, **options)
    if scheme in ("duckdb", "sqlite") and rest.partition("/")[0]:
        # sqlite://user:pw@host/x.db: a file has no host, user or password (and what looks
        # like one is not shown)
        raise SinkError(
            f"a {scheme} URI names no host, user or password: {redact(text)!r}; use "
            f"{scheme}:///relative/path or {scheme}:////absolute/path"
        )
    if scheme == "duckdb":
        from ._duckdb import DuckdbSink

        return DuckdbSink(_path(rest), **options)
    if scheme == "sqlite":
        from ._sqlite import SqliteSink

        return SqliteSink(_path(rest), **options)
    if sep:
        raise SinkError(
            f"unknown sink URI scheme {redact(scheme)!r}: use sqlite, postgresql, "
            "duckdb, mysql or mariadb"
        )
    head, colon, tail = text.partition(":")
    if colon and head.lower() in ("sqlite", "duckdb") and tail:  # sqlite:rel.db
        text, scheme = tail, head.lower()
    elif text.lower().endswith((".duckdb", ".ddb")):
        scheme = "duckdb"
    if scheme == "duckdb":
        from ._duckdb import DuckdbSink

        return DuckdbSink(text, **options)
    from ._sqlite import SqliteSink

    return SqliteSink(text, **options)


_COMMON_OPTIONS = {"pool_size", "pool_timeout", "level", "batch_rows", "tables"}
_OPTIONS = {
    "postgresql": {"upsert_strategy"},
    "postgres": {"upsert_strategy"},
    "mysql": {"tmpdir"},
    "mariadb": {"tmpdir"},
    "duckdb": set(),
    "sqlite": {"busy_timeout"},
}


def _check_options(scheme: str, text: str, options: dict) -> None:
    if not scheme:
        head = text.partition(":")[0].lower()
        scheme = (
            "duckdb" if head == "duckdb" or text.lower().endswith((".duckdb", ".ddb")) else "sqlite"
        )
    allowed = _COMMON_OPTIONS | _OPTIONS.get(scheme, set())
    unknown = sorted(set(options) - allowed)
    if unknown and scheme in _OPTIONS:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for a {scheme} "
            f"sink: use {', '.join(sorted(allowed))}"
        )


def _path(rest: str) -> str:
    # sqlite:///rel.db -> "/rel.db" after the scheme; strip one slash (SQLAlchemy's rule:
    # three slashes relative, four absolute)
    if rest.startswith("/"):
        rest = rest[1:]
    return rest or ":memory:"
