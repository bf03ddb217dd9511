"""Jobs always finish, whatever the shape of the answers: many small ones, all failing, half
failing, tiny hand-offs. Each job runs with a watchdog, so a hang fails the test within a
minute instead of freezing the suite. Real fixture server on loopback, real SQLite."""

from __future__ import annotations

import sqlite3
import threading

import pytest

import stockbatch as sb
from stockbatch.cli import demo_symbols
from stockbatch.pipeline import BatchProcessingEngine

WATCHDOG_S = 60


def _run(engine: BatchProcessingEngine, symbols, **options) -> sb.JobResult:
    """Run a job; fail (instead of hanging) if it has not finished within the watchdog."""
    job = engine.create_stock_data_pipeline_job(symbols, **options)
    result = engine.submit(job).result(timeout=WATCHDOG_S)
    assert result.status == "completed", result.error
    assert len(result.symbols) == len(set(symbols))
    assert all(o.status != "pending" for o in result.symbols.values())
    return result


def _rows(db) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM bars").fetchone()[0]


@pytest.mark.parametrize("slots", [1, 4, 256])
def test_more_small_answers_than_slots_finish(fixture_server, tmp_path, slots):
    """The wave-1 deadlock: more answers than hand-off slots, each far below min_chunk_rows."""
    symbols = demo_symbols(slots + 40)
    db = tmp_path / "small.db"
    with BatchProcessingEngine(slots=slots) as engine:
        r = _run(engine, symbols, base_url=fixture_server.url, period="5d", sink=str(db))
    assert r.count("stored") == len(symbols)
    assert _rows(db) == r.rows_stored > 0


def test_300_symbols_default_period_finish(fixture_server, tmp_path):
    """The reported reproduction: 300 symbols with the CLI's default period (1mo)."""
    db = tmp_path / "s300.db"
    with BatchProcessingEngine(max_concurrent_jobs=1) as engine:
        r = _run(engine, demo_symbols(300), base_url=fixture_server.url, sink=str(db))
    assert r.success and r.count("stored") == 300
    assert _rows(db) == r.rows_stored


def test_all_failing_symbols_finish(fixture_server, tmp_path):
    symbols = [f"UNKNOWN{i}" for i in range(1000)]
    with BatchProcessingEngine() as engine:
        r = _run(engine, symbols, base_url=fixture_server.url, sink=str(tmp_path / "f.db"))
    assert r.count("failed") == 1000 and not r.success
    assert all("SymbolNotFound" in (o.error or "") for o in r.symbols.values())
    # the job made its tables while fetching (before any rows): they are there, empty
    with sqlite3.connect(tmp_path / "f.db") as conn:
        tables = {t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"bars", "quarantine", "ingest_log", "symbols"} <= tables
        assert conn.execute("SELECT count(*) FROM bars").fetchone()[0] == 0
    conn.close()


def test_fetch_of_many_failing_symbols_finishes(fixture_server):
    symbols = [f"UNKNOWN{i}" for i in range(400)] + ["AAPL"]
    done = threading.Event()
    box = {}

    def go():
        try:
            box["table"] = sb.fetch(symbols, base_url=fixture_server.url, errors="ignore")
        finally:
            done.set()

    threading.Thread(target=go, daemon=True).start()
    assert done.wait(WATCHDOG_S), "sb.fetch hung"
    assert set(box["table"].column("symbol").to_pylist()) == {"AAPL"}


@pytest.mark.slow
def test_5000_symbols_every_other_failing(fixture_server, tmp_path):
    symbols = [s if i % 2 else f"UNKNOWN{i}" for i, s in enumerate(demo_symbols(5000))]
    db = tmp_path / "half.db"
    with BatchProcessingEngine() as engine:
        r = _run(engine, symbols, base_url=fixture_server.url, period="5d", sink=str(db))
    assert r.count("failed") == 2500 and r.count("stored") == 2500
    assert _rows(db) == r.rows_stored


@pytest.mark.slow
def test_10000_symbols_5d(fixture_server, tmp_path):
    db = tmp_path / "big.db"
    with BatchProcessingEngine() as engine:
        r = _run(
            engine, demo_symbols(10_000), base_url=fixture_server.url, period="5d", sink=str(db)
        )
    assert r.success and r.count("stored") == 10_000
    assert _rows(db) == r.rows_stored


