"""Tune an ingest for *your* database and provider: short, bounded trials, recommendations
with the numbers they rest on, and a config that ``stockbatch ingest --config`` accepts.

::

    report = stockbatch.tune("postgresql://me@db/market", symbols=["AAPL", "MSFT", ...])
    print(report.text())                 # level=extreme: 1.9x advanced on your database, …
    report.write_config("tuned.toml")    # stockbatch ingest --config tuned.toml AAPL …

What is measured, in this order, within ``budget_s`` seconds (60 by default):

1. **fetch concurrency**: the symbols are fetched (nothing stored) at 2, 4, 8, 16, 32
   requests in flight, a fresh source each time, again and again for at least a second;
   bars/s, 429 answers and failures are counted. Going up stops at the first 429 or failure, or when it gains under 10 %. The
   recommendation is the fastest concurrency that drew no 429 and no failure (a smaller one
   when it is within 10 % of it: kinder to the provider for the same speed).
2. **optimisation level** (:class:`stockbatch.sinks.Level`): 50,000 of the fetched bars
   (repeated under other symbol names when fewer came) are upserted into an empty scratch
   table at each level, in transactions of 65,536 rows as the engine does. The database's
   default level stays unless another is 10 % faster.
3. **chunk rows** (rows per transaction, the engine's ``chunk_rows``) at that level, on
   ``rows`` rows (100,000 by default); the smallest within 10 % of the fastest wins.
4. **upsert strategy** (PostgreSQL only: ``range``, ``on_conflict``, ``merge``): the same
   rows upserted again with half of them changed.

Only scratch tables ``stockbatch_tune_<random>`` (bars) and ``…_symbols`` are written, and
they are dropped at the end: your own tables are never touched (a first ingest's
``stockbatch_meta`` layout marker is created when the database has none). Rates are rows stored per second as the database counts
them (each trial's ingest result), or bars fetched per second.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ._redact import redact

__all__ = [
    "tune",
    "TuneReport",
    "Trial",
    "Recommendation",
    "CONFIG_KEYS",
    "load_config",
    "DEFAULT_SYMBOLS",
]

#: Symbols tried when none are given: 48 large, liquid US names.
DEFAULT_SYMBOLS = (
    "AAPL MSFT AMZN GOOGL META NVDA TSLA BRK-B JPM V JNJ WMT PG MA UNH HD XOM CVX LLY ABBV "
    "MRK PEP KO AVGO COST TMO MCD CSCO ACN ABT DHR NKE ADBE CRM TXN NEE LIN PM ORCL AMD "
    "INTC QCOM HON UPS IBM CAT GS BA"
).split()
CONCURRENCY = (2, 4, 8, 16, 32)
LEVELS = ("basic", "advanced", "extreme")
CHUNK_ROWS = (4_096, 16_384, 65_536, 262_144)
STRATEGIES = ("range", "on_conflict", "merge")
ENGINE_CHUNK = 65_536
GAIN = 1.10  # a step up must gain 10 % to count
MIN_TRIAL_S = 1.0  # a fetch trial repeats its round until it has lasted this long
LEVEL_ROWS = 50_000  # rows of each level trial (the same for every level: a fair race)

#: Keys of the ``[ingest]`` table of a config file (``ingest --config``), and their types.
CONFIG_KEYS: dict[str, type] = {
    "concurrency": int,
    "level": str,
    "chunk_rows": int,
    "upsert_strategy": str,
    "source": str,
    "base_url": str,
    "db": str,
    "mode": str,
    "table": str,
    "period": str,
    "interval": str,
}


@dataclass
class Trial:
    """One measured run: ``knob`` set to ``value`` moved ``rows`` rows (bars fetched, or
    rows stored as the database counted them) in ``seconds``."""

    knob: str
    value: Any
    seconds: float
    rows: int
    rate_limited: int = 0
    failures: int = 0
    note: str = ""

    @property
    def rate(self) -> float:
        """Rows per second."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Recommendation:
    """A setting and why: ``reason`` gives the numbers (``None`` value: no recommendation,
    ``reason`` says why)."""

    knob: str
    value: Any
    reason: str


