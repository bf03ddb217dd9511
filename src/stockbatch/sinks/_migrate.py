"""Upgrading a database of an earlier stockbatch in place (``stockbatch migrate``), and the
layout version it records in ``stockbatch_meta``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..schema import BARS
from ._ddl import check_name, sql

if TYPE_CHECKING:
    from ._base import Sink

__all__ = ["migrate", "schema_version"]


def migrate(sink: Sink, symbols_per_step: int = 200) -> dict[str, str]:
    """:meth:`Sink.migrate` (documented there)."""
    bars = sink.tables["bars"]
    done: dict[str, str] = {}
    with sink._connection() as conn, sink._translating("migrate", bars):
        have = sink._columns(conn, bars)
    if not have:
        done[bars] = "absent"
    elif "date" in have:
        done[bars] = "current"
    else:
        done[bars] = migrate_bars(sink, bars, symbols_per_step)
    sink.ensure_tables("quarantine", "ingest_log", "symbols", "actions")
    record_version(sink)
    return done


def migrate_bars(sink: Sink, bars: str, step: int) -> str:
    d = sink.dialect
    schema, _, bare = bars.rpartition(".")
    new = check_name((bars if len(bare) <= 53 else bars[: len(bars) - len(bare) + 53]) + "_sb_migr")
    sink.drop_table(new)
    with sink._connection() as conn, sink._translating("migrate", bars):
        syms = [
            r[0]
            for r in sink._query(
                conn,
                sql(
                    "SELECT DISTINCT {s} FROM {t} ORDER BY {s}",
                    s=d.quote("symbol"),
                    t=d.quote(bars),
                ),
            )
        ]
    sink._forget(bars)
    sink.ensure_tables("symbols")
    rows = 0
    sink.ingest(BARS.empty_table(), table=new, kind="bars", mode="create_append")
    for i in range(0, len(syms), step):
        part = sink.read(table=bars, kind="bars", symbols=syms[i : i + step])
        rows += sink.ingest(part, table=new, kind="bars", mode="append").written
    with sink._connection() as conn, sink._translating("migrate", bars):
        sink._exec(conn, sql("DROP TABLE {t}", t=d.quote(bars)))
        sink._exec(conn, sql("ALTER TABLE {n} RENAME TO {b}", n=d.quote(new), b=d.quote(bare)))
        sink._after_rename(conn, new, bars)
    sink._forget(bars, new)
    return f"upgraded: {rows} rows given their trading date"


def record_version(sink: Sink) -> None:
    meta = "stockbatch_meta"
    with sink._connection() as conn, sink._translating("migrate", meta):
        sink._create(conn, meta, "stockbatch_meta", if_not_exists=True)
        sink._begin(conn)
        try:
            sink._exec(
                conn,
                sink._upsert_row_sql(meta, ["key", "value"], ("key",)),
                ("schema_version", str(sink.SCHEMA_VERSION)),
            )
            sink._commit(conn)
        except BaseException:
            sink._rollback_quietly(conn)
            raise


def schema_version(sink: Sink) -> int | None:
    """:meth:`Sink.schema_version` (documented there)."""
    d = sink.dialect
    with sink._connection() as conn, sink._translating("schema_version", None):
        if not sink._table_exists(conn, "stockbatch_meta"):
            return None
        rows = sink._query(
            conn,
            sql(
                "SELECT {v} FROM {t} WHERE {k} = {p}",
                p=d.param(0),
                v=d.quote("value"),
                t=d.quote("stockbatch_meta"),
                k=d.quote("key"),
            ),
            ("schema_version",),
        )
    return int(rows[0][0]) if rows else None
