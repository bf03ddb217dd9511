"""What an ingest imports: none of pandas, polars or ``pyarrow.dataset`` (together ~0.5 s of
a 1 s CLI run when they are installed), whether it is a whole ``stockbatch ingest`` or the
first ``stockbatch.ingest`` call of a user's process, in every mode, into every database.

Each case runs in a fresh interpreter (``sys.modules`` of this test process is full of
everything) with an audit hook that records, for every import of a watched module, the Python
line that was running. ``adbc_driver_manager.dbapi`` (which imports ``pyarrow.dataset`` and,
when installed, pandas and polars) must not load at all: the SQLite and PostgreSQL sinks go
through ``stockbatch.sinks._adbc_conn``.

pandas is the subtle one: pyarrow itself imports it, when installed, the first time it converts
a Python value or an array to numpy (``pa.array([...])``, ``pa.scalar(5)``, ``arr.to_numpy()``,
a zoned timestamp's ``as_py()``, ``Table.join``), to ask whether the value is a pandas object.
The ingest path builds and reads its arrays through ``stockbatch._arrow`` instead, so pandas
must not load at all, not even from inside pyarrow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import stockbatch as sb

SRC = Path(sb.__file__).resolve().parents[1]
WATCHED = ("pandas", "polars", "pyarrow.dataset", "adbc_driver_manager.dbapi")

_CHILD = r"""
import json, sys, traceback
WATCHED = {watched!r}
seen = {{}}

def hook(event, args):
    if event == "import" and args[0] in WATCHED and args[0] not in seen:
        frame = traceback.extract_stack()[-2]
        seen[args[0]] = f"{{frame.filename}}:{{frame.lineno}}: {{frame.line}}"

sys.addaudithook(hook)
{body}
print("RESULT " + json.dumps({{
    "loaded": [m for m in WATCHED if m in sys.modules], "importers": seen}}))
"""

_CLI = """
from stockbatch.cli import main
code = main(["ingest", "S0001", "7203.T", "S0003", "--db", sys.argv[1], "--base-url",
             sys.argv[2], "--period", "1mo", "--quiet"])
assert code == 0, code
"""

#: every mode, twice over the same rows (the second ingests meet stored rows: refused
#: duplicates quarantined, upserts compared with what is stored), then a read
_SINK = """
import stockbatch as sb
from stockbatch import sinks
from stockbatch.sources import YahooChartSource
names = {k: sys.argv[3] + "_" + k for k in ("bars", "quarantine", "ingest_log")}
sink = sinks.connect(sys.argv[1], tables=names)
try:
    for mode in ["create_append", "append", "upsert", "insert_new", "replace", "upsert"]:
        r = sb.ingest(["S0001", "7203.T"], db=sink, period="1mo", mode=mode,
                      source=YahooChartSource(base_url=sys.argv[2]))
        # append and insert_new meet the stored rows: refused, and kept as they were
        done = {"append": r.rows_refused, "insert_new": r.rows_kept}.get(mode, r.rows_stored)
        assert done, (mode, r)
    assert sink.read().num_rows
finally:
    for t in names.values():
        sink.drop_table(t)
    sink.close()
"""


def _run(body: str, *args: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD.format(watched=WATCHED, body=body), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def _check(out: dict) -> None:
    assert not out["loaded"], out


def test_cli_ingest_into_sqlite_imports_no_dataframe_library(fixture_server, tmp_path):
    _check(_run(_CLI, str(tmp_path / "cli.db"), fixture_server.url))


def test_library_ingest_into_sqlite_imports_no_dataframe_library(fixture_server, tmp_path):
    _check(_run(_SINK, f"sqlite:///{tmp_path / 'lib.db'}", fixture_server.url, "import_cost"))


def test_library_ingest_into_postgresql_imports_no_dataframe_library(fixture_server, pg_uri):
    _check(_run(_SINK, pg_uri, fixture_server.url, f"import_cost_{os.getpid()}"))


def test_library_ingest_into_mariadb_imports_no_dataframe_library(fixture_server, mysql_uri):
    _check(_run(_SINK, mysql_uri, fixture_server.url, f"import_cost_{os.getpid()}"))
