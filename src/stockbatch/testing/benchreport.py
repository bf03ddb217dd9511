"""Turn pytest-benchmark's JSON into a readable report: a markdown file that opens with the
targets met and missed, and one PNG figure per area.

``stockbatch bench`` runs ``pytest bench --benchmark-json=bench.json`` and then calls
:func:`write_report`::

    from stockbatch.testing.benchreport import write_report
    paths = write_report("bench.json", "bench/report")
    print(paths.markdown, paths.figures)

Areas come from the benchmark file: ``test_pipeline`` end to end, ``test_kernels`` kernels,
``test_indicators`` indicators, ``test_queue`` request layer, ``test_sources`` and
``test_http`` sources, ``test_ingest`` and ``test_layout`` ingestion. Each benchmark group
(``benchmark.group``) is one markdown table and one panel of its area's figure.

Every ratio has one meaning: **the group's best peer = 1.0**. Peers are the benchmarks that
are not stockbatch's own (a name with ``stockbatch``, ``compiled`` or ``twin``) and not a
bound (``floor``, ``ceiling``); a ratio of 2.0 is twice as fast as the fastest peer, 0.5
half as fast. A group without a peer is reported in the markdown only (no bar would mean
the same thing). A benchmark that stores ``extra_info["rows"]`` gets a rows/s figure; extra
scalar figures (``peak_rss_mb``, ``note``) get their own columns.

Targets (:data:`TARGETS`) are the issues' performance goals, checked against the run; a
quick run (``--quick``: small sizes) says so next to every figure it gives.

The module is also a command::

    python -m stockbatch.testing.benchreport bench.json out_dir
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BenchRow",
    "ReportPaths",
    "Target",
    "TARGETS",
    "AREAS",
    "load_results",
    "failed_tests",
    "render_markdown",
    "render_figures",
    "check_targets",
    "write_report",
    "main",
]

UNGROUPED = "(no group)"

#: benchmark file stem -> area (one figure each, in this order)
AREAS = {
    "test_pipeline": "end to end",
    "test_kernels": "kernels",
    "test_indicators": "indicators",
    "test_queue": "request layer",
    "test_sources": "sources",
    "test_http": "sources",
    "test_ingest": "ingestion",
    "test_layout": "ingestion",
}
OTHER_AREA = "other"
_OURS = re.compile(r"stockbatch|compiled|twin", re.I)
_BOUND = re.compile(r"floor|ceiling|fixture_server", re.I)
MAX_FIGURE_PX = 1600
DPI = 100


@dataclass(frozen=True)
class BenchRow:
    """One benchmark of the JSON file, reduced to what the report shows."""

    group: str
    name: str
    median: float  # seconds per call
    min: float
    rounds: int
    rows: int | None = None
    reference: bool = False  # extra_info["reference"]: a baseline peer (shown, not the 1.0)
    extra: dict[str, Any] = field(default_factory=dict)
    fullname: str = ""

    @property
    def area(self) -> str:
        """The area of the benchmark's file (:data:`AREAS`)."""
        stem = Path(self.fullname.split("::", 1)[0]).stem
        return AREAS.get(stem, OTHER_AREA)

    @property
    def role(self) -> str:
        """``ours`` (stockbatch's), ``bound`` (a floor/ceiling) or ``peer``."""
        if _BOUND.search(self.name):
            return "bound"
        return "ours" if _OURS.search(self.name) else "peer"

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
    """Where :func:`write_report` wrote its files: the markdown and one PNG per area."""

    markdown: Path
    figures: list[Path] = field(default_factory=list)


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "reference"}
    return bool(value)


def failed_tests(log_text: str) -> set[str]:
    """Node ids of the tests pytest's summary lists as ``FAILED`` / ``ERROR``: their timings
    are in the JSON (pytest-benchmark keeps them) but mean nothing."""
    return {m.group(1) for m in re.finditer(r"^(?:FAILED|ERROR) (\S+::\S+)", log_text, re.M)}


