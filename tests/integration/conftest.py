"""Fixture-server fixtures, reusable by every integration test.

``fixture_server``: one thread-served FixtureServer for the session (no faults: do not add
any to it). ``faulty_server``: a fresh server per test, to inject faults into.
"""

from __future__ import annotations

import pytest

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
