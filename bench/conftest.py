import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config):
    # --benchmark-disable: run every benchmark once on small data (see benchutil.sized)
    if getattr(config.option, "benchmark_disable", False):
        os.environ["STOCKBATCH_BENCH_QUICK"] = "1"
