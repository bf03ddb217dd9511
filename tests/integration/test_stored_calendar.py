"""Stored data every client reads right (issue 14): trading dates in the exchange's zone,
the ``symbols`` table, corporate actions, SQLite's readable views — against real SQLite,
DuckDB, PostgreSQL and MariaDB.

Expected dates come from ``zoneinfo`` (the oracle), never from the code under test. Each test
uses its own table names and drops them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest

import stockbatch
from stockbatch import sinks
from stockbatch.adjust import adjusted
from stockbatch.schema import BARS

DBS = ["sqlite", "duckdb", "postgresql", "mysql"]
UTC = timezone.utc
ZONES = {
    "AAPL": "America/New_York",
    "7203.T": "Asia/Tokyo",
    "SAP.DE": "Europe/Berlin",
    "BHP.AX": "Australia/Sydney",
}
# around the DST changes of 2026: US 03-08, EU 03-29, Sydney 04-05 (and back 10-04)
DAYS = [
    date(2026, 3, 6),
    date(2026, 3, 9),
    date(2026, 3, 27),
    date(2026, 3, 30),
    date(2026, 4, 3),
    date(2026, 4, 6),
    date(2026, 10, 2),
    date(2026, 10, 5),
]


@pytest.fixture(params=DBS)
def uri(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cal.db'}"
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'cal.duckdb'}"
    return request.getfixturevalue("pg_uri" if request.param == "postgresql" else "mysql_uri")


@pytest.fixture
def names() -> dict:
    tag = uuid.uuid4().hex[:10]
    return {
        k: f"sbc_{k}_{tag}"
        for k in ("bars", "quotes", "quarantine", "ingest_log", "symbols", "actions")
    }


@pytest.fixture
def sink(uri, names):
    s = sinks.connect(uri, tables=names)
    yield s
    s.close()
    with sinks.connect(uri, tables=names) as c:  # the test may have closed ``s``
        for t in names.values():
            c.drop_table(t)


def local_midnight(day: date, zone: str) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def daily_bars(symbols=tuple(ZONES), days=DAYS) -> pa.Table:
    rows = [(s, local_midnight(d, ZONES[s])) for s in symbols for d in days]
    n = len(rows)
    close = np.arange(1.0, n + 1.0)
    return pa.Table.from_arrays(
        [
            pa.array([r[0] for r in rows]),
            pa.array(["1d"] * n),
            pa.array([r[1] for r in rows], BARS.field("ts").type),
            pa.array(close),
            pa.array(close + 1),
            pa.array(close - 1),
            pa.array(close),
            pa.array(close),
            pa.array(np.arange(n, dtype=np.int64)),
            pa.array(["test"] * n),
        ],
        schema=BARS,
    )


def meta_of(symbols=tuple(ZONES)) -> dict:
    return {
        s: {
            "timezone": ZONES[s],
            "exchange": "X" + s[-1],
            "currency": "CUR",
            "instrument_type": "EQUITY",
        }
        for s in symbols
    }


def stored_dates(sink, table) -> dict:
    """{(symbol, ts): date} as the database holds them (plain SQL, no stockbatch read)."""
    d = sink.dialect
    with sink._connection() as conn:
        rows = sink._query(
            conn,
            f"SELECT {d.quote('symbol')}, {d.quote('ts')}, {d.quote('date')} FROM {d.quote(table)}",
        )
    out = {}
    for sym, ts, day in rows:
        if isinstance(ts, int):
            ts = datetime.fromtimestamp(ts / 1e6, UTC)
        elif ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        if isinstance(day, int):  # SQLite: YYYYMMDD
            day = date(day // 10000, day // 100 % 100, day % 100)
        out[(sym, ts.astimezone(UTC))] = (
            day if isinstance(day, date) else date.fromisoformat(str(day))
        )
    return out


def test_every_bar_stores_its_exchange_trading_date(sink, names):
    sink.ingest(daily_bars(), mode="upsert", meta=meta_of(), source="test")
    assert sink.schema_version() == sink.SCHEMA_VERSION == 2
    want = {(s, local_midnight(d, ZONES[s])): d for s in ZONES for d in DAYS}
    assert stored_dates(sink, names["bars"]) == want
    # the UTC date would be the day before east of Greenwich: the point of the column
    assert local_midnight(date(2026, 3, 30), "Asia/Tokyo").date() == date(2026, 3, 29)


def test_read_by_trading_date_in_every_zone(sink):
    sink.ingest(daily_bars(), mode="upsert", meta=meta_of(), source="test")
    for day in DAYS:
        got = sink.read(start=day.isoformat(), end=date.fromordinal(day.toordinal() + 1))
        assert sorted(got.column("symbol").to_pylist()) == sorted(ZONES), day
        assert {r["ts"] for r in got.to_pylist()} == {
            local_midnight(day, z) for z in ZONES.values()
        }
    # the case: Tokyo's bar of the day, by its date
    got = stockbatch.read(sink, ["7203.T"], start="2026-03-30", end="2026-03-31")
    assert got.column("ts").to_pylist() == [local_midnight(date(2026, 3, 30), "Asia/Tokyo")]
    # a time is a UTC instant, compared with ts
    got = sink.read(
        symbols=["7203.T"], start=datetime(2026, 3, 29, 15, tzinfo=UTC), end="2026-03-29T15:00:01Z"
    )
    assert got.num_rows == 1


def test_symbols_table_from_metadata_and_zone_remembered(sink, names, uri):
    first = daily_bars(days=DAYS[:4])
    sink.ingest(first, mode="upsert", meta=meta_of(), source="yahoo")
    rows = {r["symbol"]: r for r in sink.read(kind="symbols").to_pylist()}
    assert set(rows) == set(ZONES)
    for s, z in ZONES.items():
        r = rows[s]
        assert (r["timezone"], r["currency"], r["instrument_type"], r["source"]) == (
            z,
            "CUR",
            "EQUITY",
            "yahoo",
        )
        assert r["first_bar"] == local_midnight(DAYS[0], z)
        assert r["last_bar"] == local_midnight(DAYS[3], z)
        assert r["last_ingested"] is not None
    # a new sink (a new process would be the same), no metadata: the zone comes from the
    # symbols table
    sink.close()
    with sinks.connect(uri, tables=names) as again:
        again.ingest(daily_bars(days=DAYS[4:]), mode="upsert")
        rows = {r["symbol"]: r for r in again.read(kind="symbols").to_pylist()}
        dates = stored_dates(again, names["bars"])
    want = {(s, local_midnight(d, ZONES[s])): d for s in ZONES for d in DAYS}
    assert dates == want
    assert rows["BHP.AX"]["first_bar"] == local_midnight(DAYS[0], ZONES["BHP.AX"])
    assert rows["BHP.AX"]["last_bar"] == local_midnight(DAYS[-1], ZONES["BHP.AX"])
    assert rows["BHP.AX"]["timezone"] == "Australia/Sydney"  # kept, not blanked


def test_intraday_bars_carry_the_exchange_local_day(sink, names):
    # 23:30 New York is 04:30 UTC the next day; 08:00 Tokyo is 23:00 UTC the day before
    ts = [
        datetime(2026, 3, 9, 23, 30, tzinfo=ZoneInfo("America/New_York")),
        datetime(2026, 3, 10, 8, 0, tzinfo=ZoneInfo("Asia/Tokyo")),
    ]
    t = pa.table(
        {
            "symbol": ["AAPL", "7203.T"],
            "interval": ["1h", "1h"],
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "open": [1.0, 2.0],
            "high": [1.0, 2.0],
            "low": [1.0, 2.0],
            "close": [1.0, 2.0],
            "volume": [1, 2],
        }
    )
    sink.ingest(stockbatch.conform(t), mode="upsert", meta=meta_of(["AAPL", "7203.T"]))
    got = stored_dates(sink, names["bars"])
    assert sorted(got.values()) == [date(2026, 3, 9), date(2026, 3, 10)]
    assert sink.read(symbols=["AAPL"], start="2026-03-09", end="2026-03-10").num_rows == 1
    assert sink.read(symbols=["7203.T"], start="2026-03-10", end="2026-03-11").num_rows == 1


def test_actions_upserted_idempotently(sink):
    ex = int(local_midnight(date(2026, 3, 30), "Asia/Tokyo").timestamp())
    events = {"dividends": [[ex, 30.0]], "splits": [[ex, 4, 1]]}
    meta = {"7203.T": {"timezone": "Asia/Tokyo", "events": events}}
    for _ in range(2):
        sink.ingest(daily_bars(["7203.T"]), mode="upsert", meta=meta, source="yahoo")
    acts = stockbatch.read(sink, kind="actions").to_pylist()
    assert acts == [
        {
            "symbol": "7203.T",
            "date": date(2026, 3, 30),
            "ts": local_midnight(date(2026, 3, 30), "Asia/Tokyo"),
            "dividend": 30.0,
            "split_ratio": 4.0,
            "source": "yahoo",
        }
    ]
    # a corrected amount replaces the row
    meta["7203.T"]["events"] = {"dividends": [[ex, 31.5]], "splits": []}
    sink.ingest(daily_bars(["7203.T"]), mode="upsert", meta=meta, source="yahoo")
    acts = sink.read(kind="actions", symbols=["7203.T"], start="2026-03-30").to_pylist()
    assert [(a["dividend"], a["split_ratio"]) for a in acts] == [(31.5, None)]


def test_sqlite_view_is_readable_by_plain_sqlite(tmp_path):
    path = tmp_path / "plain.db"
    with sinks.connect(f"sqlite:///{path}") as s:
        s.ingest(
            daily_bars(["7203.T"], DAYS[:2]),
            mode="upsert",
            meta={"7203.T": {"timezone": "Asia/Tokyo"}},
            job_id="j1",
        )
    con = sqlite3.connect(path)
    try:
        rows = con.execute(
            "SELECT ts, date, datetime(ts), ts_us FROM bars_v ORDER BY ts"
        ).fetchall()
        assert rows[0][:3] == ("2026-03-05T15:00:00.000Z", "2026-03-06", "2026-03-05 15:00:00")
        assert rows[0][3] == int(local_midnight(DAYS[0], "Asia/Tokyo").timestamp()) * 10**6
        assert con.execute("SELECT count(*) FROM bars_v WHERE date = '2026-03-09'").fetchone() == (
            1,
        )
        (started,) = con.execute("SELECT started FROM ingest_log_v").fetchone()
        assert started.endswith("Z") and started[:4] == "2026"
        (first,) = con.execute("SELECT first_bar FROM symbols_v").fetchone()
        assert first == "2026-03-05T15:00:00.000Z"
        # microseconds are cut to milliseconds, never rounded into the next second or day;
        # a date written as NULL (by another client) reads NULL
        last = int(datetime(2026, 4, 4, 23, 59, 59, tzinfo=UTC).timestamp()) * 10**6
        con.executemany(
            "INSERT INTO bars (symbol, interval, ts, date) VALUES (?, '1m', ?, ?)",
            [("Y", last + 999_999, None), ("Y", -1, 19691231), ("Y", -1_500_000, 19691231)],
        )
        got = con.execute("SELECT ts, date FROM bars_v WHERE symbol = 'Y' ORDER BY ts_us")
        assert got.fetchall() == [
            ("1969-12-31T23:59:58.500Z", "1969-12-31"),
            ("1969-12-31T23:59:59.999Z", "1969-12-31"),
            ("2026-04-04T23:59:59.999Z", None),
        ]
    finally:
        con.close()


def test_pipeline_stores_provider_metadata_and_actions(fixture_server, uri, names):
    """End to end on the fixture server: Yahoo's meta (zone, currency, exchange) reaches
    ``symbols``; its dividends reach ``actions``; adjusted() rebuilds its adjclose."""
    syms = ["AAPL", "7203.T", "SAP.DE", "MSFT", "SONY.T", "BMW.DE"]
    with sinks.connect(uri, tables=names) as sink:
        try:
            res = stockbatch.ingest(
                syms,
                db=sink,
                base_url=fixture_server.url,
                period="2y",
                interval="1d",
                validate=False,
            )
            assert res.success, res.symbols
            meta = {r["symbol"]: r for r in sink.read(kind="symbols").to_pylist()}
            assert meta["7203.T"]["timezone"] == "Asia/Tokyo"
            assert meta["7203.T"]["currency"] == "JPY"
            assert meta["SAP.DE"]["timezone"] == "Europe/Berlin"
            assert meta["AAPL"]["timezone"] == "America/New_York"
            bars = sink.read()
            for s in syms:
                mine = bars.filter(pa.compute.equal(bars.column("symbol"), s))
                assert meta[s]["first_bar"] == mine.column("ts")[0].as_py()
                assert meta[s]["last_bar"] == mine.column("ts")[-1].as_py()
            # every stored date is the bar's day in its exchange zone
            for (s, ts), day in stored_dates(sink, names["bars"]).items():
                assert ts.astimezone(ZoneInfo(meta[s]["timezone"])).date() == day
            acts = sink.read(kind="actions")
            assert acts.num_rows > 0, "the fixture serves dividends for some of these"
            zones = {s: m["timezone"] for s, m in meta.items()}
            rebuilt = adjusted(bars.drop_columns(["adj_close"]), acts, zones=zones)
            want = np.array(bars.column("adj_close").to_pylist(), dtype=float)
            got = np.array(rebuilt.column("adj_close").to_pylist(), dtype=float)
            ok = ~np.isnan(want) & ~np.isnan(got)
            assert ok.sum() > 0.95 * len(want)
            np.testing.assert_allclose(got[ok], want[ok], rtol=2e-6)
        finally:
            for t in names.values():
                sink.drop_table(t)


def test_fetched_bars_stored_later_keep_their_exchange_dates(fixture_server, uri, names):
    """``sb.fetch`` then ``Sink.ingest`` (no ``meta=``): the table carries each symbol's
    provider metadata, through ``validate``, so the dates are the exchanges' own; so does
    one symbol's decoded batch. Bars of several symbols under one symbol's metadata (what
    ``pa.concat_tables`` makes) are not dated in that symbol's zone."""
    syms = ["AAPL", "7203.T", "SAP.DE"]
    bars = stockbatch.fetch(syms, base_url=fixture_server.url, period="1mo", interval="1d")
    valid = stockbatch.validate(bars).valid
    with sinks.connect(uri, tables=names) as sink:
        try:
            sink.ingest(valid, mode="upsert")
            zones = {r["symbol"]: r["timezone"] for r in sink.read(kind="symbols").to_pylist()}
            assert zones == {
                "AAPL": "America/New_York",
                "7203.T": "Asia/Tokyo",
                "SAP.DE": "Europe/Berlin",
            }
            dates = stored_dates(sink, names["bars"])
            assert len(dates) == valid.num_rows > 30
            for (s, ts), day in dates.items():
                assert ts.astimezone(ZoneInfo(zones[s])).date() == day
            # explicit meta= wins over what the data carries
            sink.ingest(valid, mode="upsert", meta={"7203.T": {"timezone": "UTC"}})
            tokyo = {
                ts: d for (s, ts), d in stored_dates(sink, names["bars"]).items() if s == "7203.T"
            }
            assert all(ts.date() == d for ts, d in tokyo.items())
        finally:
            for t in names.values():
                sink.drop_table(t)

    async def decoded(symbol):
        async with stockbatch.sources.YahooChartSource(base_url=fixture_server.url) as src:
            return await src.fetch_history(symbol, period="5d")

    tokyo, berlin = asyncio.run(decoded("SONY.T")), asyncio.run(decoded("BMW.DE"))
    assert tokyo.schema.metadata[b"stockbatch.tz"] == b"Asia/Tokyo"
    with sinks.connect(uri, tables=names) as sink:
        try:
            sink.ingest(tokyo, mode="upsert")
            sink.ingest(
                # Tokyo's metadata, BMW.DE's rows first
                pa.concat_tables(
                    [pa.Table.from_batches([tokyo]), pa.Table.from_batches([berlin])]
                ).sort_by("symbol"),
                mode="upsert",
            )
            dates = stored_dates(sink, names["bars"])
            assert {s for s, _ in dates} == {"SONY.T", "BMW.DE"}
            for (s, ts), day in dates.items():
                zone = "Asia/Tokyo" if s == "SONY.T" else "UTC"  # BMW.DE's was never given
                assert ts.astimezone(ZoneInfo(zone)).date() == day, (s, ts, day)
        finally:
            for t in names.values():
                sink.drop_table(t)


