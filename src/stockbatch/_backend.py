"""Pick the compiled modules or their pure-Python twins, once, loudly.

``STOCKBATCH_PURE_PYTHON=1`` selects the twins in ``stockbatch._py``. Otherwise the compiled
modules in ``stockbatch._ext`` are used, and a missing one raises ImportError with the fix:
there is no silent fallback.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["backend", "load", "load_from", "available_backends"]

PURE_PYTHON = os.environ.get("STOCKBATCH_PURE_PYTHON", "") not in ("", "0")
#: ``"cython"`` or ``"python"``: which implementation stockbatch runs on.
backend = "python" if PURE_PYTHON else "cython"

_PACKAGES = {"cython": "stockbatch._ext", "python": "stockbatch._py"}


def load_from(which: str, name: str) -> ModuleType:
    """Import module ``name`` of backend ``which`` (``"cython"`` or ``"python"``)."""
    package = _PACKAGES[which]
    try:
        return importlib.import_module(f"{package}.{name}")
    except ImportError as exc:
        if which != "cython" or exc.name not in (f"{package}.{name}", None):
            raise
        raise ImportError(
            f"the compiled module {package}.{name} is missing: build it with `pip install .` "
            "(or `python setup.py build_ext --inplace` in a checkout), or set "
            "STOCKBATCH_PURE_PYTHON=1 to run on the pure-Python twins"
        ) from exc


def load(name: str) -> ModuleType:
    """Import module ``name`` of the selected backend."""
    return load_from(backend, name)


def available_backends() -> list[str]:
    """The backends whose modules import here (the compiled one only when built)."""
    found = ["python"]
    if not PURE_PYTHON:
        try:
            importlib.import_module("stockbatch._ext.kernels")
            found.insert(0, "cython")
        except ImportError:
            pass
    return found
