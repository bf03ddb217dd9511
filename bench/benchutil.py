"""Helpers shared by the benchmark suites.

Under ``pytest bench --benchmark-disable`` (what CI runs, to keep the suites runnable) every
size is capped by :func:`sized`, so CI checks the code paths without paying for 1e7 rows.
"""

from __future__ import annotations

import os

QUICK_CAP = 20_000


def quick() -> bool:
    """True when the benchmarks run once each for coverage (--benchmark-disable)."""
    return os.environ.get("STOCKBATCH_BENCH_QUICK") == "1"


def sized(n: int) -> int:
    """``n``, or a small stand-in when the benchmarks only run for coverage."""
    return min(n, QUICK_CAP) if quick() else n
