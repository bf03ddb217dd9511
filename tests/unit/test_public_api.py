"""The public namespace: what `import stockbatch` costs, what `*` exports, what the Literal
aliases of stockbatch._types promise."""

from __future__ import annotations

import json
import subprocess
import sys
import types
import typing

import pytest

import stockbatch
from stockbatch import _errors, _types


def _run(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.splitlines()[-1])


_MODULES = "import json, sys; print(json.dumps(sorted(sys.modules)))"


def test_import_stays_cheap():
    loaded = set(_run("import stockbatch; " + _MODULES))
    heavy = {
        "pandas",
        "pyarrow.dataset",
        "httpx",
        "stockbatch.testing",
        "stockbatch.testing._server",
        "stockbatch.compat",
        "stockbatch.pipeline",
        "stockbatch._api",
    }
    assert not heavy & loaded


def test_star_import_exports_names_only():
    loaded = set(_run("from stockbatch import *; " + _MODULES))
    for mod in ("stockbatch.testing", "stockbatch.testing._server", "stockbatch.compat"):
        assert mod not in loaded
    namespace: dict = {}
    exec("from stockbatch import *", namespace)
    exported = {k: v for k, v in namespace.items() if k != "__builtins__"}
    assert set(exported) == set(stockbatch.__all__)
    assert not [k for k, v in exported.items() if isinstance(v, types.ModuleType)]


def test_all_is_complete_and_unique():
    names = stockbatch.__all__
    assert len(names) == len(set(names))
    assert set(_errors.__all__) <= set(names)
    assert set(stockbatch._LAZY) <= set(names)
    assert not set(stockbatch._SUBMODULES) & set(names)
    for name in names:
        assert getattr(stockbatch, name) is not None


def test_submodules_stay_reachable_as_attributes():
    assert stockbatch.sources.__name__ == "stockbatch.sources"
    assert stockbatch.indicators.__name__ == "stockbatch.indicators"
    assert {"sources", "sinks", "testing"} <= set(dir(stockbatch))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        stockbatch.nope  # noqa: B018


def test_lazy_names_are_the_selected_backend():
    from stockbatch._backend import load

    assert stockbatch.BatchQueue is load("queue").BatchQueue
    assert stockbatch.validate is load("kernels").validate


def test_version_single_sourced():
    from stockbatch._version import __version__

    assert stockbatch.__version__ == __version__
    try:
        import tomllib
    except ImportError:  # Python 3.10
        pytest.skip("tomllib needs Python 3.11")
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    meta = tomllib.loads(pyproject.read_text())
    assert "version" not in meta["project"]
    assert "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "stockbatch._version.__version__"
    }


@pytest.mark.parametrize(
    "alias, values",
    [
        (_types.Mode, _types.MODES),
        (_types.JobStatus, _types.JOB_STATUSES),
        (_types.JobState, _types.JOB_STATES),
        (_types.DataKind, _types.DATA_KINDS),
        (_types.SymbolStatus, _types.SYMBOL_STATUSES),
        (_types.RequestState, _types.REQUEST_STATES),
        (_types.RequestKind, _types.REQUEST_KINDS),
        (_types.IntervalName, _types.INTERVALS),
        (_types.SinkLevel, _types.SINK_LEVELS),
        (_types.HealthStatus, _types.HEALTH_STATUSES),
        (_types.SourceName, _types.SOURCE_NAMES),
    ],
)
def test_literal_alias_matches_its_tuple(alias, values):
    assert typing.get_args(alias) == values


def test_literals_match_the_code_that_checks_them(load):
    from stockbatch import stats
    from stockbatch.pipeline._job import INTERVALS as SERVED  # the CLI's choices
    from stockbatch.sinks import MODES, Level
    from stockbatch.sources._base import YAHOO_INTERVALS

    assert MODES is _types.MODES  # the sinks check against the one tuple
    assert set(_types.SINK_LEVELS) == {lv.value for lv in Level}
    assert set(SERVED) <= set(_types.INTERVALS)
    assert SERVED == YAHOO_INTERVALS
    assert set(_types.DAILY_INTERVALS) <= set(_types.INTERVALS)
    assert set(_types.REQUEST_KINDS) == set(load("queue").KINDS)
    assert set(_types.HEALTH_STATUSES) == {stats.HEALTHY, stats.DEGRADED, stats.UNHEALTHY}
    assert set(_types.JOB_STATUSES) < set(_types.JOB_STATES)
    queue = load("queue")
    req = queue.Request("history", "yahoo", "AAPL", "1d")
    assert req.state in _types.REQUEST_STATES
