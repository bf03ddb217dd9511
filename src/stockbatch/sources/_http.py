"""The one HTTP layer of the HTTP sources (Yahoo chart, Alpha Vantage, generic JSON), on aiohttp.

Why aiohttp: on loopback it costs ~0.1 ms of CPU per request whatever the number in flight,
httpx 0.8-2.5 ms growing with it (``bench/test_http.py``). What this layer adds to aiohttp's
client, for a provider that misbehaves:

* every body is read as a stream with a byte cap, counted on the wire and again after
  decompression (gzip / deflate are inflated here, in bounded steps, never whole): over the
  cap, that request fails with a :class:`ProviderError` naming the cap;
* a total deadline per request (connect + headers + whole body, redirects included), so a
  server dripping one byte a second fails in bounded time;
* redirects followed only within the same origin (scheme, host, port), a few hops at most;
* transport failures and timeouts mapped to :class:`ProviderUnavailable`.

TLS (``ssl=``), proxies (``proxy=``, and ``HTTP(S)_PROXY``/``NO_PROXY`` from the environment),
cookies (a jar per client: Yahoo's crumb) and keep-alive are aiohttp's. A user's own
``aiohttp.ClientSession`` may be passed (``session=``): it is used as is (its headers, cookies,
proxy, TLS settings), with the caps, deadline and redirect rule above applied per request; it is
never closed here.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from .._errors import ProviderError, ProviderUnavailable

__all__ = [
    "HTTPClient",
    "HTTPResponse",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_REDIRECTS",
]

#: Byte cap per response, on the wire and decompressed: 16 MiB. The largest payload the
#: fixture server makes is ~1.5 MB (Alpha Vantage full 1-minute intraday; Yahoo range=max
#: daily is 0.9 MB, an 8-day 1m window with pre/post 0.5 MB): 10x headroom.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
#: Seconds for one whole request: connect, headers, the whole body, redirects included.
DEFAULT_DEADLINE = 30.0
#: Redirect hops followed (same origin only).
DEFAULT_MAX_REDIRECTS = 3

_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_log = logging.getLogger("stockbatch.http")


def _mib(n: int) -> str:
    return f"{n / 1048576:g} MiB" if n >= 1048576 else f"{n} bytes"


class HTTPResponse:
    """A response read whole (within the caps): ``status``, ``headers``, ``body``, ``url``."""

    __slots__ = ("status", "headers", "body", "url")

    def __init__(self, status: int, headers, body: bytes, url: URL):
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<HTTPResponse {self.status} {len(self.body)} bytes>"


class _Inflater:
    """gzip / deflate decoded in steps that never produce more than the room left."""

    def __init__(self, encoding: str):
        self.encoding = encoding
        # gzip: header required; deflate: zlib stream, or raw deflate from broken servers
        self._d = zlib.decompressobj(31 if encoding in ("gzip", "x-gzip") else 15)
        self._first = True

    def feed(self, data: bytes, room: int) -> bytes:
        """Inflate ``data``; at most ``room + 1`` bytes come out (more means over the cap)."""
        try:
            out = self._d.decompress(data, room + 1)
        except zlib.error:
            if not (self._first and self.encoding == "deflate"):
                raise
            self._d = zlib.decompressobj(-15)
            out = self._d.decompress(data, room + 1)
        self._first = False
        return out

    def flush(self) -> bytes:
        return self._d.flush()


class _Fail(Exception):
    """A request-level failure, turned into the source's typed error by ``HTTPClient.get``."""

    def __init__(self, kind: type[ProviderError], message: str, status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status


class HTTPClient:
    """Keep-alive HTTP GETs with byte caps, a total deadline and same-origin redirects.

    Parameters
    ----------
    name : str
        Provider name, for errors.
    concurrency : int
        Connections kept (and requests in flight at once).
    timeout : float
        Seconds to connect, and without a byte while reading.
    deadline : float
        Seconds for the whole request: connect, headers, whole body, redirects.
    max_bytes : int
        Cap of one body, on the wire and after decompression.
    max_redirects : int
        Same-origin redirect hops followed (0: none).
    headers : mapping, optional
        Sent with every request (e.g. User-Agent, an authorization header).
    ssl : bool or ssl.SSLContext
        ``True`` verify with the default CAs, ``False`` do not verify, or a context of your
        own (your CA bundle, a client certificate).
    proxy : str, optional
        Proxy URL for every request; without it ``HTTP(S)_PROXY`` / ``NO_PROXY`` apply
        (``trust_env``).
    trust_env : bool
        Read proxies from the environment (looked up once per origin and kept: aiohttp's own
        ``trust_env`` looks them up, and ``~/.netrc``, in a thread on every request, which
        costs 3x the CPU of the request itself).
    session : aiohttp.ClientSession, optional
        Your own session instead of one built here (used as is; never closed here).
    redact : callable, optional
        Applied to URLs before they are logged or named in an error (hides API keys).
    """

    def __init__(
        self,
        *,
        name: str = "http",
        concurrency: int = 8,
        timeout: float = 10.0,
        deadline: float = DEFAULT_DEADLINE,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        headers: Mapping[str, str] | None = None,
        ssl: Any = True,
        proxy: str | None = None,
        trust_env: bool = True,
        session: aiohttp.ClientSession | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"client= takes an aiohttp.ClientSession (stockbatch's HTTP sources run on "
                f"aiohttp), not {type(session).__module__}.{type(session).__qualname__}; "
                "or pass headers=, ssl=, proxy= and let the source build its own"
            )
        if max_bytes <= 0 or deadline <= 0 or max_redirects < 0:
            raise ValueError("max_bytes and deadline must be positive, max_redirects >= 0")
        self.name = name
        self.concurrency = concurrency
        self.timeout = timeout
        self.deadline = deadline
        self.max_bytes = int(max_bytes)
        self.max_redirects = max_redirects
        self.headers = {"Accept-Encoding": "gzip, deflate", **dict(headers or {})}
        self.ssl = ssl
        self.proxy = proxy
        self.trust_env = trust_env
        self.redact = redact or (lambda s: s)
        self._proxies: dict = {}
        self._own = session is None
        self._session = session
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeout = aiohttp.ClientTimeout(
            total=deadline, sock_connect=timeout, sock_read=timeout
        )

    def __repr__(self) -> str:
        return f"<HTTPClient {self.name!r} max_bytes={self.max_bytes} deadline={self.deadline:g}>"

    # -- session -----------------------------------------------------------------------------
    def session(self) -> aiohttp.ClientSession:
        """The session, made on first use on the running loop (and again on a new loop)."""
        if not self._own:
            assert self._session is not None  # a user's session is given at construction
            return self._session
        loop = asyncio.get_running_loop()
        if self._session is not None and self._loop is loop and not self._session.closed:
            return self._session
        if self._session is not None:
            self._abandon()
        self._loop = loop
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency, ssl=self.ssl),
            headers=self.headers,
            timeout=self._timeout,
            trust_env=False,  # see _proxy
            # cookies from IP hosts (127.0.0.1) too; values sent as set, unquoted, as browsers
            # do (Yahoo's A3 cookie holds "=" and "&")
            cookie_jar=aiohttp.CookieJar(unsafe=True, quote_cookie=False),
            auto_decompress=False,
        )
        # aiohttp silently resends a GET once after a reset; the sources' retry policy does
        # that, counted in their stats and seen by their circuit breaker
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        return self._session

    def _abandon(self) -> None:
        """Forget a session whose loop is gone (it cannot be awaited from this loop)."""
        old, self._session = self._session, None
        if old is None:
            return
        try:
            connector = old.connector
            old.detach()
            if connector is not None:
                connector._close()  # drop its sockets now (sync part of close)
        except Exception:  # noqa: BLE001 - best effort on a dead loop
            pass

    def __del__(self) -> None:
        # a source dropped without aclose(): close the sockets quietly (aiohttp would log
        # "Unclosed client session" at ERROR; httpx, which this replaced, said nothing)
        if getattr(self, "_own", False) and self._session is not None and not self._session.closed:
            self._abandon()

    async def aclose(self) -> None:
        if self._own and self._session is not None:
            session, self._session = self._session, None
            if self._loop is asyncio.get_running_loop():
                await session.close()
            else:
                self._session = session
                self._abandon()

    async def __aenter__(self) -> HTTPClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # -- requests ----------------------------------------------------------------------------
    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        symbol: str | None = None,
        what: str | None = None,
    ) -> HTTPResponse:
        """GET ``url`` (+ ``params``) and read the whole body within the caps.

        Raises ProviderUnavailable (transport failure, timeout, deadline) or ProviderError
        (body over the cap, redirect refused, unknown Content-Encoding), with this client's
        ``name`` and the ``symbol`` given; ``what`` names the request in messages (default
        the symbol).
        """
        label = what or symbol or "request"
        loop = asyncio.get_running_loop()
        session = self.session()
        end = loop.time() + self.deadline
        target = URL(url)
        if params:
            target = target.update_query(params)
        origin = target.origin()
        try:
            for hop in range(self.max_redirects + 1):
                timeout = (
                    self._timeout
                    if hop == 0
                    else aiohttp.ClientTimeout(
                        total=max(0.001, end - loop.time()),
                        sock_connect=self.timeout,
                        sock_read=self.timeout,
                    )
                )
                resp = await self._once(session, target, timeout)
                if isinstance(resp, HTTPResponse):
                    if _log.isEnabledFor(logging.DEBUG):
                        _log.debug(
                            "GET %s -> %s (%d bytes)",
                            self.redact(str(target)),
                            resp.status,
                            len(resp.body),
                        )
                    return resp
                status, location = resp
                try:
                    nxt = target.join(URL(location))
                except ValueError:
                    raise _Fail(
                        ProviderError,
                        f"redirect (HTTP {status}) to an invalid Location refused",
                        status,
                    ) from None
                shown = self.redact(str(nxt.with_query(None).with_fragment(None)))
                if nxt.origin() != origin:
                    raise _Fail(
                        ProviderError,
                        f"redirect (HTTP {status}) to {shown} "
                        f"refused: only the same origin ({origin}) is followed",
                        status,
                    )
                target = nxt
            raise _Fail(
                ProviderError, f"more than {self.max_redirects} redirects (last to {shown})", status
            )
        except _Fail as exc:
            raise exc.kind(
                f"{self.name}: {label}: {exc}", provider=self.name, symbol=symbol, status=exc.status
            ) from None
        except asyncio.TimeoutError:
            left = end - loop.time()
            why = (
                f"no answer within the {self.deadline:g} s deadline"
                if left <= 0.05
                else f"timed out after {self.timeout:g} s"
            )
            raise ProviderUnavailable(
                f"{self.name}: {label}: {why}", provider=self.name, symbol=symbol
            ) from None
        except aiohttp.TooManyRedirects:  # pragma: no cover - redirects are ours
            raise ProviderError(
                f"{self.name}: {label}: too many redirects", provider=self.name, symbol=symbol
            ) from None
        except (aiohttp.ClientError, OSError) as exc:  # reset, refused, protocol errors
            # what went wrong, in one line, secrets masked (aiohttp's text may hold the URL)
            detail = " ".join(self.redact(str(exc)).split())[:200]
            raise ProviderUnavailable(
                f"{self.name}: {label}: connection failed ({type(exc).__name__}"
                + (f": {detail})" if detail else ")"),
                provider=self.name,
                symbol=symbol,
            ) from None

    def _proxy(self, target: URL):
        """``(proxy, proxy_auth)`` for ``target``: ``proxy=``, else the environment's (once per
        origin), else none."""
        if self.proxy is not None or not self.trust_env or not self._own:
            return self.proxy, None
        key = (target.scheme, target.host, target.port)
        hit = self._proxies.get(key)
        if hit is None:
            try:
                hit = get_env_proxy_for_url(target)
            except LookupError:
                hit = (None, None)
            self._proxies[key] = hit
        return hit

    async def _once(
        self, session: aiohttp.ClientSession, target: URL, timeout: aiohttp.ClientTimeout
    ):
        cap = self.max_bytes
        proxy, proxy_auth = self._proxy(target)
        async with session.get(
            target,
            allow_redirects=False,
            auto_decompress=False,
            timeout=timeout,
            proxy=proxy,
            proxy_auth=proxy_auth,
        ) as resp:
            status = resp.status
            if status in _REDIRECTS:
                location = resp.headers.get("Location")
                if location is not None:
                    return status, location
            length = resp.content_length
            if length is not None and length > cap:
                raise _Fail(
                    ProviderError,
                    f"body of {length} bytes (Content-Length) is over "
                    f"the {_mib(cap)} cap (max_bytes={cap})",
                    status,
                )
            encoding = resp.headers.get("Content-Encoding", "").strip().lower()
            if encoding in ("", "identity") and length is not None:
                # bounded by Content-Length, which is within the cap: one read
                return HTTPResponse(status, resp.headers, await resp.read(), resp.url)
            if encoding in ("", "identity"):
                inflater = None
            elif encoding in ("gzip", "x-gzip", "deflate"):
                inflater = _Inflater(encoding)
            else:
                raise _Fail(ProviderError, f"unsupported Content-Encoding {encoding!r}", status)
            parts: list[bytes] = []
            wire = size = 0
            try:
                async for chunk in resp.content.iter_any():
                    wire += len(chunk)
                    if wire > cap:
                        raise _Fail(
                            ProviderError,
                            f"body over the {_mib(cap)} cap (max_bytes={cap}) on the wire",
                            status,
                        )
                    if inflater is not None:
                        chunk = inflater.feed(chunk, cap - size)
                    size += len(chunk)
                    if size > cap:
                        raise _Fail(
                            ProviderError,
                            f"body over the {_mib(cap)} cap "
                            f"(max_bytes={cap}) after {encoding} decompression "
                            f"({wire} bytes on the wire)",
                            status,
                        )
                    parts.append(chunk)
                if inflater is not None:
                    tail = inflater.flush()
                    size += len(tail)
                    if size > cap:
                        raise _Fail(
                            ProviderError,
                            f"body over the {_mib(cap)} cap "
                            f"(max_bytes={cap}) after {encoding} decompression",
                            status,
                        )
                    parts.append(tail)
            except zlib.error as exc:
                raise _Fail(ProviderError, f"corrupt {encoding} body ({exc})", status) from None
            except _Fail:
                resp.close()  # drop the connection: the rest of the body is never read
                raise
            return HTTPResponse(status, resp.headers, b"".join(parts), resp.url)
