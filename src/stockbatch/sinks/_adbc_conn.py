"""Connections and cursors over ``adbc_driver_manager``'s low-level objects.

The SQLite and PostgreSQL sinks use this instead of ``adbc_driver_manager.dbapi``: that module
imports ``pyarrow.dataset`` (which imports pandas when it is installed) and, through its
backends, polars when installed -- 0.3-0.9 s before the first row is stored, for features the
sinks never use. This layer imports ``adbc_driver_manager`` (its C extension) and pyarrow only.

It is the part of DB-API the sinks call, with the same semantics as the DB-API module's:
``execute`` (positional parameters or Arrow data), ``executemany`` (a list of rows or Arrow
data), ``rowcount``, ``fetchall``, ``fetch_arrow_table``, ``adbc_ingest``, and
``Connection.adbc_get_table_schema``. Connections run in the driver's autocommit mode (the
sinks issue ``BEGIN``/``COMMIT`` themselves). Errors are ``adbc_driver_manager.Error`` and its
subclasses, as before.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import adbc_driver_manager as adbc
import pyarrow as pa
from adbc_driver_manager._lib import _blocking_call

from .._arrow import array, values

__all__ = ["Connection", "Cursor", "connect"]

_INGEST_MODES = {"append": adbc.INGEST_OPTION_MODE_APPEND, "create": adbc.INGEST_OPTION_MODE_CREATE}
_TEMPORARY = adbc.StatementOptions.INGEST_TEMPORARY.value
_TARGET_DB_SCHEMA = adbc.StatementOptions.INGEST_TARGET_DB_SCHEMA.value


def connect(database: adbc.AdbcDatabase) -> Connection:
    """A connection (autocommit) on ``database``, which it owns and closes."""
    try:
        conn = adbc.AdbcConnection(database)
    except BaseException:
        database.close()
        raise
    return Connection(database, conn)


def _blocking(func: Any, cancel: Any, *args: Any) -> Any:
    # Ctrl-C cancels the statement when run on the main thread, as in the DB-API module
    return _blocking_call(func, args, {}, cancel)


def _is_arrow(data: Any) -> bool:
    return hasattr(data, "__arrow_c_array__") or hasattr(data, "__arrow_c_stream__")


class Connection:
    """One ADBC connection and the database object it was opened on."""

    def __init__(self, database: adbc.AdbcDatabase, conn: adbc.AdbcConnection):
        self._db = database
        self._conn = conn
        self._cursors: weakref.WeakSet[Cursor] = weakref.WeakSet()
        self._closed = False

    def cursor(self) -> Cursor:
        cur = Cursor(self._conn)
        self._cursors.add(cur)
        return cur

    def adbc_get_table_schema(
        self, table_name: str, *, db_schema_filter: str | None = None
    ) -> pa.Schema:
        handle = _blocking(
            self._conn.get_table_schema, self._conn.cancel, None, db_schema_filter, table_name
        )
        return pa.schema(handle)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for cur in list(self._cursors):
            cur.close()
        try:
            self._conn.close()
        finally:
            self._db.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Cursor:
    """One ADBC statement; a query's result is read lazily from its Arrow stream."""

    def __init__(self, conn: adbc.AdbcConnection):
        self._stmt: Any = adbc.AdbcStatement(conn)  # None once closed
        self._handle: Any = None  # the result's unread ArrowArrayStreamHandle
        self._reader: Any = None
        self._has_result = False
        self.rowcount = -1

    def _clear(self) -> None:
        if self._reader is not None:
            self._reader.close()
        elif self._handle is not None:
            self._handle.release()
        self._reader = self._handle = None
        self._has_result = False

    def _bind(self, data: Any) -> None:
        if hasattr(data, "__arrow_c_array__"):
            self._stmt.bind(data)
        elif hasattr(data, "__arrow_c_stream__"):
            self._stmt.bind_stream(data)
        else:
            raise TypeError(f"cannot bind {type(data).__name__}")

    def _prepare(self, operation: str) -> None:
        self._stmt.set_sql_query(operation)
        try:
            _blocking(self._stmt.prepare, self._stmt.cancel)
        except adbc.NotSupportedError:
            pass

    def execute(self, operation: str, parameters: Any = None) -> Cursor:
        """Run ``operation`` once; ``parameters``: a sequence of values, or Arrow data
        (one execution per row)."""
        self._clear()
        self._prepare(operation)
        if parameters is not None and _is_arrow(parameters):
            self._bind(parameters)
        elif parameters:
            self._bind(_one_row(parameters))
        self._handle, self.rowcount = _blocking(self._stmt.execute_query, self._stmt.cancel)
        self._has_result = True
        return self

    def executemany(self, operation: str, seq_of_parameters: Any) -> None:
        """Run ``operation`` once per row of ``seq_of_parameters`` (a list of value
        sequences, or Arrow data); nothing runs for an empty list."""
        self._clear()
        if _is_arrow(seq_of_parameters):
            data = seq_of_parameters
        elif not seq_of_parameters:
            return
        else:
            data = _rows(seq_of_parameters)
        self._prepare(operation)
        self._bind(data)
        self.rowcount = _blocking(self._stmt.execute_update, self._stmt.cancel)

    def _stream(self) -> Any:
        if not self._has_result:
            raise adbc.ProgrammingError(
                "no result: call execute() first", status_code=adbc.AdbcStatusCode.INVALID_STATE
            )
        if self._reader is None:
            if self._handle is None:
                raise adbc.ProgrammingError(
                    "the result was already read", status_code=adbc.AdbcStatusCode.INVALID_STATE
                )
            # the driver manager's reader turns errors while reading into ADBC errors
            from adbc_driver_manager._reader import AdbcRecordBatchReader

            handle, self._handle = self._handle, None
            self._reader = AdbcRecordBatchReader._import_from_c(handle.address)
        return self._reader

    def fetch_arrow_table(self) -> pa.Table:
        """The whole result as an Arrow table."""
        return _blocking(self._stream().read_all, self._stmt.cancel)

    def fetchall(self) -> list[tuple]:
        """The whole result as a list of tuples of Python values."""
        table = self.fetch_arrow_table()
        if table.num_rows == 0:
            return []
        return list(zip(*(values(col) for col in table.columns), strict=True))

    def adbc_ingest(
        self,
        table_name: str,
        data: Any,
        mode: str = "append",
        *,
        db_schema_name: str | None = None,
        temporary: bool = False,
    ) -> int:
        """Bulk-insert Arrow ``data`` (a record batch, table or reader) into
        ``table_name``; returns the rows the driver reports (-1 if unknown)."""
        self._clear()
        try:
            c_mode = _INGEST_MODES[mode]
        except KeyError:
            raise ValueError(f"invalid ingest mode {mode!r}") from None
        options = {adbc.INGEST_OPTION_TARGET_TABLE: table_name, adbc.INGEST_OPTION_MODE: c_mode}
        if db_schema_name is not None:
            options[_TARGET_DB_SCHEMA] = db_schema_name
        self._stmt.set_options(**options)
        if temporary:
            self._stmt.set_options(**{_TEMPORARY: "true"})
        else:
            try:  # clear it explicitly; not every driver knows the option
                self._stmt.set_options(**{_TEMPORARY: "false"})
            except adbc.NotSupportedError:
                pass
        self._bind(data)
        return _blocking(self._stmt.execute_update, self._stmt.cancel)

    def close(self) -> None:
        if self._stmt is None:
            return
        try:
            self._clear()
        finally:
            stmt, self._stmt = self._stmt, None
            stmt.close()

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _one_row(values: Sequence[Any]) -> pa.RecordBatch:
    # one array per Python type, sliced per column: an IN list of 200 symbols is one
    # conversion, not 200
    at: dict[type, list[int]] = {}
    for i, v in enumerate(values):
        at.setdefault(type(v), []).append(i)
    cols: list[Any] = [None] * len(values)
    for where in at.values():
        arr = array([values[i] for i in where])
        for j, i in enumerate(where):
            cols[i] = arr.slice(j, 1)
    return pa.RecordBatch.from_arrays(cols, names=[str(i) for i in range(len(values))])


def _rows(rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
    width = len(rows[0])
    cols: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for i, v in enumerate(row):
            cols[i].append(v)
    return pa.RecordBatch.from_arrays(
        [array(c) for c in cols], names=[str(i) for i in range(width)]
    )
