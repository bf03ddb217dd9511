"""pytest fixtures for users of stockbatch (the ``pytest11`` entry point ``stockbatch``).

Installed with stockbatch and inactive unless a test asks for one of its fixtures (nothing is
started, imported or patched otherwise):

``stockbatch_server``
    A :class:`~stockbatch.testing.FixtureServer` on loopback for the session, speaking
    Yahoo's and Alpha Vantage's APIs with synthetic, deterministic data (``.url``). Add
    faults with ``stockbatch_server.add_fault("latency", delay=0.5)``; use
    ``stockbatch_faults`` to have them cleared after the test.
``stockbatch_faults``
    The same server; every fault added during the test is removed afterwards.
``stockbatch_bars``
    A factory of seeded synthetic bars in the canonical schema:
    ``stockbatch_bars(symbols=10, bars=250, seed=0)`` returns a ``pyarrow.Table``.
``stockbatch_db``
    A temporary database, emptied afterwards: SQLite always; also PostgreSQL (in a schema of
    its own, dropped afterwards) when ``STOCKBATCH_PG_URI`` is set, as a second run of the
    test. ``.uri`` to give to ``stockbatch.ingest(db=...)`` or your own code, ``.kind``,
    ``.rows(table="bars")`` (counted by the database).
``stockbatch_race`` with :func:`against_stockbatch`
    Your fetch-and-store function and ``stockbatch.ingest`` in one pytest-benchmark group,
    on the same server, symbols and kind of database::

        from stockbatch.testing.pytest_plugin import against_stockbatch

        def my_loop(symbols, base_url, db, period):  # your code: fetch, then store
            ...

        @against_stockbatch(my_loop)
        def test_ingest_speed(stockbatch_race):
            stockbatch_race(symbols=200, period="1y")

    ``pytest --benchmark-only`` then prints ``my_loop`` and ``stockbatch`` side by side.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["against_stockbatch", "TempDatabase", "synthetic_bars"]

PG_ENV = "STOCKBATCH_PG_URI"


# -- the fixture server -------------------------------------------------------------------


@pytest.fixture(scope="session")
def stockbatch_server() -> Iterator[Any]:
    """The loopback fixture server for the session (``.url``, ``.add_fault(...)``)."""
    from stockbatch.testing import FixtureServer

    with FixtureServer() as srv:
        yield srv


@pytest.fixture
def stockbatch_faults(stockbatch_server: Any) -> Iterator[Any]:
    """``stockbatch_server``, with the faults this test adds removed afterwards."""
    yield stockbatch_server
    stockbatch_server.clear_faults()


# -- synthetic bars -----------------------------------------------------------------------


def synthetic_bars(
    symbols: int | list[str] = 10,
    bars: int = 250,
    *,
    seed: int = 0,
    interval: str = "1d",
    start: str = "2020-01-01",
) -> Any:
    """``bars`` bars for each of ``symbols`` (a count, or names), a seeded random walk in the
    canonical ``BARS`` schema, sorted by symbol and time. Same arguments, same table."""
    import numpy as np
    import pyarrow as pa

    from stockbatch.schema import BARS

    steps = {
        "1m": 60,
        "5m": 300,
        "15m": 900,
        "30m": 1800,
        "1h": 3600,
        "60m": 3600,
        "1d": 86_400,
        "1wk": 7 * 86_400,
    }
    if interval not in steps:
        raise ValueError(f"interval must be one of {', '.join(steps)}, not {interval!r}")
    names = [f"SYN{i:05d}" for i in range(symbols)] if isinstance(symbols, int) else list(symbols)
    if not names or bars < 1:
        raise ValueError("need at least one symbol and one bar")
    rng = np.random.default_rng(seed)
    n = len(names) * bars
    t0 = np.datetime64(start, "us").astype(np.int64)
    ts = np.tile(t0 + np.arange(bars, dtype=np.int64) * steps[interval] * 1_000_000, len(names))
    walk = rng.normal(0.0002, 0.015, (len(names), bars)).cumsum(axis=1)
    close = (rng.uniform(10, 500, (len(names), 1)) * np.exp(walk)).ravel()
    open_ = close * np.exp(rng.normal(0, 0.004, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.006, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.006, n)))
    cols = {
        "symbol": pa.array(np.repeat(names, bars)),
        "interval": pa.array([interval] * n),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "adj_close": close,
        "volume": rng.lognormal(14, 0.7, n).astype(np.int64),
        "source": pa.array(["synthetic"] * n),
    }
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in BARS}, schema=BARS)


@pytest.fixture
def stockbatch_bars() -> Callable[..., Any]:
    """``stockbatch_bars(symbols=10, bars=250, seed=0, interval="1d")`` → a pyarrow Table
    of seeded synthetic bars (see :func:`synthetic_bars`)."""
    return synthetic_bars


# -- temporary databases ------------------------------------------------------------------


@dataclass
class TempDatabase:
    """A database for one test: ``uri`` (give it to ``stockbatch.ingest(db=...)`` or to
    your own code), ``kind`` (``"sqlite"`` or ``"postgresql"``), ``path`` (SQLite only)."""

    kind: str
    uri: str
    path: Path | None = None

    def rows(self, table: str = "bars") -> int:
        """Rows in ``table`` now, counted by the database (0 when it does not exist)."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", table):
            raise ValueError(f"table must be a plain name (letters, digits, _), not {table!r}")
        if self.kind == "sqlite":
            import sqlite3

            assert self.path is not None
            if not self.path.exists():
                return 0
            with sqlite3.connect(self.path) as conn:
                if not conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
                ).fetchall():
                    return 0
                # the name is checked above (a plain identifier) and quoted
                return int(
                    conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # noqa: S608
                )
        import adbc_driver_postgresql.dbapi as pg

        with pg.connect(self.uri, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename = $1",
                (table,),
            )
            if not cur.fetchone()[0]:
                return 0
            cur.execute(f'SELECT count(*) FROM "{table}"')  # noqa: S608 - checked name
            return int(cur.fetchone()[0])

    def __repr__(self) -> str:
        from stockbatch._redact import redact

        return f"TempDatabase(kind={self.kind!r}, uri={redact(self.uri)!r})"


