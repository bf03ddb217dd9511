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


def _bench(group, name, median, *, rounds=5, extra=None, minimum=None, file="x"):
    return {
        "group": group,
        "name": name,
        "fullname": f"bench/{file}.py::{name}",
        "extra_info": extra or {},
        "stats": {
            "median": median,
            "min": minimum if minimum is not None else median * 0.9,
            "rounds": rounds,
            "mean": median,
            "ops": 1 / median,
        },
    }


DATA = {
    "machine_info": {},
    "commit_info": {},
    "version": "5.3.1",
    "benchmarks": [
        _bench(
            "e2e sqlite 1y daily x200",
            "test_daily[naive_loop-200]",
            20.0,
            rounds=1,
            extra={"reference": True},
            file="test_pipeline",
        ),
        _bench(
            "e2e sqlite 1y daily x200",
            "test_daily[stockbatch-200]",
            0.2,
            extra={"rows": 50_000, "peak_rss_mb": 61.5},
            file="test_pipeline",
        ),
        _bench(
            "e2e sqlite 1y daily x200",
            "test_daily[download_to_sql-200]",
            8.0,
            extra={"rows": 50_000},
            file="test_pipeline",
        ),
        _bench("validate", "test_validate_numpy", 0.15, file="test_kernels"),
        _bench("validate", "test_validate_polars", 0.10, file="test_kernels"),
        _bench("validate", "test_validate_stockbatch", 0.05, file="test_kernels"),
        _bench("validate", "test_validate_floor_np_add_reduce", 0.01, file="test_kernels"),
        _bench("validate-memory", "test_validate_peak_memory", 0.5, file="test_kernels"),
        _bench(None, "test_lonely", 0.001),
        {"group": "x", "name": "skipped", "stats": None},
    ],
}


def test_load_results_reads_rows_roles_areas_and_extras():
    rows = br.load_results(DATA)
    assert len(rows) == 9  # the untimed one is left out
    ours = next(r for r in rows if r.name == "test_daily[stockbatch-200]")
    assert ours.rows == 50_000 and ours.rows_per_s == pytest.approx(250_000)
    assert ours.extra == {"peak_rss_mb": 61.5}
    assert (ours.role, ours.area) == ("ours", "end to end")
    assert next(r for r in rows if r.name == "test_daily[naive_loop-200]").reference
    roles = {r.name: r.role for r in rows if r.group == "validate"}
    assert roles == {
        "test_validate_numpy": "peer",
        "test_validate_polars": "peer",
        "test_validate_stockbatch": "ours",
        "test_validate_floor_np_add_reduce": "bound",
    }
    lonely = next(r for r in rows if r.name == "test_lonely")
    assert (lonely.group, lonely.area) == (br.UNGROUPED, "other")


def test_load_results_refuses_other_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="pytest-benchmark"):
        br.load_results(p)


