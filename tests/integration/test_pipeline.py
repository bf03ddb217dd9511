"""The engine end to end: fixture server over real sockets → kernels → real databases."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import stockbatch as sb
from stockbatch.pipeline import BatchProcessingEngine, run_pipeline
from stockbatch.schema import BARS
from stockbatch.sources import RetryPolicy, Source, YahooChartSource

SYMS = ["AAPL", "MSFT", "7203.T", "6758.T", "S0001"]


def source(srv, **kw) -> YahooChartSource:
    kw.setdefault("retry", RetryPolicy(attempts=3, base=0.01, max_delay=0.05, max_retry_after=2.0))
    return YahooChartSource(base_url=srv.url, rate=1e9, burst=10**6, **kw)


def counts(table) -> dict[str, int]:
    vc = pc.value_counts(table["symbol"])
    return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))


def rows_in(db, table="bars") -> int:
    """Rows in ``table`` (0 when no chunk ever made it)."""
    with sqlite3.connect(db) as con:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchall():
            return 0
        return con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def test_ingest_stores_every_bar_and_reports_per_symbol(fixture_server, tmp_path):
    db = tmp_path / "a.db"
    fetched = sb.fetch(SYMS, base_url=fixture_server.url, period="1y")
    seen = []
    result = sb.ingest(
        SYMS, db=db, base_url=fixture_server.url, period="1y", on_progress=seen.append
    )
    assert result.success and result.status == "completed"
    assert set(result.symbols) == set(SYMS)
    report = sb.validate(fetched)  # the fixture, like Yahoo, sends some null bars
    valid, bad = counts(report.valid), counts(report.rejected)
    for s in SYMS:
        o = result.symbols[s]
        assert (o.status, o.rows, o.quarantined, o.error) == (
            "stored",
            valid.get(s, 0),
            bad.get(s, 0),
            None,
        )
    assert result.rows_stored == report.n_valid == rows_in(db)
    assert result.rows_rejected == report.n_rejected == rows_in(db, "quarantine")
    st = result.stages
    assert st["fetch"].rows_out == st["transform"].rows_in == fetched.num_rows
    assert st["store"].rows_out == report.n_valid
    assert result.stats["provider_calls"] == len(SYMS)
    assert result.stats["error_rate"] == 0.0
    assert seen and seen[-1].symbols_done == len(SYMS)
    assert seen[-1].rows_stored == report.n_valid
    json.dumps(result.to_dict())
    assert "5 stored" in result.summary()
    back = sb.read(db, SYMS)
    assert back.schema.equals(BARS, check_metadata=False)
    assert back.equals(report.valid.select(back.schema.names).combine_chunks())


def test_rerun_is_idempotent(fixture_server, tmp_path):
    db = tmp_path / "b.db"
    first = sb.ingest(SYMS[:3], db=db, base_url=fixture_server.url, period="6mo")
    n = rows_in(db)
    second = sb.ingest(SYMS[:3], db=db, base_url=fixture_server.url, period="6mo")
    assert first.success and second.success
    assert rows_in(db) == n == second.rows_stored
    with sqlite3.connect(db) as con:
        jobs = con.execute(
            "SELECT job_id, rows_written, rows_updated, rows_ignored "
            "FROM ingest_log ORDER BY started"
        ).fetchall()
    assert {j[0] for j in jobs} == {first.job_id, second.job_id}
    last = [j for j in jobs if j[0] == second.job_id]
    assert sum(j[1] for j in last) == 0 and sum(j[3] for j in last) == n  # nothing changed


def test_failures_are_per_symbol_and_never_sink_the_job(faulty_server, tmp_path):
    faulty_server.add_fault("status", route="chart", symbols=["MSFT"], status=500)
    faulty_server.add_fault(
        "rate_limit", route="chart", symbols=["AAPL"], times=1, retry_after=0.05
    )
    faulty_server.add_fault("malformed", route="chart", symbols=["6758.T"])
    syms = [*SYMS, "UNKNOWN_ONE"]
    result = sb.ingest(syms, db=tmp_path / "c.db", source=source(faulty_server), period="3mo")
    assert result.status == "completed" and not result.success
    assert sorted(result.failed_symbols) == ["6758.T", "MSFT", "UNKNOWN_ONE"]
    assert "SymbolNotFound" in result.symbols["UNKNOWN_ONE"].error
    assert "ProviderUnavailable" in result.symbols["MSFT"].error
    assert "DecodeError" in result.symbols["6758.T"].error
    assert result.symbols["AAPL"].status == "stored"  # the 429 was retried after Retry-After
    assert result.stats["retries"] >= 1 and result.stats["rate_limited"] >= 1
    stored = {s for s, o in result.symbols.items() if o.status == "stored"}
    assert stored == {"AAPL", "7203.T", "S0001"}
    back = sb.read(tmp_path / "c.db")
    assert set(back["symbol"].to_pylist()) == stored
    assert result.stats["error_rate"] == pytest.approx(3 / 6)


class CraftedSource(Source):
    """A user-written source (the plug-in interface) serving hand-made bars."""

    name = "crafted"

    def __init__(self, batches: dict[str, pa.RecordBatch]):
        super().__init__()
        self.batches = batches

    async def fetch_history(self, symbol, *, interval="1d", start=None, end=None, period=None):
        self.stats.requests += 1
        await asyncio.sleep(0)
        return self.batches[symbol]


def bars(symbol, closes, *, highs=None, day0=20_000, dup_last=False):
    n = len(closes)
    ts = [(day0 + i) * 86_400_000_000 for i in range(n)]
    if dup_last:
        ts[-1] = ts[-2]
    highs = highs or [c + 1 for c in closes]
    return pa.RecordBatch.from_pydict(
        {
            "symbol": [symbol] * n,
            "interval": ["1d"] * n,
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "open": closes,
            "high": highs,
            "low": [c - 1 for c in closes],
            "close": closes,
            "adj_close": closes,
            "volume": [100] * n,
            "source": ["crafted"] * n,
        },
        schema=BARS,
    )


def test_bad_rows_are_quarantined_with_reasons_and_the_rest_stored(tmp_path):
    good = bars("GOOD", [10.0, 11.0, 12.0])
    bad = bars("BAD", [10.0, 11.0, 12.0, 13.0], highs=[11.0, 5.0, 13.0, 14.0])
    dup = bars("DUPE", [5.0, 6.0, 7.0], dup_last=True)
    db = tmp_path / "q.db"
    result = sb.ingest(
        ["GOOD", "BAD", "DUPE"],
        db=db,
        source=CraftedSource({"GOOD": good, "BAD": bad, "DUPE": dup}),
        start="2024-01-01",
        end="2025-01-01",
    )
    assert result.success
    assert (result.symbols["BAD"].rows, result.symbols["BAD"].quarantined) == (3, 1)
    assert result.symbols["DUPE"].rows == 2 and result.stats["duplicates_dropped"] == 1
    assert result.rows_stored == 3 + 3 + 2 == rows_in(db)
    with sqlite3.connect(db) as con:
        q = con.execute("SELECT job_id, reasons FROM quarantine").fetchall()
    # DUPE's repeated stamp came with another close: the earlier bar is quarantined too
    assert sorted(q) == [
        (result.job_id, "DUPLICATE_TS"),
        (result.job_id, "HIGH_INCONSISTENT,LOW_INCONSISTENT"),
    ]
    assert result.symbols["DUPE"].quarantined == 1


def test_a_later_bad_answer_never_overwrites_stored_bars(tmp_path):
    """The provider answers a stored bar again with nulls / high below low: upsert keeps the
    stored values, the new rows are quarantined with their reasons."""
    db = tmp_path / "keep.db"
    first = bars("K", [10.0, 11.0, 12.0])
    assert sb.ingest(["K"], db=db, source=CraftedSource({"K": first}), period="max").success
    worse = first.to_pydict()
    worse["close"][1] = None
    worse["high"][2] = 1.0  # below its low
    again = pa.RecordBatch.from_pydict(worse, schema=BARS)
    result = sb.ingest(["K"], db=db, source=CraftedSource({"K": again}), period="max")
    assert (result.symbols["K"].rows, result.symbols["K"].quarantined) == (1, 2)
    with sqlite3.connect(db) as con:
        stored = con.execute("SELECT close, high FROM bars ORDER BY ts").fetchall()
        reasons = [r for (r,) in con.execute("SELECT reasons FROM quarantine ORDER BY ts")]
    assert stored == [(10.0, 11.0), (11.0, 12.0), (12.0, 13.0)]
    assert "NULL_FIELD" in reasons[0] and "HIGH_INCONSISTENT" in reasons[1]


def test_a_symbol_whose_every_row_is_rejected_is_not_stored(tmp_path, capsys):
    """Bars came for it, none passed validation: status "rejected", the job does not
    succeed, the CLI-style summary names it; the other symbol is stored."""
    good = bars("OK", [10.0, 11.0])
    worse = bars("NULLS", [10.0, 11.0, 12.0]).to_pydict()
    worse["close"] = [None, None, None]
    nulls = pa.RecordBatch.from_pydict(worse, schema=BARS)
    r = sb.ingest(
        ["OK", "NULLS"],
        db=tmp_path / "rej.db",
        source=CraftedSource({"OK": good, "NULLS": nulls}),
        period="max",
    )
    o = r.symbols["NULLS"]
    assert (o.status, o.rows, o.quarantined) == ("rejected", 0, 3)
    assert "validation rejected all 3" in o.error
    assert not r.success and r.failed_symbols == ["NULLS"]
    assert r.symbols["OK"].status == "stored" and r.rows_stored == 2
    assert "failed NULLS: validation rejected all 3" in r.summary()


def test_a_symbol_with_only_priceless_bars_is_empty_not_failed(tmp_path):
    """Yahoo answers a day not traded yet (or a holiday) with a bar of nulls: a daily
    update that gets only those has no bars, which is no failure."""
    blank = bars("HOLI", [10.0]).to_pydict()
    for name in ("open", "high", "low", "close", "adj_close", "volume"):
        blank[name] = [None]
    r = sb.ingest(
        ["OK", "HOLI"],
        db=tmp_path / "holi.db",
        source=CraftedSource(
            {"OK": bars("OK", [10.0]), "HOLI": pa.RecordBatch.from_pydict(blank, schema=BARS)}
        ),
        period="max",
    )
    assert r.success and r.symbols["HOLI"].status == "empty"
    assert (r.symbols["HOLI"].rows, r.symbols["HOLI"].quarantined) == (0, 1)


def test_a_bar_given_twice_with_other_values_is_quarantined_not_lost(tmp_path):
    """The provider repeats a timestamp with other values: the last is kept (its last
    word) and validated, the other is quarantined with DUPLICATE_TS; an identical repeat is
    just dropped. Nothing is lost: a kept repeat that fails validation is quarantined too."""
    clash = bars("CL", [10.0, 11.0, 12.0, 13.0]).to_pydict()
    clash["ts"][2] = clash["ts"][1]  # close 12.0 repeats the key of close 11.0
    same = bars("SAME", [10.0, 11.0, 11.0]).to_pydict()
    same["ts"][2] = same["ts"][1]  # the same bar twice
    nulls = bars("NUL", [10.0, 11.0, 11.0]).to_pydict()
    nulls["ts"][2], nulls["volume"][2] = nulls["ts"][1], None  # the repeat lost its volume
    src = CraftedSource(
        {
            k: pa.RecordBatch.from_pydict(v, schema=BARS)
            for k, v in {"CL": clash, "SAME": same, "NUL": nulls}.items()
        }
    )
    db = tmp_path / "dup.db"
    r = sb.ingest(["CL", "SAME", "NUL"], db=db, source=src, period="max")
    assert r.success and r.stats["duplicates_dropped"] == 3
    got = {s: (o.rows, o.quarantined) for s, o in r.symbols.items()}
    assert got == {"CL": (3, 1), "SAME": (2, 0), "NUL": (1, 2)}
    with sqlite3.connect(db) as con:
        closes = [
            c for (c,) in con.execute("SELECT close FROM bars WHERE symbol = 'CL' ORDER BY ts")
        ]
        q = con.execute(
            "SELECT symbol, reasons, row_json FROM quarantine ORDER BY symbol"
        ).fetchall()
    assert closes == [10.0, 12.0, 13.0]
    assert sorted((s, reasons) for s, reasons, _ in q) == [
        ("CL", "DUPLICATE_TS"),
        ("NUL", "DUPLICATE_TS"),
        ("NUL", "NULL_FIELD"),
    ]
    (cl_row,) = [row for s, _, row in q if s == "CL"]
    assert json.loads(cl_row)["close"] == 11.0


def test_indicators_match_the_kernel_on_the_stored_bars(fixture_server, tmp_path):
    db = tmp_path / "i.db"
    result = sb.ingest(
        SYMS[:3],
        db=db,
        base_url=fixture_server.url,
        period="1y",
        indicators=["sma20", "rsi14", "macd"],
    )
    ind = result.indicators.sort_by([("symbol", "ascending"), ("ts", "ascending")])
    expected = sb.indicators.compute(sb.read(db), ["sma20", "rsi14", "macd"])
    for col in ("sma20", "rsi14", "macd", "macd_signal"):
        assert ind[col].equals(expected[col]), col
    with pytest.raises(ValueError, match="sma"):
        sb.ingest(["AAPL"], db=db, base_url=fixture_server.url, indicators=["nonsense7"])


def test_quotes_job_groups_symbols_into_few_calls(fixture_server, tmp_path):
    engine = BatchProcessingEngine()
    syms = [f"S{i:04d}" for i in range(120)]
    with engine:
        job = engine.create_stock_data_pipeline_job(
            syms, source=source(fixture_server), sink=tmp_path / "qt.db", include_historical=False
        )
        result = engine.run(job)
    assert result.success and result.rows_stored == 120
    assert result.stats["provider_calls"] < 10  # up to the provider's symbols per call
    assert rows_in(tmp_path / "qt.db", "quotes") == 120


def test_timeout_reports_slow_symbols_and_keeps_the_rest(faulty_server, tmp_path):
    faulty_server.add_fault("latency", route="chart", symbols=["MSFT", "S0001"], delay=3.0)
    result = sb.ingest(
        SYMS,
        db=tmp_path / "t.db",
        source=source(faulty_server, timeout=10),
        period="1mo",
        timeout=1.0,
    )
    assert result.status == "timed_out" and not result.success
    assert sorted(result.failed_symbols) == ["MSFT", "S0001"]
    assert all("JobTimeout" in result.symbols[s].error for s in ("MSFT", "S0001"))
    assert {s for s, o in result.symbols.items() if o.status == "stored"} == {
        "AAPL",
        "7203.T",
        "6758.T",
    }
    assert result.total_processing_time_ms < 3000


def test_cancel_a_running_job(faulty_server, tmp_path):
    faulty_server.add_fault("latency", route="chart", delay=0.5)
    syms = [f"S{i:04d}" for i in range(40)]
    started = threading.Event()
    with BatchProcessingEngine() as engine:
        job = engine.create_stock_data_pipeline_job(
            syms,
            source=source(faulty_server, concurrency=4),
            sink=tmp_path / "x.db",
            period="1mo",
            on_progress=lambda p: started.set(),
        )
        fut = engine.submit(job)
        assert started.wait(10)
        assert engine.cancel(job.job_id)
        result = fut.result(timeout=20)
    assert result.status == "cancelled" and engine.status(job.job_id) == "cancelled"
    outcomes = [o.status for o in result.symbols.values()]
    assert len(outcomes) == 40 and "pending" not in outcomes
    assert outcomes.count("cancelled") > 20
    assert rows_in(tmp_path / "x.db") == result.rows_stored


def test_concurrent_jobs_share_identical_fetches(faulty_server, tmp_path):
    faulty_server.add_fault("latency", route="chart", delay=0.3)
    src = source(faulty_server)
    with BatchProcessingEngine(max_concurrent_jobs=2) as engine:
        jobs = [
            engine.create_stock_data_pipeline_job(
                SYMS, source=src, sink=tmp_path / f"j{i}.db", start="2025-01-01", end="2025-07-01"
            )
            for i in range(2)
        ]
        futs = [engine.submit(j) for j in jobs]
        results = [f.result(timeout=30) for f in futs]
        health = engine.health_check()
    assert all(r.success for r in results)
    assert results[0].rows_stored == results[1].rows_stored > 0
    assert faulty_server.stats()["requests"] < 2 * len(SYMS)  # shared calls
    assert sum(r.stats["calls_saved_by_coalescing"] for r in results) > 0
    assert health["status"] == "healthy" and health["finished"]["completed"] == 2


def test_async_and_module_level_forms(fixture_server, tmp_path):
    async def main():
        with BatchProcessingEngine() as engine:
            job = engine.create_stock_data_pipeline_job(
                ["AAPL"], base_url=fixture_server.url, sink=tmp_path / "as.db", period="5d"
            )
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            t = asyncio.create_task(ticker())
            res = await engine.execute_job(job)
            t.cancel()
            return res, ticks

    res, ticks = asyncio.run(main())
    assert res.success and ticks > 1  # the event loop kept running meanwhile
    r2 = run_pipeline(["MSFT"], base_url=fixture_server.url, sink=tmp_path / "as.db", period="5d")
    r3 = asyncio.run(
        sb.execute_stock_batch_pipeline(
            ["7203.T"], base_url=fixture_server.url, sink=tmp_path / "as.db", period="5d"
        )
    )
    assert r2.success and r3.success
    assert set(sb.read(tmp_path / "as.db")["symbol"].to_pylist()) == {"AAPL", "MSFT", "7203.T"}


def test_fetch_returns_sorted_bars_and_raises_with_the_partial_table(fixture_server):
    t = sb.fetch(["MSFT", "AAPL"], base_url=fixture_server.url, period="5d", interval="1h")
    keys = list(zip(t["symbol"].to_pylist(), t["ts"].to_pylist(), strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys) and t.num_rows > 0
    with pytest.raises(sb.JobError, match="UNKNOWN_X") as info:
        sb.fetch(["AAPL", "UNKNOWN_X"], base_url=fixture_server.url, period="5d")
    assert set(info.value.failures) == {"UNKNOWN_X"}
    assert set(info.value.table["symbol"].to_pylist()) == {"AAPL"}
    part = sb.fetch(
        ["AAPL", "UNKNOWN_X"], base_url=fixture_server.url, period="5d", errors="ignore"
    )
    assert part.equals(info.value.table)


def test_bad_options_fail_fast_and_a_bad_sink_fails_the_job(fixture_server, tmp_path):
    with pytest.raises(ValueError, match="period or start"):
        sb.ingest(["AAPL"], db=tmp_path / "o.db", period="1y", start="2025-01-01")
    with pytest.raises(ValueError, match="mode"):
        sb.ingest(["AAPL"], db=tmp_path / "o.db", mode="merge-ish")
    with pytest.raises(TypeError):
        sb.ingest([1, 2], db=tmp_path / "o.db")
    with pytest.raises(ValueError, match="invalid symbol"):
        sb.ingest(["AA PL"], db=tmp_path / "o.db")
    r = sb.ingest(["AAPL"], db="nosuchdb://x", base_url=fixture_server.url)
    assert r.status == "failed" and r.symbols["AAPL"].status == "failed"
    assert "not run" in r.symbols["AAPL"].error


@pytest.mark.postgres
def test_postgres_connection_killed_mid_job_loses_nothing(fixture_server, pg_uri):
    import psycopg

    table = "sb_test_pipeline_kill"
    syms = [f"S{i:04d}" for i in range(12)]
    with psycopg.connect(pg_uri, autocommit=True) as admin:
        admin.execute(f'DROP TABLE IF EXISTS "{table}"')
        killed = []

        def kill(p):
            if p.stage == "store" and not killed:
                killed.append(
                    admin.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                        "AND backend_type = 'client backend'"
                    ).fetchone()[0]
                )

        with BatchProcessingEngine(min_chunk_rows=1, slots=2) as engine:
            job = engine.create_stock_data_pipeline_job(
                syms,
                source=source(fixture_server, concurrency=1),
                sink=pg_uri,
                table=table,
                period="1y",
                on_progress=kill,
            )
            result = engine.run(job)
        assert killed and killed[0] >= 1
        assert result.success, result.summary()
        chunks = admin.execute(
            "SELECT count(*) FROM ingest_log WHERE job_id = %s", (result.job_id,)
        ).fetchone()[0]
        # the pool's checkout health check reconnects (or a store attempt is retried)
        assert chunks >= 2 and result.stats["store_attempts"] >= chunks
        n = admin.execute(f'SELECT count(*), count(DISTINCT symbol) FROM "{table}"').fetchone()
        assert n == (result.rows_stored, 12)
        admin.execute(f'DROP TABLE "{table}"')


def test_run_coroutine_runs_on_the_engine_loop_and_refuses_its_own_thread():
    with BatchProcessingEngine() as engine:

        async def where():
            return threading.current_thread().name

        assert engine.run_coroutine(where(), 5) == "stockbatch-io"

        async def nested():
            return engine.run_coroutine(where(), 5)

        with pytest.raises(RuntimeError, match="own loop thread"):
            engine.run_coroutine(nested(), 5)
        with pytest.raises(TimeoutError):
            engine.run_coroutine(asyncio.sleep(2), 0.05)


def test_a_job_without_storage_returns_its_rejected_rows():
    bad = bars("BAD", [10.0, 11.0, 12.0], highs=[11.0, 5.0, 13.0])
    with BatchProcessingEngine() as engine:
        job = engine.create_stock_data_pipeline_job(
            ["BAD"],
            source=CraftedSource({"BAD": bad}),
            store_data=False,
            start="2024-01-01",
            end="2025-01-01",
        )
        result = engine.run(job)
    assert result.success and result.table.num_rows == 2
    assert (
        result.rejected.num_rows == 1
        and "HIGH_INCONSISTENT" in result.rejected["reasons"][0].as_py()
    )
    assert result.stages["validate"].rows_in == 3 and result.stages["validate"].rejected == 1
