"""What a whole-process ``stockbatch ingest`` imports: none of pandas, polars or
``pyarrow.dataset`` by our doing (together ~0.5 s of a 1 s CLI run when they are installed).

Each case runs in a fresh interpreter (``sys.modules`` of this test process is full of
everything) with an audit hook that records, for every import of a watched module, the Python
line that was running. ``adbc_driver_manager.dbapi`` (which imports ``pyarrow.dataset`` and,
when installed, pandas and polars) must not load at all: the SQLite and PostgreSQL sinks go
through ``stockbatch.sinks._adbc_conn``.

pandas is special: pyarrow itself imports it, when installed, the first time it converts a
Python value (``pa.array([...])``, ``pc.greater_equal(arr, 5)``) -- its pandas shim checks
whether the value is a pandas object. That import comes from inside pyarrow, not from an
``import`` statement; what is asserted is that no ``import`` statement of ours or of the
ADBC driver manager brings pandas in. The CLI goes further: its process never hands pyarrow
a pandas object, so it answers pyarrow's first probe with "no pandas"
(``cli._pyarrow_without_pandas_probe``) and a whole ``stockbatch ingest`` loads no pandas at all.
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

_SINK = """
import stockbatch as sb
from stockbatch import sinks
from stockbatch.sources import YahooChartSource
names = {k: sys.argv[3] + "_" + k for k in ("bars", "quarantine", "ingest_log")}
sink = sinks.connect(sys.argv[1], tables=names)
try:
    r = sb.ingest(["S0001", "7203.T"], db=sink, period="1mo",
                  source=YahooChartSource(base_url=sys.argv[2]))
    assert r.success, r
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
    loaded = set(out["loaded"])
    assert not loaded & {"polars", "pyarrow.dataset", "adbc_driver_manager.dbapi"}, out
    if "pandas" in out["importers"]:
        where = out["importers"]["pandas"]
        code = where.rsplit(": ", 1)[-1].strip()
        # a conversion inside pyarrow, not an import statement of ours or of a driver
        assert not code.startswith(("import ", "from ")), where


def test_cli_ingest_into_sqlite_imports_no_dataframe_library(fixture_server, tmp_path):
    out = _run(_CLI, str(tmp_path / "cli.db"), fixture_server.url)
    _check(out)
    assert "pandas" not in out["loaded"], out


_PROBE_THEN_PANDAS = """
from stockbatch.cli import _pyarrow_without_pandas_probe
import pyarrow as pa
_pyarrow_without_pandas_probe()
assert "pandas" not in sys.modules
assert pa.array([1, None]).null_count == 1  # conversions work without pandas
frame = pa.table({"a": [1, 2]}).to_pandas()  # and pandas still loads when really needed
assert list(frame["a"]) == [1, 2]
"""


def test_cli_probe_leaves_pandas_importable_when_really_needed():
    out = _run(_PROBE_THEN_PANDAS)
    assert "pandas" in out["loaded"], out


def test_ingest_into_postgresql_imports_no_dataframe_library(fixture_server, pg_uri):
    table = f"import_cost_{os.getpid()}"
    _check(_run(_SINK, pg_uri, fixture_server.url, table))
