"""The ``stockbatch`` command.

::

    stockbatch demo                              # offline: fixture server → ./stockbatch.db
    stockbatch ingest AAPL MSFT 7203.T --period 1y
    stockbatch ingest --symbols-file tickers.txt --db postgresql://u@host/db --mode upsert
    stockbatch read AAPL --limit 5               # a table; --csv for CSV on stdout
    stockbatch read                              # what is stored: one line per series
    stockbatch serve-fixture --port 0            # the loopback fixture server, until Ctrl-C
    stockbatch bench --quick                     # runs bench/ and writes the report

Exit codes: 0 everything stored (or done); 1 some symbols failed, the database refused rows,
or stockbatch refused to start (bad database, nothing to read) with a one-line message; 2
usage errors (bad options, dates, periods, indicator specs); 130 interrupted (the first Ctrl-C
cancels the job cleanly and prints what was stored; a second one quits at once). No command
prints a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._time import PERIOD_PATTERN as _PERIOD
from ._time import period_days
from ._types import MODES
from ._types import SOURCE_NAMES as SOURCES

__all__ = ["main", "build_parser", "demo_symbols"]

DEFAULT_DB = "stockbatch.db"
# the front of the demo's symbol list: names people recognise, on both exchanges
_DEMO_HEAD = (
    "AAPL",
    "MSFT",
    "7203.T",
    "NVDA",
    "AMZN",
    "6758.T",
    "GOOGL",
    "META",
    "9984.T",
    "TSLA",
    "JPM",
    "8306.T",
    "V",
    "KO",
    "7974.T",
    "NFLX",
    "INTC",
    "6861.T",
    "ORCL",
    "IBM",
)


class UsageError(Exception):
    """Bad command-line input found after parsing (exit code 2)."""


class Refused(Exception):
    """The command cannot run (no database, no benchmarks, …): exit code 1, one line."""


# -- argument types ------------------------------------------------------------------------


def _date_arg(text: str) -> dt.datetime:
    """``YYYY-MM-DD`` or an ISO datetime (naive = UTC)."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad date {text!r} (want YYYY-MM-DD or an ISO datetime like 2025-01-31T14:30)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _read_bound(text: str) -> dt.date | dt.datetime:
    """``YYYY-MM-DD`` (a calendar date: the exchange's day) or an ISO datetime (naive =
    UTC), for ``read --start/--end``."""
    text = text.strip()
    if len(text) == 10:
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    return _date_arg(text)


