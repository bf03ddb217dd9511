"""A second benchmark server that is not ours: a plain asyncio HTTP/1.1 keep-alive server
replaying captured responses, so that the end-to-end ratios do not depend on
``stockbatch.testing.FixtureServer``.

It runs in its own process and answers every request from a dictionary of captured
responses keyed by the request target (path and query, verbatim). A target it has not seen is
fetched once from the upstream server (the fixture server) while it is *recording*, and
stored; once *frozen*, an unseen target is answered ``502`` and counted as a miss. The
benchmarks record one unmeasured round per peer and job, freeze, then measure: every measured
byte comes from memory through ~60 lines of standard-library HTTP.

Control (not part of the replayed API): ``GET /__replay/record``, ``/__replay/freeze``,
``/__replay/stats`` (JSON: responses held, hits, misses, CPU seconds of the server process).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import multiprocessing as mp
import os
import time
from urllib.parse import urlsplit

_REASONS = {200: "OK", 404: "Not Found", 502: "Bad Gateway", 400: "Bad Request"}


class _State:
    def __init__(self, upstream: str):
        u = urlsplit(upstream)
        self.host, self.port = u.hostname, u.port
        self.store: dict[str, tuple[int, str, bytes]] = {}
        self.recording = True
        self.hits = self.misses = 0

    def fetch(self, target: str) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request("GET", target)
            r = conn.getresponse()
            return r.status, r.getheader("Content-Type", "application/json"), r.read()
        finally:
            conn.close()

    def answer(self, target: str) -> tuple[int, str, bytes]:
        if target.startswith("/__replay/"):
            what = target[len("/__replay/") :]
            if what == "record":
                self.recording = True
            elif what == "freeze":
                self.recording = False
            t = os.times()
            body = json.dumps(
                {
                    "responses": len(self.store),
                    "hits": self.hits,
                    "misses": self.misses,
                    "recording": self.recording,
                    "cpu_s": t.user + t.system,
                }
            ).encode()
            return 200, "application/json", body
        hit = self.store.get(target)
        if hit is not None:
            self.hits += 1
            return hit
        if not self.recording:
            self.misses += 1
            return 502, "text/plain", b"replay: not captured"
        self.store[target] = got = self.fetch(target)
        return got


async def _serve_conn(
    state: _State, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            close = any(
                x.lower().startswith("connection:") and "close" in x.lower() for x in lines[1:]
            )
            length = next(
                (
                    int(x.split(":", 1)[1])
                    for x in lines[1:]
                    if x.lower().startswith("content-length:")
                ),
                0,
            )
            if length:
                await reader.readexactly(length)
            status, ctype, body = (
                (400, "text/plain", b"GET only") if method != "GET" else state.answer(target)
            )
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n".encode("latin-1")
                + body
            )
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


def _main(upstream: str, port_out) -> None:
    async def run() -> None:
        state = _State(upstream)
        server = await asyncio.start_server(
            lambda r, w: _serve_conn(state, r, w), "127.0.0.1", 0, backlog=1024
        )
        port_out.send(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(run())


class ReplayServer:
    """``with ReplayServer(upstream_url) as srv: srv.url`` — the replay server's process."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.url = ""
        self._proc: mp.Process | None = None

    def __enter__(self) -> ReplayServer:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_main, args=(self.upstream, child), daemon=True)
        self._proc.start()
        if not parent.poll(30):
            raise RuntimeError("replay server did not start")
        self.url = f"http://127.0.0.1:{parent.recv()}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.join(10)

    def control(self, what: str) -> dict:
        u = urlsplit(self.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            conn.request("GET", f"/__replay/{what}")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def record(self) -> dict:
        return self.control("record")

    def freeze(self) -> dict:
        return self.control("freeze")

    def stats(self) -> dict:
        return self.control("stats")


if __name__ == "__main__":  # a manual check: replay the fixture server
    import sys

    with ReplayServer(sys.argv[1]) as srv:
        print(srv.url, flush=True)
        time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 3600)
