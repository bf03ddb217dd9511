"""Threshold alerts end to end: fixture-server faults and an artificial memory limit crossing
the thresholds of a real engine run; one WARNING and one callback per episode."""

from __future__ import annotations

import logging

import pytest
from test_sinks_accounting import hold_lock

from stockbatch.alerts import AlertMonitor, Thresholds, rss_bytes
from stockbatch.pipeline import BatchProcessingEngine
from stockbatch.sources import RetryPolicy, YahooChartSource

SYMS = [f"S{i:04d}" for i in range(12)]


def source(srv, attempts: int = 1) -> YahooChartSource:
    return YahooChartSource(
        base_url=srv.url,
        rate=1e9,
        burst=10**6,
        cache=False,
        retry=RetryPolicy(attempts=attempts, base=0.01, max_delay=0.02, max_retry_after=0.05),
        concurrency=12,
    )


def run(engine, srv, tmp_path, syms=SYMS, **kw):
    job = engine.create_stock_data_pipeline_job(
        syms, source=source(srv, **kw), period="1mo", sink=str(tmp_path / "a.db")
    )
    return engine.run(job)


def warnings_of(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "stockbatch.alerts" and r.levelno == logging.WARNING
    ]


def test_slow_responses_fire_one_latency_episode(faulty_server, tmp_path, caplog):
    faulty_server.add_fault("latency", route="chart", delay=0.3)
    got = []
    with BatchProcessingEngine(
        alert_thresholds=Thresholds(latency_p95_s=0.2, min_calls=5)
    ) as engine:
        engine.on_alert(got.append)
        with caplog.at_level(logging.INFO, logger="stockbatch.alerts"):
            result = run(engine, faulty_server, tmp_path)
    assert result.success
    firing = [a for a in got if a.metric == "latency_p95"]
    assert [a.state for a in firing] == ["firing"]  # once per episode, not per request
    assert firing[0].value >= 0.3 and firing[0].threshold == 0.2
    assert warnings_of(caplog) == [f"stockbatch alert: {firing[0].message}"]
    assert [a["metric"] for a in result.stats["alerts"]] == ["latency_p95"]


def test_5xx_burst_fires_then_resolves(faulty_server, tmp_path, caplog):
    # the first 12 calls fail (one attempt each: no retries hide them), then all recover
    faulty_server.add_fault("status", route="chart", status=503, times=12)
    got = []
    th = Thresholds(min_calls=5, window_s=60)
    with BatchProcessingEngine(alert_thresholds=th) as engine:
        engine.on_alert(got.append)
        with caplog.at_level(logging.INFO, logger="stockbatch.alerts"):
            first = run(engine, faulty_server, tmp_path)
            assert len(first.failed_symbols) == 12
            assert [(a.metric, a.state) for a in got] == [("error_rate", "firing")]
            assert got[0].value == 1.0 and got[0].threshold == 0.10
            # the burst is over: healthy calls bring the window's rate under 10 %
            healthy = [f"H{i:04d}" for i in range(120)]
            second = run(engine, faulty_server, tmp_path, syms=healthy)
    assert second.success
    assert [(a.metric, a.state) for a in got] == [
        ("error_rate", "firing"),
        ("error_rate", "resolved"),
    ]
    assert len(warnings_of(caplog)) == 1
    assert [a["state"] for a in second.stats["alerts"]] == ["resolved"]


def test_rate_limit_answers_fire_the_429_alert(faulty_server, tmp_path):
    faulty_server.add_fault("rate_limit", route="chart", retry_after=0.01, times=10)
    got = []
    with BatchProcessingEngine(alert_thresholds=Thresholds(min_calls=5)) as engine:
        engine.on_alert(got.append)
        result = run(engine, faulty_server, tmp_path, attempts=4)
    assert result.success  # retries got every symbol in the end
    assert ("rate_429", "firing") in [(a.metric, a.state) for a in got]


def test_artificial_memory_limit_fires_the_rss_alert(fixture_server, tmp_path, caplog):
    limit = int(rss_bytes() / 0.5)  # we already use half of it: over 0.4, under 0.9
    got = []
    th = Thresholds(rss_share=0.4, memory_limit_bytes=limit)
    with BatchProcessingEngine(alert_thresholds=th) as engine:
        engine.on_alert(got.append)
        with caplog.at_level(logging.INFO, logger="stockbatch.alerts"):
            run(engine, fixture_server, tmp_path)
            run(engine, fixture_server, tmp_path)  # still over: the same episode
    assert [(a.metric, a.state) for a in got] == [("rss_share", "firing")]
    assert 0.4 < got[0].value < 0.9
    assert len(warnings_of(caplog)) == 1


