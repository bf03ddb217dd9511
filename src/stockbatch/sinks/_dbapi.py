"""DB-API cursor plumbing, written once: run a statement on a fresh cursor and take what it
returns (a row count, the rows, an Arrow table), and turn a driver's error into one line a
user may see."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pyarrow as pa

from .._redact import redact

__all__ = [
    "run",
    "execute",
    "fetchall",
    "fetch_arrow",
    "executemany",
    "error_text",
    "refuses_rows",
    "about_rows",
]

T = TypeVar("T")

#: libpq's "Failed to execute query '<statement>': ERROR: …": the statement is ours (and
#: long), the reason is the server's
STATEMENT_QUOTED = re.compile(
    r"(Failed to (?:execute|prepare) query) '(?:SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|"
    r"ALTER|WITH|MERGE|TRUNCATE)\b.*?'(?=: )",
    re.IGNORECASE | re.DOTALL,
)
# the statement ADBC appends to an error: "... query: SELECT ..." (SQL, not the reason)
STATEMENT_TAIL = re.compile(
    r"\s+query(?: was)?:\s+(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|WITH|BEGIN|COMMIT|"
    r"ROLLBACK|SAVEPOINT|RELEASE|PRAGMA|MERGE|TRUNCATE)\b.*$",
    re.IGNORECASE | re.DOTALL,
)


def run(conn: Any, statement: str, params: Any, take: Callable[[Any], T]) -> T:
    """Execute ``statement`` (parameters bound, never formatted) on a new cursor of ``conn``
    and return ``take(cursor)``; the cursor is closed whatever happens."""
    cur = conn.cursor()
    try:
        if params is None:
            cur.execute(statement)
        else:
            cur.execute(statement, params)
        return take(cur)
    finally:
        cur.close()


def execute(conn: Any, statement: str, params: Any = None) -> int:
    """Run one statement; the row count the driver reports (-1 if none)."""
    return run(conn, statement, params, lambda cur: cur.rowcount)


def fetchall(conn: Any, statement: str, params: Any = None) -> list:
    return run(conn, statement, params, lambda cur: cur.fetchall())


def fetch_arrow(conn: Any, statement: str, params: Any = None) -> pa.Table:
    return run(conn, statement, params, lambda cur: cur.fetch_arrow_table())


def executemany(conn: Any, statement: str, rows: Iterable[Any]) -> None:
    """One prepared statement bound to each row (or, for ADBC, to a whole Arrow batch)."""
    cur = conn.cursor()
    try:
        cur.executemany(statement, rows)
    finally:
        cur.close()


def error_text(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """The database's message, one line, without the statement the ADBC drivers append
    (``… query: SELECT …``) or quote (``Failed to execute query '…'``), passwords
    redacted, at most 500 characters."""
    msg = str(exc).strip().splitlines()
    text = " ".join(line.strip() for line in msg[:3]) if msg else type(exc).__name__
    text = STATEMENT_TAIL.sub("", STATEMENT_QUOTED.sub(r"\1", text))
    return redact(text, secrets)[:500]


#: SQLSTATE classes of errors about the statement, the objects or the server, not the rows:
#: connection, feature, transaction state, rollback (deadlock), syntax and access (42: no
#: such table or column, a view as target, ON CONFLICT without a matching key), resources
#: (disk full), limits, object state (locked), operator, system, internal
_NOT_ROWS_STATES = frozenset(
    ("08", "0A", "25", "2D", "40", "42", "53", "54", "55", "57", "58", "XX")
)
#: the messages of such errors where the driver gives no SQLSTATE (SQLite, DuckDB): their
#: PEP 249 classes do not tell (SQLite's driver reports a UNIQUE violation as INTERNAL).
#: Whole phrases of the engines, so that a constraint's name or a trigger's message (user
#: text) cannot match them; an error the driver marks INTEGRITY, or any "constraint
#: failed", is about the rows whatever it says.
_NOT_ROWS_TEXT = re.compile(
    r"no such (table|column|savepoint): |has no column named |cannot modify \S+ because it "
    r"is a view|ON CONFLICT clause does not match any PRIMARY KEY or UNIQUE constraint"
    r"|attempt to write a readonly database|database or disk is full|disk I/O error"
    r"|database is locked|database disk image is malformed|unable to open database file"
    r"|^(?:\w+: )?(?:Catalog|Binder|Parser|Permission|IO|Out of Memory) Error: "
    r"|server closed the connection|terminating connection"
)
_ROWS_TEXT = re.compile(r"^INTEGRITY: |constraint failed", re.I)


def about_rows(text: str) -> bool:
    """Whether the driver marks the error as a refusal of rows (INTEGRITY, a failed
    constraint), whatever else it says: a trigger's message is the user's text."""
    return bool(_ROWS_TEXT.search(text.strip()))


def refuses_rows(exc: BaseException) -> bool:
    """Whether the database refused the rows (a constraint, a value, a trigger), not the
    statement or the table: by SQLSTATE where the driver gives one, else by its message
    (anything not known to be about the table or the database counts as about the rows:
    halving the batch then finds them, as before this check)."""
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str) and len(state) == 5:
        return state[:2] not in _NOT_ROWS_STATES
    text = str(exc).strip()
    return about_rows(text) or not _NOT_ROWS_TEXT.search(text)
