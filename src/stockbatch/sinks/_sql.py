"""SQL text of the sinks' set-based writes, built from a :class:`~._ddl.Dialect` and the table
specs: key joins, change tests, staged merges, one-row upserts, bound INSERTs.

Every identifier goes through ``d.quote`` and every value through a placeholder
(``d.param``); nothing here formats a value into SQL.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._ddl import SPECS, Dialect, sql

__all__ = [
    "placeholders",
    "insert_values",
    "key_join",
    "changed",
    "count_existing",
    "merge_on_conflict",
    "upsert_row",
]


def placeholders(d: Dialect, n: int, start: int = 0) -> str:
    """``?, ?, …`` (or ``$1, $2``, ``%s``) for ``n`` values from parameter ``start``."""
    return ", ".join(d.param(start + i) for i in range(n))


def insert_values(d: Dialect, table: str, names: Sequence[str]) -> str:
    """``INSERT INTO table (names) VALUES (?, …)``: one bound row."""
    return sql(
        "INSERT INTO {t} ({cols}) VALUES ({marks})",
        t=d.quote(table),
        cols=", ".join(d.quote(c) for c in names),
        marks=placeholders(d, len(names)),
    )


def key_join(d: Dialect, a: str, b: str, kind: str) -> str:
    """``a.k1 = b.k1 AND …`` over the key of ``kind``."""
    return " AND ".join(f"{a}.{d.quote(k)} = {b}.{d.quote(k)}" for k in SPECS[kind].key)


def changed(d: Dialect, a: str, b: str, kind: str) -> str:
    """True when a value column of ``kind`` differs between rows ``a`` and ``b`` (NULL-safe)."""
    spec = SPECS[kind]
    return (
        "("
        + " OR ".join(
            d.differs(f"{a}.{d.quote(c)}", f"{b}.{d.quote(c)}")
            for c in spec.names
            if c not in spec.key
        )
        + ")"
    )


def count_existing(d: Dialect, table: str, stage: str, kind: str) -> str:
    """(rows of ``stage`` whose key is in ``table``, of which values differ)."""
    return sql(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN {changed} THEN 1 ELSE 0 END), 0) "
        "FROM {stage} s JOIN {t} t ON {on}",
        changed=changed(d, "s", "t", kind),
        on=key_join(d, "s", "t", kind),
        stage=d.quote(stage),
        t=d.quote(table),
    )


def existing_by_symbol(d: Dialect, table: str, stage: str, kind: str) -> str:
    """(symbol, rows of ``stage`` whose key is in ``table``) for every symbol with some."""
    return sql(
        "SELECT s.{sym}, COUNT(*) FROM {stage} s JOIN {t} t ON {on} GROUP BY s.{sym}",
        sym=d.quote("symbol"),
        on=key_join(d, "s", "t", kind),
        stage=d.quote(stage),
        t=d.quote(table),
    )


def merge_on_conflict(d: Dialect, table: str, stage: str, kind: str, *, update: bool) -> str:
    """``INSERT … SELECT … ON CONFLICT`` from ``stage`` into ``table`` (SQLite, PostgreSQL,
    DuckDB): ``update`` rewrites rows whose values changed, else conflicts are skipped."""
    spec = SPECS[kind]
    cols = ", ".join(d.quote(c) for c in spec.names)
    keys = ", ".join(d.quote(k) for k in spec.key)
    head = "INSERT INTO {t} ({cols}) SELECT {cols} FROM {stage} WHERE true ON CONFLICT ({keys}) "
    if not update:
        return sql(
            head + "DO NOTHING", t=d.quote(table), stage=d.quote(stage), cols=cols, keys=keys
        )
    sets = ", ".join(
        f"{d.quote(c)} = excluded.{d.quote(c)}" for c in spec.names if c not in spec.key
    )
    # the target is named by its quoted name inside the WHERE of DO UPDATE
    return sql(
        sql(
            head + "DO UPDATE SET {sets} WHERE {changed}",
            t="{t}",
            stage="{stage}",
            cols=cols,
            keys=keys,
            sets=sets,
            changed=changed(d, "{t}", "excluded", kind),
        ),
        t=d.quote(table),
        stage=d.quote(stage),
    )


def upsert_row(d: Dialect, table: str, names: Sequence[str], key: Sequence[str]) -> str:
    """One row's ``INSERT … ON CONFLICT (key) DO UPDATE`` (every other column)."""
    sets = ", ".join(f"{d.quote(c)} = excluded.{d.quote(c)}" for c in names if c not in key)
    return sql(
        "INSERT INTO {t} ({cols}) VALUES ({marks}) ON CONFLICT ({keys}) DO UPDATE SET {sets}",
        t=d.quote(table),
        cols=", ".join(d.quote(c) for c in names),
        marks=placeholders(d, len(names)),
        keys=", ".join(d.quote(k) for k in key),
        sets=sets,
    )
