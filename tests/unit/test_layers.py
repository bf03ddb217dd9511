"""The layers of ARCHITECTURE.md, enforced: every import of every module points down.

    6  entry points   cli, __main__, compat, dask
    5  API            _api, tuning
    4  pipeline       pipeline/
    3  I/O            sources/ | sinks/          (never each other)
    2  request layer  queueing, stats, alerts, _py/queue, _py/coalesce, _py/optimizer
       and kernels    _kernels, _validation, _arrow, indicators, schema, _py/kernels,
                      _py/indicators, _py/decode, and every compiled _ext module
    1  base           _errors, _backend, _time, _redact, _types, _version

Imports inside functions count too: a lazy import is still a dependency. ``testing/`` sits
beside the library: it may use layers 1-2, and only the CLI's demo, serve-fixture and bench
commands import it, and the pytest plugin ``testing.pytest_plugin`` (an entry point, layer
6) does. The package root (``stockbatch/__init__.py``) is the lazy façade: at run
time it imports layers 1-2 only (its ``if TYPE_CHECKING:`` imports are for type checkers).
A module this file does not place fails the test: give it a layer here and in ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
EXT = ROOT / "ext"
# a check of the source tree (.py and .pyx): it runs from a checkout (the README's test
# command does), not from a copy of the tests beside an installed wheel
pytestmark = pytest.mark.skipif(
    not (SRC / "stockbatch").is_dir() or not EXT.is_dir(), reason="needs the source checkout"
)

ENTRY, API, PIPELINE, IO, CORE, BASE = 6, 5, 4, 3, 2, 1
TESTING = 0  # beside the library, see the module docstring

# (module or package prefix, layer); the longest matching prefix wins
LAYERS = {
    "stockbatch.cli": ENTRY,
    "stockbatch.__main__": ENTRY,
    "stockbatch.compat": ENTRY,
    "stockbatch.dask": ENTRY,
    "stockbatch._api": API,
    "stockbatch.tuning": API,
    "stockbatch.pipeline": PIPELINE,
    "stockbatch.sources": IO,
    "stockbatch.sinks": IO,
    "stockbatch.queueing": CORE,
    "stockbatch.stats": CORE,
    "stockbatch.alerts": CORE,
    "stockbatch._kernels": CORE,
    "stockbatch._validation": CORE,
    "stockbatch._arrow": CORE,
    "stockbatch.indicators": CORE,
    "stockbatch.schema": CORE,
    "stockbatch.adjust": CORE,
    "stockbatch._py": CORE,
    "stockbatch._ext": CORE,
    "stockbatch._errors": BASE,
    "stockbatch._backend": BASE,
    "stockbatch._time": BASE,
    "stockbatch._redact": BASE,
    "stockbatch._types": BASE,
    "stockbatch._version": BASE,
    "stockbatch.testing": TESTING,
    # the pytest plugin is an entry point (pytest's) that lives in testing/
    "stockbatch.testing.pytest_plugin": ENTRY,
}
# the CLI commands that may reach the fixture server and the bench report
TESTING_CALLERS = {("stockbatch.cli", f) for f in ("_cmd_demo", "_cmd_serve_fixture", "_cmd_bench")}
# entry points that are part of testing/ and use it throughout
TESTING_USERS = {"stockbatch.testing.pytest_plugin"}
NEVER_EACH_OTHER = ("stockbatch.sources", "stockbatch.sinks")


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    line: int
    function: str | None  # the enclosing top-level function, if any
    type_only: bool  # under `if TYPE_CHECKING:`


def layer_of(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best[0])
        ):
            best = (prefix, layer)
    return None if best is None else best[1]


def _is_module(name: str) -> bool:
    path = SRC / Path(*name.split("."))
    return (
        path.with_suffix(".py").exists()
        or (path / "__init__.py").exists()
        or (EXT / Path(*name.split("."))).with_suffix(".pyx").exists()
    )


def _resolve(
    importer: str, is_package: bool, level: int, module: str | None, names: list[str]
) -> list[str]:
    if level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (level - 1)]
        module = ".".join(base + ([module] if module else []))
    if not module or not module.startswith("stockbatch"):
        return []
    # `from pkg import name` imports the submodule pkg.name when there is one
    subs = [f"{module}.{n}" for n in names if _is_module(f"{module}.{n}")]
    return subs if subs and len(subs) == len(names) else [module, *subs]


def python_imports(importer: str, source: str, is_package: bool) -> list[Import]:
    tree = ast.parse(source)
    found: list[Import] = []

    def visit(node: ast.AST, function: str | None, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            fn, tonly = function, type_only
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and function is None:
                fn = child.name
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.body:
                    visit(ast.Module(body=[sub], type_ignores=[]), fn, True)
                for sub in child.orelse:
                    visit(ast.Module(body=[sub], type_ignores=[]), fn, tonly)
                continue
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names if a.name.startswith("stockbatch")]
            elif isinstance(child, ast.ImportFrom):
                targets = _resolve(
                    importer, is_package, child.level, child.module, [a.name for a in child.names]
                )
            for t in targets:
                found.append(Import(importer, t, child.lineno, fn, tonly))
            visit(child, fn, tonly)

    visit(tree, None, False)
    return found


_PYX_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+(\S+)[ \t]+c?import[ \t]+\(?([\w, \t]*)|c?import[ \t]+(\S+))", re.M
)


def cython_imports(importer: str, source: str) -> list[Import]:
    found = []
    for m in _PYX_IMPORT.finditer(source):
        line = source.count("\n", 0, m.start()) + 1
        if m.group(3):
            targets = [m.group(3)] if m.group(3).startswith("stockbatch") else []
        else:
            names = [n.split()[0] for n in m.group(2).split(",") if n.strip()]
            targets = _resolve(importer, False, 0, m.group(1), names)
        found += [Import(importer, t, line, None, False) for t in targets]
    return found


def all_imports() -> list[Import]:
    found = []
    for path in sorted((SRC / "stockbatch").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        found += python_imports(name, path.read_text(encoding="utf-8"), is_package)
    for path in sorted((EXT / "stockbatch").rglob("*.pyx")):
        name = ".".join(path.relative_to(EXT).with_suffix("").parts)
        found += cython_imports(name, path.read_text(encoding="utf-8"))
    return found


def violation(imp: Import) -> str | None:
    """Why ``imp`` breaks the layering, or None."""
    src, dst = layer_of(imp.importer), layer_of(imp.target)
    where = f"{imp.importer}:{imp.line} imports {imp.target}"
    if imp.target == imp.importer or imp.target.startswith(imp.importer + "."):
        return None  # a package and its own modules
    if src is None and imp.importer != "stockbatch":
        return f"{imp.importer} has no layer: place it in tests/unit/test_layers.py"
    if imp.target == "stockbatch":
        return None if src == ENTRY else f"{where}: only entry points import the package root"
    if dst is None:
        return f"{imp.target} has no layer: place it in tests/unit/test_layers.py"
    if imp.importer == "stockbatch":  # the façade
        return None if imp.type_only or dst <= CORE else f"{where} at run time (keep it lazy)"
    if dst == TESTING and src != TESTING:
        ok = (imp.importer, imp.function) in TESTING_CALLERS or imp.importer in TESTING_USERS
        return None if ok else f"{where}: only the CLI's demo/serve-fixture/bench reach testing/"
    if src == TESTING:
        return None if dst <= CORE else f"{where}: testing/ may use layers 1-2 only"
    for a, b in (NEVER_EACH_OTHER, NEVER_EACH_OTHER[::-1]):
        if layer_of(a) == src and imp.importer.startswith(a) and imp.target.startswith(b):
            return f"{where}: sources and sinks never import each other"
    if dst > src:
        return f"{where}: upward (layer {src} -> {dst})"
    return None


def test_every_module_has_a_layer():
    names = {i.importer for i in all_imports()} | {i.target for i in all_imports()}
    missing = sorted(n for n in names if n != "stockbatch" and layer_of(n) is None)
    assert not missing, f"give these a layer in tests/unit/test_layers.py: {missing}"


def test_imports_point_down():
    found = all_imports()
    assert len(found) > 50  # the scan really read the tree
    bad = [v for v in map(violation, found) if v]
    assert not bad, "layer violations (see ARCHITECTURE.md):\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "importer, source, expected",
    [
        ("stockbatch.sinks._base", "from ..sources import YahooChartSource", "never import each"),
        ("stockbatch.schema", "def f():\n    from .pipeline import JobResult", "upward"),
        ("stockbatch._errors", "import stockbatch._api", "upward"),
        ("stockbatch.pipeline._engine", "from .. import testing", "only the CLI"),
        (
            "stockbatch.cli",
            "def _cmd_ingest(a):\n    from .testing import FixtureServer",
            "only the CLI",
        ),
        ("stockbatch.sources._yahoo", "import stockbatch", "package root"),
        ("stockbatch.schema", "from ._brand_new import x", "no layer"),
    ],
)
def test_checker_catches(importer, source, expected):
    reasons = [violation(i) for i in python_imports(importer, source, False)]
    assert any(r and expected in r for r in reasons), reasons


@pytest.mark.parametrize(
    "importer, source",
    [
        ("stockbatch.cli", "def _cmd_demo(a):\n    from .testing import FixtureServer"),
        ("stockbatch.pipeline._job", "from ..sources import Source\nfrom ..sinks import Sink"),
        ("stockbatch._api", "from .pipeline import JobResult"),
        ("stockbatch.sources._yahoo", "from .._backend import load"),
    ],
)
def test_checker_allows(importer, source):
    assert [violation(i) for i in python_imports(importer, source, False)] == [None] * len(
        python_imports(importer, source, False)
    )


def test_cython_imports_are_read():
    got = cython_imports(
        "stockbatch._ext.coalesce",
        "from stockbatch._ext.queue cimport Request\n"
        "from stockbatch._errors import SchemaError, SymbolNotFound\n"
        "    from stockbatch._py import decode as _twin\n",
    )
    assert [(i.target, i.line) for i in got] == [
        ("stockbatch._ext.queue", 1),
        ("stockbatch._errors", 2),
        ("stockbatch._py.decode", 3),
    ]