def _table(md: str, group: str) -> list[list[str]]:
    lines = md.splitlines()
    i = lines.index(f"### {group}")
    body = []
    for line in lines[i + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("| ") and not line.startswith("| name"):
            body.append([c.strip() for c in line.strip("|").split(" | ")])
    return body


def test_every_ratio_is_against_the_best_peer():
    md = br.render_markdown(br.load_results(DATA), title="T")
    e2e = _table(md, "e2e sqlite 1y daily x200")
    # fastest first; the best peer is download_to_sql (the marked naive loop is a peer too)
    assert [row[0] for row in e2e] == [
        "`test_daily[stockbatch-200]` ★",
        "`test_daily[download_to_sql-200]`",
        "`test_daily[naive_loop-200]`",
    ]
    assert [row[5] for row in e2e] == ["40x", "1x", "0.4x"]
    assert e2e[0][4] == "250 k" and e2e[0][6] == "61.5"  # rows/s, peak_rss_mb
    validate = _table(md, "validate")
    # polars is the best peer; the bandwidth floor is shown, never the 1.0
    assert validate[0] == [
        "`test_validate_floor_np_add_reduce` (bound)",
        "10 ms",
        "9 ms",
        "5",
        "100",
        "10x",
    ]
    assert [row[5] for row in validate[1:]] == ["2x", "1x", "0.667x"]
    assert "No peer in this group" in md.split("### validate-memory")[1]


def test_markdown_opens_with_the_targets():
    md = br.render_markdown(br.load_results(DATA), title="T", quick=True)
    head = md.split("## end to end")[0]
    assert head.index("**Quick run**") < head.index("## Targets")
    assert "| e2e 1y daily: ≥ 20x the naive loop | e2e sqlite 1y daily x200 | 100x" in head
    assert "| e2e 1y daily: ≥ 5x download + to_sql | e2e sqlite 1y daily x200 | 40x" in head
    assert "| validate: ≥ 2.5x the fastest peer | validate | 2x" in head
    assert head.count("✓ met") == 2 and head.count("✗ missed") == 1
    assert "2 met, 1 missed, 0 not run." in head


def test_failed_benchmarks_are_left_out_and_named(tmp_path):
    log = (
        "....F\nFAILED bench/test_pipeline.py::test_daily[stockbatch-200] - AssertionE...\n"
        "ERROR bench/test_kernels.py::test_validate_numpy - boom\n1 failed, 4 passed in 1.0s\n"
    )
    failed = br.failed_tests(log)
    assert failed == {
        "bench/test_pipeline.py::test_daily[stockbatch-200]",
        "bench/test_kernels.py::test_validate_numpy",
    }
    src = tmp_path / "r.json"
    src.write_text(json.dumps(DATA))
    paths = br.write_report(src, tmp_path / "out", failed=failed)
    md = paths.markdown.read_text(encoding="utf-8")
    assert "**2 benchmarks failed** and are left out" in md
    assert "| `test_daily[stockbatch-200]`" not in md
    assert "| `test_validate_numpy`" not in md


def test_markdown_without_timed_benchmarks_says_so():
    md = br.render_markdown([])
    assert "--benchmark-disable" in md


def _png_size(path: Path) -> tuple[int, int]:
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_write_report_one_figure_per_area(tmp_path):
    src = tmp_path / "results.json"
    src.write_text(json.dumps(DATA))
    paths = br.write_report(src, tmp_path / "out", title="Bench")
    # the lonely benchmark has no peer: no figure for "other"
    assert [p.name for p in paths.figures] == ["bench-end-to-end.png", "bench-kernels.png"]
    md = paths.markdown.read_text(encoding="utf-8")
    assert "![bench-end-to-end](bench-end-to-end.png)" in md
    for fig in paths.figures:
        width, height = _png_size(fig)
        assert 800 <= width <= 1400 and 200 <= height <= br.MAX_FIGURE_PX


def test_many_groups_stay_under_the_height_limit(tmp_path):
    benches = [
        _bench(f"g{g:02d}", f"test_x[{p}-{g}]", 0.01 * (1 + i), file="test_ingest")
        for g in range(18)
        for i, p in enumerate(["stockbatch", *(f"peer_{c}" for c in "abcdefghijklmno")])
    ]
    figures = br.render_figures(br.load_results({"benchmarks": benches}), tmp_path)
    assert len(figures) >= 2  # split, numbered
    assert figures[0].name == "bench-ingestion-1-" + str(len(figures)) + ".png"
    assert all(_png_size(f)[1] <= br.MAX_FIGURE_PX for f in figures)


def test_labels_tell_bars_apart():
    rows = br.load_results(
        {
            "benchmarks": [
                _bench("g", "test_long_single_stockbatch[sma]", 1.0),
                _bench("g", "test_long_single_talib[sma]", 1.0),
                _bench("h", "test_append[stockbatch-advanced-very-long-parameter-100000]", 1.0),
                _bench("h", "test_append[stockbatch-advanced-very-long-parameter-1000000]", 1.0),
            ]
        }
    )
    assert br._labels(rows[:2]) == ["long_single_stockbatch", "long_single_talib"]
    labels = br._labels(rows[2:])
    assert len(set(labels)) == 2 and all(len(t) <= 38 for t in labels)
    assert labels[0].endswith("100000") and labels[1].endswith("1000000")


def test_report_from_a_real_pytest_benchmark_run(tmp_path):
    """Run pytest-benchmark for real on two tiny peers and report its JSON."""
    (tmp_path / "test_tiny.py").write_text(
        textwrap.dedent("""
        import pytest

        @pytest.mark.parametrize("n", [1000, 100000])
        def test_sum(benchmark, n):
            benchmark.group = "sum"
            benchmark.extra_info["rows"] = n
            assert benchmark(sum, range(n)) == n * (n - 1) // 2
    """)
    )
    out_json = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
            f"--benchmark-json={out_json}",
            "--benchmark-max-time=0.05",
            "--benchmark-min-rounds=3",
            "-o",
            "addopts=",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rc = br.main([str(out_json), str(tmp_path / "rep")])
    assert rc == 0
    md = (tmp_path / "rep" / "benchmarks.md").read_text(encoding="utf-8")
    rows = _table(md, "sum")
    assert [r[0] for r in rows] == ["`test_sum[1000]`", "`test_sum[100000]`"]
    assert rows[0][5] == "1x"  # the best peer
    assert float(rows[1][5].rstrip("x")) < 0.2  # summing 100x more numbers is much slower
    assert Path(tmp_path / "rep" / "bench-other.png").stat().st_size > 5000
