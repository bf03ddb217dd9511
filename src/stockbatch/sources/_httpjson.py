"""Any JSON endpoint as a bar source: a URL template and a field mapping."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from .._arrow import array, empty_batch
from .._errors import (
    DecodeError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    SchemaError,
    SymbolNotFound,
)
from .._redact import redact, uri_secrets
from ..schema import BARS, conform
from ._base import HTTPOptions, HTTPSource, clip_window, url_segment, window

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["HTTPJSONSource"]

_UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1}


def _path(doc, path: str):
    """Follow ``a.b.0.c`` through dicts and lists; None when absent. A key that itself
    contains dots (Alpha Vantage's ``"1. open"``) is matched whole first."""
    cur = doc
    while path:
        if isinstance(cur, dict) and path in cur:
            return cur[path]
        part, _, path = path.partition(".")
        if isinstance(cur, list):
            try:
                cur = cur[int(part)]
            except (ValueError, IndexError):
                return None
        elif isinstance(cur, dict):
            if part not in cur:
                return None
            cur = cur[part]
        else:
            return None
    return cur


_CREDENTIAL_HEADERS = (
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-access-token",
    "cookie",
)


def _secrets_of(url_template: str, headers) -> tuple[str, ...]:
    """Secrets of a generic source: credential header values (and their last word, the token
    of ``Bearer <token>``), the template's URI password and its secret-looking query values."""
    found: list[str] = []
    for name, value in dict(headers or {}).items():
        if str(name).lower() in _CREDENTIAL_HEADERS and value:
            found += [str(value), str(value).split()[-1]]
    found += uri_secrets(url_template)
    for key, value in parse_qsl(urlsplit(url_template).query, keep_blank_values=False):
        if _SECRET_PARAM.search(key) and "{" not in value:
            found.append(value)
    return tuple(dict.fromkeys(s for s in found if s))


_SECRET_PARAM = re.compile(r"(?i)key|token|secret|pass|auth|sig")


class HTTPJSONSource(HTTPSource):
    """Bars from any JSON API.

    Parameters
    ----------
    url_template : str
        Formatted with ``symbol``, ``interval``, ``start``/``end`` (epoch seconds, or empty)
        and ``period``, e.g. ``"https://api.example/bars/{symbol}?i={interval}&from={start}"``.
    fields : mapping
        Canonical column → path: ``ts`` (required), ``open``, ``high``, ``low``, ``close``,
        ``adj_close``, ``volume``. With ``records`` the paths are inside each record (``$key``
        means the record's key when ``records`` points at an object); without, each path
        points at a whole array (columnar payloads).
    records : str, optional
        Path of the list (or object) of records.
    ts_unit : {"s", "ms", "us", "iso"}
        How ``ts`` values are written; ``iso`` strings without an offset are read in ``tz``.
    tz : str
        Zone of naive ISO times, also stored as ``stockbatch.tz``.
    name : str
        Provider name for the ``source`` column and errors.
    headers : mapping, optional
        Extra request headers (e.g. an authorization header; never shown in errors).
    timeout, deadline, max_bytes, max_redirects, ssl, proxy, client
        As for :class:`YahooChartSource` (``client``: your own ``aiohttp.ClientSession``).

    Symbols (:meth:`normalize_symbol`): the generic rule of :class:`Source` — case kept (an
    arbitrary API may be case-sensitive), surrounding whitespace stripped, 1-64 printable
    characters without whitespace. The symbol is put into the template percent-encoded
    (:func:`url_segment`), so it is one path segment or one query value wherever the
    template places it.
    """

    def __init__(
        self,
        url_template: str,
        *,
        fields: Mapping[str, str],
        records: str | None = None,
        ts_unit: str = "s",
        tz: str = "UTC",
        name: str = "http",
        rate: float = 20.0,
        burst: int = 10,
        timeout: float = 10.0,
        concurrency: int = 8,
        **options: Unpack[HTTPOptions],
    ) -> None:
        if "ts" not in fields:
            raise ValueError("fields needs a 'ts' path")
        unknown = set(fields) - {"ts", "open", "high", "low", "close", "adj_close", "volume"}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        if ts_unit not in (*_UNITS, "iso"):
            raise ValueError("ts_unit must be s, ms, us or iso")
        self.name = name  # before the HTTP client is made: it names the source in errors
        super().__init__(
            rate=rate, burst=burst, timeout=timeout, concurrency=concurrency, **options
        )
        self.url_template = url_template
        self.fields = dict(fields)
        self.records = records
        self.ts_unit = ts_unit
        self.tz = tz
        self.__secrets = _secrets_of(url_template, options.get("headers"))

    def _secrets(self) -> tuple[str, ...]:
        return self.__secrets

    def __repr__(self) -> str:
        where = redact(self.url_template.split("?")[0], self.__secrets)
        return f"<HTTPJSONSource {self.name!r} {where!r}>"

    def _columns(self, doc: Any) -> dict[str, Any]:
        if self.records is None:
            return {k: _path(doc, p) for k, p in self.fields.items()}
        recs = _path(doc, self.records)
        if isinstance(recs, dict):
            items = list(recs.items())
        elif isinstance(recs, list):
            items = list(enumerate(recs))
        else:
            return {k: None for k in self.fields}
        cols: dict[str, list] = {k: [] for k in self.fields}
        for key, rec in items:
            for k, p in self.fields.items():
                cols[k].append(key if p == "$key" else _path(rec, p))
        return cols

    def _decode(self, content: bytes, symbol: str, interval: str) -> pa.RecordBatch:
        try:
            doc = json.loads(content)
        except ValueError as exc:
            raise DecodeError(
                f"{self.name}: {symbol}: invalid JSON ({exc})",
                provider=self.name,
                symbol=symbol,
                position=getattr(exc, "pos", None),
            ) from None
        cols = self._columns(doc)
        ts = cols.get("ts")
        if not isinstance(ts, list):
            raise SymbolNotFound(
                f"{self.name}: {symbol}: no bars in the answer", provider=self.name, symbol=symbol
            )
        n = len(ts)
        try:
            if self.ts_unit == "iso":
                stamps = []
                for v in ts:
                    t = dt.datetime.fromisoformat(str(v))
                    stamps.append(t)
                naive = all(t.tzinfo is None for t in stamps)
                if naive:
                    arr = pc.assume_timezone(
                        array(stamps, pa.timestamp("us")),
                        self.tz,
                        ambiguous="earliest",
                        nonexistent="earliest",
                    )
                else:
                    arr = array(
                        [t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc) for t in stamps],
                        pa.timestamp("us", tz="UTC"),
                    )
            else:
                arr = array(
                    [None if v is None else int(v) * _UNITS[self.ts_unit] for v in ts], pa.int64()
                ).cast(pa.timestamp("us", tz="UTC"))
            data = {"ts": arr}
            for k in ("open", "high", "low", "close", "adj_close", "volume"):
                v = cols.get(k)
                if v is None:  # not mapped, or absent from the answer: all null
                    data[k] = pa.nulls(n, pa.int64() if k == "volume" else pa.float64())
                    continue
                if not isinstance(v, list) or len(v) != n:
                    raise ValueError(f"{k} does not line up with ts")
                conv = (
                    [None if x is None else float(x) for x in v]
                    if k != "volume"
                    else [None if x is None else int(float(x)) for x in v]
                )
                data[k] = array(conv, pa.float64() if k != "volume" else pa.int64())
            data["symbol"] = array([symbol] * n, pa.string())
            table = conform(pa.table(data), BARS, interval=interval, source=self.name)
        except (ValueError, TypeError, pa.ArrowInvalid, SchemaError) as exc:
            raise DecodeError(
                f"{self.name}: {symbol}: {exc}", provider=self.name, symbol=symbol
            ) from None
        md = dict(BARS.metadata)
        md[b"stockbatch.tz"] = self.tz.encode()
        table = table.replace_schema_metadata(md).combine_chunks()
        batches = table.to_batches()
        return batches[0] if batches else empty_batch(table.schema)

    async def fetch_history(
        self, symbol: str, *, interval: str = "1d", start=None, end=None, period: str | None = None
    ) -> pa.RecordBatch:
        symbol = self.normalize_symbol(symbol)
        p1, p2, period = window(interval, start, end, period)
        url = self.url_template.format(
            symbol=url_segment(symbol),
            interval=interval,
            start="" if p1 is None else p1,
            end="" if p2 is None else p2,
            period=period or "",
        )
        key = f"{self.name}|{url}"

        async def run() -> pa.RecordBatch:
            resp = await self._http.get(url, symbol=symbol)
            status = resp.status
            if status == 429:
                ra = resp.headers.get("retry-after")
                raise RateLimited(
                    f"{self.name}: {symbol}: HTTP 429",
                    provider=self.name,
                    symbol=symbol,
                    status=status,
                    retry_after=float(ra) if ra and ra.isdigit() else None,
                )
            if status == 404:
                raise SymbolNotFound(
                    f"{self.name}: {symbol}: HTTP 404",
                    provider=self.name,
                    symbol=symbol,
                    status=status,
                )
            if status >= 500:
                raise ProviderUnavailable(
                    f"{self.name}: {symbol}: HTTP {status}",
                    provider=self.name,
                    symbol=symbol,
                    status=status,
                )
            if status != 200:
                raise ProviderError(
                    f"{self.name}: {symbol}: HTTP {status}",
                    provider=self.name,
                    symbol=symbol,
                    status=status,
                )
            batch, dropped = clip_window(
                self._decode(resp.body, symbol, interval), interval, p1, p2, period
            )
            self.stats.out_of_window += dropped
            return batch

        return await self._call(key, symbol, run)
