"""Shared fixtures.

Every unit test that takes ``load`` runs once per backend: the compiled modules and their
pure-Python twins (only the twins under STOCKBATCH_PURE_PYTHON=1). Database fixtures read
STOCKBATCH_PG_URI / STOCKBATCH_MYSQL_URI; under CI=true a missing database fails the test.
"""

from __future__ import annotations

import os

import pytest

from stockbatch import _backend

BACKENDS = ["python"] if _backend.PURE_PYTHON else ["cython", "python"]
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(params=BACKENDS)
def backend_name(request) -> str:
    """``"cython"`` or ``"python"``."""
    return request.param


@pytest.fixture
def load(backend_name):
    """``load("kernels")`` imports that module from the backend under test."""
    return lambda name: _backend.load_from(backend_name, name)


def _reachable(env: str, what: str, probe) -> str:
    """The URI in ``env`` once ``probe(uri)`` has reached it: a missing or unreachable
    database skips the test (fails it under CI=true)."""
    uri = os.environ.get(env)
    if not uri:
        if IN_CI:
            pytest.fail(f"{env} is not set: CI needs {what}")
        pytest.skip(f"{env} is not set ({what})")
    try:
        probe(uri)
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        if IN_CI:
            pytest.fail(f"{what} at {env} is unreachable: {type(exc).__name__}")
        pytest.skip(f"{what} unreachable: {type(exc).__name__}")
    return uri


def _select_1(uri: str) -> None:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")


def _mysql_connect(uri: str) -> None:
    from urllib.parse import urlparse

    import pymysql

    u = urlparse(uri)
    pymysql.connect(
        host=u.hostname,
        port=u.port or 3306,
        user=u.username or "root",
        password=u.password or "",
        database=u.path.lstrip("/") or None,
    ).close()


@pytest.fixture(scope="session")
def pg_uri() -> str:
    """URI of the PostgreSQL test database (checked reachable)."""
    return _reachable("STOCKBATCH_PG_URI", "PostgreSQL", _select_1)


@pytest.fixture(scope="session")
def mysql_uri() -> str:
    """URI of the MariaDB/MySQL test database (checked reachable)."""
    return _reachable("STOCKBATCH_MYSQL_URI", "MariaDB/MySQL", _mysql_connect)
