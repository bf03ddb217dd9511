"""Dask DataFrames of stored bars, partitioned by symbol, and the kernels applied per partition.

:func:`read` gives each partition whole symbols (the symbols sorted and cut into
``npartitions`` runs), so every kernel that works per (symbol, interval) segment — validate,
normalize, resample, returns, the indicators — runs on each partition alone:
:func:`apply` is ``map_partitions`` with the output schema declared as ``meta`` (the kernel
run on the canonical empty frame), so nothing is computed to guess it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from .. import _kernels as kernels
from .. import indicators as ind
from ..schema import BARS, QUOTES, conform
from ..sinks import Sink, connect
from ..sinks._ddl import sql

__all__ = ["read", "apply", "KERNELS"]

#: What :func:`apply` runs, and the options each takes.
KERNELS = ("validate", "normalize", "resample", "returns", "log_returns", "indicators")


def read(
    db: str | os.PathLike,
    symbols: Iterable[str] | str | None = None,
    *,
    npartitions: int,
    interval: str | None = None,
    start: Any = None,
    end: Any = None,
    table: str | None = None,
    kind: str = "bars",
) -> Any:
    """Stored bars (or quotes) as a Dask DataFrame with ``npartitions`` partitions, each
    holding whole symbols (sorted by symbol, then key), read by the workers (each with its
    own sink for ``db``).

    ``symbols``: default every symbol in the table. Other options are those of
    :func:`stockbatch.read`. The columns and dtypes are ``BARS.empty_table().to_pandas()``'s.
    """
    import dask.dataframe as dd

    if isinstance(db, Sink):
        raise TypeError("db must be a URI (an open Sink cannot cross to the workers)")
    if npartitions < 1:
        raise ValueError("npartitions must be at least 1")
    if kind not in ("bars", "quotes"):
        raise ValueError("kind must be 'bars' or 'quotes'")
    db = os.fspath(db)
    if isinstance(symbols, str):
        symbols = [symbols]
    names = sorted(set(symbols)) if symbols is not None else _stored_symbols(db, table, kind)
    groups = _cut(names, npartitions)
    meta = (BARS if kind == "bars" else QUOTES).empty_table().to_pandas()
    options = dict(interval=interval, start=start, end=end, table=table, kind=kind)
    return dd.from_map(
        _read_part, groups, db=db, options=options, meta=meta, enforce_metadata=False
    )


def _cut(names: list[str], n: int) -> list[list[str]]:
    n = max(1, min(n, len(names)))
    size, extra = divmod(len(names), n)
    out, at = [], 0
    for i in range(n):
        k = size + (1 if i < extra else 0)
        out.append(names[at : at + k])
        at += k
    return out


def _sink(db: str) -> tuple[Sink, bool]:
    """This worker's kept sink for ``db`` (or a fresh one outside a worker: closed after)."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return connect(db), True
    from ._worker import worker_state

    return worker_state().sink(db), False


def _read_part(symbols: list[str], db: str, options: dict[str, Any]) -> Any:
    sink, owned = _sink(db)
    try:
        return sink.read(symbols=symbols, **options).to_pandas()
    finally:
        if owned:
            sink.close()


def _stored_symbols(db: str, table: str | None, kind: str) -> list[str]:
    """The distinct symbols of the table (one small query; the identifier validated and
    quoted by the sink's own rules)."""
    with connect(db) as sink:
        name = sink.check_table(table if table is not None else sink.tables[kind])
        quote = sink.dialect.quote
        with sink.pool.connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute(sql("SELECT DISTINCT {s} FROM {t}", s=quote("symbol"), t=quote(name)))
                return sorted(str(r[0]) for r in cur.fetchall())
            finally:
                cur.close()


def apply(frame: Any, kernel: str, **options: Any) -> Any:
    """Run ``kernel`` on every partition of ``frame`` (each must hold whole symbols, as
    :func:`read`'s do) and return the Dask DataFrame of its output.

    ``validate`` (``rules=``, ``spike_threshold=``): the rows with a ``reasons`` column
    (empty for a valid row: rows are never lost). ``normalize`` (``adjust=``): sorted, exact
    duplicate keys dropped. ``resample`` (``to=``, ``tz=``): aggregated bars. ``returns`` /
    ``log_returns`` (``column=``): the rows with that column added. ``indicators``
    (``specs=``, ``tz=``): the rows with one column per indicator output.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}: use one of {', '.join(KERNELS)}")
    if kernel == "indicators":
        ind._plan(options.get("specs", ()))  # an unknown spec fails now, not on a worker
    meta = _run(frame._meta, kernel, options)
    return frame.map_partitions(_run, kernel, options, meta=meta)


def _run(part: Any, kernel: str, options: dict[str, Any]) -> Any:
    table = conform(pa.Table.from_pandas(part, preserve_index=False))
    if kernel == "validate":
        report = kernels.validate(table, **options)
        out = report.table.append_column("reasons", report.reasons())
    elif kernel == "normalize":
        out = kernels.normalize(table, **options).table
    elif kernel == "resample":
        out = kernels.resample(table, **options)
    elif kernel in ("returns", "log_returns"):
        fn = kernels.returns if kernel == "returns" else kernels.log_returns
        out = table.append_column(kernel, fn(table, **options))
    else:
        out = ind.compute(table, options.get("specs", ()), tz=options.get("tz"))
    return out.to_pandas()