@dataclass
class TuneReport:
    """What :func:`tune` measured and recommends."""

    db: str  # redacted
    source: str
    symbols: int
    budget_s: float
    seconds: float = 0.0
    trials: list[Trial] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def settings(self) -> dict[str, Any]:
        """The recommended values, by knob (only those with a recommendation)."""
        return {r.knob: r.value for r in self.recommendations if r.value is not None}

    def text(self) -> str:
        """The recommendations, one line each, then what was left out."""
        lines = [
            f"stockbatch tune: {self.db}, source {self.source}, {self.symbols} symbols, "
            f"{len(self.trials)} trials in {self.seconds:.1f} s"
        ]
        lines += [
            f"  {r.knob}={r.value}: {r.reason}"
            if r.value is not None
            else f"  {r.knob}: {r.reason}"
            for r in self.recommendations
        ]
        lines += [f"  (not measured: {s})" for s in self.skipped]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for t, raw in zip(self.trials, d["trials"], strict=True):
            raw["rows_per_s"] = round(t.rate, 1)
        d["settings"] = self.settings()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_toml(self) -> str:
        """A config for ``stockbatch ingest --config``: the ``[ingest]`` table."""
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        out = [
            f"# written by stockbatch tune on {now}",
            f"# database: {self.db}",
            f"# source: {self.source}, {self.symbols} symbols, {self.seconds:.0f} s of trials",
            "",
            "[ingest]",
        ]
        for r in self.recommendations:
            if r.value is None:
                continue
            out.append(f"# {r.reason}")
            out.append(f"{r.knob} = {json.dumps(r.value)}")
        return "\n".join(out) + "\n"

    def write_config(self, path: str | Path) -> Path:
        """Write :meth:`to_toml` (or :meth:`to_json` for a ``.json`` path) to ``path``."""
        p = Path(path)
        p.write_text(self.to_json() if p.suffix == ".json" else self.to_toml(), encoding="utf-8")
        return p