def test_a_sink_that_breaks_ends_the_job_instead_of_hanging(fixture_server, tmp_path):
    """A user's sink raising a plain exception (a bug, not a SinkError) on the first chunk
    (stored at once: min_chunk_rows=1) while far more answers than the hand-off holds are
    still coming: the fetch is stopped and the exception reaches the caller; nothing waits
    for slots nobody gives back (this hung before)."""
    from stockbatch.sinks._sqlite import SqliteSink

    class Broken(SqliteSink):
        def ingest(self, *args, **kwargs):
            raise RuntimeError("a bug in the user's sink")

    sink = Broken(str(tmp_path / "broken.db"))
    box: dict = {}
    done = threading.Event()

    def go():
        try:
            with BatchProcessingEngine(slots=8, min_chunk_rows=1) as engine:
                job = engine.create_stock_data_pipeline_job(
                    demo_symbols(300), base_url=fixture_server.url, period="5d", sink=sink
                )
                engine.run(job)
        except BaseException as exc:  # noqa: BLE001 - what the caller sees
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=go, daemon=True).start()
    assert done.wait(WATCHDOG_S), "the job hung after its sink raised"
    sink.close()
    assert isinstance(box.get("error"), RuntimeError) and "bug" in str(box["error"])


def test_a_slow_symbol_does_not_hold_back_the_others(faulty_server, tmp_path):
    """Answers wait at most flush_seconds for a chunk: healthy symbols are committed while a
    slow one is still being fetched."""
    faulty_server.add_fault("latency", route="chart", symbols=["MSFT"], delay=3)
    db = tmp_path / "slow.db"
    seen: list[int] = []

    def progress(p):
        if p.stage == "store":
            seen.append(p.rows_stored)

    with BatchProcessingEngine(flush_seconds=0.2) as engine:
        r = _run(
            engine,
            ["AAPL", "IBM", "MSFT"],
            base_url=faulty_server.url,
            sink=str(db),
            on_progress=progress,
        )
    assert r.success
    assert seen[0] == r.symbols["AAPL"].rows + r.symbols["IBM"].rows  # stored first, alone


def test_options_are_checked_when_the_job_is_made(tmp_path):
    with BatchProcessingEngine() as engine:
        with pytest.raises(ValueError, match="does not serve interval '3h'.*1d"):
            engine.create_stock_data_pipeline_job(["AAPL"], interval="3h")
        with pytest.raises(ValueError, match="5d"):
            engine.create_stock_data_pipeline_job(["AAPL"], interval="5d")
        with pytest.raises(ValueError, match="mode"):
            engine.create_stock_data_pipeline_job(["AAPL"], mode="merge")
        with pytest.raises(ValueError, match="period"):
            engine.create_stock_data_pipeline_job(["AAPL"], period="7x")
    with pytest.raises(ValueError, match="interval"):
        sb.ingest(["AAPL"], db=str(tmp_path / "x.db"), interval="3h")
    assert not (tmp_path / "x.db").exists()


def test_job_concurrency_does_not_change_the_source(fixture_server, tmp_path):
    src = sb.sources.YahooChartSource(base_url=fixture_server.url)
    with BatchProcessingEngine() as engine:
        job = engine.create_stock_data_pipeline_job(
            ["AAPL"], source=src, concurrency=1, sink=str(tmp_path / "c.db")
        )
        assert src.concurrency == 8 and job.concurrency == 1
        assert engine.run(job).success


def test_symbols_are_the_providers_and_path_like_ones_fail_alone(fixture_server, tmp_path):
    db = tmp_path / "sym.db"
    bad = ["XYZ/../GOOD9", "GOOD9#x", "GOOD9?a=b", "../../etc/passwd"]
    r = sb.ingest(["aapl", "AAPL", *bad, "MSFT"], db=db, base_url=fixture_server.url)
    assert set(r.symbols) == {"AAPL", "MSFT", *bad}
    assert r.symbols["AAPL"].status == r.symbols["MSFT"].status == "stored"
    for s in bad:
        assert r.symbols[s].status == "failed" and "invalid symbol" in r.symbols[s].error
    with sqlite3.connect(db) as conn:
        assert {row[0] for row in conn.execute("SELECT DISTINCT symbol FROM bars")} == {
            "AAPL",
            "MSFT",
        }


def test_a_job_never_shows_the_database_password():
    with BatchProcessingEngine() as engine:
        job = engine.create_stock_data_pipeline_job(
            ["AAPL"], sink="postgresql://user:p@ss:w/rd%40x@127.0.0.1:5432/db"
        )
        for text in (repr(job), str(job)):
            assert "p@ss" not in text and "rd%40x" not in text and "w/rd" not in text
            assert "127.0.0.1:5432/db" in text
