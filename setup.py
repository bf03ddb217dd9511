"""Build the compiled modules: ext/stockbatch/_ext/<name>.pyx -> stockbatch._ext.<name>.

Build switches (environment):
  STOCKBATCH_CYTHON_DEBUG=1  bounds/wraparound/initialized checks on, -O0 -g, HTML annotation
  STOCKBATCH_CYTHON_TRACE=1  line tracing (CYTHON_TRACE_NOGIL) for coverage of .pyx files
  STOCKBATCH_BUILD_ONLY=a,b  build only these modules (developer convenience)
Cython directives live here only; generated C goes to build/cython-<mode>, never into ext/.
Builds are incremental: a module is re-cythonized only when its .pyx/.pxd changed, and each mode
(release, debug, trace) keeps its own build dir so modes never mix.
"""

import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
EXT_DIR = Path("ext") / "stockbatch" / "_ext"
DEBUG = os.environ.get("STOCKBATCH_CYTHON_DEBUG") == "1"
TRACE = os.environ.get("STOCKBATCH_CYTHON_TRACE") == "1"
MODE = "trace" if TRACE else "debug" if DEBUG else "release"
ONLY = {n for n in os.environ.get("STOCKBATCH_BUILD_ONLY", "").split(",") if n}

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "nonecheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
    "freethreading_compatible": False,
}
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if TRACE:
    directives.update(linetrace=True, binding=True)
    macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]

# -O2, never -march=native in what is shipped.
compile_args = ["-O0", "-g"] if DEBUG else ["-O2"]
compile_args += ["-Wno-unused-function", "-Wno-unreachable-code"]


def extensions():
    for pyx in sorted((HERE / EXT_DIR).glob("*.pyx")):
        name = pyx.stem
        if ONLY and name not in ONLY:
            continue
        yield Extension(
            f"stockbatch._ext.{name}",
            [str(EXT_DIR / pyx.name)],
            include_dirs=["ext/include"],
            define_macros=macros,
            extra_compile_args=compile_args,
        )


setup(
    ext_modules=cythonize(
        list(extensions()),
        compiler_directives=directives,
        include_path=["ext"],
        build_dir=f"build/cython-{MODE}",
        annotate=DEBUG,
        nthreads=int(os.environ.get("STOCKBATCH_BUILD_JOBS", "0")) or None,
    ),
)
