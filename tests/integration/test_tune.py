"""``stockbatch tune`` / ``sb.tune``: real trials against the fixture server and real SQLite
and PostgreSQL databases; the config it writes drives ``stockbatch ingest --config``."""

from __future__ import annotations

import json
import sqlite3

import pytest

import stockbatch as sb
from stockbatch.cli import main
from stockbatch.pipeline import BatchProcessingEngine
from stockbatch.sources import RetryPolicy, YahooChartSource
from stockbatch.tuning import load_config

SYMS = [f"T{i:03d}" for i in range(24)]


def knobs(report) -> dict:
    return {r.knob: r.value for r in report.recommendations}


def test_tune_on_sqlite_recommends_with_numbers(fixture_server, tmp_path):
    db = tmp_path / "t.db"
    seen = []
    report = sb.tune(
        str(db),
        base_url=fixture_server.url,
        symbols=SYMS,
        budget_s=20,
        rows=20_000,
        on_progress=lambda *a: seen.append(a),
    )
    got = knobs(report)
    assert got["concurrency"] in (2, 4, 8, 16, 32)
    assert got["level"] in ("basic", "advanced", "extreme")
    assert got["chunk_rows"] in (4096, 16384, 65536)
    assert got["upsert_strategy"] is None  # SQLite has one upsert: nothing to choose
    assert report.seconds <= 20 + 5  # bounded (a trial already running finishes)
    levels = [t for t in report.trials if t.knob == "level"]
    assert {t.value for t in levels} == {"basic", "advanced", "extreme"}
    assert all(t.rows == 20_000 for t in levels)  # the database took every row
    text = report.text()
    assert f"level={got['level']}:" in text and "rows/s" in text and "bars/s" in text
    assert seen and seen[-1][0] == seen[-1][1]  # progress reached the end
    with sqlite3.connect(db) as con:  # only scratch tables were written, and they are gone
        # (stockbatch_meta, the layout's version marker, is what any first ingest leaves)
        assert (
            con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'stockbatch_meta'"
            ).fetchall()
            == []
        )
    as_json = json.loads(report.to_json())
    assert as_json["settings"] == report.settings()
    assert all("rows_per_s" in t for t in as_json["trials"])


def test_the_config_drives_ingest(fixture_server, tmp_path, capsys):
    db = tmp_path / "c.db"
    cfg = tmp_path / "tuned.toml"
    assert (
        main(
            [
                "tune",
                "--db",
                str(db),
                "--base-url",
                fixture_server.url,
                "--symbols",
                *SYMS[:8],
                "--budget",
                "10",
                "--rows",
                "5000",
                "-o",
                str(cfg),
                "-q",
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    assert "stockbatch tune:" in out.out and "concurrency=" in out.out
    assert f"wrote {cfg}" in out.err
    pytest.importorskip("tomllib")
    settings = load_config(cfg)
    assert set(settings) == {"concurrency", "level", "chunk_rows"}
    cfg.write_text(cfg.read_text() + f'base_url = "{fixture_server.url}"\nperiod = "3mo"\n')
    assert main(["ingest", "AAPL", "MSFT", "--db", str(db), "--config", str(cfg), "-q"]) == 0
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(DISTINCT symbol) FROM bars").fetchone()[0] == 2


def test_tune_json_output(fixture_server, tmp_path, capsys):
    assert (
        main(
            [
                "tune",
                "--db",
                str(tmp_path / "j.db"),
                "--base-url",
                fixture_server.url,
                "--symbols",
                "AAPL",
                "MSFT",
                "--budget",
                "6",
                "--rows",
                "2000",
                "--json",
                "-q",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert "concurrency" in data["settings"] and data["trials"]


@pytest.mark.parametrize(
    "body, why",
    [
        ("[ingest]\nspeed = 3\n", "unknown key 'speed'"),
        ('[ingest]\nconcurrency = "8"\n', "concurrency must be int"),
        ("concurrency = 8\n", "no [ingest] table"),
        ("[ingest\n", "not valid TOML"),
    ],
)
def test_bad_configs_are_usage_errors(tmp_path, capsys, body, why):
    pytest.importorskip("tomllib")
    cfg = tmp_path / "bad.toml"
    cfg.write_text(body)
    assert main(["ingest", "AAPL", "--db", str(tmp_path / "x.db"), "--config", str(cfg)]) == 2
    assert why in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()


def test_a_postgres_setting_on_sqlite_is_a_usage_error(tmp_path, capsys):
    cfg = tmp_path / "pg.json"
    cfg.write_text(json.dumps({"settings": {"upsert_strategy": "range"}}))
    assert main(["ingest", "AAPL", "--db", str(tmp_path / "x.db"), "--config", str(cfg)]) == 2
    assert "upsert_strategy" in capsys.readouterr().err


def test_recommended_concurrency_draws_no_429s(faulty_server, tmp_path):
    # a provider that refuses a request finding 4 already in flight
    faulty_server.add_fault(
        "rate_limit", route="chart", max_in_flight=4, delay=0.02, retry_after=0.01
    )
    report = sb.tune(
        str(tmp_path / "r.db"), base_url=faulty_server.url, symbols=SYMS, budget_s=15, rows=5_000
    )
    fetch = {t.value: t for t in report.trials if t.knob == "concurrency"}
    assert fetch[8].rate_limited > 0  # beyond the limit: refused, and tuning stopped there
    assert 16 not in fetch
    pick = knobs(report)["concurrency"]
    assert pick <= 4 and fetch[pick].rate_limited == 0
    assert "no 429s" in report.text() and "8 drew" in report.text()
    # the recommendation, used for a real ingest on the same provider: not one 429
    src = YahooChartSource(
        base_url=faulty_server.url,
        rate=1e9,
        burst=10**6,
        retry=RetryPolicy(attempts=4, base=0.01, max_delay=0.05),
    )
    with BatchProcessingEngine() as engine:
        job = engine.create_stock_data_pipeline_job(
            [f"N{i:03d}" for i in range(40)],
            source=src,
            period="1mo",
            sink=str(tmp_path / "n.db"),
            concurrency=pick,
        )
        result = engine.run(job)
    assert result.success and src.stats.rate_limited == 0


@pytest.mark.postgres
def test_tune_on_postgres_also_picks_an_upsert_strategy(fixture_server, pg_uri):
    report = sb.tune(pg_uri, base_url=fixture_server.url, symbols=SYMS, budget_s=40, rows=20_000)
    got = knobs(report)
    assert got["upsert_strategy"] in ("range", "on_conflict", "merge")
    assert "re-upserting rows with half of them changed" in report.text()
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(pg_uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'stockbatch_tune_%'")
        assert cur.fetchone()[0] == 0  # the scratch table is gone
