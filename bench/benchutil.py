"""Helpers shared by the benchmark suites.

Under ``pytest bench --benchmark-disable`` (what CI runs, to keep the suites runnable) or with
``STOCKBATCH_BENCH_QUICK=1`` (``stockbatch bench --quick``) every size is capped by
:func:`sized`, so the code paths run without paying for 1e7 rows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest

QUICK_CAP = 20_000
PG_URI = os.environ.get("STOCKBATCH_PG_URI", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"

# database -> (URI variable, words naming it in a benchmark's id or parameters)
DATABASES = {
    "PostgreSQL": ("STOCKBATCH_PG_URI", ("postgresql", "postgres", "pg")),
    "MariaDB/MySQL": ("STOCKBATCH_MYSQL_URI", ("mysql", "mariadb")),
}


def quick() -> bool:
    """True when the benchmarks run once each on small data (--benchmark-disable, --quick)."""
    return os.environ.get("STOCKBATCH_BENCH_QUICK") == "1"


def sized(n: int) -> int:
    """``n``, or a small stand-in when the benchmarks only run for coverage."""
    return min(n, QUICK_CAP) if quick() else n


def needs_database(nodeid: str, params: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """Why a benchmark must not run here: it uses a database whose URI variable is unset
    (None when it may run). Read from its parameters and its id's words."""
    words = {w.lower() for w in re.split(r"[^A-Za-z0-9]+", nodeid) if w}
    words |= {str(v).lower() for v in params.values() if isinstance(v, str)}
    for name, (var, names) in DATABASES.items():
        if not env.get(var) and words & set(names):
            return f"{var} is not set: no {name} benchmark (only databases given to bench)"
    return None


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (Linux); NaN for None."""
    if pid is None:
        return float("nan")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def need_postgres(probe: Callable[[str], Any]) -> None:
    """Skip the calling benchmark (fail it under CI=true) unless ``probe(PG_URI)`` reaches
    PostgreSQL; the probe uses the driver the benchmark's peers use."""
    try:
        probe(PG_URI)
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        if IN_CI:
            pytest.fail(f"PostgreSQL at STOCKBATCH_PG_URI is unreachable: {type(exc).__name__}")
        pytest.skip(f"PostgreSQL unreachable: {type(exc).__name__}")