def test_carried_metadata_reaches_only_the_symbols_stored(fixture_server, tmp_path):
    """A filtered sb.fetch table still carries every fetched symbol's metadata: only the
    symbols whose bars are stored get symbols and actions rows."""
    bars = stockbatch.fetch(
        ["AAPL", "MSFT", "7203.T"], base_url=fixture_server.url, period="2y", interval="1d"
    )
    only = bars.filter(pa.compute.equal(bars["symbol"], "AAPL"))
    with sinks.connect(f"sqlite:///{tmp_path / 'only.db'}") as sink:
        sink.ingest(only, mode="upsert")
        assert {r["symbol"] for r in sink.read(kind="symbols").to_pylist()} == {"AAPL"}
        assert set(sink.read(kind="actions").column("symbol").to_pylist()) <= {"AAPL"}


@pytest.mark.parametrize(
    ("meta", "why"),
    [
        ('{"X": {"events": {"dividends": 5}}}', "must be a list"),
        ('{"X": {"events": {"dividends": [[1]]}}}', "is not [epoch seconds, amount]"),
        ('{"X": {"events": {"dividends": [[1e300, 1]]}}}', "is not [epoch seconds"),
        ('{"X": {"events": {"splits": [["x", 1, 2]]}}}', "numerator, denominator]"),
        ('{"X": {"exchange": 42}}', "must be text"),
        ('{"X": {"timezone": "Mars/Olympus"}}', "unknown time zone"),
        ('{"X": 3}', "must map symbol text to a dict"),
        ("[1, 2]", "must be a dict"),
        ("{nope", "not JSON"),
    ],
)
def test_hostile_carried_metadata_is_a_clear_error(tmp_path, meta, why):
    """Schema metadata is anyone's to write: a malformed ``stockbatch.meta`` is a ValueError
    naming it, before anything is written."""
    data = daily_bars(["AAPL"], DAYS[:2])
    data = data.replace_schema_metadata({b"stockbatch.meta": meta.encode()})
    with sinks.connect(f"sqlite:///{tmp_path / 'm.db'}") as sink:
        with pytest.raises(ValueError, match="stockbatch.meta") as err:
            sink.ingest(data, mode="upsert")
        assert why in str(err.value)
        assert not (tmp_path / "m.db").exists() or sink.read().num_rows == 0