def _period_arg(text: str) -> str:
    text = text.strip()
    if not _PERIOD.match(text):
        raise argparse.ArgumentTypeError(
            f"bad period {text!r} (e.g. 5d, 2wk, 1mo, 6mo, 1y, 10y, ytd, max)"
        )
    try:
        period_days(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _int_at_least(low: int):
    """An argparse type: a whole number >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


_positive_int, _non_negative_int = _int_at_least(1), _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


# -- the parser ----------------------------------------------------------------------------

_ALERT_METRICS = ("latency_p95_s", "error_rate", "rate_429", "queue_fill", "rss_share", "rss_mb")


def _alert_arg(text: str) -> tuple[str, float | None]:
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or name not in _ALERT_METRICS:
        raise argparse.ArgumentTypeError(
            f"expected METRIC=LIMIT with METRIC one of {', '.join(_ALERT_METRICS)}: {text!r}"
        )
    if value.strip().lower() == "off":
        return name, None
    try:
        limit = float(value)
    except ValueError:
        limit = -1.0
    if not limit > 0:
        raise argparse.ArgumentTypeError(
            f"{name}: expected a positive number or 'off', got {value!r}"
        )
    return name, limit


def _modes() -> tuple[str, ...]:
    return MODES


def _add_window(p: argparse.ArgumentParser, *, default_period: str | None) -> None:
    from .pipeline._job import INTERVALS

    p.add_argument(
        "--interval",
        default="1d",
        choices=INTERVALS,
        metavar="INTERVAL",
        help="bar size: " + ", ".join(INTERVALS) + " (default: %(default)s)",
    )
    window = p.add_mutually_exclusive_group()
    window.add_argument(
        "--period",
        type=_period_arg,
        default=None,
        help=f"how far back from now: 5d, 1mo, 1y, ytd, max … (default: {default_period or '1mo'})",
    )
    window.add_argument(
        "--start",
        type=_date_arg,
        default=None,
        help="first day (inclusive), YYYY-MM-DD or ISO datetime; UTC if naive",
    )
    p.add_argument(
        "--end",
        type=_date_arg,
        default=None,
        help="end (exclusive), YYYY-MM-DD or ISO datetime; default: now",
    )


def build_parser() -> argparse.ArgumentParser:
    from . import __version__, backend
    from .pipeline._job import INTERVALS

    parser = argparse.ArgumentParser(
        prog="stockbatch",
        description="Fetch, check and bulk-store market data for many symbols, fast.",
        epilog="Exit codes: 0 all stored, 1 some symbols failed or rows were refused by the "
        "database or a runtime error, 2 usage error, 130 interrupted (Ctrl-C).",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"stockbatch {__version__} (backend: {backend}, python {sys.version.split()[0]})",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an unexpected error"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    # ingest
    p = sub.add_parser(
        "ingest",
        help="fetch bars for symbols and store them in a database",
        description="Fetch bars for SYMBOLS, validate them, and store them in "
        "--db. Exit code 0 when every symbol was stored, 1 when "
        "some failed (the others are stored), 2 on usage errors.",
    )
    p.add_argument(
        "symbols", nargs="*", metavar="SYMBOL", help="provider symbols, e.g. AAPL 7203.T ^GSPC"
    )
    p.add_argument(
        "--symbols-file",
        "-f",
        metavar="FILE",
        help="read symbols from FILE ('-' for stdin): whitespace or comma "
        "separated, '#' starts a comment",
    )
    p.add_argument(
        "--source", default="yahoo", choices=SOURCES, help="data provider (default: %(default)s)"
    )
    p.add_argument(
        "--base-url",
        metavar="URL",
        help="provider base URL override (a proxy, or `stockbatch serve-fixture`)",
    )
    p.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="PATH_OR_URI",
        help="SQLite path, or sqlite:///, postgresql://, duckdb:///, mysql:// URI "
        "(default: ./%(default)s)",
    )
    _add_window(p, default_period=None)
    p.add_argument(
        "--mode",
        default="upsert",
        choices=_modes(),
        help="how rows meet existing ones (default: %(default)s: re-running is idempotent)",
    )
    p.add_argument("--table", default=None, help="bars table name (default: bars)")
    p.add_argument(
        "--indicators",
        default=None,
        metavar="LIST",
        help="comma list of indicators to compute, e.g. sma20,rsi14,macd",
    )
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=None,
        metavar="N",
        help="provider requests in flight (default: the source's own)",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="give up on symbols not done after this many seconds",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="settings from a config file (`stockbatch tune -o tuned.toml`: "
        "concurrency, level, chunk_rows, upsert_strategy, and source, "
        "base_url, db, mode, table, period, interval); options given here "
        "win",
    )
    p.add_argument(
        "--alert",
        action="append",
        default=[],
        type=_alert_arg,
        metavar="METRIC=LIMIT",
        help="alert threshold, repeatable: latency_p95_s=5, error_rate=0.1, "
        "rate_429=0.1, queue_fill=0.9, rss_share=0.9, rss_mb=N; 'off' turns "
        "one off (defaults: stockbatch.alerts.Thresholds)",
    )
    p.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bar and no summary; failures still go to stderr",
    )
    _add_dask_options(p)
    p.set_defaults(func=_cmd_ingest, tuned={})
    parser.ingest_parser = p  # type: ignore[attr-defined]  # (for --config, see _main)

    # demo
    p = sub.add_parser(
        "demo",
        help="offline demo: fixture server → ./stockbatch.db",
        description="Start the loopback fixture server in this process and "
        "ingest N synthetic symbols of daily bars into --db. "
        "Needs no network.",
    )
    p.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="PATH_OR_URI",
        help="where to store (default: ./%(default)s)",
    )
    p.add_argument(
        "--symbols",
        type=_positive_int,
        default=500,
        metavar="N",
        help="how many symbols (default: %(default)s)",
    )
    p.add_argument(
        "--period", type=_period_arg, default="1y", help="how far back (default: %(default)s)"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)

    # serve-fixture: its options belong to stockbatch.testing.serve_main
    p = sub.add_parser(
        "serve-fixture",
        add_help=False,
        help="run the loopback fixture server until Ctrl-C "
        "(`stockbatch serve-fixture --help` for its options)",
        description="Options: see `stockbatch serve-fixture --help`.",
    )
    p.set_defaults(func=_cmd_serve_fixture)

    # read
    p = sub.add_parser(
        "read",
        help="show stored bars (a table, or CSV with --csv)",
        description="Read stored bars back: a table by default, CSV on stdout with --csv.",
    )
    p.add_argument(
        "symbols",
        nargs="*",
        metavar="SYMBOL",
        help="symbols to show (none: one line per stored series)",
    )
    p.add_argument(
        "--db", default=DEFAULT_DB, metavar="PATH_OR_URI", help="database (default: ./%(default)s)"
    )
    p.add_argument(
        "--interval",
        default=None,
        choices=INTERVALS,
        metavar="INTERVAL",
        help="only this bar size (default: all)",
    )
    p.add_argument(
        "--start",
        type=_read_bound,
        default=None,
        help="from (inclusive): YYYY-MM-DD is the exchange's trading date (the "
        "exchange-local day for intraday bars); a datetime is a UTC instant",
    )
    p.add_argument("--end", type=_read_bound, default=None, help="to (exclusive), as --start")
    p.add_argument("--table", default=None, help="bars table name (default: bars)")
    p.add_argument(
        "--kind",
        default="bars",
        choices=("bars", "actions", "symbols", "indicators"),
        help="what to read: bars (default), actions (dividends and splits) or "
        "symbols (exchange, zone, currency, first/last bar per symbol) or "
        "indicators (values stored by ingest --indicators)",
    )
    p.add_argument("--csv", action="store_true", help="CSV on stdout instead of a table")
    p.add_argument(
        "--limit",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="only the latest N rows of each symbol and interval (actions: of each symbol; "
        "indicators: and name); 0 = all (default: 20 for the bars table, else all)",
    )
    p.set_defaults(func=_cmd_read)

    _add_tune_parser(sub)

    # bench
    p = sub.add_parser(
        "bench",
        help="run the benchmarks in bench/ and write the report",
        description="Run `pytest bench --benchmark-only` and turn its JSON "
        "into a markdown report (targets met/missed first) and "
        "one PNG per area. PostgreSQL and MariaDB benchmarks run "
        "only when STOCKBATCH_PG_URI / STOCKBATCH_MYSQL_URI are "
        "set. Needs a source checkout (bench/ is not in the "
        "wheel) and the [bench] extra.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, one short round each (a few minutes at most)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="report directory (default: BENCH_DIR/report; a .gitignore in it keeps it out of git)",
    )
    p.add_argument(
        "-k",
        dest="keyword",
        default=None,
        metavar="EXPR",
        help="only benchmarks matching this pytest -k expression",
    )
    p.add_argument(
        "--bench-dir",
        default=None,
        metavar="DIR",
        help="the benchmark directory (default: ./bench)",
    )
    p.set_defaults(func=_cmd_bench)
    _add_migrate_parser(sub)
    return parser


def _add_migrate_parser(sub) -> None:
    p = sub.add_parser(
        "migrate",
        help="upgrade the tables of an older stockbatch in place",
        description="Upgrade tables written by stockbatch 0.1 to this "
        "version's layout: bars get their trading date column, "
        "the symbols and actions tables are created, the layout "
        "version is recorded. Running it again changes nothing.",
    )
    p.add_argument(
        "--db", default=DEFAULT_DB, metavar="PATH_OR_URI", help="database (default: ./%(default)s)"
    )
    p.add_argument("--table", default=None, help="bars table name (default: bars)")
    p.set_defaults(func=_cmd_migrate)


def _cmd_migrate(args) -> int:
    from .sinks import connect

    path = _local_file(args.db)
    if path is not None and not os.path.exists(path):
        raise Refused(f"no database at {path!r}")
    tables = {"bars": args.table} if args.table else None
    with connect(args.db, tables=tables) as sink:
        done = sink.migrate()
    for table, what in done.items():
        print(f"{table}: {what}")
    print(f"schema version: {sink.SCHEMA_VERSION}")
    return 0


# -- main ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # before anything heavy is imported, so that an early Ctrl-C is handled too
    restore = _second_interrupt_quits() if {"ingest", "demo"} & set(argv) else None
    try:
        return _main(argv)
    except KeyboardInterrupt:
        _err("stockbatch: interrupted")
        return 130
    finally:
        if restore is not None:
            restore()


def _main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "serve-fixture":
            parser.error("unrecognized arguments: " + " ".join(extra))
    except SystemExit as exc:  # --help, --version, usage errors
        return _code(exc.code)
    args.extra = extra
    try:
        if getattr(args, "config", None):
            args = _with_config(parser, argv, args)
        return args.func(args)
    except UsageError as exc:
        _err(f"stockbatch {args.command}: error: {exc}")
        return 2
    except BrokenPipeError:
        # the reader left (`stockbatch read … | head`): nothing more to say, as `cat` says
        # nothing; stdout goes to /dev/null so that the flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Refused as exc:
        _err(f"stockbatch {args.command}: error: {exc}")
        return 1
    except KeyboardInterrupt:
        _err("stockbatch: interrupted")
        return 130
    except Exception as exc:
        # never a traceback for the user: one line, exit 1 (--debug shows the trace)
        from ._errors import StockbatchError

        if args.debug:
            raise
        if isinstance(exc, StockbatchError):
            _err(f"stockbatch {args.command}: error: {_redact(exc)}")
        else:
            _err(
                f"stockbatch {args.command}: internal error: {type(exc).__name__}: "
                f"{_redact(exc)} (run with --debug for the traceback, and please report it)"
            )
        return 1


def _with_config(parser: argparse.ArgumentParser, argv: list[str], args):
    """``ingest --config FILE``: the file's settings become the defaults, then the command
    line is parsed again (so what it gives wins)."""
    from .tuning import load_config

    try:
        cfg = load_config(args.config)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if "source" in cfg and cfg["source"] not in SOURCES:
        raise UsageError(f"config: source must be one of {', '.join(SOURCES)}")
    if "mode" in cfg and cfg["mode"] not in _modes():
        raise UsageError(f"config: mode must be one of {', '.join(_modes())}")
    tuned = {k: cfg.pop(k) for k in ("level", "chunk_rows", "upsert_strategy") if k in cfg}
    if "chunk_rows" in tuned and tuned["chunk_rows"] < 1:
        raise UsageError("config: chunk_rows must be at least 1")
    parser.ingest_parser.set_defaults(tuned=tuned, **cfg)  # type: ignore[attr-defined]
    try:
        again, _ = parser.parse_known_args(argv)
    except SystemExit as exc:  # a bad value in the file (a period, …)
        raise UsageError(f"config {args.config!r}: a value is not valid") from exc
    again.extra = args.extra
    return again


def _second_interrupt_quits():
    """Ctrl-C: the first one raises KeyboardInterrupt (the job is cancelled cleanly, see
    BatchProcessingEngine.run); a second one ends the process at once with exit 130.
    Returns a function that puts the previous handler back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    seen: list[int] = []

    def on_sigint(signum, frame):
        if seen:
            _err("stockbatch: interrupted again, quitting now")
            os._exit(130)
        seen.append(signum)
        _err(
            "stockbatch: interrupted: cancelling (the chunk being stored is committed or "
            "rolled back whole; Ctrl-C again to quit at once)"
        )
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return None  # whoever started us wants Ctrl-C ignored
    previous = signal.signal(signal.SIGINT, on_sigint)
    return lambda: signal.signal(signal.SIGINT, previous)


def _code(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _redact(text: Any) -> str:
    from ._redact import redact

    return redact(str(text))


def _console(*, stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


# -- ingest / demo -------------------------------------------------------------------------


#: The largest symbols file read (a few million symbols): ``-f /dev/zero`` ends here.
SYMBOLS_FILE_BYTES = 16 << 20


def _read_symbols_file(name: str) -> list[str]:
    try:
        if name == "-":
            raw = sys.stdin.buffer.read(SYMBOLS_FILE_BYTES + 1)
        else:
            with open(name, "rb") as f:
                raw = f.read(SYMBOLS_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read symbols file {name!r}: {exc.strerror or exc}") from None
    if len(raw) > SYMBOLS_FILE_BYTES:
        raise UsageError(f"symbols file {name!r} is larger than {SYMBOLS_FILE_BYTES >> 20} MiB")
    if b"\0" in raw:
        raise UsageError(f"symbols file {name!r} is not text (it holds NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Excel's "CSV UTF-8") is no symbol
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1]
        raise UsageError(
            f"symbols file {name!r} is not UTF-8 text (byte {exc.start}: {bad!r})"
        ) from None
    out: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        out.extend(s for s in re.split(r"[\s,;]+", line) if s)
    return out


def _ingest_symbols(args) -> list[str]:
    symbols = [s for arg in args.symbols for s in arg.split(",") if s.strip()]
    if args.symbols_file:
        symbols += _read_symbols_file(args.symbols_file)
    if not symbols:
        raise UsageError("no symbols: give SYMBOL arguments or --symbols-file FILE")
    return symbols


def _cmd_ingest(args) -> int:
    if args.end is not None and args.period is not None:
        raise UsageError("--end goes with --start, not with --period")
    symbols = _ingest_symbols(args)
    if args.scheduler is not None or args.workers is not None:
        return _run_dask_ingest(symbols, args)
    return _run_ingest(
        symbols,
        **_job_options(args),
        quiet=args.quiet,
        command="ingest",
        alerts=dict(args.alert),
        tuned=args.tuned,
    )


_JOB_OPTIONS = (
    "db",
    "source",
    "base_url",
    "interval",
    "period",
    "start",
    "end",
    "mode",
    "table",
    "indicators",
    "concurrency",
    "timeout",
)


def _job_options(args) -> dict[str, Any]:
    """What ``ingest`` passes to a job, local or on a Dask cluster, from its command line."""
    return {name: getattr(args, name) for name in _JOB_OPTIONS}


def _run_ingest(
    symbols: list[str],
    *,
    db: str,
    quiet: bool,
    command: str,
    alerts: dict[str, float | None] | None = None,
    tuned: dict[str, Any] | None = None,
    **options: Any,
) -> int:
    """Run one ingest job with a live progress bar, then print the summary. Returns the exit
    code: 0 all stored (or empty), 1 some failed or the job could not run, 2 bad options.

    The same job as :func:`stockbatch.ingest`, run step by step so that bad options (exit 2)
    and an unreachable database (exit 1) are reported in one line before anything is
    fetched or drawn."""
    from ._errors import StockbatchError
    from .alerts import Thresholds
    from .pipeline import BatchProcessingEngine
    from .sinks import connect

    where = _redact(db)
    limits: dict[str, Any] = dict(alerts or {})
    thresholds = dataclasses.replace(Thresholds(), **limits)
    tuned = dict(tuned or {})  # from --config: engine and sink settings
    chunk = tuned.pop("chunk_rows", None)
    sizes = {} if chunk is None else {"chunk_rows": chunk, "min_chunk_rows": min(chunk, 16_384)}
    with BatchProcessingEngine(
        max_concurrent_jobs=1, alert_thresholds=thresholds, **sizes
    ) as engine:
        try:
            sink = connect(db, **tuned)  # a bad URI scheme raises SinkError: exit 1
        except ValueError as exc:  # e.g. upsert_strategy from a PostgreSQL tune, on SQLite
            if isinstance(exc, StockbatchError):
                raise
            raise UsageError(f"--config: {_redact(exc)}") from None
        try:
            try:
                job = engine.create_stock_data_pipeline_job(symbols, sink=sink, **options)
            except (ValueError, TypeError) as exc:
                if isinstance(exc, StockbatchError):
                    raise
                raise UsageError(_redact(exc)) from None
            except ImportError as exc:  # e.g. --source yfinance without yfinance installed
                raise Refused(
                    f"{exc} (pip install 'stockbatch[{exc.name or 'yfinance'}]')"
                ) from None
            sink.check()  # fail now, in one line, if the database is unreachable
            progress = None if quiet else _LiveProgress(command, len(job.symbols))
            # the live display shows alerts; --quiet shows none (they are no failure)
            _quiet_alert_log()
            if progress is not None:
                job.on_progress = progress.on_progress
                engine.on_alert(progress.on_alert)
                progress.start()
            interrupted = False
            try:
                result = engine.run(job)
            except KeyboardInterrupt:  # the job was cancelled and has ended
                if job.result is None:
                    raise
                interrupted, result = True, job.result
            finally:
                if progress is not None:
                    progress.stop()
        finally:
            sink.close()
    return _report(result, command, where, quiet=quiet, interrupted=interrupted)


def _report(result, command: str, where: str, *, quiet: bool, interrupted: bool = False) -> int:
    """Print a finished ingest job (local or on Dask): its summary table, or under ``quiet``
    only its failures. Returns the exit code: 0 all stored (or empty), 1 some failed or the
    job never ran, 130 interrupted."""
    if result.status == "failed" and result.count("stored") == 0 and result.count("empty") == 0:
        # the job never ran (the database could not be opened, …): one line, no table
        _err(f"stockbatch {command}: error: {_redact(result.error or 'the job failed')}")
        return 1
    if quiet:
        for s in result.failed_symbols:
            _err(f"failed {s}: {_redact(result.symbols[s].error)}")
    else:
        _print_summary(_console(), result, where)
    if result.status != "completed" and result.error:
        _err(f"stockbatch {command}: job {result.status}: {_redact(result.error)}")
    if interrupted:
        return 130
    return 0 if result.success else 1


class _LiveProgress:
    """A rich progress bar (on stderr) fed by the engine's ``on_progress`` snapshots."""

    def __init__(self, command: str, total: int):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("symbols"),
            TextColumn("{task.fields[rows]:,} rows"),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[alerts]}"),
            console=_console(stderr=True),
            transient=False,
        )
        self.task = self.bar.add_task(command, total=total, rows=0, failed=0, alerts="")
        self.firing: dict[str, str] = {}

    def on_alert(self, alert) -> None:  # any thread
        """A threshold alert: one line above the bar, and the bar shows what is firing."""
        if alert.state == "firing":
            self.firing[alert.metric] = alert.metric
            self.bar.console.print(f"[bold yellow]⚠ alert:[/] {alert.message}", highlight=False)
        else:
            self.firing.pop(alert.metric, None)
            self.bar.console.print(f"[green]✓ resolved:[/] {alert.message}", highlight=False)
        text = f"[yellow]⚠ {', '.join(self.firing)}" if self.firing else ""
        self.bar.update(self.task, alerts=text)

    def on_progress(self, p) -> None:  # any thread; rich's updates take a lock
        self.bar.update(
            self.task,
            total=p.symbols_total,
            completed=p.symbols_done,
            rows=p.rows_stored,
            failed=p.symbols_failed,
        )

    def start(self) -> None:
        self.bar.start()

    def stop(self) -> None:
        self.bar.stop()


def _add_tune_parser(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="measure settings on your database and provider, and recommend them",
        description="Short, bounded trials against --db and the provider: "
        "fetch concurrency, optimisation level, rows per "
        "transaction, upsert strategy (PostgreSQL). Prints "
        "recommendations with the numbers they rest on; -o writes "
        "a config for `stockbatch ingest --config`. Only a scratch "
        "table is written, and dropped.",
    )
    p.add_argument(
        "--db",
        required=True,
        metavar="PATH_OR_URI",
        help="the database to tune for (as for ingest)",
    )
    p.add_argument(
        "--source", default="yahoo", choices=SOURCES, help="data provider (default: %(default)s)"
    )
    p.add_argument("--base-url", metavar="URL", help="provider base URL override")
    p.add_argument(
        "--symbols",
        nargs="+",
        default=None,
        metavar="SYMBOL",
        help="symbols to fetch (default: 48 large US names); at most 64 are used",
    )
    p.add_argument("--symbols-file", "-f", metavar="FILE", help="read symbols from FILE")
    p.add_argument(
        "--budget",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="seconds for all trials (default: %(default)g)",
    )
    p.add_argument(
        "--rows",
        type=_int_at_least(1000),
        default=100_000,
        metavar="N",
        help="rows the database trials store (default: %(default)s)",
    )
    p.add_argument(
        "--output",
        "-o",
        default=None,
        metavar="FILE",
        help="write the config (TOML; a .json name writes the JSON report)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_tune)


def _cmd_tune(args) -> int:
    from .tuning import tune

    symbols = list(args.symbols or [])
    if args.symbols_file:
        symbols += _read_symbols_file(args.symbols_file)
    bar = None
    if not args.quiet:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        bar = Progress(
            TextColumn("[bold]tune"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[label]}"),
            console=_console(stderr=True),
        )
        task = bar.add_task("tune", total=None, label="")
        bar.start()
    try:
        report = tune(
            args.db,
            source=args.source,
            base_url=args.base_url,
            symbols=symbols or None,
            budget_s=args.budget,
            rows=args.rows,
            on_progress=None
            if bar is None
            else (
                lambda done, total, label: bar.update(
                    task, completed=done, total=total, label=label
                )
            ),
        )
    except (ValueError, TypeError) as exc:
        from ._errors import StockbatchError

        if isinstance(exc, StockbatchError):
            raise
        raise UsageError(_redact(exc)) from None
    finally:
        if bar is not None:
            bar.stop()
    out = _console()
    if args.json:
        print(report.to_json())
    else:
        out.print(report.text(), markup=False, highlight=False, soft_wrap=True)
    if args.output:
        path = report.write_config(args.output)
        _err(f"wrote {path}: stockbatch ingest --config {path} --db {_redact(args.db)} …")
    return 0 if report.settings() else 1


def _quiet_alert_log() -> None:
    """Alerts are drawn by the live display (or not at all under --quiet): no copy from
    logging's last resort."""
    import logging

    log = logging.getLogger("stockbatch.alerts")
    if not log.handlers:
        log.addHandler(logging.NullHandler())


def _add_dask_options(p: argparse.ArgumentParser) -> None:
    """``ingest --scheduler`` / ``--workers``: the job on a Dask cluster (stockbatch.dask)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run on the Dask cluster of this scheduler (tcp://host:8786); needs stockbatch[dask]",
    )
    g.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="run on a local Dask cluster of N worker processes; needs stockbatch[dask]",
    )


def _run_dask_ingest(symbols: list[str], args) -> int:
    """The ingest command on a Dask cluster: one progress bar for the whole cluster, the same
    summary and exit codes as the local engine."""
    if args.end is not None and args.period is not None:
        raise UsageError("--end goes with --start, not with --period")
    try:
        from distributed import Client, LocalCluster

        from . import dask as sbd
    except ImportError as exc:
        raise Refused(f"{exc} (pip install 'stockbatch[dask]')") from None
    cluster = None
    try:
        if args.workers is not None:
            cluster = LocalCluster(
                n_workers=args.workers, processes=True, threads_per_worker=1, dashboard_address=":0"
            )
            client = Client(cluster)
        else:
            client = Client(args.scheduler, timeout="5s")
    except (OSError, TimeoutError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        raise Refused(
            f"cannot reach the Dask scheduler {_redact(args.scheduler)}: {_redact(exc)}"
        ) from None
    progress = None if args.quiet else _LiveProgress("ingest", len(set(symbols)))
    try:
        if progress is not None:
            progress.start()
        try:
            result = sbd.ingest(
                symbols,
                client=client,
                **_job_options(args),
                on_progress=progress.on_progress if progress is not None else None,
            )
        except (ValueError, TypeError) as exc:
            from ._errors import StockbatchError

            if isinstance(exc, StockbatchError):
                raise
            raise UsageError(_redact(exc)) from None
        finally:
            if progress is not None:
                progress.stop()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return _report(result, "ingest", _redact(args.db), quiet=args.quiet)


def _print_summary(out, result, where: str) -> None:
    from rich.table import Table
    from rich.text import Text

    failed = result.failed_symbols
    table = Table(
        title=f"job {result.job_id}: {result.status}", title_justify="left", show_header=True
    )
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("symbols stored", f"{result.count('stored'):,}")
    table.add_row("symbols empty", f"{result.count('empty'):,}")
    table.add_row("symbols failed", f"[red]{len(failed):,}" if failed else "0")
    if result.count("cancelled"):
        table.add_row("  of which cancelled (not stored)", f"{result.count('cancelled'):,}")
    table.add_row("rows stored", f"{result.rows_stored:,}")
    if result.rows_kept:
        table.add_row("rows kept as stored (insert_new)", f"{result.rows_kept:,}")
    table.add_row("rows rejected (quarantined)", f"{result.rows_rejected:,}")
    if result.rows_refused:
        table.add_row("  of which refused by the database", f"[red]{result.rows_refused:,}")
    for name, st in result.stages.items():
        table.add_row(f"{name} ms", f"{st.seconds * 1e3:,.1f}")
    table.add_row("total ms", f"{result.total_processing_time_ms:,.1f}")
    calls = result.stats.get("provider_calls")
    if calls is not None:
        table.add_row("provider calls", f"{calls:,}")
    table.columns[0].header = "database"
    table.columns[1].header = Text(where)
    out.print(table)
    alerts = result.stats.get("alerts") or []
    if alerts:
        at = Table(
            title=f"alerts ({sum(a['state'] == 'firing' for a in alerts)} fired)",
            title_justify="left",
        )
        at.add_column("state")
        at.add_column("alert", overflow="fold")
        for a in alerts:
            at.add_row(
                "[yellow]firing" if a["state"] == "firing" else "[green]resolved",
                Text(a["message"]),
            )
        out.print(at)
    failed = [s for s in failed if result.symbols[s].status != "cancelled"]
    if result.count("cancelled"):
        out.print(
            f"{result.count('cancelled'):,} symbols were cancelled before they were "
            "stored: run the same command again to store them (stored rows are kept).",
            markup=False,
            soft_wrap=True,
        )
    if failed:
        ft = Table(title=f"failed symbols ({len(failed)})", title_justify="left")
        ft.add_column("symbol", style="bold")
        ft.add_column("reason", overflow="fold")
        for s in failed[:50]:
            ft.add_row(Text(s), Text(_redact(result.symbols[s].error or "")))
        if len(failed) > 50:
            ft.add_row("…", f"and {len(failed) - 50} more")
        out.print(ft)


def demo_symbols(n: int) -> list[str]:
    """``n`` distinct, deterministic ticker-like symbols: well-known names first, then
    generated three- and four-letter US tickers with a Tokyo ``.T`` code every fifth."""
    out = list(_DEMO_HEAD[:n])
    seen = set(out)
    i = 0
    tokyo = 1301
    while len(out) < n:
        i += 1
        if i % 5 == 0:
            sym = f"{tokyo}.T"
            tokyo += 7
        else:
            x = (i * 7_919 + 1_234) % (26**4)
            width = 3 if i % 2 else 4
            letters = []
            for _ in range(width):
                x, r = divmod(x, 26)
                letters.append(chr(65 + r))
            sym = "".join(letters)
        if sym not in seen and not sym.startswith(("UNK", "INV")):
            seen.add(sym)
            out.append(sym)
    return out


def _cmd_demo(args) -> int:
    from .testing import FixtureServer

    out = _console()
    symbols = demo_symbols(args.symbols)
    with FixtureServer() as server:
        if not args.quiet:
            out.print(
                f"stockbatch demo: fixture server on {server.url} (synthetic data, no "
                f"network); {len(symbols)} symbols x {args.period} daily → "
                f"{_redact(args.db)}",
                soft_wrap=True,
                markup=False,
            )
        code = _run_ingest(
            symbols,
            db=args.db,
            source="yahoo",
            base_url=server.url,
            interval="1d",
            period=args.period,
            quiet=args.quiet,
            command="demo",
        )
    if code == 0 or code == 1:
        db = args.db
        shown = db if re.fullmatch(r"[\w./:-]+", db) else repr(db)
        hint = "\n".join(
            [
                "",
                "Read it back:",
                f"  stockbatch read {symbols[0]} --db {shown} --limit 5",
                f"  stockbatch read {symbols[0]} --db {shown} --csv > {symbols[0]}.csv",
                f'  python -c "import stockbatch as sb; '
                f'print(sb.read({db!r}, [{symbols[0]!r}]).slice(0, 5))"',
            ]
        )
        out.print(hint, markup=False, soft_wrap=True)
    return code


# -- serve-fixture -------------------------------------------------------------------------


def _cmd_serve_fixture(args) -> int:
    from .testing import serve_main

    try:
        return serve_main(list(args.extra))
    except SystemExit as exc:  # its own --help / usage errors
        return _code(exc.code)


# -- read ----------------------------------------------------------------------------------


def _local_file(db: str) -> str | None:
    text = os.fspath(db)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    if scheme.lower() in ("sqlite", "duckdb"):
        if rest.partition("/")[0]:  # a host or a user: connecting says what is wrong
            return None
        path = rest[1:] if rest.startswith("/") else rest
        return None if path in ("", ":memory:") else path
    return None


def _cmd_read(args) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc

    import stockbatch as sb

    path = _local_file(args.db)
    if path is not None and not os.path.exists(path):
        raise Refused(
            f"no database at {path!r}: run `stockbatch demo` or "
            "`stockbatch ingest …` first, or pass --db"
        )
    if args.start and args.end and type(args.start) is type(args.end) and args.end <= args.start:
        raise UsageError("--end must be after --start")
    # ingest stored Yahoo's (upper-case) spelling of `aapl`: read finds it under either
    wanted = list(dict.fromkeys(args.symbols + [s.upper() for s in args.symbols]))
    if args.kind != "bars":
        return _read_aux(args, wanted)
    try:
        table = sb.read(
            args.db,
            wanted or None,
            interval=args.interval,
            start=args.start,
            end=args.end,
            table=args.table,
        )
    except (ValueError, TypeError) as exc:
        from ._errors import StockbatchError

        if isinstance(exc, StockbatchError):
            raise
        raise UsageError(_redact(exc)) from None
    total = table.num_rows
    if not args.symbols and not args.csv and args.limit is None and total:
        _print_overview(_console(), table, args)
        return 0
    limit = args.limit if args.limit is not None else (None if args.csv else 20)
    if limit:
        table = _latest(table, limit)
    if args.csv:
        import pyarrow.csv as pacsv

        sink = getattr(sys.stdout, "buffer", None)
        if sink is not None:
            sys.stdout.flush()
            pacsv.write_csv(table, sink)
            sink.flush()
        else:  # a text-only stdout
            buf = pa.BufferOutputStream()
            pacsv.write_csv(table, buf)
            sys.stdout.write(buf.getvalue().to_pybytes().decode("utf-8"))
    else:
        _print_bars(_console(), table, total, args)
    if total == 0:
        what = ", ".join(args.symbols) if args.symbols else "any symbol"
        _err(f"stockbatch read: no bars for {what} in {_redact(args.db)}")
        return 1
    found = set(pc.unique(table["symbol"]).to_pylist())
    missing = sorted(s for s in args.symbols if s not in found and s.upper() not in found)
    if missing:
        _err("stockbatch read: no bars for " + ", ".join(missing))
        return 1
    return 0


def _read_aux(args, symbols: list[str]) -> int:
    """``read --kind actions|symbols``: the rows as CSV (``--csv``) or aligned text."""
    import pyarrow.csv as pacsv

    import stockbatch as sb

    if args.table:
        raise UsageError(
            "--table names a bars table; --kind actions/symbols read the tables of that name"
        )
    try:
        table = sb.read(args.db, symbols or None, start=args.start, end=args.end, kind=args.kind)
    except (ValueError, TypeError) as exc:
        from ._errors import StockbatchError

        if isinstance(exc, StockbatchError):
            raise
        raise UsageError(_redact(exc)) from None
    if args.limit:
        table = _latest(table, args.limit)
    if args.csv:
        sys.stdout.flush()
        out = getattr(sys.stdout, "buffer", None)
        if out is not None:
            pacsv.write_csv(table, out)
            out.flush()
            return 0
    rows = [[("" if v is None else str(v)) for v in r.values()] for r in table.to_pylist()]
    if args.csv:  # a text-only stdout
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(table.column_names)
        w.writerows(rows)
        return 0
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(table.column_names)]
    for line in [table.column_names, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    if not rows:
        _err(f"stockbatch read: no {args.kind} in {_redact(args.db)}")
        return 1
    return 0


def _latest(table, n: int):
    """The last ``n`` rows of each symbol (and interval, and indicator name, where the table
    has them), keeping the table's key order."""
    import numpy as np
    import pyarrow as pa

    if table.num_rows == 0:
        return table
    by = [
        table[c].cast(pa.string())
        for c in ("symbol", "interval", "name")
        if c in table.schema.names
    ]
    keys = np.asarray(
        pa.compute.binary_join_element_wise(*by, "\x1f").to_numpy(zero_copy_only=False),
        dtype=object,
    )
    # rows are ordered by key, so each group is contiguous: rank from the end of its group
    change = np.ones(len(keys), dtype=bool)
    change[:-1] = keys[1:] != keys[:-1]  # last row of each group
    ends = np.flatnonzero(change)
    starts = np.concatenate(([0], ends[:-1] + 1))
    keep = np.zeros(len(keys), dtype=bool)
    for s, e in zip(starts, ends, strict=True):
        keep[max(s, e + 1 - n) : e + 1] = True
    return table.filter(pa.array(keep))


def _fmt_num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.2f}" if abs(value) >= 100 else f"{value:.4f}"
    return str(value)


def _print_overview(out, table, args) -> None:
    """One line per (symbol, interval): bar count, first and last bar, last close."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    groups = table.group_by(["symbol", "interval"], use_threads=False).aggregate(
        [("ts", "count"), ("ts", "min"), ("ts", "max"), ("close", "last")]
    )
    out.print(Text(_redact(args.db), style="bold"), soft_wrap=True)
    rt = Table(
        title=f"{groups.num_rows:,} series, {table.num_rows:,} bars "
        "(`stockbatch read SYMBOL` for the bars)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for name in ("symbol", "interval", "bars", "first (UTC)", "last (UTC)", "last close"):
        rt.add_column(
            name, justify="right" if name in ("bars", "last close") else "left", no_wrap=True
        )
    for row in groups.to_pylist():
        rt.add_row(
            Text(row["symbol"]),
            Text(row["interval"]),
            f"{row['ts_count']:,}",
            row["ts_min"].strftime("%Y-%m-%d %H:%M"),
            row["ts_max"].strftime("%Y-%m-%d %H:%M"),
            Text(_fmt_num(row["close_last"])),
        )
    out.print(rt)


def _print_bars(out, table, total: int, args) -> None:
    """A rich table; columns whose value is the same on every row go to the title."""
    import pyarrow.compute as pc
    from rich import box
    from rich.table import Table
    from rich.text import Text

    shown = table.num_rows
    constant = {}
    for name in ("interval", "source"):
        if shown and pc.count_distinct(table[name]).as_py() == 1:
            constant[name] = table[name][0].as_py()
    if shown and pc.all(pc.equal(table["close"], table["adj_close"])).as_py():
        constant["adj_close"] = "close"
    count = f"{shown:,} of {total:,} bars" if shown != total else f"{total:,} bars"
    title = ", ".join(
        [count]
        + [f"{k} {v}" if k != "adj_close" else "adj_close = close" for k, v in constant.items()]
    )
    out.print(Text(_redact(args.db), style="bold"), soft_wrap=True)
    rt = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    names = [n for n in table.column_names if n not in constant]
    numeric = ("open", "high", "low", "close", "adj_close", "volume")
    for name in names:
        rt.add_column(
            "ts (UTC)" if name == "ts" else name,
            no_wrap=True,
            justify="right" if name in numeric else "left",
        )
    for row in table.select(names).to_pylist():
        rt.add_row(
            *(
                Text(v.strftime("%Y-%m-%d %H:%M"))
                if isinstance(v, dt.datetime)
                else Text(_fmt_num(v))
                for v in row.values()
            )
        )
    out.print(rt)
    if shown != total:
        out.print(
            f"[dim]latest {args.limit if args.limit is not None else 20} per symbol and "
            "interval; "
            "--limit 0 for all, --csv for CSV[/]"
        )


# -- bench ---------------------------------------------------------------------------------


def _cmd_bench(args) -> int:
    import importlib.util
    import time

    bench_dir = Path(args.bench_dir) if args.bench_dir else Path.cwd() / "bench"
    if not bench_dir.is_dir():
        where = (
            f"--bench-dir {args.bench_dir!r} is not a directory"
            if args.bench_dir
            else f"no bench/ directory in {Path.cwd()}"
        )
        raise UsageError(
            f"{where}: the benchmarks ship with the source checkout, not the "
            "wheel; run from the repository root or pass --bench-dir"
        )
    if not any(bench_dir.glob("test_*.py")):
        raise UsageError(f"no benchmark files (test_*.py) in {str(bench_dir)!r}")
    missing = [
        m
        for m in ("pytest", "pytest_benchmark", "matplotlib")
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise Refused(f"missing {', '.join(missing)}: pip install 'stockbatch[bench]'")
    out_dir = Path(args.out) if args.out else bench_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    # whatever folder it is, git never picks the report up
    (out_dir / ".gitignore").write_text("# written by stockbatch bench\n*\n", encoding="utf-8")
    json_path, log_path = out_dir / "bench.json", out_dir / "pytest.log"
    if json_path.exists():
        json_path.unlink()
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(bench_dir),
        "--benchmark-only",
        f"--benchmark-json={json_path}",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    env = dict(os.environ)
    if args.quick:  # small sizes (bench/benchutil.py), one short round each
        cmd += ["--benchmark-max-time=0.1", "--benchmark-min-rounds=1"]
        env["STOCKBATCH_BENCH_QUICK"] = "1"
    if args.keyword:
        cmd += ["-k", args.keyword]
    dbs = [
        name
        for name, var in (("PostgreSQL", "STOCKBATCH_PG_URI"), ("MariaDB", "STOCKBATCH_MYSQL_URI"))
        if env.get(var)
    ]
    _err("$ " + " ".join(cmd))
    _err(
        f"databases: SQLite and DuckDB in temporary files"
        f"{''.join(', ' + d for d in dbs)} (PostgreSQL / MariaDB only with "
        "STOCKBATCH_PG_URI / STOCKBATCH_MYSQL_URI); pytest's output: " + str(log_path)
    )
    t0 = time.monotonic()
    with (
        open(log_path, "w", encoding="utf-8") as log,
        _console(stderr=True).status("running the benchmarks" + (" (quick)" if args.quick else "")),
    ):
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    lines = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    _err(
        f"pytest: {lines[-1].strip('= ') if lines else 'no output'} ({time.monotonic() - t0:.0f} s)"
    )
    if not json_path.exists():
        raise Refused(f"pytest exited with {code} and wrote no {json_path} (see {log_path})")
    from .testing.benchreport import check_targets, failed_tests, load_results, write_report

    failed = failed_tests("\n".join(lines))  # their timings mean nothing: left out
    rows = load_results(json_path, exclude=failed)
    if not rows:
        raise Refused(f"no benchmark was timed (pytest exit code {code}); check -k")
    paths = write_report(json_path, out_dir, quick=args.quick, failed=failed)
    out = _console()
    checked = check_targets(rows)
    met = sum(c[3].startswith("✓") for c in checked)
    missed = sum(c[3].startswith("✗") for c in checked)
    out.print(
        f"{len(rows)} benchmarks timed"
        + (f", {len(failed)} failed (left out)" if failed else "")
        + f"; targets: {met} met, {missed} missed"
        + (" (quick run: small sizes)" if args.quick else ""),
        markup=False,
    )
    out.print(f"report:  {paths.markdown}", markup=False)
    for fig in paths.figures:
        out.print(f"figure:  {fig}", markup=False)
    out.print(f"raw:     {json_path}", markup=False)
    if code != 0:
        _err(f"stockbatch bench: some benchmarks failed (pytest exit code {code}); see {log_path}")
    return 0 if code == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
