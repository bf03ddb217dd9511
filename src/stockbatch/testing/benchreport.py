"""Turn pytest-benchmark's JSON into a markdown table and a PNG chart.

``stockbatch bench`` runs ``pytest bench --benchmark-json=results.json`` and then calls
:func:`write_report`::

    from stockbatch.testing.benchreport import write_report
    paths = write_report("results.json", "bench-report")
    print(paths.markdown, paths.chart)

Each benchmark group (``benchmark.group``) becomes one markdown table and one panel of the
chart. Within a group every peer is compared with the group's *reference*: the benchmark whose
``extra_info["reference"]`` is true, or else the slowest one, so the ratio column reads
"x times faster than the reference". A benchmark that stores ``extra_info["rows"]`` (rows
handled per call) gets a rows/s figure; the others get calls per second. Extra figures a
benchmark stores (``peak_rss_mb``, ``note``) are shown in their own columns.

The module is also a command::

    python -m stockbatch.testing.benchreport results.json out_dir
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BenchRow", "ReportPaths", "load_results", "render_markdown", "render_chart",
           "write_report", "main"]

UNGROUPED = "(no group)"


@dataclass(frozen=True)
class BenchRow:
    """One benchmark of the JSON file, reduced to what the report shows."""

    group: str
    name: str
    median: float  # seconds per call
    min: float
    rounds: int
    rows: int | None = None
    reference: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ops(self) -> float:
        """Calls per second (1 / median)."""
        return 1.0 / self.median if self.median > 0 else math.inf

    @property
    def rows_per_s(self) -> float | None:
        """Rows per second when the benchmark said how many rows one call handles."""
        if self.rows is None:
            return None
        return self.rows / self.median if self.median > 0 else math.inf


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`write_report` wrote its files."""

    markdown: Path
    chart: Path | None


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "reference"}
    return bool(value)


def load_results(source: str | os.PathLike | dict) -> list[BenchRow]:
    """Read pytest-benchmark's ``--benchmark-json`` output (a path or the parsed dict).

    Benchmarks that were skipped or never timed (no ``stats``) are left out.

    Raises
    ------
    ValueError
        When the file is not pytest-benchmark JSON (no ``benchmarks`` list).
    """
    if isinstance(source, dict):
        data = source
    else:
        with open(source, encoding="utf-8") as fh:
            data = json.load(fh)
    benchmarks = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(benchmarks, list):
        raise ValueError("not a pytest-benchmark JSON file: no 'benchmarks' list")
    rows: list[BenchRow] = []
    for bench in benchmarks:
        stats = bench.get("stats") or {}
        median = stats.get("median")
        if median is None:
            continue
        extra = dict(bench.get("extra_info") or {})
        raw_rows = extra.pop("rows", None)
        reference = _as_bool(extra.pop("reference", False))
        rows.append(BenchRow(
            group=bench.get("group") or UNGROUPED,
            name=bench.get("name") or bench.get("fullname") or "?",
            median=float(median),
            min=float(stats.get("min", median)),
            rounds=int(stats.get("rounds", 0)),
            rows=int(raw_rows) if raw_rows is not None else None,
            reference=reference,
            extra=extra,
        ))
    return rows


def _grouped(rows: Iterable[BenchRow]) -> dict[str, list[BenchRow]]:
    groups: dict[str, list[BenchRow]] = {}
    for row in rows:  # groups keep the order in which they first appear
        groups.setdefault(row.group, []).append(row)
    for members in groups.values():
        members.sort(key=lambda r: r.median)
    return groups


def _reference(members: Sequence[BenchRow]) -> BenchRow:
    marked = [r for r in members if r.reference]
    if marked:
        return marked[0]
    return max(members, key=lambda r: r.median)


def _fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s" if seconds < 100 else f"{seconds:.0f} s"
    for unit, scale in (("ms", 1e3), ("µs", 1e6), ("ns", 1e9)):
        value = seconds * scale
        if value >= 1 or unit == "ns":
            return f"{value:.3g} {unit}"
    return f"{seconds} s"  # pragma: no cover


def _fmt_rate(value: float) -> str:
    if math.isinf(value):
        return "inf"
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value:.3g}"


def _fmt_ratio(ratio: float) -> str:
    if math.isinf(ratio) or math.isnan(ratio):
        return "—"
    return f"{ratio:.3g}x" if ratio < 100 else f"{ratio:.0f}x"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _extra_keys(members: Sequence[BenchRow]) -> list[str]:
    keys: list[str] = []
    for row in members:
        for key, value in row.extra.items():
            if key not in keys and isinstance(value, (int, float, str)) and not isinstance(
                    value, bool):
                keys.append(key)
    return keys