def test_absolute_rss_threshold_and_a_raising_subscriber():
    mon = AlertMonitor(Thresholds(rss_mb=1.0), rss=lambda: 64 * 2**20)
    mon.subscribe(lambda a: 1 / 0)  # logged, never raised into the job
    edges = mon.evaluate()
    assert [(a.metric, a.state, a.value) for a in edges] == [("rss_mb", "firing", 64.0)]
    assert "64 MiB is over its threshold 1 MiB" in edges[0].message
    assert mon.evaluate() == []  # the same episode


def test_a_full_hand_off_alerts_only_when_it_stays_full():
    """A hand-off full for a moment is back-pressure, the normal state of a bulk load (the
    demo showed an alert on every run): queue_fill fires once it stays over its limit for
    queue_fill_for_s, and resolves when it drops."""
    patient = AlertMonitor(Thresholds(queue_fill_for_s=3600.0), rss=lambda: 2**20)
    assert patient.evaluate(queue_fill=1.0) == [] and patient.evaluate(queue_fill=1.0) == []
    at_once = AlertMonitor(Thresholds(queue_fill_for_s=0.0), rss=lambda: 2**20)
    edges = at_once.evaluate(queue_fill=1.0)
    assert [(a.metric, a.state) for a in edges] == [("queue_fill", "firing")]
    assert at_once.evaluate(queue_fill=1.0) == []  # the same episode
    assert [(a.metric, a.state) for a in at_once.evaluate(queue_fill=0.2)] == [
        ("queue_fill", "resolved")
    ]


@pytest.mark.parametrize(
    "bad",
    [{"error_rate": 0}, {"latency_p95_s": -1}, {"min_calls": 0}, {"queue_fill_for_s": -1}],
)
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(ValueError, match="must be"):
        Thresholds(**bad)


def test_on_alert_needs_a_callable():
    with BatchProcessingEngine() as engine, pytest.raises(ValueError, match="callable"):
        engine.on_alert("print")


def test_cli_shows_the_alert_live_and_in_the_summary(faulty_server, tmp_path, capsys):
    from stockbatch.cli import main

    faulty_server.add_fault("latency", route="chart", delay=0.3)
    code = main(
        [
            "ingest",
            *SYMS,
            "--db",
            str(tmp_path / "c.db"),
            "--base-url",
            faulty_server.url,
            "--period",
            "1mo",
            "--alert",
            "latency_p95_s=0.2",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert "⚠ alert: latency_p95" in err and "over its threshold 0.20 s" in err  # live
    assert "alerts (1 fired)" in out and "latency_p95" in out  # summary
    assert err.count("⚠ alert:") == 1


@pytest.mark.parametrize(
    "arg, why", [("latency=1", "METRIC=LIMIT"), ("error_rate=-1", "positive number")]
)
def test_cli_refuses_bad_alert_options(arg, why, capsys):
    from stockbatch.cli import main

    assert main(["ingest", "AAPL", "--alert", arg]) == 2
    assert why in capsys.readouterr().err


def test_a_blocked_database_fills_the_hand_off(fixture_server, tmp_path):
    """Another process holds SQLite's write lock: the job's thread waits in its store,
    answers pile up in the hand-off, queue_fill fires; then the lock goes (at the alert, or
    after 10 s at most) and it resolves. (The writer is another process: two SQLite
    libraries in one process, Python's and the ADBC driver's, need not see each other's
    locks.)"""
    import threading

    db = tmp_path / "locked.db"
    got = []
    with BatchProcessingEngine(
        slots=8,
        chunk_rows=600,
        min_chunk_rows=300,
        alert_thresholds=Thresholds(queue_fill=0.5, queue_fill_for_s=0.5),
    ) as engine:
        fired = threading.Event()

        def on_alert(alert):
            got.append(alert)
            if alert.metric == "queue_fill" and alert.state == "firing":
                fired.set()

        engine.on_alert(on_alert)
        holder = hold_lock(db, 10)

        def release() -> None:
            fired.wait(10)
            holder.kill()  # the lock goes with the process

        timer = threading.Thread(target=release)
        timer.start()
        try:
            result = engine.run(
                engine.create_stock_data_pipeline_job(
                    [f"Q{i:03d}" for i in range(40)],
                    source=source(fixture_server),
                    period="1y",
                    sink=str(db),
                )
            )
        finally:
            timer.join()
            holder.wait(30)
    assert result.success
    fill = [(a.state, a.value) for a in got if a.metric == "queue_fill"]
    assert [s for s, _ in fill] == ["firing", "resolved"]
    assert fill[0][1] > 0.5 and fill[1][1] <= 0.5
