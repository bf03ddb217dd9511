"""Identifiers, SQL composition and the DDL of the tables stockbatch owns.

Identifiers (table names) are validated against a strict pattern and quoted for the dialect;
values never pass through here: they are always bound as parameters. :func:`sql` fills
``{name}`` slots of a template with already-quoted identifiers only, so no value can reach SQL
text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from .._errors import SinkError
from ..schema import BARS, QUOTES

__all__ = [
    "Dialect",
    "DIALECTS",
    "TableSpec",
    "SPECS",
    "sql",
    "check_name",
    "kind_of",
    "DATE_COLUMN",
]

# A plain identifier, optionally schema-qualified; nothing that could close a quote.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
_SLOT = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid table name, else raise :class:`SinkError`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SinkError(
            f"invalid table name {name!r}: use letters, digits and underscores "
            "(optionally schema.table), starting with a letter or underscore, at most 63 each"
        )
    return name


def sql(template: str, **quoted: str) -> str:
    """Fill ``{slot}`` placeholders of ``template`` with already-quoted identifiers."""

    def fill(m: re.Match) -> str:
        return quoted[m.group(1)]

    return _SLOT.sub(fill, template)


@dataclass(frozen=True)
class Dialect:
    """How one database spells identifiers and types."""

    name: str
    quote_char: str
    types: dict  # logical type -> SQL type
    key_text: str  # SQL type of text columns in a primary key
    distinct: str  # null-safe "a differs from b" template with {a} / {b}
    placeholder: str  # "?", "$" (numbered) or "%s"
    savepoints: bool = True

    def quote(self, name: str) -> str:
        check_name(name)
        q = self.quote_char
        return ".".join(f"{q}{part}{q}" for part in name.split("."))

    def param(self, i: int) -> str:
        """Placeholder of the ``i``-th (0-based) bound value."""
        return f"${i + 1}" if self.placeholder == "$" else self.placeholder

    def differs(self, a: str, b: str) -> str:
        return self.distinct.replace("{a}", a).replace("{b}", b)


_COMMON = {"float": "DOUBLE PRECISION", "int": "BIGINT", "text": "TEXT"}
DIALECTS = {
    "postgresql": Dialect(
        "postgresql",
        '"',
        {**_COMMON, "ts": "TIMESTAMPTZ", "date": "DATE"},
        "TEXT",
        "{a} IS DISTINCT FROM {b}",
        "$",
    ),
    # SQLite: timestamps are int64 microseconds since the epoch, UTC; the declared type
    # (INTEGER affinity, because it contains "INT") documents the unit. 2x faster ingest than
    # ISO text (baselines.md); reads turn it back into timestamp[us, tz=UTC]. Dates are
    # integers YYYYMMDD (20261130): cheaper to store than ISO text (bench/test_layout.py,
    # sqlite-date-repr); the <table>_v views show them as 'YYYY-MM-DD'.
    "sqlite": Dialect(
        "sqlite",
        '"',
        {
            "float": "REAL",
            "int": "INTEGER",
            "text": "TEXT",
            "ts": "INT64_US_UTC",
            "date": "INT_YYYYMMDD",
        },
        "TEXT",
        "{a} IS NOT {b}",
        "?",
    ),
    "duckdb": Dialect(
        "duckdb",
        '"',
        {
            "float": "DOUBLE",
            "int": "BIGINT",
            "text": "VARCHAR",
            "ts": "TIMESTAMPTZ",
            "date": "DATE",
        },
        "VARCHAR",
        "{a} IS DISTINCT FROM {b}",
        "$",
        savepoints=False,
    ),
    # MariaDB: DATETIME(6) holding UTC (TIMESTAMP stops in 2038 and converts with the
    # session zone); keys need a bounded VARCHAR.
    "mysql": Dialect(
        "mysql",
        "`",
        {"float": "DOUBLE", "int": "BIGINT", "text": "TEXT", "ts": "DATETIME(6)", "date": "DATE"},
        "VARCHAR(64)",
        "NOT ({a} <=> {b})",
        "%s",
    ),
}


def _logical(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "ts"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_integer(t):
        return "int"
    return "text"


@dataclass(frozen=True)
class TableSpec:
    """A table stockbatch creates: its columns (logical types), key and Arrow schema."""

    kind: str
    columns: tuple  # ((name, logical type, not null), ...)
    key: tuple
    schema: pa.Schema | None = None
    #: a column holding a unique value (the quarantine's row hash), indexed by
    #: :meth:`unique_index`
    unique: str | None = None
    #: mysql: columns that need TEXT rather than VARCHAR(255)
    long_text: tuple = ()

    @property
    def names(self) -> list[str]:
        return [c[0] for c in self.columns]

    def create(
        self,
        d: Dialect,
        table: str,
        *,
        if_not_exists: bool = False,
        temporary: bool = False,
        keyed: bool = True,
    ) -> str:
        cols = []
        for name, logical, not_null in self.columns:
            typ = d.types[logical]
            if d.name == "mysql" and logical == "text":
                typ = (
                    d.key_text
                    if name in self.key or name == self.unique
                    else ("TEXT" if name in self.long_text else "VARCHAR(255)")
                )
                typ += " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            elif logical == "text" and name in self.key:
                typ = d.key_text
            cols.append(f"{d.quote(name)} {typ}{' NOT NULL' if not_null and keyed else ''}")
        if keyed and self.key:
            cols.append("PRIMARY KEY (" + ", ".join(d.quote(k) for k in self.key) + ")")
        if keyed and self.unique:
            cols.append("UNIQUE (" + d.quote(self.unique) + ")")
        head = "CREATE TEMPORARY TABLE " if temporary else "CREATE TABLE "
        if if_not_exists:
            head += "IF NOT EXISTS "
        tail = ""
        # SQLite: a rowid table (+ the key's index), not WITHOUT ROWID: DuckDB's SQLite
        # attach reads by rowid (count(*) fails without one; scans run in parallel by
        # rowid range). It costs 1e6-bar appends 7-10 %, upserts ~0, the file +27 %
        # (bench/test_layout.py).
        if d.name == "mysql":
            tail = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        return head + d.quote(table) + " (" + ", ".join(cols) + ")" + tail

    def unique_index(self, d: Dialect, table: str) -> str:
        """``CREATE UNIQUE INDEX IF NOT EXISTS`` on :attr:`unique` of ``table`` (the index
        is named after the table, in the table's schema)."""
        assert self.unique is not None, "unique_index() of a table kind without a unique key"
        schema, _, name = table.rpartition(".")
        index = (name + "_" + self.unique)[:63]
        head = "CREATE UNIQUE INDEX IF NOT EXISTS "
        if d.name in ("sqlite",) and schema:
            index = schema + "." + index
        return (
            head
            + d.quote(index)
            + " ON "
            + d.quote(table if d.name != "sqlite" else name)
            + " ("
            + d.quote(self.unique)
            + ")"
        )

    def column_sql(self, d: Dialect, name: str) -> str:
        """``name TYPE`` of one column, nullable (for ALTER TABLE … ADD COLUMN)."""
        logical = next(c[1] for c in self.columns if c[0] == name)
        typ = d.types[logical]
        if d.name == "mysql" and logical == "text":
            typ = d.key_text if name == self.unique else "TEXT"
        return d.quote(name) + " " + typ


def _from_schema(kind: str, schema: pa.Schema, key: tuple) -> TableSpec:
    cols = tuple((f.name, _logical(f.type), not f.nullable) for f in schema)
    return TableSpec(kind, cols, key, schema)


#: The column each bars table holds beside the canonical ``BARS`` columns: the exchange's
#: trading date of the bar (its exchange-local calendar day), from ``symbols.timezone``.
DATE_COLUMN = ("date", "date", False)

SPECS = {
    "bars": TableSpec(
        "bars",
        (*_from_schema("bars", BARS, ()).columns, DATE_COLUMN),
        ("symbol", "interval", "ts"),
        BARS,
    ),
    "quotes": _from_schema("quotes", QUOTES, ("symbol", "ts")),
    # one row per (target, row content, reasons, error): ``row_hash`` (sha256 of those
    # four) is unique, a repeat raises ``seen_count`` and moves ``last_seen`` / ``job_id``
    "quarantine": TableSpec(
        "quarantine",
        (
            ("job_id", "text", False),
            ("target", "text", False),
            ("symbol", "text", False),
            ("ts", "ts", False),
            ("reasons", "text", False),
            ("error", "text", False),
            ("row_json", "text", False),
            ("quarantined_at", "ts", True),
            ("row_hash", "text", False),
            ("seen_count", "int", False),
            ("last_seen", "ts", False),
        ),
        (),
        unique="row_hash",
        long_text=("reasons", "error", "row_json"),
    ),
    # rows_rejected: rows validation rejected (quarantined by the call); rows_refused: rows
    # the database refused (on_error="split")
    "ingest_log": TableSpec(
        "ingest_log",
        (
            ("job_id", "text", True),
            ("source", "text", False),
            ("target", "text", False),
            ("mode", "text", False),
            ("rows_written", "int", True),
            ("rows_updated", "int", True),
            ("rows_ignored", "int", True),
            ("rows_rejected", "int", True),
            ("started", "ts", True),
            ("finished", "ts", True),
            ("rows_refused", "int", False),
        ),
        (),
    ),
    # a bars table of stockbatch 0.1 (no date column): written as it is until migrated
    "bars_0_1": _from_schema("bars", BARS, ("symbol", "interval", "ts")),
    # one row per symbol, from the provider's metadata and the bars stored (see _meta)
    "symbols": TableSpec(
        "symbols",
        (
            ("symbol", "text", True),
            ("exchange", "text", False),
            ("timezone", "text", False),
            ("currency", "text", False),
            ("instrument_type", "text", False),
            ("first_bar", "ts", False),
            ("last_bar", "ts", False),
            ("last_ingested", "ts", False),
            ("source", "text", False),
        ),
        ("symbol",),
    ),
    # corporate actions: one row per symbol and exchange date (a dividend and a split on
    # the same day share it); ``ts`` is the provider's instant of the event
    "actions": TableSpec(
        "actions",
        (
            ("symbol", "text", True),
            ("date", "date", True),
            ("ts", "ts", False),
            ("dividend", "float", False),
            ("split_ratio", "float", False),
            ("source", "text", False),
        ),
        ("symbol", "date"),
    ),
    # indicator values computed on request (ingest(indicators=…)): one row per bar and
    # indicator name (sma20, rsi14, macd_signal …), keyed like the bars plus the name
    "indicators": TableSpec(
        "indicators",
        (
            ("symbol", "text", True),
            ("interval", "text", True),
            ("name", "text", True),
            ("ts", "ts", True),
            ("value", "float", False),
        ),
        ("symbol", "interval", "name", "ts"),
    ),
    # the layout version of the tables of a database (key 'schema_version')
    "stockbatch_meta": TableSpec(
        "stockbatch_meta", (("key", "text", True), ("value", "text", False)), ("key",)
    ),
}


def kind_of(names) -> str:
    """``"bars"`` or ``"quotes"`` from a set of column names."""
    names = set(names)
    if "price" in names and "open" not in names:
        return "quotes"
    if {"open", "close"} & names or "interval" in names:
        return "bars"
    raise SinkError(f"cannot tell bars from quotes by the columns {sorted(names)}: pass kind=")
