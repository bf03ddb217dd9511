"""Fixtures reusable by every integration test.

``fixture_server``: one thread-served FixtureServer for the session (no faults: do not add
any to it). ``faulty_server``: a fresh server per test, to inject faults into.
``db`` / ``uri`` / ``names`` / ``sink``: one sink per database kind, on tables with a random
suffix that are dropped afterwards (runs and engineers sharing the servers never collide).
"""

from __future__ import annotations

import uuid

import pytest

from stockbatch import sinks
from stockbatch.sources import RetryPolicy
from stockbatch.testing import FixtureServer


@pytest.fixture(scope="session")
def fixture_server():
    with FixtureServer() as srv:
        yield srv


@pytest.fixture
def faulty_server():
    with FixtureServer() as srv:
        yield srv


@pytest.fixture
def fast_retry() -> RetryPolicy:
    """Retries without long sleeps (tests stay fast)."""
    return RetryPolicy(attempts=4, base=0.01, max_delay=0.05, max_retry_after=5.0)


DBS = ["sqlite", "duckdb", "postgresql", "mysql"]


@pytest.fixture(params=DBS)
def db(request) -> str:
    return request.param


@pytest.fixture
def uri(db, request, tmp_path) -> str:
    if db == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    if db == "duckdb":
        return f"duckdb:///{tmp_path / 'test.duckdb'}"
    if db == "postgresql":
        return request.getfixturevalue("pg_uri")
    return request.getfixturevalue("mysql_uri")


@pytest.fixture
def names() -> dict:
    tag = uuid.uuid4().hex[:10]
    return {
        "bars": f"sbt_bars_{tag}",
        "quotes": f"sbt_quotes_{tag}",
        "quarantine": f"sbt_quar_{tag}",
        "ingest_log": f"sbt_log_{tag}",
    }


@pytest.fixture
def sink(uri, names):
    s = sinks.connect(uri, tables=names)
    yield s
    for t in names.values():
        s.drop_table(t)
    s.close()
