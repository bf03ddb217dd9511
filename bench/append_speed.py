"""Append and upsert speed of one stockbatch checkout against another, SQLite (and optionally
PostgreSQL), interleaved runs, best of N. Used for issue 14 (trading-date column, symbols
table): run it with PYTHONPATH pointing at each checkout's src::

    python bench/append_speed.py --before /path/to/old/src --after src [--rows 1000000]

Each run is a fresh process (no shared imports); the figure is rows per second.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_CHILD = r'''
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
    t0 = time.perf_counter()
    s.ingest(t, mode="create_append" if what == "append" else "upsert")
    if what == "upsert":  # the second upsert of the same rows: all unchanged
        t0 = time.perf_counter()
        s.ingest(t, mode="upsert")
    dt = time.perf_counter() - t0
    s.drop_table(table)
print(json.dumps({"seconds": dt}))
'''


def run(src: str, rows: int, symbols: int, what: str, uri: str) -> float:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(src), PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run([sys.executable, "-c", _CHILD, str(rows), str(symbols), what, uri],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


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
    best = {"before": float("inf"), "after": float("inf")}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeat):
            for name in ("before", "after") if i % 2 == 0 else ("after", "before"):
                uri = a.uri or f"sqlite:///{tmp}/{name}{i}.db"
                sec = run(getattr(a, name), a.rows, a.symbols, a.what, uri)
                best[name] = min(best[name], sec)
    for name, sec in best.items():
        print(f"{name:6s} {a.what} {a.rows:,} rows: best {sec:.3f} s "
              f"({a.rows / sec:,.0f} rows/s)")
    print(f"change: {100 * (best['after'] / best['before'] - 1):+.1f} % time")


if __name__ == "__main__":
    main()
