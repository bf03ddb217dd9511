"""Sinks: truthful per-symbol accounting, a quarantine that does not grow on re-runs, typed
errors, refused temporary schemas, clear connection errors and bounded lock waits
(issues 10 and 11). Real databases only; every table name carries a random suffix and is
dropped afterwards. Expected values come from Python oracles over the input.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections import Counter

import pyarrow as pa
import pytest
from test_sinks import HOSTILE, make_bars, rows_of

from stockbatch import SchemaError, SinkError, sinks
from stockbatch.sinks._ddl import SPECS, TableSpec


def run(sink, statement):
    with sink._connection() as conn:
        sink._exec(conn, statement)


def query(sink, statement):
    with sink._connection() as conn:
        return [tuple(r) for r in sink._query(conn, statement)]


def rejected_rows(symbols, n, reasons=("high<low",), seed=5):
    t = make_bars(symbols, n, seed=seed, start=1000)
    return t.append_column("reasons", pa.array([list(reasons)] * t.num_rows))


def log_rows(sink, names):
    d = sink.dialect
    return query(
        sink,
        "SELECT job_id, rows_written, rows_updated, rows_ignored, rows_rejected, "
        "rows_refused FROM " + d.quote(names["ingest_log"]) + " ORDER BY job_id",
    )


def quarantine_rows(sink, names):
    d = sink.dialect
    rows = query(
        sink,
        "SELECT job_id, target, symbol, reasons, error, row_json, seen_count "
        "FROM " + d.quote(names["quarantine"]),
    )
    return [
        {
            "job_id": r[0],
            "target": r[1],
            "symbol": r[2],
            "reasons": r[3],
            "error": r[4],
            "row": json.loads(r[5]),
            "seen_count": r[6],
        }
        for r in rows
    ]


def check_table(sink, names, check: str):
    """The bars table, created with an extra CHECK constraint (as a user's table may be)."""
    ddl = SPECS["bars"].create(sink.dialect, names["bars"])
    ddl = ddl.replace(
        "PRIMARY KEY", f"CHECK ({sink.dialect.quote('close')} {check}), PRIMARY KEY", 1
    )
    run(sink, ddl)


# -- 1. per-symbol accounting of what the database refuses --------------------------------
@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_check_refusing_every_row_is_told_per_symbol(db, sink, names):
    check_table(sink, names, "< 0")
    data = make_bars(["AAA", "BBB", HOSTILE], 40)
    bad = rejected_rows(["AAA", "CCC"], 3)
    r = sink.ingest(
        data,
        mode="create_append",
        on_error="split",
        job_id="job-all",
        source="test",
        quarantine=bad,
        batch_rows=64,
    )
    assert r.refused_by_symbol == {"AAA": 40, "BBB": 40, HOSTILE: 40}
    assert set(r.refused_errors) == {"AAA", "BBB", HOSTILE}
    assert all("check" in e.lower() for e in r.refused_errors.values())
    assert (r.written, r.rejected, r.quarantined) == (0, 120, 6)
    assert log_rows(sink, names) == [("job-all", 0, 0, 0, 6, 120)]
    q = quarantine_rows(sink, names)
    refused = [x for x in q if x["error"]]
    assert len(refused) == 120 and len(q) == 126
    assert all("check" in x["error"].lower() and x["reasons"] == "" for x in refused)
    assert Counter(x["symbol"] for x in refused) == Counter(r.refused_by_symbol)
    assert sorted(x["symbol"] for x in q if not x["error"]) == ["AAA"] * 3 + ["CCC"] * 3
    assert sink.read().num_rows == 0


def test_appending_stored_rows_again_refuses_exactly_those(db, sink, names):
    """Appending an overlapping window: the rows already stored are refused (looked up in
    one query, not bisected one by one: appending a stored year again took minutes), the
    new ones are stored, and the counts are the database's."""
    first = make_bars(["AAA", "BBB", HOSTILE], 100)
    assert sink.ingest(first, mode="create_append").written == 300
    again = make_bars(["AAA", "BBB", HOSTILE], 100, start=60, seed=1)  # days 60-159
    r = sink.ingest(again, mode="append", on_error="split", job_id="job-again")
    assert (r.written, r.rejected) == (180, 120)
    assert r.refused_by_symbol == {"AAA": 40, "BBB": 40, HOSTILE: 40}
    assert all("already stored" in e for e in r.refused_errors.values())
    q = quarantine_rows(sink, names)
    assert len(q) == 120 and all("already stored" in x["error"] for x in q)
    assert log_rows(sink, names) == [("job-again", 180, 0, 0, 0, 120)]
    stored = rows_of(sink.read())
    assert len(stored) == 480
    # the first values stay; the new days are the second ingest's
    assert {k: v for k, v in stored.items() if k in rows_of(first)} == rows_of(first)
    new = {k: v for k, v in rows_of(again).items() if k not in rows_of(first)}
    assert len(new) == 180 and all(stored[k] == v for k, v in new.items())


def test_stored_keys_beside_check_refusals_are_all_accounted(db, sink, names):
    """Stored keys and CHECK refusals in one batch: every row is stored or refused with
    its reason (a duplicate key, or the database's CHECK message), and the counts are
    the database's."""
    check_table(sink, names, "< 50")
    first = make_bars(["AAA"], 40, seed=3)
    first = first.filter(pa.compute.less(first.column("close"), 50))
    sink.ingest(first, mode="append")
    again = make_bars(["AAA"], 80, seed=3)  # the same first 40 days, then 40 new ones
    failing = sum(1 for r in again.to_pylist() if r["close"] >= 50)
    r = sink.ingest(again, mode="append", on_error="split", batch_rows=80)
    assert r.rejected == first.num_rows + failing
    assert r.written == 80 - r.rejected == sink.read().num_rows - first.num_rows
    errors = [x["error"].lower() for x in quarantine_rows(sink, names)]
    assert len(errors) == r.rejected
    # MariaDB words a CHECK refusal "CONSTRAINT `CONSTRAINT_1` failed"
    assert sum("check" in e or "constraint_1" in e for e in errors) == failing


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_check_refusing_some_rows_is_told_per_symbol(db, sink, names):
    check_table(sink, names, "< 50")
    data = make_bars(["AAA", "BBB", "CCC"], 60, seed=3)
    expect = Counter(r["symbol"] for r in data.to_pylist() if r["close"] >= 50)
    assert expect and sum(expect.values()) < data.num_rows
    r = sink.ingest(data, mode="upsert", on_error="split", job_id="job-some", batch_rows=50)
    assert r.refused_by_symbol == dict(expect)
    assert r.rejected == sum(expect.values())
    assert r.written == data.num_rows - r.rejected
    assert log_rows(sink, names) == [("job-some", r.written, 0, 0, 0, r.rejected)]
    q = quarantine_rows(sink, names)
    assert Counter(x["symbol"] for x in q) == expect
    assert all(x["row"]["close"] >= 50 and "check" in x["error"].lower() for x in q)
    stored = {k for k, v in rows_of(sink.read()).items()}
    assert stored == {k for k, v in rows_of(data).items() if v[3] < 50}


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_a_row_refused_in_the_last_piece_of_a_streamed_copy(db, sink, names):
    """PostgreSQL streams a batch's COPY in 8k-row pieces: a row refused in the last piece
    rolls back the pieces sent before it (raise), or is the only row refused (split)."""
    check_table(sink, names, "< 1000")
    data = make_bars(["AAA", "BBB"], 10_000, seed=2)  # 20,000 rows in one batch: 3 pieces
    close = data.column("close").to_numpy().copy()
    close[19_000] = 5000.0
    data = data.set_column(data.schema.get_field_index("close"), "close", pa.array(close))
    with pytest.raises(SinkError, match="(?i)check"):
        sink.ingest(data, mode="append", batch_rows=20_000)
    assert sink.read().num_rows == 0
    r = sink.ingest(data, mode="append", on_error="split", batch_rows=20_000)
    assert (r.written, r.rejected, r.refused_by_symbol) == (19_999, 1, {"BBB": 1})
    assert sink.read().num_rows == 19_999


def test_quarantine_in_the_same_transaction(db, sink, names):
    sink.ingest(make_bars(["A"], 10), mode="create_append")
    clash = make_bars(["A"], 1, start=5)  # an existing key: append fails
    with pytest.raises(SinkError, match="rolled back"):
        sink.ingest(clash, mode="append", job_id="job-x", quarantine=rejected_rows(["A"], 4))
    # nothing of the call stayed: no quarantine rows, no log row
    for role in ("quarantine", "ingest_log"):
        d = sink.dialect
        try:
            n = query(sink, "SELECT COUNT(*) FROM " + d.quote(names[role]))[0][0]
        except Exception:  # noqa: BLE001 - the table itself may have been rolled back
            n = 0
        assert n == 0
    r = sink.ingest(
        make_bars(["B"], 5), mode="upsert", job_id="job-y", quarantine=rejected_rows(["B"], 4)
    )
    assert (r.written, r.quarantined, r.rejected, r.refused_by_symbol) == (5, 4, 0, {})
    assert log_rows(sink, names) == [("job-y", 5, 0, 0, 4, 0)]
    q = quarantine_rows(sink, names)
    assert [(x["symbol"], x["reasons"], x["target"], x["job_id"]) for x in q] == [
        ("B", "high<low", names["bars"], "job-y")
    ] * 4


# -- 2. idempotent re-runs keep one quarantine row per distinct rejection -----------------
def test_quarantine_does_not_grow_on_reruns(db, sink, names):
    data = make_bars(["A", "B"], 20)
    part = rejected_rows(["A", "B"], 5)
    bad = pa.concat_tables([part, part.slice(0, 2)])
    distinct = 10  # the last two rows repeat two of the first, with the same reasons
    for i in range(3):
        r = sink.ingest(data, mode="upsert", job_id=f"job-{i}", quarantine=bad)
        assert r.quarantined == bad.num_rows
    sink.quarantine(rejected_rows(["A"], 1, reasons=("other",)), job_id="job-q", target="t")
    q = quarantine_rows(sink, names)
    assert len(q) == distinct + 1
    counts = sorted(x["seen_count"] for x in q if x["job_id"] != "job-q")
    assert counts == [3] * 8 + [6] * 2
    assert {x["job_id"] for x in q} == {"job-2", "job-q"}  # the latest job that saw it
    assert [x[4] for x in log_rows(sink, names)] == [bad.num_rows] * 3


def _old_quarantine(sink, table):
    """A quarantine table as stockbatch 0.1 made it (no hash, no counts), with repeats."""
    spec = SPECS["quarantine"]
    old = TableSpec(
        "quarantine",
        tuple(c for c in spec.columns if c[0] not in ("row_hash", "seen_count", "last_seen")),
        (),
    )  # text columns VARCHAR(255) on MariaDB, as 0.1 made them
    run(sink, old.create(sink.dialect, table))
    from datetime import datetime, timedelta, timezone

    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    rows = []
    for i in range(3):  # three runs of the same two rejections, plus one other
        for sym, reasons in (("A", "high<low"), ("B", "nan close")):
            rows.append(
                (
                    f"job-old-{i}",
                    "bars",
                    sym,
                    t0,
                    reasons,
                    "",
                    json.dumps({"symbol": sym, "close": 1.5}),
                    t0 + timedelta(hours=i),
                )
            )
    rows.append(("job-old-0", "bars", "C", t0, "x", "db said no", json.dumps({"symbol": "C"}), t0))
    cols = [c[0] for c in old.columns]
    data = pa.table({c: pa.array([r[i] for r in rows]) for i, c in enumerate(cols)})
    with sink._connection() as conn:
        sink._begin(conn)
        sink._append_aux(conn, table, data)
        sink._commit(conn)
    return len(rows)


def _old_log(sink, table):
    spec = SPECS["ingest_log"]
    old = TableSpec("ingest_log", tuple(c for c in spec.columns if c[0] != "rows_refused"), ())
    run(sink, old.create(sink.dialect, table))


def test_tables_of_version_0_1_are_upgraded(db, sink, names):
    assert _old_quarantine(sink, names["quarantine"]) == 7
    _old_log(sink, names["ingest_log"])
    # the same rejection as the old "A" row: merged with it
    again = pa.table({"symbol": ["A"], "close": [1.5], "reasons": [["high<low"]]})
    r = sink.ingest(make_bars(["Z"], 3), mode="upsert", job_id="job-new")
    assert r.written == 3
    assert sink.quarantine(again, job_id="job-new", target="bars") == 1
    q = {(x["symbol"], x["reasons"]): x for x in quarantine_rows(sink, names)}
    assert {k: v["seen_count"] for k, v in q.items()} == {
        ("A", "high<low"): 4,
        ("B", "nan close"): 3,
        ("C", "x"): 1,
    }
    assert q[("A", "high<low")]["job_id"] == "job-new"
    assert q[("B", "nan close")]["job_id"] == "job-old-2"
    assert log_rows(sink, names) == [("job-new", 3, 0, 0, 0, 0)]
    # the unique index holds: a second sink (fresh cache) adds nothing either
    with sinks.connect(sink._uri, tables=names) as other:
        other.quarantine(again, job_id="job-3", target="bars")
    assert len(quarantine_rows(sink, names)) == 3
    # long rows and database errors fit (0.1 made these VARCHAR(255) on MariaDB)
    long = pa.table({"symbol": ["L"], "source": ["x" * 600], "reasons": [["r" * 300]]})
    assert sink.quarantine(long, target="bars", error="e" * 500) == 1
    got = [x for x in quarantine_rows(sink, names) if x["symbol"] == "L"]
    assert [(len(x["reasons"]), len(x["error"]), x["row"]["source"]) for x in got] == [
        (300, 500, "x" * 600)
    ]


# -- 3. typed errors instead of raw driver / Arrow exceptions -----------------------------
def test_pg_integer_column_gives_schema_error(pg_uri, names):
    with sinks.connect(pg_uri, tables=names) as s:
        try:
            ddl = (
                SPECS["bars"]
                .create(s.dialect, names["bars"])
                .replace('"close" DOUBLE PRECISION', '"close" INTEGER')
            )
            run(s, ddl)
            for mode in ("append", "upsert", "create_append", "insert_new"):
                with pytest.raises(SchemaError, match=f"close.*{names['bars']}") as e:
                    s.ingest(make_bars(["A"], 5), mode=mode)
                assert "close" in e.value.problems
            with pytest.raises(SchemaError):
                s.ingest(make_bars(["A"], 5), mode="append", on_error="split")
            assert s.read().num_rows == 0
        finally:
            s.drop_table(names["bars"])


def test_read_of_a_foreign_table_is_a_typed_error(db, sink, names):
    foreign = {
        "sqlite": "sqlite_master",
        "duckdb": "information_schema.tables",
        "postgresql": "pg_class",
        "mysql": "information_schema.tables",
    }[db]
    if db in ("duckdb", "mysql"):  # system schemas are refused by name
        with pytest.raises(SinkError, match="system"):
            sink.read(table=foreign)
    else:
        sink.ensure_tables()  # so that sqlite_master has rows
        with pytest.raises(SchemaError, match=f"{foreign}.*'symbol'") as e:
            sink.read(table=foreign)
        assert "symbol" in e.value.problems
    with pytest.raises(SinkError, match="does not exist"):
        sink.read(table="sbt_missing_" + uuid.uuid4().hex[:8])


def test_table_dropped_behind_the_sinks_back(db, sink, names):
    sink.ingest(make_bars(["A"], 5), mode="upsert", job_id="j1")
    run(sink, "DROP TABLE " + sink.dialect.quote(names["bars"]))
    # the sink believed the table existed: the first call fails cleanly, the next recreates
    try:
        r = sink.ingest(make_bars(["A"], 5), mode="upsert", job_id="j2")
    except SinkError:
        r = sink.ingest(make_bars(["A"], 5), mode="upsert", job_id="j2")
    assert r.written == 5
    assert rows_of(sink.read()) == rows_of(make_bars(["A"], 5))


# -- 4. temporary schemas are refused -----------------------------------------------------
@pytest.mark.parametrize(
    "db,table",
    [
        ("sqlite", "temp.t"),
        ("sqlite", "main.t"),
        ("postgresql", "pg_temp.t"),
        ("postgresql", "pg_temp_3.x"),
        ("postgresql", "pg_catalog.t"),
        ("duckdb", "temp.t"),
    ],
)
def test_temporary_schemas_are_refused(db, table, sink, names):
    with pytest.raises(SinkError, match="refused") as e:
        sink.ingest(make_bars(["A"], 3), table=table, mode="create_append")
    assert e.value.table == table
    with pytest.raises(SinkError, match="refused"):
        sinks.connect(sink._uri, tables={"bars": table})


# -- 5. connection errors that say what is wrong ------------------------------------------
def test_missing_directory_is_named(tmp_path):
    for uri in (
        str(tmp_path / "nope" / "x.db"),
        f"sqlite:///{tmp_path}/nope/x.db",
        f"duckdb:///{tmp_path}/nope/x.duckdb",
    ):
        with sinks.connect(uri) as s, pytest.raises(SinkError, match="does not exist") as e:
            s.ensure_tables()
        assert "allocate memory" not in str(e.value)
        assert os.fspath(tmp_path / "nope") in str(e.value)


def test_relative_path_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with (
        sinks.connect("duckdb:///data/x/sb.duckdb") as s,
        pytest.raises(SinkError, match="duckdb:////path is absolute"),
    ):
        s.check()


@pytest.mark.parametrize("scheme,ext", [("sqlite", "db"), ("duckdb", "duckdb")])
def test_absolute_and_relative_uris(scheme, ext, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    forms = {
        f"{scheme}:///sub/rel1.{ext}": tmp_path / "sub" / f"rel1.{ext}",
        f"{scheme}:sub/rel2.{ext}": tmp_path / "sub" / f"rel2.{ext}",
        f"{scheme}:///{tmp_path}/abs.{ext}": tmp_path / f"abs.{ext}",
    }  # four slashes
    for uri, path in forms.items():
        with sinks.connect(uri) as s:
            assert type(s).__name__.lower().startswith(scheme)
            s.ingest(make_bars(["A"], 2), mode="create_append")
        assert path.is_file(), uri
    with sinks.connect(str(tmp_path / f"abs.{ext}")) as s:
        assert type(s).__name__.lower().startswith(scheme)
        assert s.read().num_rows == 2


def test_bare_duckdb_path_opens_duckdb_and_is_not_read_as_sqlite(tmp_path):
    path = tmp_path / "new.duckdb"
    with sinks.connect(str(path)) as s:
        assert type(s).__name__ == "DuckdbSink"
        s.ingest(make_bars(["A"], 2), mode="create_append")
    renamed = tmp_path / "renamed.db"
    renamed.write_bytes(path.read_bytes())
    for uri in (f"sqlite:///{path}", str(renamed)):
        with (
            sinks.connect(uri) as s,
            pytest.raises(
                SinkError, match=r"not a SQLite database \(looks like DuckDB: use duckdb:///"
            ),
        ):
            s.read()
    sqlite_file = tmp_path / "real.db"
    with sinks.connect(str(sqlite_file)) as s:
        s.ensure_tables()
    with (
        sinks.connect(f"duckdb:///{sqlite_file}") as s,
        pytest.raises(SinkError, match="looks like SQLite: use sqlite:///"),
    ):
        s.read()


_HOLDER = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
c.execute("CREATE TABLE IF NOT EXISTS holder (x)")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
c.execute("COMMIT")
"""


def hold_lock(path, seconds):
    """A process holding SQLite's write lock on ``path`` for ``seconds`` (or until killed)."""
    p = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout.readline().strip() == "locked"
    return p


def test_sqlite_lock_wait_is_bounded_and_told(tmp_path, caplog):
    path = tmp_path / "locked.db"
    with sinks.connect(f"sqlite:///{path}", busy_timeout=2.0) as s:
        s.ensure_tables()
        holder = hold_lock(path, 30)
        try:
            caplog.set_level(logging.WARNING, logger="stockbatch.sinks")
            t = time.monotonic()
            with pytest.raises(SinkError, match="locked by another writer"):
                s.ingest(make_bars(["A"], 5), mode="upsert", job_id="j")
            waited = time.monotonic() - t
            assert 1.9 <= waited < 6
            warnings = [r for r in caplog.records if "locked" in r.getMessage()]
            assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        finally:
            holder.kill()
            holder.wait()
        # the lock is gone: the same sink stores
        assert s.ingest(make_bars(["A"], 5), mode="upsert", job_id="j").written == 5


def test_sqlite_waits_for_a_short_lock(tmp_path):
    path = tmp_path / "short.db"
    with sinks.connect(f"sqlite:///{path}", busy_timeout=20) as s:
        s.ensure_tables()
        holder = hold_lock(path, 1.5)
        try:
            t = time.monotonic()
            assert s.ingest(make_bars(["A"], 5), mode="upsert").written == 5
            assert time.monotonic() - t >= 1.0
        finally:
            holder.wait()


def test_sqlite_new_files_get_16k_pages_and_old_files_keep_theirs(tmp_path):
    import sqlite3

    def page_size(path):
        with sqlite3.connect(path) as c:
            return c.execute("PRAGMA page_size").fetchone()[0]

    new = tmp_path / "new.db"
    with sinks.connect(f"sqlite:///{new}") as s:
        assert s.ingest(make_bars(["A"], 5), mode="create_append").written == 5
    assert page_size(new) == 16384  # appends a pipeline chunk ~10 % faster than 4 KiB

    old = tmp_path / "old.db"
    with sqlite3.connect(old) as c:
        c.execute("PRAGMA page_size = 4096")
        c.execute("CREATE TABLE other (x)")
    with sinks.connect(f"sqlite:///{old}") as s:
        assert s.ingest(make_bars(["A", "B"], 50), mode="create_append").written == 100
        assert s.read().num_rows == 100
    assert page_size(old) == 4096


def test_bad_busy_timeout_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="busy_timeout"):
        sinks.connect(f"sqlite:///{tmp_path}/x.db", busy_timeout="soon")


@pytest.mark.parametrize("db", ["sqlite", "postgresql", "mysql"])
def test_first_calls_of_several_sinks_at_once(db, uri, names):
    """Cold sinks (no cache) creating and upgrading the same tables at once: no deadlock,
    every quarantined row counted once per call."""
    import threading

    bad = rejected_rows(["Q"], 3)
    errors = []

    def work(i):
        try:
            with sinks.connect(uri, tables=names) as s:
                s.ingest(make_bars([f"S{i}"], 20), mode="upsert", job_id=f"job-{i}", quarantine=bad)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with sinks.connect(uri, tables=names) as s:
        try:
            assert errors == []
            assert sorted(x["seen_count"] for x in quarantine_rows(s, names)) == [4, 4, 4]
            assert [x[1] for x in log_rows(s, names)] == [20] * 4
            assert s.read().num_rows == 80
        finally:
            for t in names.values():
                s.drop_table(t)


def test_errors_do_not_carry_the_statement(tmp_path):
    with sinks.connect(f"sqlite:///{tmp_path}/x.db") as s:
        run(s, 'CREATE TABLE "bars" ("symbol" TEXT)')
        with pytest.raises(SchemaError, match="'bars' is not a bars table.*'interval'"):
            s.ingest(make_bars(["A"], 2), mode="append")
        with pytest.raises(SchemaError, match="'interval', 'ts', 'open'"):
            s.read()
        run(s, 'DROP TABLE "bars"')
        run(
            s,
            'CREATE TABLE "bars" ("symbol" TEXT, "interval" TEXT, "ts" INTEGER, '
            '"open" REAL, "high" REAL, "low" REAL, "close" REAL, "adj_close" REAL, '
            '"volume" INTEGER, "source" TEXT, "extra" TEXT NOT NULL)',
        )
        with pytest.raises(SinkError) as e:
            s.ingest(make_bars(["A"], 2), mode="append")
        assert "NOT NULL" in str(e.value)
        assert "SELECT" not in str(e.value) and "INSERT" not in str(e.value)


def test_a_chunk_of_only_rejected_rows(db, sink, names):
    """Every row of a chunk failed validation: the quarantine and the log row are still
    written, in one transaction, and the (empty) data table is created."""
    bad = rejected_rows(["A", "B"], 2)
    r = sink.ingest(
        make_bars(["A"], 1).slice(0, 0), mode="create_append", job_id="job-e", quarantine=bad
    )
    assert (r.written, r.quarantined, r.rejected) == (0, 4, 0)
    assert log_rows(sink, names) == [("job-e", 0, 0, 0, 4, 0)]
    assert len(quarantine_rows(sink, names)) == 4
    assert sink.read().num_rows == 0