def test_cli_reads_actions_symbols_and_trading_dates(fixture_server, tmp_path, capsys):
    import pyarrow.csv as pacsv

    from stockbatch.cli import main

    db = str(tmp_path / "cli.db")
    assert (
        main(
            [
                "ingest",
                "7203.T",
                "MSFT",
                "--db",
                db,
                "--base-url",
                fixture_server.url,
                "--period",
                "1y",
                "-q",
            ]
        )
        == 0
    )
    capsys.readouterr()

    def csv_of(argv) -> pa.Table:
        assert main(["read", "--db", db, "--csv", *argv]) == 0
        return pacsv.read_csv(pa.py_buffer(capsys.readouterr().out.encode()))

    acts = csv_of(["--kind", "actions"])
    assert acts.num_rows > 0 and set(acts.column("symbol").to_pylist()) <= {"7203.T", "MSFT"}
    syms = csv_of(["--kind", "symbols"])
    assert dict(
        zip(syms.column("symbol").to_pylist(), syms.column("timezone").to_pylist(), strict=True)
    ) == {"7203.T": "Asia/Tokyo", "MSFT": "America/New_York"}
    # the last stored Tokyo bar, asked for by its trading date
    last = sb_read_last(db, "7203.T")
    day = last.astimezone(ZoneInfo("Asia/Tokyo")).date()
    nxt = date.fromordinal(day.toordinal() + 1)
    got = csv_of(["7203.T", "--start", day.isoformat(), "--end", nxt.isoformat()])
    assert got.num_rows == 1
    assert main(["read", "--db", db, "--kind", "actions", "--table", "x"]) == 2