def _fmt_extra(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return _md_escape(str(value))


def render_markdown(rows: Sequence[BenchRow], *, title: str = "Benchmarks") -> str:
    """The markdown report: one table per group, peers sorted fastest first.

    Columns: name, median, min, rounds, rows/s (or calls/s), ratio against the group's
    reference peer, then any scalar ``extra_info`` the group's benchmarks stored.
    """
    out = [f"# {title}", ""]
    if not rows:
        out += ["No timed benchmarks in the results (were they run with --benchmark-disable?).",
                ""]
        return "\n".join(out)
    for group, members in _grouped(rows).items():
        ref = _reference(members)
        with_rows = any(r.rows is not None for r in members)
        extra_keys = _extra_keys(members)
        out.append(f"## {_md_escape(group)}")
        out.append("")
        out.append(f"Reference: `{_md_escape(ref.name)}`; ratio = reference median / median "
                   "(higher is faster).")
        out.append("")
        header = ["name", "median", "min", "rounds", "rows/s" if with_rows else "ops/s",
                  "vs reference", *extra_keys]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for r in members:
            rate = r.rows_per_s if with_rows else r.ops
            ratio = ref.median / r.median if r.median > 0 else math.inf
            cells = [
                f"`{_md_escape(r.name)}`" + (" (ref)" if r is ref else ""),
                _fmt_time(r.median),
                _fmt_time(r.min),
                str(r.rounds),
                _fmt_rate(rate) if rate is not None else "",
                _fmt_ratio(ratio),
                *(_fmt_extra(r.extra.get(k)) for k in extra_keys),
            ]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _short(name: str, group: str) -> str:
    """Drop the test-function prefix shared by a whole group so chart labels stay short."""
    label = name[5:] if name.startswith("test_") else name
    return label if len(label) <= 48 else label[:45] + "..."


def render_chart(rows: Sequence[BenchRow], path: str | os.PathLike, *,
                 title: str = "Benchmarks") -> Path | None:
    """Draw one horizontal bar panel per group (median time, log scale, ratio labels) into a
    PNG at ``path``; returns the path, or None when there is nothing to draw.

    Uses matplotlib's Agg canvas directly, so no display and no global backend switch.
    """
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    groups = _grouped(rows)
    heights = [0.6 + 0.38 * len(m) for m in groups.values()]
    fig_height = 0.8 + sum(heights)
    fig = Figure(figsize=(11, fig_height), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(groups), 1, squeeze=False,
                        gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (group, members) in zip(axes, groups.items(), strict=True):
        ref = _reference(members)
        ordered = list(reversed(members))  # fastest at the top
        values = [r.median for r in ordered]
        colors = ["#9e9e9e" if r is ref else ("#1f77b4" if r.median <= ref.median else "#d62728")
                  for r in ordered]
        ypos = range(len(ordered))
        ax.barh(list(ypos), values, color=colors, height=0.65)
        ax.set_yticks(list(ypos))
        ax.set_yticklabels([_short(r.name, group) for r in ordered], fontsize=8)
        ax.set_xscale("log")
        lo, hi = min(values), max(values)
        ax.set_xlim(lo / 3, hi * 6)
        for y, r in zip(ypos, ordered, strict=True):
            ratio = ref.median / r.median if r.median > 0 else math.inf
            label = f"{_fmt_time(r.median)}  ({'ref' if r is ref else _fmt_ratio(ratio)})"
            ax.text(r.median * 1.08, y, label, va="center", fontsize=7.5)
        ax.set_title(group, fontsize=9.5, loc="left")
        # 1-2-5 ticks labelled as times, so narrow panels still read without exponents
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _fmt_time(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelsize=7.5)
        ax.grid(axis="x", which="major", alpha=0.3)
    axes[-1].set_xlabel("median seconds per call (log scale); ratio vs the grey reference peer",
                        fontsize=8.5)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig_height))  # keep the title clear of panels
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def write_report(json_path: str | os.PathLike, out_dir: str | os.PathLike, *,
                 title: str = "stockbatch benchmarks", stem: str = "benchmarks") -> ReportPaths:
    """Read pytest-benchmark JSON and write ``<out_dir>/<stem>.md`` and ``<stem>.png``.

    Parameters
    ----------
    json_path : path
        The file written by ``pytest --benchmark-json=...``.
    out_dir : path
        Directory for the report (created if missing).
    title, stem : str
        Heading of the report and base name of both files.

    Returns
    -------
    ReportPaths
        ``markdown`` and ``chart`` (None when no benchmark was timed).
    """
    rows = load_results(json_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chart = render_chart(rows, out / f"{stem}.png", title=title)
    md = render_markdown(rows, title=title)
    if chart is not None:
        md += f"\n![{title}]({chart.name})\n"
    md_path = out / f"{stem}.md"
    md_path.write_text(md, encoding="utf-8")
    return ReportPaths(markdown=md_path, chart=chart)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stockbatch.testing.benchreport RESULTS.json OUT_DIR``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m stockbatch.testing.benchreport",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("json_path")
    parser.add_argument("out_dir")
    parser.add_argument("--title", default="stockbatch benchmarks")
    args = parser.parse_args(argv)
    paths = write_report(args.json_path, args.out_dir, title=args.title)
    print(paths.markdown)
    if paths.chart is not None:
        print(paths.chart)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
