"""The backend switch: one loud choice, no silent fallback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import stockbatch
from stockbatch import _backend


def test_backend_reported():
    assert stockbatch.backend in ("cython", "python")
    assert stockbatch.backend == ("python" if _backend.PURE_PYTHON else "cython")


def test_pure_python_env_selects_twins():
    code = "import stockbatch, stockbatch._backend as b; print(stockbatch.backend, b.load('kernels').__name__)"
    env = {**os.environ, "STOCKBATCH_PURE_PYTHON": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["python", "stockbatch._py.kernels"]


def test_missing_compiled_module_is_a_loud_import_error():
    with pytest.raises(ImportError, match="pip install .*STOCKBATCH_PURE_PYTHON=1"):
        _backend.load_from("cython", "no_such_module")


def test_compiled_modules_are_compiled(load, backend_name):
    mod = load("kernels")
    if backend_name == "cython":
        assert mod.__file__.endswith((".so", ".pyd"))
    else:
        assert mod.__file__.endswith(".py")