def load_results(source: str | os.PathLike | dict, exclude: Iterable[str] = ()) -> list[BenchRow]:
    """Read pytest-benchmark's ``--benchmark-json`` output (a path or the parsed dict).

    Benchmarks that were skipped or never timed (no ``stats``) are left out, and those whose
    node id is in ``exclude`` (failed tests, see :func:`failed_tests`).

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
    dropped = {e.rsplit("/", 1)[-1] for e in exclude}
    for bench in benchmarks:
        stats = bench.get("stats") or {}
        median = stats.get("median")
        if median is None or str(bench.get("fullname", "")).rsplit("/", 1)[-1] in dropped:
            continue
        extra = dict(bench.get("extra_info") or {})
        raw_rows = extra.pop("rows", None)
        reference = _as_bool(extra.pop("reference", False))
        rows.append(
            BenchRow(
                group=bench.get("group") or UNGROUPED,
                name=bench.get("name") or bench.get("fullname") or "?",
                median=float(median),
                min=float(stats.get("min", median)),
                rounds=int(stats.get("rounds", 0)),
                rows=int(raw_rows) if raw_rows is not None else None,
                reference=reference,
                extra=extra,
                fullname=bench.get("fullname") or "",
            )
        )
    return rows


def _grouped(rows: Iterable[BenchRow]) -> dict[str, list[BenchRow]]:
    groups: dict[str, list[BenchRow]] = {}
    for row in rows:  # groups keep the order in which they first appear
        groups.setdefault(row.group, []).append(row)
    for members in groups.values():
        members.sort(key=lambda r: r.median)
    return groups


def best_peer(members: Sequence[BenchRow]) -> BenchRow | None:
    """The group's fastest peer (its ratio is 1.0), or None when it has no peer (a group of
    one benchmark has none: there is nothing to compare)."""
    peers = [r for r in members if r.role == "peer"]
    return min(peers, key=lambda r: r.median) if peers and len(members) > 1 else None


def ratio(row: BenchRow, ref: BenchRow) -> float:
    """How many times faster than ``ref`` (``ref.median / row.median``)."""
    return ref.median / row.median if row.median > 0 else math.inf


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
            if (
                key not in keys
                and isinstance(value, (int, float, str))
                and not isinstance(value, bool)
            ):
                keys.append(key)
    return keys


def _fmt_extra(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return _md_escape(str(value))


@dataclass(frozen=True)
class Target:
    """A performance goal: in groups matching ``group``, stockbatch's fastest benchmark
    matching ``ours`` is at least ``min_ratio`` times as fast as ``peer`` (a name pattern;
    None: the group's best peer)."""

    label: str
    group: str
    min_ratio: float
    ours: str = r"stockbatch|compiled"
    peer: str | None = None

    def check(self, groups: dict[str, list[BenchRow]]) -> list[tuple[str, str, str]]:
        """``(group, measured, outcome)`` for every group this target applies to."""
        out = []
        for name, members in groups.items():
            if not re.search(self.group, name):
                continue
            ours = [r for r in members if r.role == "ours" and re.search(self.ours, r.name)]
            if self.peer is None:
                ref = best_peer(members)
            else:
                cands = [r for r in members if r.role == "peer" and re.search(self.peer, r.name)]
                ref = min(cands, key=lambda r: r.median) if cands else None
            if ref is None and not any(r.role == "peer" for r in members):
                continue  # a group without peers: the target is about the others
            if not ours or ref is None:
                out.append((name, "not run", "–"))
                continue
            best = min(ours, key=lambda r: r.median)
            x = ratio(best, ref)
            out.append(
                (
                    name,
                    f"{_fmt_ratio(x)} ({_short(best.name)} vs {_short(ref.name)})",
                    "✓ met" if x >= self.min_ratio else "✗ missed",
                )
            )
        return out


#: The issues' goals (README "Benchmarks"); each is checked in every group it matches.
TARGETS: tuple[Target, ...] = (
    Target("e2e 1y daily: ≥ 20x the naive loop", r"^e2e .* 1y daily", 20.0, peer=r"naive_loop"),
    Target(
        "e2e 1y daily: ≥ 5x download + to_sql", r"^e2e .* 1y daily", 5.0, peer=r"download_to_sql"
    ),
    Target("validate: ≥ 2.5x the fastest peer", r"^validate$", 2.5),
    Target("normalize + returns: ≥ 2x", r"^normalize\+returns$", 2.0),
    Target("resample to 5m: ≥ 3x polars", r"^resample-5m$", 3.0),
    Target("resample to 1d (New York): ≥ 3x polars", r"^resample-1d-tz$", 3.0),
    Target("6 indicators, many symbols: ≥ 1.5x TA-Lib", r"^indicators-\\d", 1.5),
    Target(
        "one long series: ≤ 1.2x slower than TA-Lib",
        r"^(indicators-long|long-)",
        1 / 1.2,
        ours=r"stockbatch",
    ),
    Target(
        "queue + coalescer, batched: ≥ 10x heapq + dict",
        r"^queue-coalesce$",
        10.0,
        ours=r"compiled_batch",
        peer=r"heapq",
    ),
    Target(
        "queue + coalescer, single calls: ≥ 2.5x heapq + dict",
        r"^queue-coalesce$",
        2.5,
        ours=r"compiled_single",
        peer=r"heapq",
    ),
    Target("decode: ≥ 8x json.loads + build", r"^decode ", 8.0, ours=r"compiled"),
    Target("fetch + decode: ≥ 5x yfinance.download", r"^fetch ", 5.0, peer=r"yfinance"),
    Target("SQLite append: ≥ 2.5x executemany", r"^sqlite-append", 2.5, peer=r"executemany"),
    Target("SQLite append: ≥ 0.9x raw adbc_ingest", r"^sqlite-append", 0.9, peer=r"adbc_ingest"),
    Target("PostgreSQL append: ≥ 0.75x psycopg COPY", r"^pg-append", 0.75, peer=r"copy"),
    Target(
        "PostgreSQL upsert, half changed: ≥ 3x naive staging",
        r"^pg-upsert.*half",
        3.0,
        peer=r"naive",
    ),
)


def check_targets(
    rows: Sequence[BenchRow], targets: Sequence[Target] = TARGETS
) -> list[tuple[str, str, str, str]]:
    """``(target, group, measured, outcome)`` rows: every target in every group it matches."""
    groups = _grouped(rows)
    return [(t.label, *found) for t in targets for found in t.check(groups)]


def _by_area(rows: Sequence[BenchRow]) -> dict[str, dict[str, list[BenchRow]]]:
    order = list(dict.fromkeys([*AREAS.values(), OTHER_AREA]))
    areas: dict[str, dict[str, list[BenchRow]]] = {a: {} for a in order}
    for group, members in _grouped(rows).items():
        areas[members[0].area].setdefault(group, members)
    return {a: g for a, g in areas.items() if g}


def render_markdown(
    rows: Sequence[BenchRow],
    *,
    title: str = "Benchmarks",
    quick: bool = False,
    figures: Sequence[Path] = (),
    failed: Sequence[str] = (),
) -> str:
    """The markdown report: the targets table first, then per area one table per group
    (fastest first; ``vs best peer`` = best peer's median / median)."""
    out = [f"# {title}", ""]
    if quick:
        out += [
            "**Quick run** (`--quick`): small sizes, few rounds; the figures show the "
            "code paths work and roughly how they compare, not the published numbers.",
            "",
        ]
    if failed:
        out += [
            f"**{len(failed)} benchmarks failed** and are left out: "
            + ", ".join(f"`{_md_escape(f)}`" for f in sorted(failed)),
            "",
        ]
    if not rows:
        out += ["No timed benchmarks in the results (were they run with --benchmark-disable?).", ""]
        return "\n".join(out)
    checked = check_targets(rows)
    met = sum(c[3].startswith("✓") for c in checked)
    missed = sum(c[3].startswith("✗") for c in checked)
    out += [
        "## Targets",
        "",
        f"{met} met, {missed} missed, {len(checked) - met - missed} not run.",
        "",
        "| target | group | measured (vs the peer named) | outcome |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {_md_escape(t)} | {_md_escape(g)} | {_md_escape(m)} | {o} |" for t, g, m, o in checked
    ]
    out.append("")
    for area, groups in _by_area(rows).items():
        out += [f"## {area}", ""]
        for group, members in groups.items():
            out += _group_table(group, members)
    for fig in figures:
        out.append(f"![{fig.stem}]({fig.name})")
    out.append("")
    return "\n".join(out)


def _group_table(group: str, members: list[BenchRow]) -> list[str]:
    ref = best_peer(members)
    with_rows = any(r.rows is not None for r in members)
    extra_keys = _extra_keys(members)
    out = [f"### {_md_escape(group)}", ""]
    out.append(
        f"Best peer (1.0): `{_md_escape(ref.name)}`."
        if ref
        else "No peer in this group: times only."
    )
    out.append("")
    header = [
        "name",
        "median",
        "min",
        "rounds",
        "rows/s" if with_rows else "ops/s",
        "vs best peer",
        *extra_keys,
    ]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for r in members:
        rate = r.rows_per_s if with_rows else r.ops
        cells = [
            f"`{_md_escape(r.name)}`" + {"ours": " ★", "bound": " (bound)"}.get(r.role, ""),
            _fmt_time(r.median),
            _fmt_time(r.min),
            str(r.rounds),
            _fmt_rate(rate) if rate is not None else "",
            _fmt_ratio(ratio(r, ref)) if ref else "",
            *(_fmt_extra(r.extra.get(k)) for k in extra_keys),
        ]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    return out


def _short(name: str, width: int = 44) -> str:
    """A chart label: the test function's ``test_`` prefix dropped, at most ``width`` chars."""
    label = name[5:] if name.startswith("test_") else name
    return label if len(label) <= width else label[: width - 1] + "…"


def _labels(members: Sequence[BenchRow], width: int = 38) -> list[str]:
    """Chart labels that tell a panel's bars apart: the parameters when one function runs
    them all, the function when the parameters are the same, else both; long ones lose
    their middle (the ends tell them apart)."""
    funcs = [r.name.split("[", 1)[0].removeprefix("test_") for r in members]
    params = [r.name.split("[", 1)[1].rstrip("]") if "[" in r.name else "" for r in members]
    if len(set(funcs)) == 1 and all(params):
        labels = params
    elif len(set(params)) == 1:
        labels = funcs
    else:
        labels = [f"{f}[{p}]" if p else f for f, p in zip(funcs, params, strict=True)]
    half = (width - 1) // 2
    return [t if len(t) <= width else t[:half] + "…" + t[-(width - 1 - half) :] for t in labels]


def _layout(groups: list[list[BenchRow]]) -> tuple[int, float, list[float]] | None:
    """(columns, inches per bar, row heights) fitting MAX_FIGURE_PX, or None."""
    limit = MAX_FIGURE_PX / DPI - 0.9  # the title and the axis note
    for bar in (0.24, 0.2, 0.16, 0.13):
        for cols in (1, 2, 3):
            rows = [groups[i : i + cols] for i in range(0, len(groups), cols)]
            heights = [0.75 + bar * max(len(m) for m in row) for row in rows]
            if sum(heights) <= limit:
                return cols, bar, heights
    return None


def render_figures(
    rows: Sequence[BenchRow], out_dir: str | os.PathLike, *, title: str = "Benchmarks"
) -> list[Path]:
    """One PNG per area (``<out_dir>/bench-<area>.png``): a panel per group with a peer,
    horizontal bars of speed relative to the group's best peer (= 1.0, the dashed line; log
    scale), stockbatch's bars coloured (green faster, red slower), peers grey (the best one
    dark), bounds light blue. Each figure
    is at most :data:`MAX_FIGURE_PX` tall (an area with too many groups for that is split
    into numbered figures). Returns the paths written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for area, groups in _by_area(rows).items():
        panels = [m for m in groups.values() if best_peer(m) is not None]
        chunks = [panels]
        for parts in range(2, len(panels) + 1):  # too many for one figure: split evenly
            if all(_layout(c) is not None for c in chunks):
                break
            size = -(-len(panels) // parts)
            chunks = [panels[i : i + size] for i in range(0, len(panels), size)]
        for k, chunk in enumerate(c for c in chunks if c):  # (no panel: no figure)
            layout = _layout(chunk)
            assert layout is not None
            cols, bar, heights = layout
            fig = Figure(
                figsize=(13 if cols > 1 else 10, sum(heights) + 0.9), dpi=DPI, layout="constrained"
            )
            FigureCanvasAgg(fig)
            grid = fig.add_gridspec(len(heights), cols, height_ratios=heights)
            for i, members in enumerate(chunk):
                ax = fig.add_subplot(grid[i // cols, i % cols])
                _panel(ax, members, LogLocator, FuncFormatter, NullFormatter)
            name = area if len(chunks) == 1 else f"{area} ({k + 1}/{len(chunks)})"
            fig.suptitle(
                f"{title}: {name}  —  speed vs the best peer (= 1.0, higher is faster)",
                fontsize=11,
                x=0.01,
                ha="left",
            )
            path = out / f"bench-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.png"
            fig.savefig(path, format="png")
            written.append(path)
    return written


def _panel(
    ax: Any, members: list[BenchRow], LogLocator: Any, FuncFormatter: Any, NullFormatter: Any
) -> None:
    ref = best_peer(members)
    assert ref is not None
    ordered = sorted(members, key=lambda r: r.median, reverse=True)  # fastest on top
    values = [ratio(r, ref) for r in ordered]
    colors = [
        ("#2e7d32" if v >= 1 else "#c62828")
        if r.role == "ours"
        else "#90caf9"
        if r.role == "bound"
        else ("#616161" if r is ref else "#bdbdbd")
        for r, v in zip(ordered, values, strict=True)
    ]
    y = list(range(len(ordered)))
    ax.barh(y, values, color=colors, height=0.7, left=0)
    ax.set_xscale("log")
    lo, hi = min(min(values), 1.0), max(max(values), 1.0)
    ax.set_xlim(lo / 2.5, hi * 5)  # room on the right for the labels
    ax.axvline(1.0, color="#424242", linestyle="--", linewidth=0.9)
    ax.set_yticks(y)
    ax.set_yticklabels(
        [
            t + (" (bound)" if r.role == "bound" else "")
            for t, r in zip(_labels(ordered, 30), ordered, strict=True)
        ],
        fontsize=7.5,
    )
    ax.set_ylim(-0.6, len(ordered) - 0.4)
    for yy, (r, v) in enumerate(zip(ordered, values, strict=True)):
        ax.text(
            v * 1.06,
            yy,
            f"{_fmt_ratio(v)}  {_fmt_time(r.median)}",
            va="center",
            fontsize=7,
            clip_on=True,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6, "alpha": 0.85},
        )
    ax.set_title(_short(members[0].group, 60), fontsize=8.5, loc="left")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}x"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", which="major", alpha=0.3)


def write_report(
    json_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    title: str = "stockbatch benchmarks",
    stem: str = "benchmarks",
    quick: bool = False,
    failed: Iterable[str] = (),
) -> ReportPaths:
    """Read pytest-benchmark JSON; write ``<out_dir>/<stem>.md`` and one PNG per area.

    Returns
    -------
    ReportPaths
        ``markdown`` and ``figures`` (none when no benchmark was timed). ``failed`` node ids
    are left out, and named at the top.
    """
    failed = sorted(failed)
    rows = load_results(json_path, exclude=failed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = render_figures(rows, out, title=title) if rows else []
    md_path = out / f"{stem}.md"
    md_path.write_text(
        render_markdown(rows, title=title, quick=quick, figures=figures, failed=failed),
        encoding="utf-8",
    )
    return ReportPaths(markdown=md_path, figures=figures)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stockbatch.testing.benchreport RESULTS.json OUT_DIR``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m stockbatch.testing.benchreport", description=__doc__.splitlines()[0]
    )
    parser.add_argument("json_path")
    parser.add_argument("out_dir")
    parser.add_argument("--title", default="stockbatch benchmarks")
    args = parser.parse_args(argv)
    paths = write_report(args.json_path, args.out_dir, title=args.title)
    print(paths.markdown)
    for fig in paths.figures:
        print(fig)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