def _db_kinds() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(PG_ENV) else ["sqlite"]


def _pg_admin(uri: str, statement: str) -> None:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement)


def temp_database(kind: str, tmp_path: Path) -> Iterator[TempDatabase]:
    """Make a :class:`TempDatabase` of ``kind``; clean it up when the generator ends."""
    if kind == "sqlite":
        path = tmp_path / "stockbatch-test.db"
        yield TempDatabase("sqlite", f"sqlite:///{path}", path)
        return
    base = os.environ[PG_ENV]
    schema = f"sbtest_{uuid.uuid4().hex[:12]}"
    _pg_admin(base, f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    try:
        yield TempDatabase("postgresql", f"{base}{sep}options=-csearch_path%3D{schema}")
    finally:
        _pg_admin(base, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=_db_kinds())
def stockbatch_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TempDatabase]:
    """A temporary database: SQLite, and PostgreSQL too when ``STOCKBATCH_PG_URI`` is set."""
    yield from temp_database(request.param, tmp_path)


# -- your code against stockbatch, in one benchmark group -----------------------------------

_CONTENDER = "stockbatch_contender"


def against_stockbatch(mine: Callable[..., Any], *, name: str | None = None) -> Any:
    """Mark a test to run twice: once with ``mine`` and once with ``stockbatch.ingest``
    (ids ``name or mine.__name__`` and ``stockbatch``). ``mine(symbols, base_url, db, period)``
    fetches ``period`` of daily bars of ``symbols`` from ``base_url`` (Yahoo's chart API)
    and stores them in ``db`` (a URI); the test calls ``stockbatch_race(...)`` once."""
    if not callable(mine):
        raise ValueError("against_stockbatch needs your fetch-and-store function")
    label = name or getattr(mine, "__name__", "mine")
    if label == "stockbatch":
        raise ValueError("name 'stockbatch' is taken by stockbatch's own run")
    return pytest.mark.parametrize(_CONTENDER, [mine, "stockbatch"], ids=[label, "stockbatch"])


@pytest.fixture
def stockbatch_contender(request: pytest.FixtureRequest) -> Any:
    raise pytest.UsageError(
        "stockbatch_race needs the test marked with @against_stockbatch(your_function)"
    )


def _stockbatch_ingest(symbols: list[str], base_url: str, db: str, **options: Any) -> None:
    import stockbatch

    result = stockbatch.ingest(symbols, db=db, base_url=base_url, **options)
    if not result.success:
        raise AssertionError(f"stockbatch.ingest failed: {result.summary()}")


@pytest.fixture
def stockbatch_race(
    request: pytest.FixtureRequest,
    stockbatch_server: Any,
    stockbatch_contender: Any,
    tmp_path: Path,
) -> Callable[..., Any]:
    """``stockbatch_race(symbols=100, period="1y", rounds=3)`` benchmarks this run's
    contender (see :func:`against_stockbatch`) in the group named after the test: each round
    stores the same symbols from the same server into a fresh SQLite database. Returns the
    rows the last round left in its ``bars`` table (counted by the database; 0 when your
    code uses another table)."""
    try:
        benchmark = request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:
        raise pytest.UsageError(
            "stockbatch_race needs pytest-benchmark (pip install pytest-benchmark)"
        ) from None
    group = re.sub(r"\[.*\]$", "", request.node.name)

    def race(
        symbols: int | list[str] = 100, period: str = "1y", rounds: int = 3, **options: Any
    ) -> int:
        names = [f"R{i:05d}" for i in range(symbols)] if isinstance(symbols, int) else list(symbols)
        fn = stockbatch_contender
        if fn == "stockbatch":

            def fn(s: list[str], url: str, db: str, period: str) -> None:
                _stockbatch_ingest(s, url, db, period=period, **options)

        made: list[TempDatabase] = []

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            path = tmp_path / f"race-{len(made)}.db"
            made.append(TempDatabase("sqlite", f"sqlite:///{path}", path))
            return (names, stockbatch_server.url, made[-1].uri, period), {}

        benchmark.group = group
        benchmark.extra_info.update(symbols=len(names), period=period)
        benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=1)
        return made[-1].rows() if made else 0

    return race