def load_config(path: str | Path) -> dict[str, Any]:
    """The ``[ingest]`` settings of a config written by :meth:`TuneReport.write_config`
    (TOML, or the JSON report). ValueError names an unknown key or a wrong type."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read config {str(p)!r}: {exc.strerror or exc}") from None
    if p.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"config {str(p)!r} is not valid JSON: {exc}") from None
        section = data.get("settings", data.get("ingest", data)) if isinstance(data, dict) else None
    else:
        try:
            import tomllib  # type: ignore[import-not-found, unused-ignore]  # 3.11+
        except ModuleNotFoundError:  # Python 3.10
            raise ValueError(
                "reading a TOML config needs Python 3.11; write it as JSON "
                "(stockbatch tune -o tuned.json)"
            ) from None
        try:
            section = tomllib.loads(text).get("ingest")
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config {str(p)!r} is not valid TOML: {exc}") from None
    if not isinstance(section, dict):
        raise ValueError(f"config {str(p)!r} has no [ingest] table")
    for key, value in section.items():
        want = CONFIG_KEYS.get(key)
        if want is None:
            raise ValueError(
                f"config {str(p)!r}: unknown key {key!r} in [ingest]; use {', '.join(CONFIG_KEYS)}"
            )
        if not isinstance(value, want) or isinstance(value, bool):
            raise ValueError(f"config {str(p)!r}: {key} must be {want.__name__}, not {value!r}")
    return dict(section)


class _Clock:
    def __init__(self, budget_s: float) -> None:
        self.t0, self.budget = time.perf_counter(), budget_s

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)


def tune(
    db: str,
    *,
    source: str = "yahoo",
    base_url: str | None = None,
    symbols: Iterable[str] | None = None,
    budget_s: float = 60.0,
    period: str = "1y",
    interval: str = "1d",
    rows: int = 100_000,
    on_progress: Callable[[int, int, str], Any] | None = None,
) -> TuneReport:
    """Measure, on ``db`` and ``source``, the settings of an ingest; see the module docstring.

    Parameters
    ----------
    db : str
        The database to tune for (any URI :func:`stockbatch.ingest` takes). Only a scratch
        table is written, and dropped.
    source, base_url : str
        The provider, as for :func:`stockbatch.ingest`.
    symbols : iterable of str, optional
        Symbols to fetch (default :data:`DEFAULT_SYMBOLS`); at most 64 are used.
    budget_s : float
        Seconds for all trials (a trial that would start with too little left is skipped
        and listed in ``TuneReport.skipped``).
    rows : int
        Rows the database trials store (the fetched bars, repeated under other names).
    on_progress : callable, optional
        ``on_progress(done, total, label)`` as trials finish.

    Returns
    -------
    TuneReport
    """
    from .pipeline import BatchProcessingEngine
    from .sinks import connect

    if not budget_s > 0:
        raise ValueError("budget_s must be positive")
    if rows < 1_000:
        raise ValueError("rows must be at least 1000")
    names = list(dict.fromkeys(s.strip() for s in (symbols or DEFAULT_SYMBOLS) if s.strip()))
    if not names:
        raise ValueError("no symbols to tune with")
    names = names[:64]
    clock = _Clock(budget_s)
    probe = connect(db)  # a bad URI or an unreachable database fails now, in one line
    try:
        probe.check()
        dialect = probe.dialect.name
    finally:
        probe.close()
    report = TuneReport(db=redact(str(db)), source=source, symbols=len(names), budget_s=budget_s)
    steps = (
        len(CONCURRENCY)
        + len(LEVELS)
        + len(CHUNK_ROWS)
        + (len(STRATEGIES) if dialect == "postgresql" else 0)
    )
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, steps, label)

    with BatchProcessingEngine(max_concurrent_jobs=1) as engine:
        bars = _tune_concurrency(
            engine, report, names, source, base_url, period, interval, clock, budget_s * 0.45, tick
        )
    if bars is None or bars.num_rows == 0:
        report.recommendations.append(
            Recommendation("level", None, "nothing was fetched, so the database was not measured")
        )
        report.seconds = budget_s - clock.left()
        return report
    data = _scale(bars, rows)
    table = f"stockbatch_tune_{uuid.uuid4().hex[:8]}"
    try:
        _tune_database(report, db, dialect, data, table, clock, tick)
    finally:
        with connect(db) as sink:
            sink.drop_table(table)
            sink.drop_table(f"{table}_symbols")
    report.seconds = budget_s - clock.left()
    return report


def _tune_concurrency(
    engine: Any,
    report: TuneReport,
    names: list[str],
    source: str,
    base_url: str | None,
    period: str,
    interval: str,
    clock: _Clock,
    share: float,
    tick: Callable[[str], None],
) -> pa.Table | None:
    from .pipeline._job import resolve_source

    trials: list[Trial] = []
    best_table = None
    warmed = False
    stop_at = clock.left() - share
    for c in CONCURRENCY:
        if c > 2 * len(names):
            report.skipped.append(f"concurrency={c} (more than twice the symbols)")
            tick(f"concurrency={c} skipped")
            continue
        if trials and clock.left() - stop_at < trials[-1].seconds * 1.2:
            report.skipped.append(f"concurrency={c} (budget)")
            tick(f"concurrency={c} skipped")
            continue
        # one fresh source per trial (its own connections, limiter and counters); the
        # symbols are fetched again until the trial has lasted MIN_TRIAL_S (a provider on
        # this machine answers a round in milliseconds: one round would be noise)
        src, _ = resolve_source(source, base_url=base_url)
        secs, fetched, failures, table, rounds = 0.0, 0, 0, None, 0
        try:
            if not warmed:  # imports, the first connections: not part of any trial
                engine.run(
                    engine.create_stock_data_pipeline_job(
                        names[:2],
                        source=src,
                        store_data=False,
                        period=period,
                        interval=interval,
                        concurrency=c,
                    )
                )
                warmed = True
                before = src.stats.rate_limited
            else:
                before = 0
            while rounds == 0 or (
                secs < MIN_TRIAL_S and rounds < 20 and clock.left() - stop_at > secs / rounds
            ):
                job = engine.create_stock_data_pipeline_job(
                    names,
                    source=src,
                    store_data=False,
                    period=period,
                    interval=interval,
                    concurrency=c,
                )
                t0 = time.perf_counter()
                result = engine.run(job)
                secs += time.perf_counter() - t0
                rounds += 1
                fetched += result.table.num_rows if result.table is not None else 0
                failures += len(result.failed_symbols)
                table = result.table
        finally:
            engine.run_coroutine(src.aclose(), 30)
        trial = Trial(
            "concurrency",
            c,
            secs,
            fetched,
            rate_limited=src.stats.rate_limited - before,
            failures=failures,
            note=f"{len(names)} symbols fetched {rounds}x, nothing stored",
        )
        fetched = table.num_rows if table is not None else 0
        trials.append(trial)
        report.trials.append(trial)
        tick(f"concurrency={c}: {trial.rate:,.0f} bars/s")
        clean = trial.rate_limited == 0 and trial.failures == 0
        if clean and (best_table is None or fetched >= best_table.num_rows):
            best_table = table
        prev = [t for t in trials[:-1] if t.rate_limited == 0 and t.failures == 0]
        if not clean or (prev and trial.rate < max(t.rate for t in prev) * GAIN):
            for rest in CONCURRENCY[CONCURRENCY.index(c) + 1 :]:
                why = "429s or failures" if not clean else "gained < 10 %"
                report.skipped.append(f"concurrency={rest} (stopped: {why} at {c})")
                tick(f"concurrency={rest} skipped")
            break
    report.recommendations.append(_pick_concurrency(trials))
    return best_table


def _pick_concurrency(trials: list[Trial]) -> Recommendation:
    if not trials:
        return Recommendation("concurrency", None, "not measured (budget)")
    clean = [t for t in trials if t.rate_limited == 0 and t.failures == 0]
    bad = [t for t in trials if t not in clean]
    worst = "; ".join(
        f"{t.value} drew {t.rate_limited} 429s and {t.failures} failures" for t in bad
    )
    if not clean:
        return Recommendation(
            "concurrency",
            None,
            "every concurrency tried drew 429s or "
            f"failures ({worst}): lower the source's rate or try later",
        )
    top = max(clean, key=lambda t: t.rate)
    pick = min((t for t in clean if t.rate * GAIN >= top.rate), key=lambda t: t.value)
    base = min(clean, key=lambda t: t.value)
    vs = f", {pick.rate / base.rate:.1f}x concurrency={base.value}" if pick is not base else ""
    why = (
        f"{pick.rate:,.0f} bars/s fetching ({pick.rows:,} bars in {pick.seconds:.2f} s"
        f"{vs}), no 429s"
    )
    if pick is not top:
        why += f"; {top.value} was only {top.rate / pick.rate:.2f}x faster"
    rest = [t for t in clean if t is not pick and t is not top and t is not base]
    if rest:
        why += "; " + ", ".join(f"{t.value}: {t.rate:,.0f} bars/s" for t in rest)
    if worst:
        why += f"; {worst}"
    return Recommendation("concurrency", pick.value, why)


def _scale(bars: pa.Table, rows: int) -> pa.Table:
    """``bars`` repeated under other symbol names (``AAPL_T1`` …) to about ``rows`` rows."""
    copies = max(1, math.ceil(rows / max(bars.num_rows, 1)))
    parts = [bars]
    for k in range(1, copies):
        sym = pc.binary_join_element_wise(bars["symbol"], pa.scalar(f"T{k}"), "_")
        i = bars.schema.get_field_index("symbol")
        parts.append(bars.set_column(i, bars.schema.field(i), sym))
    return pa.concat_tables(parts).slice(0, rows)


def _ingest(
    db: str, table: str, data: pa.Table, chunk: int, *, fresh: bool, **options: Any
) -> tuple[float, int]:
    """Upsert ``data`` in transactions of ``chunk`` rows; (seconds, rows the database
    took: written + updated + unchanged)."""
    from .sinks import connect

    # the scratch bars table's symbols rows go to a scratch table of their own (the user's
    # `symbols` table must not learn the trials' made-up names)
    with connect(db, tables={"symbols": f"{table}_symbols"}, **options) as sink:
        if fresh:
            sink.drop_table(table)
        sink.check()
        t0 = time.perf_counter()
        moved = 0
        for off in range(0, data.num_rows, chunk):
            # meta={}: the trials' made-up symbols add nothing to `symbols` or `actions`
            res = sink.ingest(data.slice(off, chunk), table=table, mode="upsert", meta={})
            moved += res.written + res.updated + res.ignored
        return time.perf_counter() - t0, moved


def _tune_database(
    report: TuneReport,
    db: str,
    dialect: str,
    data: pa.Table,
    table: str,
    clock: _Clock,
    tick: Callable[[str], None],
) -> None:
    n = data.num_rows
    note = f"{n:,} rows: the fetched bars repeated under other symbol names"
    # -- level: every level on the same rows (a fair race), the default level first
    from .sinks import connect

    with connect(db) as probe:
        default = probe.level.value
    part = data.slice(0, min(n, LEVEL_ROWS))
    levels: list[Trial] = []
    for lvl in (default, *(v for v in LEVELS if v != default)):
        if levels and clock.left() < levels[0].seconds * (6 if lvl == "basic" else 1.5):
            report.skipped.append(f"level={lvl} (budget)")
            tick(f"level={lvl} skipped")
            continue
        secs, moved = _ingest(db, table, part, ENGINE_CHUNK, fresh=True, level=lvl)
        t = Trial(
            "level", lvl, secs, moved, note=f"upsert of {part.num_rows:,} rows into an empty table"
        )
        levels.append(t)
        report.trials.append(t)
        tick(f"level={lvl}: {t.rate:,.0f} rows/s")
    base = levels[0]  # the database's default level
    top = max(levels, key=lambda t: t.rate)
    best = top if top.rate >= base.rate * GAIN else base
    others = ", ".join(f"{t.value} {t.rate:,.0f}" for t in levels if t is not best)
    if best is top and best is base:
        why = (
            f"{best.rate:,.0f} rows/s on your database, the default and the fastest "
            f"({others} rows/s)"
        )
    elif best is base:
        why = (
            f"{best.rate:,.0f} rows/s on your database, the default; {top.value} was "
            f"not 10 % faster ({others} rows/s)"
        )
    else:
        why = (
            f"{best.rate / base.rate:.1f}x {base.value} on your database, "
            f"{best.rate:,.0f} rows/s ({others} rows/s)"
        )
    report.recommendations.append(
        Recommendation("level", best.value, why + f"; {part.num_rows:,} of your bars, upserted")
    )
    # -- rows per transaction
    chunks: list[Trial] = []
    for size in CHUNK_ROWS:
        if size > 2 * n:
            report.skipped.append(f"chunk_rows={size} (more than the rows)")
            tick(f"chunk_rows={size} skipped")
            continue
        if clock.left() < best.seconds * (n / part.num_rows) * 1.5:
            report.skipped.append(f"chunk_rows={size} (budget)")
            tick(f"chunk_rows={size} skipped")
            continue
        secs, moved = _ingest(db, table, data, size, fresh=True, level=best.value)
        t = Trial("chunk_rows", size, secs, moved, note=f"level={best.value}, {note}")
        chunks.append(t)
        report.trials.append(t)
        tick(f"chunk_rows={size}: {t.rate:,.0f} rows/s")
    if chunks:
        top = max(chunks, key=lambda t: t.rate)
        # the smallest size within 10 % of the fastest: less memory, same speed
        pick = min((t for t in chunks if t.rate * GAIN >= top.rate), key=lambda t: t.value)
        low = min(chunks, key=lambda t: t.rate)
        why = f"{pick.rate:,.0f} rows/s in transactions of {pick.value:,} rows"
        if low is not pick:
            why += f" ({pick.rate / low.rate:.1f}x chunk_rows={low.value:,})"
        report.recommendations.append(Recommendation("chunk_rows", pick.value, why))
    else:
        report.recommendations.append(Recommendation("chunk_rows", None, "not measured (budget)"))
    # -- upsert strategy
    if dialect != "postgresql":
        report.recommendations.append(
            Recommendation(
                "upsert_strategy",
                None,
                f"{dialect} has one upsert (staging table + one "
                "set-based INSERT … ON CONFLICT); nothing to choose",
            )
        )
        return
    per_row = best.seconds / best.rows
    if clock.left() < per_row * n * 4:
        report.skipped.append("upsert_strategy (budget)")
        report.recommendations.append(
            Recommendation("upsert_strategy", None, "not measured (budget)")
        )
        return
    _ingest(db, table, data, ENGINE_CHUNK, fresh=True, level=best.value)  # the stored state
    strategies: list[Trial] = []
    even = pc.equal(pc.bit_wise_and(pa.array(range(n)), 1), 0)
    for i, strat in enumerate(STRATEGIES):
        if clock.left() < (strategies[0].seconds if strategies else per_row * n * 2) * 1.2:
            report.skipped.append(f"upsert_strategy={strat} (budget)")
            tick(f"upsert_strategy={strat} skipped")
            continue
        close = data["close"]
        changed = pc.if_else(even, pc.multiply(close, 1 + 0.001 * (i + 1)), close)
        i_close = data.schema.get_field_index("close")
        again = data.set_column(i_close, data.schema.field(i_close), changed)
        secs, moved = _ingest(
            db, table, again, ENGINE_CHUNK, fresh=False, level=best.value, upsert_strategy=strat
        )
        t = Trial(
            "upsert_strategy",
            strat,
            secs,
            moved,
            note=f"re-upsert of {n:,} stored rows, half of them changed",
        )
        strategies.append(t)
        report.trials.append(t)
        tick(f"upsert_strategy={strat}: {t.rate:,.0f} rows/s")
    if not strategies:
        report.recommendations.append(
            Recommendation("upsert_strategy", None, "not measured (budget)")
        )
        return
    top = max(strategies, key=lambda t: t.rate)
    rest = [t for t in strategies if t is not top]
    vs = ", ".join(f"{top.rate / t.rate:.1f}x {t.value}" for t in rest)
    report.recommendations.append(
        Recommendation(
            "upsert_strategy",
            top.value,
            f"{vs + ', ' if vs else ''}{top.rate:,.0f} rows/s re-upserting rows with half of "
            "them changed",
        )
    )
