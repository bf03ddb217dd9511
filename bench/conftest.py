"""Benchmark-suite setup.

- ``--benchmark-disable`` (CI) or ``STOCKBATCH_BENCH_QUICK=1`` (``stockbatch bench --quick``):
  every size is capped (see ``benchutil.sized``).
- A benchmark touches only the databases it is given: without ``STOCKBATCH_PG_URI`` no
  PostgreSQL benchmark runs, without ``STOCKBATCH_MYSQL_URI`` no MariaDB/MySQL one (they are
  skipped at collection, whatever default a benchmark file has).
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from benchutil import needs_database


def pytest_configure(config):
    # --benchmark-disable: run every benchmark once on small data (see benchutil.sized)
    if getattr(config.option, "benchmark_disable", False):
        os.environ["STOCKBATCH_BENCH_QUICK"] = "1"


def pytest_collection_modifyitems(config, items):
    for item in items:
        why = needs_database(
            item.nodeid, getattr(getattr(item, "callspec", None), "params", {}), os.environ
        )
        if why:
            item.add_marker(pytest.mark.skip(reason=why))
