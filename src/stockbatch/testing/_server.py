"""A real HTTP/1.1 server on loopback that speaks Yahoo's and Alpha Vantage's APIs.

asyncio streams with keep-alive, run in a background thread (default) or a child process
(``process=True``, so that a benchmark's client does not share the server's GIL). Generated
payloads are cached, so the server costs a dictionary lookup and a socket write per request.

Routes
------
``GET /v8/finance/chart/{symbol}``   Yahoo chart (``period1``/``period2`` or ``range``,
                                      ``interval``, ``events``, ``includePrePost``)
``GET /v7/finance/quote?symbols=``    Yahoo quote, many symbols per call
``GET /v10/finance/quoteSummary/{symbol}?modules=``  company profile modules (``.info``)
``GET /ws/fundamentals-timeseries/v1/finance/timeseries/{symbol}``  empty series
``GET /query?function=…``             Alpha Vantage TIME_SERIES_DAILY / TIME_SERIES_INTRADAY
``GET /``                             the cookie endpoint (Yahoo's fc.yahoo.com): sets ``A3``
``GET /v1/test/getcrumb``             the crumb (needs the cookie when crumbs are required)
``GET|POST|DELETE /__fixture__/faults``  add / clear faults (JSON), ``GET /__fixture__/stats``

Route names for faults: ``chart``, ``quote``, ``summary``, ``timeseries``, ``alphavantage``,
``cookie``, ``crumb`` (or ``*``).
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import multiprocessing as mp
import secrets
import socket
import struct
import threading
import urllib.request
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import _hostile
from ._hostile import DATA_FAULT_KINDS
from ._payloads import JSON_CT, PayloadBuilder

__all__ = ["FixtureServer", "Fault", "FAULT_KINDS", "TRANSPORT_FAULTS", "DATA_FAULT_KINDS"]

FAULT_KINDS = ("latency", "status", "rate_limit", "malformed", "truncate", "reset", "slow_body")
# -- transport faults (hostile servers: issue 12), served by _Handler.transport_fault ---------
#: ``drip``: the real answer one byte every ``delay`` s (default 1 s); ``endless``: a chunked
#: body that never ends; ``huge``: ``Content-Length: size`` (default 500 MB) and that many
#: bytes; ``gzip_bomb``: ``Content-Encoding: gzip``, ``size`` zero bytes (default 1 GB) in
#: ~1 MB on the wire; ``gzip``: the real answer gzipped (a well-behaved server, not a fault);
#: ``redirect``: 302 to ``location`` (``host``: the same port on 127.0.0.2; ``self``: the same
#: URL again; else a URL or path where ``{target}`` is the request's path and query).
#: (Kept apart from FAULT_KINDS, whose every kind the sources' retry/failover tables cover;
#: these are covered by tests/integration/test_http_hostile.py.)
TRANSPORT_FAULTS = ("drip", "endless", "huge", "gzip_bomb", "gzip", "redirect")
# data-level kinds (DATA_FAULT_KINDS: a 200 answer whose payload lies) live in _hostile.py

_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class Fault:
    """One injected fault.

    Parameters
    ----------
    kind : str
        ``latency`` (wait ``delay`` s, then answer normally), ``status`` (answer ``status``,
        e.g. 500/503), ``rate_limit`` (429 with ``Retry-After: retry_after``; on the Alpha
        Vantage route HTTP 200 with ``{"Note": …}`` or, with ``style="information"``,
        ``{"Information": …}``; with ``max_in_flight=N`` only a request that finds N of
        its route's requests already in flight is refused, the others answer normally after
        ``delay`` s: a provider that limits concurrency), ``malformed`` (valid-looking body with a corrupted byte
        range), ``truncate`` (the JSON cut at ``fraction`` of its length, with a matching
        Content-Length), ``reset`` (TCP RST instead of an answer), ``slow_body`` (the body in
        ``chunks`` pieces ``delay`` s apart). Data-level kinds (a 200 answer whose payload
        lies; chart and Alpha Vantage routes): ``out_of_window`` (extra 1969 and 9999 bars),
        ``ts_overflow`` (a timestamp whose microseconds overflow int64), ``bad_tz`` (zone
        ``Mars/Olympus``), ``echo_secret`` (Alpha Vantage echoes the key), ``fuzz`` (seeded
        random mutation, ``seed``) — see ``_hostile``.
    route : str
        ``chart``, ``quote``, ``alphavantage``, ``cookie``, ``crumb`` or ``*``.
    symbols : list of str, optional
        Only for these symbols (upper-cased match); default all.
    times : int, optional
        Fire for the first ``times`` matching requests, then recover; default: always.
    """

    kind: str
    route: str = "*"
    symbols: list[str] | None = None
    times: int | None = None
    delay: float = 0.0
    status: int = 503
    retry_after: float | None = 1.0
    style: str = "note"
    fraction: float = 0.5
    chunks: int = 4
    seed: int = 0  # data-level "fuzz": seed of the mutations
    # transport faults (TRANSPORT_FAULTS): body size in bytes (0: the kind's default) and the
    # redirect target
    size: int = 0
    location: str = "host"
    max_in_flight: int = 0  # rate_limit: refuse only beyond this many requests in flight
    fired: int = field(default=0)

    def __post_init__(self):
        kinds = FAULT_KINDS + TRANSPORT_FAULTS + DATA_FAULT_KINDS
        if self.kind not in kinds:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {kinds}")
        self.size = int(self.size)  # (from the command line it comes as text)
        self.max_in_flight = int(self.max_in_flight)
        if self.symbols is not None:
            self.symbols = [s.upper() for s in self.symbols]

    def matches(self, route: str, symbols: list[str]) -> bool:
        if self.route not in ("*", route):
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        if self.symbols is not None and not any(s.upper() in self.symbols for s in symbols):
            return False
        return True


class _Config:
    """State shared by the request handlers (mutated only on the server's loop thread or under
    the lock)."""

    def __init__(self, *, now, unknown, require_crumb, av_keys, faults):
        self.data = PayloadBuilder(now=now, unknown=unknown)
        self.require_crumb = require_crumb
        self.av_keys = frozenset(av_keys) if av_keys is not None else None
        self.faults: list[Fault] = [f if isinstance(f, Fault) else Fault(**f) for f in faults]
        self.lock = threading.Lock()
        self.hits: Counter = Counter()
        self.cookie = "A3=d=" + secrets.token_hex(8)
        self.crumb = secrets.token_urlsafe(8)
        self.requests = 0
        self.in_flight: Counter = Counter()  # route -> requests admitted by max_in_flight

    def take_fault(self, route: str, symbols: list[str]) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.matches(route, symbols):
                    f.fired += 1
                    return f
        return None

    def stats(self) -> dict:
        with self.lock:
            return {
                "requests": self.requests,
                "renders": self.data.renders,
                "hits": {f"{r}:{s}": n for (r, s), n in self.hits.items()},
                "faults": [asdict(f) for f in self.faults],
            }


def _head(status: int, content_type: str, length: int, extra=(), close=False) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
        "Connection: close" if close else "Connection: keep-alive",
    ]
    lines += [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _corrupt(body: bytes) -> bytes:
    # Replace a stretch in the middle with bytes no JSON document may contain there.
    mid = len(body) // 2
    return body[:mid] + b"}\x01nul:[" + body[mid + 7 :]


class _Handler:
    def __init__(self, cfg: _Config):
        self.cfg = cfg
        self.writers: set = set()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.writers.add(writer)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            # the server is shutting down with this keep-alive connection open; ending the
            # task quietly spares asyncio's "Exception in callback" report (3.11 streams)
            writer.transport.abort()
        finally:
            self.writers.discard(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    break
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    writer.write(_head(400, "text/plain", 0, close=True))
                    break
                headers = {}
                for line in lines[1:]:
                    k, sep, v = line.partition(":")
                    if sep:
                        headers[k.strip().lower()] = v.strip()
                body = b""
                n = int(headers.get("content-length", "0") or 0)
                if n:
                    body = await reader.readexactly(n)
                close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
                keep = await self.respond(method, target, headers, body, writer, close)
                if not keep or close:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        try:
            await writer.drain()
            writer.close()
        except (ConnectionError, RuntimeError):
            pass

    async def respond(self, method, target, headers, body, writer, close) -> bool:
        cfg = self.cfg
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        cfg.requests += 1
        extra = []
        if path.startswith("/v8/finance/chart/"):
            route, symbols = "chart", [path[len("/v8/finance/chart/") :]]
        elif path == "/v7/finance/quote":
            route = "quote"
            symbols = [s for s in query.get("symbols", "").split(",") if s]
        elif path.startswith("/v10/finance/quoteSummary/"):  # company info (compat)
            route, symbols = "summary", [path[len("/v10/finance/quoteSummary/") :]]
        elif path.startswith("/ws/fundamentals-timeseries/v1/finance/timeseries/"):
            route, symbols = "timeseries", [path.rsplit("/", 1)[1]]
        elif path == "/query":
            route, symbols = "alphavantage", [query.get("symbol", "")]
        elif path == "/v1/test/getcrumb":
            route, symbols = "crumb", []
        elif path == "/":
            route, symbols = "cookie", []
        elif path.startswith("/__fixture__/"):
            return self.admin(method, path, body, writer, close)
        else:
            writer.write(_head(404, "text/plain", 9, close=close) + b"Not Found")
            return True
        with cfg.lock:
            for s in symbols or [""]:
                cfg.hits[(route, s)] += 1
        fault = cfg.take_fault(route, symbols)
        if fault is not None and fault.kind == "latency":
            await asyncio.sleep(fault.delay)
            fault = None
        if (
            fault is not None
            and fault.kind == "rate_limit"
            and fault.max_in_flight
            and cfg.in_flight[route] < fault.max_in_flight
        ):
            cfg.in_flight[route] += 1  # (the loop's thread only)
            try:
                await asyncio.sleep(fault.delay)
            finally:
                cfg.in_flight[route] -= 1
            fault = None
        if fault is not None and fault.kind == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER 0: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if fault is not None and fault.kind == "status":
            msg = _REASONS.get(fault.status, "Error").encode()
            writer.write(_head(fault.status, "text/plain", len(msg), close=close) + msg)
            return True
        if fault is not None and fault.kind == "rate_limit":
            if route == "alphavantage":
                key = "Information" if fault.style == "information" else "Note"
                msg = json.dumps(
                    {
                        key: (
                            "Thank you for using Alpha Vantage! Our standard API rate limit is 25 "
                            "requests per day. Please subscribe to any of the premium plans at "
                            "https://www.alphavantage.co/premium/ to instantly remove all daily rate "
                            "limits."
                        )
                    }
                ).encode()
                writer.write(_head(200, JSON_CT, len(msg), close=close) + msg)
                return True
            msg = b"Too Many Requests\r\n"
            ra = (
                [("Retry-After", f"{fault.retry_after:g}")] if fault.retry_after is not None else []
            )
            writer.write(_head(429, "text/plain", len(msg), ra, close=close) + msg)
            return True

        # cookie / crumb handshake
        if route == "cookie":
            extra.append(("Set-Cookie", f"{cfg.cookie}; Max-Age=31557600; Path=/; SameSite=None"))
            msg = b"Not Found"  # fc.yahoo.com answers 404 with the cookie
            writer.write(_head(404, "text/html", len(msg), extra, close=close) + msg)
            return True
        if route == "crumb":
            if cfg.require_crumb and cfg.cookie not in headers.get("cookie", ""):
                msg = b"Unauthorized"
                writer.write(_head(401, "text/plain", len(msg), close=close) + msg)
                return True
            msg = cfg.crumb.encode()
            writer.write(_head(200, "text/plain;charset=utf-8", len(msg), close=close) + msg)
            return True
        if (
            cfg.require_crumb
            and route in ("chart", "quote", "summary")
            and (query.get("crumb") != cfg.crumb or cfg.cookie not in headers.get("cookie", ""))
        ):
            msg = json.dumps(
                {
                    "finance": {
                        "result": None,
                        "error": {"code": "Unauthorized", "description": "Invalid Crumb"},
                    }
                }
            ).encode()
            writer.write(_head(401, JSON_CT, len(msg), close=close) + msg)
            return True

        if route == "chart":
            status, ct, payload, more = cfg.data.chart(symbols[0], query)
        elif route == "quote":
            status, ct, payload, more = cfg.data.quote(symbols)
        elif route == "summary":  # company info (compat)
            status, ct, payload, more = cfg.data.quote_summary(symbols[0], query)
        elif route == "timeseries":
            status, ct, payload, more = cfg.data.timeseries(symbols[0])
        else:
            status, ct, payload, more = cfg.data.alphavantage(query, keys=cfg.av_keys)
        extra.extend(more)
        # -- data-level faults (a well-formed answer whose payload lies) ----------------------
        if fault is not None and fault.kind == "echo_secret":
            if route == "alphavantage":
                status, ct = 200, JSON_CT
                payload, echoed = _hostile.echo_secret(query)
                extra.extend(echoed)
            fault = None
        if fault is not None and fault.kind in DATA_FAULT_KINDS:
            if status == 200 and route in ("chart", "alphavantage"):
                payload = _hostile.apply(
                    fault.kind, route, payload, seed=fault.seed, fired=fault.fired
                )
            fault = None
        # -- transport-level faults on the payload -------------------------------------------
        if fault is not None and fault.kind == "malformed":
            payload = _corrupt(payload)
        elif fault is not None and fault.kind == "truncate":
            payload = payload[: max(1, int(len(payload) * fault.fraction))]
        if fault is not None and fault.kind in TRANSPORT_FAULTS:
            return await transport_fault(fault, target, status, ct, payload, writer, self.cfg)
        if fault is not None and fault.kind == "slow_body":
            writer.write(_head(status, ct, len(payload), extra, close=close))
            step = max(1, -(-len(payload) // max(1, fault.chunks)))
            for i in range(0, len(payload), step):
                writer.write(payload[i : i + step])
                await writer.drain()
                await asyncio.sleep(fault.delay)
            return True
        writer.write(_head(status, ct, len(payload), extra, close=close) + payload)
        if writer.transport.get_write_buffer_size() > 1 << 16:
            await writer.drain()
        return True

    def admin(self, method, path, body, writer, close) -> bool:
        cfg = self.cfg
        status = 200
        out: dict[str, Any]
        if path == "/__fixture__/faults" and method == "POST":
            spec = json.loads(body or b"{}")
            with cfg.lock:
                cfg.faults.append(Fault(**spec))
            out = {"ok": True}
        elif path == "/__fixture__/faults" and method == "DELETE":
            with cfg.lock:
                cfg.faults.clear()
            out = {"ok": True}
        elif path == "/__fixture__/config" and method == "POST":
            spec = json.loads(body or b"{}")
            if "require_crumb" in spec:
                cfg.require_crumb = bool(spec["require_crumb"])
            out = {"ok": True}
        elif path == "/__fixture__/stats":
            out = cfg.stats()
        elif path == "/__fixture__/reset-stats" and method == "POST":
            with cfg.lock:
                cfg.hits.clear()
                cfg.requests = 0
            out = {"ok": True}
        else:
            status, out = 404, {"error": "no such admin route"}
        msg = json.dumps(out).encode()
        writer.write(_head(status, "application/json", len(msg), close=close) + msg)
        return True


# -- transport faults -----------------------------------------------------------------------
_BLOCK = b" " * (1 << 20)  # what huge / endless bodies are made of (JSON whitespace)


@functools.lru_cache(maxsize=4)
def _gzip_zeros(size: int) -> bytes:
    """A valid gzip member of ``size`` zero bytes (1 GB -> ~1 MB), made in well under a
    second: one 1 MiB block is deflated after a full flush (which resets the compressor, so
    every later block deflates to the same bytes) and those bytes are repeated."""
    mib = 1 << 20
    block = bytes(mib)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    n, rest = divmod(size, mib)
    parts = [first] if n else []
    parts += [again] * max(0, n - 1)
    parts.append(comp.compress(bytes(rest)) + comp.flush())
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(bytes(rest), crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + b"".join(parts) + struct.pack("<II", crc, size & 0xFFFFFFFF)


async def transport_fault(
    fault: Fault,
    target: str,
    status: int,
    ct: str,
    payload: bytes,
    writer: asyncio.StreamWriter,
    cfg: _Config,
) -> bool:
    """Serve one of TRANSPORT_FAULTS; always closes the connection afterwards (False)."""
    kind = fault.kind
    try:
        if kind == "redirect":
            where = fault.location
            if where == "host":
                port = writer.get_extra_info("sockname")[1]
                where = f"http://127.0.0.2:{port}{target}"
            elif where == "self":
                where = target
            else:
                where = where.replace("{target}", target)
            msg = b"Found"
            writer.write(
                _head(302, "text/plain", len(msg), [("Location", where)], close=True) + msg
            )
        elif kind == "drip":
            writer.write(_head(status, ct, len(payload), close=True))
            delay = fault.delay or 1.0
            for i in range(len(payload)):
                writer.write(payload[i : i + 1])
                await writer.drain()
                await asyncio.sleep(delay)
        elif kind == "huge":
            size = fault.size or 500_000_000
            writer.write(_head(200, ct, size, close=True))
            sent = 0
            while sent < size:
                n = min(len(_BLOCK), size - sent)
                writer.write(_BLOCK[:n] if n < len(_BLOCK) else _BLOCK)
                sent += n
                await writer.drain()
        elif kind == "endless":
            head = _head(200, ct, 0, close=True).replace(
                b"Content-Length: 0", b"Transfer-Encoding: chunked"
            )
            writer.write(head)
            chunk = b"%x\r\n" % len(_BLOCK) + _BLOCK + b"\r\n"
            for _ in range(100_000):  # 100 GB: "never" (stops when the client goes away)
                writer.write(chunk)
                await writer.drain()
        elif kind in ("gzip_bomb", "gzip"):
            body = (
                gzip.compress(payload)
                if kind == "gzip"
                else _gzip_zeros(fault.size or 1_000_000_000)
            )
            writer.write(
                _head(status, ct, len(body), [("Content-Encoding", "gzip")], close=True) + body
            )
            await writer.drain()
    except (ConnectionError, RuntimeError):
        pass  # the client hung up: what a client that gives up does
    return False


def _tls_context(tls):
    """Server TLS context from ``(certfile, keyfile)``, or None for plain HTTP."""
    if tls is None:
        return None
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*tls)
    return ctx


async def _start(cfg: _Config, host: str, port: int, tls=None):
    return await asyncio.start_server(
        _Handler(cfg), host, port, backlog=1024, ssl=_tls_context(tls), reuse_address=True
    )


def _process_main(spec: dict, conn) -> None:
    """Child-process entry point: serve until the parent closes the pipe."""
    cfg = _Config(**spec["config"])

    async def main():
        server = await _start(cfg, spec["host"], spec["port"], spec.get("tls"))
        conn.send(server.sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_reader(conn.fileno(), stop.set)  # the parent closed its end: stop
        async with server:
            await stop.wait()

    asyncio.run(main())


class FixtureServer:
    """The fixture server: a context manager with ``.url``.

    Parameters
    ----------
    host, port : str, int
        Where to listen (``port=0`` picks a free port). Only loopback is meant.
    now : float, optional
        Fixed clock for ``range=`` requests (epoch seconds); default: the wall clock.
    unknown : iterable of str
        Extra symbols answered with 404 (besides names starting with ``UNKNOWN``/``INVALID``).
    faults : iterable of Fault or dict
        Initial faults; more with :meth:`add_fault`.
    require_crumb : bool
        Demand Yahoo's cookie + crumb on chart and quote requests (401 "Invalid Crumb").
    av_keys : iterable of str, optional
        Alpha Vantage keys accepted (default: any non-empty key).
    process : bool
        Serve from a child process instead of a thread (for benchmarks).
    tls : (certfile, keyfile), optional
        Serve HTTPS with this certificate (``.url`` then starts with ``https``).

    Examples
    --------
    >>> with FixtureServer() as srv:                                    # doctest: +SKIP
    ...     httpx.get(f"{srv.url}/v8/finance/chart/AAPL?range=1y&interval=1d")
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        now: float | None = None,
        unknown=(),
        faults=(),
        require_crumb: bool = False,
        av_keys=None,
        process: bool = False,
        tls: tuple[str, str] | None = None,
    ):
        self.host = host
        self.port = port
        self.process = process
        self.tls = tuple(tls) if tls is not None else None
        self._spec: dict[str, Any] = {
            "now": now,
            "unknown": list(unknown),
            "faults": [asdict(f) if isinstance(f, Fault) else dict(f) for f in faults],
            "require_crumb": require_crumb,
            "av_keys": list(av_keys) if av_keys is not None else None,
        }
        self._cfg: _Config | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._proc: Any = None  # the spawned server process (process=True)
        self._conn: Any = None  # its admin pipe

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        if not self.port:
            raise RuntimeError("the fixture server is not started")
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> FixtureServer:
        if self.process:
            ctx = mp.get_context("spawn")
            parent, child = ctx.Pipe()
            proc = self._proc = ctx.Process(
                target=_process_main,
                args=(
                    {"host": self.host, "port": self.port, "config": self._spec, "tls": self.tls},
                    child,
                ),
                daemon=True,
            )
            proc.start()
            child.close()
            if not parent.poll(30):
                proc.kill()
                raise RuntimeError("the fixture server process did not start")
            self.port = parent.recv()
            self._conn = parent
            return self
        cfg = self._cfg = _Config(**self._spec)
        ready = threading.Event()
        failure: list[BaseException] = []

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._handler = _Handler(cfg)
            try:
                server = self._server = loop.run_until_complete(
                    asyncio.start_server(
                        self._handler,
                        self.host,
                        self.port,
                        backlog=1024,
                        ssl=_tls_context(self.tls),
                        reuse_address=True,
                    )
                )
                self.port = server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            server.close()
            for writer in list(self._handler.writers):  # open keep-alive connections
                writer.transport.abort()
            tasks = asyncio.all_tasks(loop)
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=5))
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="stockbatch-fixture", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._conn.close()
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
            self._proc = None
        elif self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> FixtureServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.port else "not started"
        return f"<FixtureServer {where} {'process' if self.process else 'thread'}>"

    # -- control -----------------------------------------------------------------------------
    def _admin(self, method: str, path: str, payload=None):
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def add_fault(self, kind: str, **options) -> Fault:
        """Inject a fault (see :class:`Fault` for the options) and return it."""
        fault = Fault(kind, **options)
        if self._cfg is not None:
            with self._cfg.lock:
                self._cfg.faults.append(fault)
        else:
            spec = asdict(fault)
            spec.pop("fired")
            self._admin("POST", "/__fixture__/faults", spec)
        return fault

    def clear_faults(self) -> None:
        """Remove every fault."""
        if self._cfg is not None:
            with self._cfg.lock:
                self._cfg.faults.clear()
        else:
            self._admin("DELETE", "/__fixture__/faults")

    @property
    def require_crumb(self) -> bool:
        return (
            self._cfg.require_crumb if self._cfg is not None else bool(self._spec["require_crumb"])
        )

    @require_crumb.setter
    def require_crumb(self, value: bool) -> None:
        self._spec["require_crumb"] = bool(value)
        if self._cfg is not None:
            self._cfg.require_crumb = bool(value)
        elif self._proc is not None:
            self._admin("POST", "/__fixture__/config", {"require_crumb": bool(value)})

    def stats(self) -> dict:
        """``{"requests": n, "hits": {"route:SYMBOL": n}, "faults": [...]}``."""
        return (
            self._cfg.stats() if self._cfg is not None else self._admin("GET", "/__fixture__/stats")
        )

    def hits(self, route: str, symbol: str = "") -> int:
        """Requests received on ``route`` for ``symbol``."""
        return self.stats()["hits"].get(f"{route}:{symbol}", 0)

    def reset_stats(self) -> None:
        if self._cfg is not None:
            with self._cfg.lock:
                self._cfg.hits.clear()
                self._cfg.requests = 0
        else:
            self._admin("POST", "/__fixture__/reset-stats", {})
