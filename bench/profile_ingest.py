"""Where a warm ``stockbatch.ingest`` spends its time, per thread: a profile, not a benchmark.

Runs the e2e benchmark's job (``N`` symbols x 1y daily from the fixture server in its own
process, fixed clock, a fresh SQLite file or the given database each round) and prints, per
round: the wall time, the CPU time of the I/O thread (fetch, HTTP, decode) and of the job's
thread (normalize, validate, store; the database's own work in ADBC runs outside the GIL),
and each chunk the job's thread stored: its rows and when it started and ended (ms after
the call began). The first round warms the server's cache and is not counted in the
medians.

    PYTHONPATH=src python bench/profile_ingest.py --symbols 200 --rounds 8
    PYTHONPATH=src python bench/profile_ingest.py --symbols 2000 --rounds 3
    STOCKBATCH_PG_URI=… PYTHONPATH=src python bench/profile_ingest.py --db "$STOCKBATCH_PG_URI"
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

import e2e_peers

import stockbatch
from stockbatch.pipeline import _stages
from stockbatch.testing import FixtureServer

_cpu: dict[str, float] = {}  # thread kind -> CPU seconds of the threads ended this round
_chunks: list[tuple[int, float, float]] = []  # rows, start, end (perf_counter)


def _instrument() -> None:
    run = threading.Thread.run

    def timed_run(self: threading.Thread) -> None:
        try:
            run(self)
        finally:
            kind = "io" if self.name.startswith("stockbatch-io") else "job"
            if self.name.startswith(("stockbatch-io", "stockbatch-job")):
                _cpu[kind] = _cpu.get(kind, 0.0) + time.thread_time()

    threading.Thread.run = timed_run
    process = _stages.ChunkStages.process

    def timed_process(self, chunk):
        t = time.perf_counter()
        try:
            return process(self, chunk)
        finally:
            _chunks.append((sum(b.num_rows for _, b in chunk), t, time.perf_counter()))

    _stages.ChunkStages.process = timed_process


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--db", help="database URI (default: a fresh SQLite file per round)")
    args = ap.parse_args()
    _instrument()
    symbols = e2e_peers.make_symbols(args.symbols)
    spec = e2e_peers.daily_spec()
    walls, ios, jobs = [], [], []
    with FixtureServer(process=True, now=e2e_peers.FIXED_NOW) as server:
        for i in range(args.rounds):
            uri = args.db or f"sqlite:///{tempfile.mkdtemp()}/profile.db"
            if args.db:
                e2e_peers.Target("postgresql", uri).reset(["bench_profile"])
            _cpu.clear()
            _chunks.clear()
            t0 = time.perf_counter()
            r = stockbatch.ingest(
                symbols,
                db=uri,
                source=e2e_peers.make_source(server.url),
                mode="append",
                table="bench_profile",
                **e2e_peers.history_kw(spec),
            )
            wall = time.perf_counter() - t0
            assert r.success, r
            chunks = ", ".join(
                f"{n} rows {1e3 * (a - t0):.0f}->{1e3 * (b - t0):.0f}" for n, a, b in _chunks
            )
            print(
                f"round {i}: {1e3 * wall:.0f} ms; CPU: I/O thread {1e3 * _cpu.get('io', 0):.0f} ms,"
                f" job thread {1e3 * _cpu.get('job', 0):.0f} ms; chunks: {chunks}"
            )
            if i:
                walls.append(wall)
                ios.append(_cpu.get("io", 0.0))
                jobs.append(_cpu.get("job", 0.0))
    if walls:
        print(
            f"medians of rounds 1-{len(walls)}: {1e3 * statistics.median(walls):.0f} ms; CPU: I/O "
            f"thread {1e3 * statistics.median(ios):.0f} ms, job thread "
            f"{1e3 * statistics.median(jobs):.0f} ms"
        )


if __name__ == "__main__":
    main()