def sb_read_last(db: str, symbol: str) -> datetime:
    return stockbatch.read(db, [symbol]).column("ts")[-1].as_py()


def _make_0_1_table(sink, table: str) -> None:
    """A bars table exactly as stockbatch 0.1 created it (no date column)."""
    from stockbatch.sinks._ddl import SPECS

    ddl = SPECS["bars_0_1"].create(sink.dialect, table)
    if sink.dialect.name == "sqlite":  # 0.1's SQLite keyed tables had no rowid
        ddl += " WITHOUT ROWID"
    with sink._connection() as conn:
        sink._exec(conn, ddl)


def test_0_1_table_is_written_then_migrated_in_place(sink, names, uri):
    _make_0_1_table(sink, names["bars"])
    bars = daily_bars(["7203.T", "AAPL"], DAYS[:3])
    # still written (and read by instant), but a read by trading date says how to upgrade
    assert sink.ingest(bars, mode="upsert", meta=meta_of(["7203.T", "AAPL"])).written == 6
    assert sink.read().num_rows == 6
    with pytest.raises(stockbatch.SchemaError, match="stockbatch migrate"):
        sink.read(start="2026-03-06")
    done = sink.migrate()
    assert done[names["bars"]].startswith("upgraded: 6 rows")
    assert sink.schema_version() == 2
    want = {(s, local_midnight(d, ZONES[s])): d for s in ("7203.T", "AAPL") for d in DAYS[:3]}
    assert stored_dates(sink, names["bars"]) == want  # zones from the symbols table
    got = sink.read(symbols=["7203.T"], start="2026-03-06", end="2026-03-07")
    assert got.column("ts").to_pylist() == [local_midnight(DAYS[0], "Asia/Tokyo")]
    assert sink.migrate()[names["bars"]] == "current"
    # and the table takes upserts in the new layout
    assert sink.ingest(bars, mode="upsert").ignored == 6


