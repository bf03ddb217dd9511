"""Test helpers: the fixture server that speaks Yahoo's and Alpha Vantage's APIs on loopback.

::

    from stockbatch.testing import FixtureServer
    with FixtureServer() as srv:
        src = YahooChartSource(base_url=srv.url)

``serve_main`` is the ``stockbatch serve-fixture`` command.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from ._server import DATA_FAULT_KINDS, FAULT_KINDS, TRANSPORT_FAULTS, Fault, FixtureServer

__all__ = [
    "FixtureServer",
    "Fault",
    "FAULT_KINDS",
    "TRANSPORT_FAULTS",
    "DATA_FAULT_KINDS",
    "serve_main",
]


def _fault_arg(text: str) -> dict:
    """``kind[:key=value,...]``, e.g. ``rate_limit:route=chart,times=3,retry_after=1``."""
    kind, _, rest = text.partition(":")
    spec: dict = {"kind": kind}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"bad fault option {item!r} (want key=value)")
        if key == "symbols":
            spec[key] = value.split("+")
        elif key in ("times", "status", "chunks", "seed"):
            spec[key] = int(value)
        elif key in ("delay", "retry_after", "fraction"):
            spec[key] = float(value)
        else:
            spec[key] = value
    try:
        Fault(**spec)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


def _port_arg(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {port}")
    return port


def serve_main(argv: list[str] | None = None) -> int:
    """Run the fixture server in the foreground until Ctrl-C (``stockbatch serve-fixture``).

    Returns the process exit code.
    """
    p = argparse.ArgumentParser(
        prog="stockbatch serve-fixture",
        description="Serve synthetic Yahoo chart/quote and Alpha Vantage data on loopback.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port_arg, default=8765, help="0 picks a free port")
    p.add_argument("--now", type=float, default=None, help="fixed clock, epoch seconds")
    p.add_argument(
        "--unknown",
        action="append",
        default=[],
        metavar="SYMBOL",
        help="answer 404 for this symbol too (repeatable)",
    )
    p.add_argument(
        "--require-crumb",
        action="store_true",
        help="demand Yahoo's cookie + crumb on chart/quote requests",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        type=_fault_arg,
        metavar="KIND[:k=v,...]",
        help="inject a fault; KIND one of "
        f"{', '.join(FAULT_KINDS + TRANSPORT_FAULTS + DATA_FAULT_KINDS)}; "
        "options route=, symbols=A+B, times=, delay=, status=, retry_after=, "
        "style=, fraction=, chunks=, size=, location=, seed= (repeatable); "
        "data-level KINDs out_of_window, ts_overflow, bad_tz, fuzz (seed=) "
        "lie in a 200 payload",
    )
    args = p.parse_args(argv)
    server = FixtureServer(
        host=args.host,
        port=args.port,
        now=args.now,
        unknown=args.unknown,
        faults=args.fault,
        require_crumb=args.require_crumb,
    )
    try:
        server.start()
    except OSError as exc:  # the port is taken, the host is not ours, ...
        print(
            f"stockbatch serve-fixture: error: cannot listen on {args.host}:{args.port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    print(f"fixture server on {server.url}  (Ctrl-C to stop)", flush=True)
    if args.fault:
        print("faults: " + json.dumps(args.fault), flush=True)
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    return 0
