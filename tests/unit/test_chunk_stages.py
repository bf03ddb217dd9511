"""The store stage without a network: retries, and the last try's bisection that quarantines
exactly the rows the database refuses. Real SQLite files; bars made here."""

from __future__ import annotations

import sqlite3

import pyarrow as pa
import pytest

from stockbatch.pipeline._job import PipelineJob
from stockbatch.pipeline._result import JobResult, SymbolOutcome
from stockbatch.pipeline._stages import ChunkStages
from stockbatch.schema import BARS
from stockbatch.sinks import connect
from stockbatch.sources import YahooChartSource

DAY = 86_400_000_000


def bars(symbol: str, closes: list[float]) -> pa.RecordBatch:
    n = len(closes)
    return pa.RecordBatch.from_pydict(
        {
            "symbol": [symbol] * n,
            "interval": ["1d"] * n,
            "ts": [1_735_689_600_000_000 + i * DAY for i in range(n)],
            "open": closes,
            "high": [c + 1 for c in closes],
            "low": [c - 1 for c in closes],
            "close": closes,
            "adj_close": closes,
            "volume": [100] * n,
            "source": ["test"] * n,
        },
        schema=BARS,
    )


def stages_for(db, symbols, *, attempts: int) -> ChunkStages:
    job = PipelineJob(symbols=tuple(symbols), source=YahooChartSource(), sink=str(db))
    result = JobResult(job_id=job.job_id, symbols={s: SymbolOutcome(s) for s in symbols})
    return ChunkStages(
        job,
        result,
        connect(str(db)),
        fetch=None,  # type: ignore[arg-type]
        chunk_rows=1000,
        min_chunk_rows=1,
        flush_seconds=1.0,
        store_attempts=attempts,
    )


def make_table(db, check: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE bars (symbol TEXT NOT NULL, interval TEXT NOT NULL, "
            "ts INT64_US_UTC NOT NULL, open REAL, high REAL, low REAL, "
            f"close REAL {check}, adj_close REAL, volume BIGINT, source TEXT, "
            "PRIMARY KEY (symbol, interval, ts))"
        )


def stored(db) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT symbol, count(*) FROM bars GROUP BY symbol"))


def test_the_last_attempt_bisects_and_quarantines_only_refused_rows(tmp_path):
    db = tmp_path / "split.db"
    make_table(db, "CHECK (close < 100)")
    st = stages_for(db, ["A", "B"], attempts=3)
    st.process([("A", bars("A", [10, 20, 150, 30])), ("B", bars("B", [200, 300]))])
    a, b = st.result.symbols["A"], st.result.symbols["B"]
    assert (a.status, a.rows, a.refused, a.quarantined) == ("stored", 3, 1, 1)
    assert (b.status, b.rows, b.refused, b.quarantined) == ("refused", 0, 2, 2)
    assert "CHECK" in b.error.upper()
    assert st.attempts == 3 and st.refused == 3
    assert stored(db) == {"A": 3}
    st.sink.close()


def test_a_single_attempt_does_not_bisect(tmp_path):
    db = tmp_path / "one.db"
    make_table(db, "CHECK (close < 100)")
    st = stages_for(db, ["A"], attempts=1)
    st.process([("A", bars("A", [10, 150]))])
    a = st.result.symbols["A"]
    assert a.status == "failed" and a.rows == 0 and "SinkError" in a.error
    assert st.attempts == 1 and stored(db) == {}
    st.sink.close()


@pytest.mark.parametrize("attempts", [1, 2, 3])
def test_a_clean_chunk_is_stored_on_the_first_attempt(tmp_path, attempts):
    db = tmp_path / "clean.db"
    st = stages_for(db, ["A", "B"], attempts=attempts)
    st.process([("A", bars("A", [10, 20])), ("B", bars("B", [30]))])
    assert st.attempts == 1
    assert {s: o.rows for s, o in st.result.symbols.items()} == {"A": 2, "B": 1}
    assert stored(db) == {"A": 2, "B": 1}
    st.sink.close()
