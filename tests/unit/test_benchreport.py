"""The benchmark report: pytest-benchmark JSON in, markdown table and PNG chart out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stockbatch.testing import benchreport as br


def _bench(group, name, median, *, rounds=5, extra=None, minimum=None):
    return {
        "group": group, "name": name, "fullname": f"bench/x.py::{name}",
        "extra_info": extra or {},
        "stats": {"median": median, "min": minimum if minimum is not None else median * 0.9,
                  "rounds": rounds, "mean": median, "ops": 1 / median},
    }


DATA = {
    "machine_info": {}, "commit_info": {}, "version": "5.3.1",
    "benchmarks": [
        _bench("e2e 200", "test_e2e[naive-200]", 20.0, rounds=1),
        _bench("e2e 200", "test_e2e[ours-200]", 0.2, extra={"rows": 50_000, "peak_rss_mb": 61.5}),
        _bench("e2e 200", "test_e2e[download-200]", 8.0, extra={"rows": 50_000}),
        _bench("kernels", "test_validate[numpy]", 0.15, extra={"reference": True}),
        _bench("kernels", "test_validate[cython]", 0.05),
        _bench(None, "test_lonely", 0.001),
        {"group": "x", "name": "skipped", "stats": None},
    ],
}


def test_load_results_reads_rows_reference_and_extras():
    rows = br.load_results(DATA)
    assert len(rows) == 6  # the untimed one is left out
    ours = next(r for r in rows if r.name == "test_e2e[ours-200]")
    assert ours.rows == 50_000
    assert ours.rows_per_s == pytest.approx(250_000)
    assert ours.extra == {"peak_rss_mb": 61.5}
    assert next(r for r in rows if r.name == "test_validate[numpy]").reference
    assert next(r for r in rows if r.name == "test_lonely").group == br.UNGROUPED


def test_load_results_refuses_other_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="pytest-benchmark"):
        br.load_results(p)


def _table(md: str, group: str) -> list[list[str]]:
    lines = md.splitlines()
    i = lines.index(f"## {group}")
    body = []
    for line in lines[i + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("| ") and not line.startswith("| name"):
            body.append([c.strip() for c in line.strip("|").split(" | ")])
    return body


def test_markdown_ratios_against_slowest_or_marked_reference():
    md = br.render_markdown(br.load_results(DATA), title="T")
    assert md.startswith("# T")
    e2e = _table(md, "e2e 200")
    # fastest first; the reference (slowest) is the naive loop
    assert [row[0] for row in e2e] == ["`test_e2e[ours-200]`", "`test_e2e[download-200]`",
                                       "`test_e2e[naive-200]` (ref)"]
    assert e2e[0][1] == "200 ms"
    assert e2e[0][4] == "250 k"  # rows/s
    assert e2e[0][5] == "100x"
    assert e2e[1][5] == "2.5x"
    assert e2e[2][5] == "1x"
    assert e2e[0][6] == "61.5"  # peak_rss_mb column
    assert e2e[2][4] == ""  # no rows figure for the naive loop
    kernels = _table(md, "kernels")
    assert kernels[0][0] == "`test_validate[cython]`"
    assert kernels[0][5] == "3x"  # 0.15 / 0.05 against the marked reference
    assert kernels[1][0].endswith("(ref)")
    assert kernels[0][4] == "20"  # ops/s: 1 / 0.05 s
    assert "## (no group)" in md


def test_markdown_without_timed_benchmarks_says_so():
    md = br.render_markdown([])
    assert "--benchmark-disable" in md


def test_write_report_writes_markdown_and_a_real_png(tmp_path):
    src = tmp_path / "results.json"
    src.write_text(json.dumps(DATA))
    paths = br.write_report(src, tmp_path / "out", title="Bench")
    assert paths.markdown.read_text(encoding="utf-8").count("## ") == 3
    assert "![Bench](benchmarks.png)" in paths.markdown.read_text(encoding="utf-8")
    png = paths.chart.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # width, height from the IHDR chunk: three panels make a tall, readable figure
    width = int.from_bytes(png[16:20], "big")
    height = int.from_bytes(png[20:24], "big")
    assert width >= 1000 and height >= 400


def test_report_from_a_real_pytest_benchmark_run(tmp_path):
    """Run pytest-benchmark for real on two tiny peers and report its JSON."""
    (tmp_path / "test_tiny.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.parametrize("n", [1000, 100000])
        def test_sum(benchmark, n):
            benchmark.group = "sum"
            benchmark.extra_info["rows"] = n
            assert benchmark(sum, range(n)) == n * (n - 1) // 2
    """))
    out_json = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path),
         f"--benchmark-json={out_json}", "--benchmark-max-time=0.05",
         "--benchmark-min-rounds=3", "-o", "addopts="],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rc = br.main([str(out_json), str(tmp_path / "rep")])
    assert rc == 0
    md = (tmp_path / "rep" / "benchmarks.md").read_text(encoding="utf-8")
    rows = _table(md, "sum")
    assert [r[0] for r in rows] == ["`test_sum[1000]`", "`test_sum[100000]` (ref)"]
    assert float(rows[0][5].rstrip("x")) > 5  # summing 100x fewer numbers is much faster
    assert Path(tmp_path / "rep" / "benchmarks.png").stat().st_size > 5000
