"""Append and upsert speed of one stockbatch checkout against another, SQLite (and optionally
PostgreSQL), interleaved runs, best of N. Used for issue 14 (trading-date column, symbols
table): run it with PYTHONPATH pointing at each checkout's src::

    python bench/append_speed.py --before /path/to/old/src --after src [--rows 1000000]

Each run is a fresh process (no shared imports). Wall time and the process's CPU time are
both reported: on a shared machine CPU time is the steadier of the two (the database
servers' own CPU is not in it, so use wall time for PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, os, sys, time, tempfile
import numpy as np, pyarrow as pa
from stockbatch import sinks
from stockbatch.schema import BARS
rows, symbols, what, uri = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
n = rows // symbols
rng = np.random.default_rng(0)
sym = np.repeat(np.array([f"S{i:05d}" for i in range(symbols)], dtype=object), n)
ts = np.tile(np.arange(n, dtype=np.int64) * 86_400_000_000 + 1_600_000_000_000_000, symbols)
c = rng.random(n * symbols) * 100
t = pa.Table.from_arrays([pa.array(sym, pa.string()), pa.array(["1d"] * (n * symbols)),
    pa.array(ts).cast(BARS.field("ts").type), pa.array(c), pa.array(c + 1), pa.array(c - 1),
    pa.array(c), pa.array(c), pa.array(rng.integers(0, 10**9, n * symbols)),
    pa.array(["bench"] * (n * symbols))], schema=BARS)
table = "bench_append_" + os.urandom(4).hex()
with sinks.connect(uri, tables={"bars": table}) as s:
    s.drop_table(table)
    t0, c0 = time.perf_counter(), time.process_time()
    s.ingest(t, mode="create_append" if what == "append" else "upsert")
    if what == "upsert":  # the second upsert of the same rows: all unchanged
        t0, c0 = time.perf_counter(), time.process_time()
        s.ingest(t, mode="upsert")
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    s.drop_table(table)
print(json.dumps({"seconds": dt, "cpu": dc}))
"""


def run(src: str, rows: int, symbols: int, what: str, uri: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(src), PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(rows), str(symbols), what, uri],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--uri", default=None, help="default: a fresh SQLite file per run")
    ap.add_argument("--what", default="append", choices=("append", "upsert"))
    a = ap.parse_args()
    best = {n: {"seconds": float("inf"), "cpu": float("inf")} for n in ("before", "after")}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeat):
            for name in ("before", "after") if i % 2 == 0 else ("after", "before"):
                uri = a.uri or f"sqlite:///{tmp}/{name}{i}.db"
                got = run(getattr(a, name), a.rows, a.symbols, a.what, uri)
                for k in ("seconds", "cpu"):
                    best[name][k] = min(best[name][k], got[k])
    for name, b in best.items():
        print(
            f"{name:6s} {a.what} {a.rows:,} rows: best {b['seconds']:.3f} s wall "
            f"({a.rows / b['seconds']:,.0f} rows/s), {b['cpu']:.3f} s CPU of this process"
        )
    for k in ("seconds", "cpu"):
        print(
            f"change ({'wall' if k == 'seconds' else 'CPU'}): "
            f"{100 * (best['after'][k] / best['before'][k] - 1):+.1f} %"
        )


if __name__ == "__main__":
    main()