def test_cli_migrate(tmp_path, capsys):
    from stockbatch.cli import main

    db = tmp_path / "old.db"
    with sinks.connect(f"sqlite:///{db}") as s:
        _make_0_1_table(s, "bars")
        s.ingest(daily_bars(["SAP.DE"], DAYS[:2]), mode="append")
    with sqlite3.connect(db) as con, pytest.raises(sqlite3.OperationalError, match="ROWID"):
        con.execute("SELECT ROWID FROM bars")  # what DuckDB's attach sends for count(*)
    con.close()
    assert main(["migrate", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "bars: upgraded: 2 rows" in out
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT date FROM bars_v ORDER BY ts").fetchall() == [
            ("2026-03-05",),
            ("2026-03-08",),
        ]  # no zone known for 0.1 rows: UTC dates
        assert con.execute("SELECT value FROM stockbatch_meta").fetchall() == [("2",)]
        assert len(con.execute("SELECT ROWID FROM bars").fetchall()) == 2  # rebuilt with one
    finally:
        con.close()
    assert main(["migrate", "--db", str(db)]) == 0
    assert "bars: current" in capsys.readouterr().out


def test_indicators_stored_on_request_and_upserted(fixture_server, uri, names):
    from stockbatch.indicators import compute

    names = {**names, "indicators": names["bars"].replace("bars", "ind")}
    with sinks.connect(uri, tables=names) as sink:
        try:
            for _ in range(2):
                res = stockbatch.ingest(
                    ["AAPL", "7203.T"],
                    db=sink,
                    period="3mo",
                    base_url=fixture_server.url,
                    indicators="sma20,rsi14",
                )
                assert res.success
                stored = res.stats["indicator_values_stored"]
                ind = stockbatch.read(sink, kind="indicators")
                assert stored == ind.num_rows > 0
            bars = sink.read()
            want = compute(bars, ["sma20", "rsi14"])
            oracle = {}
            for r in want.to_pylist():
                for name in ("sma20", "rsi14"):
                    v = r[name]
                    if v is not None and v == v:
                        oracle[(r["symbol"], r["interval"], name, r["ts"])] = v
            got = {
                (r["symbol"], r["interval"], r["name"], r["ts"]): r["value"]
                for r in ind.to_pylist()
            }
            assert got.keys() == oracle.keys()
            assert all(abs(got[k] - oracle[k]) <= 1e-9 * max(1.0, abs(oracle[k])) for k in got)
            # idempotent: a second identical run changed nothing
            assert ind.num_rows == len(oracle)
            win = sink.read(
                kind="indicators", symbols=["AAPL"], start=bars.column("ts")[-1].as_py()
            )
            assert set(win.column("name").to_pylist()) == {"sma20", "rsi14"}
        finally:
            for t in names.values():
                sink.drop_table(t)


def test_time_window_index(sink, names, uri):
    """PostgreSQL bars tables get a BRIN index on ts; create_time_index() builds a B-tree
    that the time-window query uses (SQLite's plan is checked; DuckDB needs none)."""
    sink.ingest(daily_bars(), mode="upsert", meta=meta_of())
    sink.create_time_index()
    sink.create_time_index()  # idempotent
    t = names["bars"]
    with sink._connection() as conn:
        if sink.dialect.name == "postgresql":
            idx = {
                r[0]: r[1]
                for r in sink._query(
                    conn, f"SELECT indexname, indexdef FROM pg_indexes WHERE tablename = '{t}'"
                )
            }
            assert "USING brin" in idx[f"{t}_ts_brin"] and f"{t}_ts" in idx
        elif sink.dialect.name == "sqlite":
            plan = " ".join(
                str(r)
                for r in sink._query(
                    conn, f'EXPLAIN QUERY PLAN SELECT * FROM "{t}" WHERE ts >= 1 AND ts < 2'
                )
            )
            assert f"{t}_ts" in plan
        elif sink.dialect.name == "mysql":
            keys = {r[2] for r in sink._query(conn, f"SHOW INDEX FROM `{t}`")}
            assert f"{t}_ts" in keys
    got = sink.read(start=datetime(2026, 3, 29, tzinfo=UTC), end=datetime(2026, 3, 31, tzinfo=UTC))
    assert got.num_rows == 4


@pytest.mark.parametrize(
    "code, symbol", [("7203", "7203.T"), ("SAP.DE", "SAP.DE"), ("AAPL", "AAPL")]
)
def test_compat_and_read_agree_on_a_date_window(fixture_server, tmp_path, code, symbol):
    """compat takes dates as exchange-local days; read() takes them as trading dates: the
    same window gives the same bars."""
    from stockbatch.compat import StockFetcher

    db = str(tmp_path / "agree.db")
    assert stockbatch.ingest([symbol], db=db, base_url=fixture_server.url, period="3mo").success
    stored = stockbatch.read(db, [symbol]).column("ts").to_pylist()
    zone = ZoneInfo(ZONES[symbol])
    lo = stored[5].astimezone(zone).date().isoformat()
    hi = stored[15].astimezone(zone).date().isoformat()
    got = stockbatch.read(db, [symbol], start=lo, end=hi).column("ts").to_pylist()
    assert got == stored[5:15]
    with StockFetcher(base_url=fixture_server.url, auto_adjust=False) as f:
        frame = f.get_historical_data_range(code, lo, hi)
    assert frame is not None
    # compat's index: the exchange-local day (as yfinance's)
    assert [t.date() for t in frame.index] == [g.astimezone(zone).date() for g in got]
