"""Data-level faults of the fixture server: well-formed HTTP answers whose payload lies.

Each takes the payload the server would have sent (JSON bytes of a chart or Alpha Vantage
answer) and returns the hostile one; the transport is untouched (transport faults live in
``_server.py``). Kinds:

``out_of_window``  two extra bars stamped 1969-12-31 and 9999-12-31 (chart: first and last;
                   Alpha Vantage: two more dates), whatever window was asked
``ts_overflow``    the first chart timestamp becomes 2**62 s (its microseconds overflow int64);
                   on Alpha Vantage a date in year 10000 (no such date)
``bad_tz``         the exchange time zone becomes ``Mars/Olympus``
``echo_secret``    Alpha Vantage answers HTTP 200 ``{"Error Message": …}`` echoing the ``apikey``
                   it received percent-encoded and JSON-escaped (as providers do), plus an
                   ``X-Echo-Key`` header with it
``fuzz``           a seeded random mutation of the JSON tree (values swapped for hostile ones:
                   huge or negative numbers, wrong types, lone surrogates, unknown zones…, keys
                   dropped); seed ``seed`` plus the number of times the fault fired, so a run
                   is reproducible
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any
from urllib.parse import quote

__all__ = ["DATA_FAULT_KINDS", "apply", "mutate", "echo_secret"]

DATA_FAULT_KINDS = ("out_of_window", "ts_overflow", "bad_tz", "echo_secret", "fuzz")

TS_1969 = -86400  # 1969-12-31T00:00:00Z
TS_9999 = 253402214400  # 9999-12-31T00:00:00Z
BAD_ZONE = "Mars/Olympus"

#: Values the fuzzer puts in place of real ones.
HOSTILE = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    -(2**63) - 1,
    2**62,
    10**13,
    TS_1969,
    TS_9999,
    1.5,
    -1e308,
    1e308,
    "",
    "x",
    BAD_ZONE,
    "+09:00",
    "9999-12-31",
    "1969-12-31",
    "\ud800",
    [],
    {},
    [None],
    [1, 2],
    {"a": 1},
]


def _dumps(doc) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode("utf-8", "surrogatepass")


def _chart_result(doc):
    try:
        return doc["chart"]["result"][0]
    except (KeyError, IndexError, TypeError):
        return None


def _series_key(doc):
    return next((k for k in doc if isinstance(k, str) and k.startswith("Time Series (")), None)


def _out_of_window(route: str, doc):
    if route == "chart":
        res = _chart_result(doc)
        if res is None or not isinstance(res.get("timestamp"), list):
            return doc
        res["timestamp"] = [TS_1969] + res["timestamp"] + [TS_9999]
        for group in ("quote", "adjclose"):
            for block in res.get("indicators", {}).get(group, []):
                for k, v in block.items():
                    if isinstance(v, list):
                        block[k] = [v[0] if v else None] + v + [v[-1] if v else None]
        return doc
    key = _series_key(doc)
    if key is None or not isinstance(doc[key], dict) or not doc[key]:
        return doc
    series = doc[key]
    sample = next(iter(series.values()))
    first = next(iter(series))
    tail = first[10:]  # " HH:MM:SS" on intraday series
    out = {"9999-12-31" + tail: sample}
    out.update(series)
    out["1969-12-31" + tail] = sample
    doc[key] = out
    return doc


def _ts_overflow(route: str, doc):
    if route == "chart":
        res = _chart_result(doc)
        if res is not None and res.get("timestamp"):
            res["timestamp"][0] = 2**62
        return doc
    key = _series_key(doc)
    if key is not None and isinstance(doc[key], dict) and doc[key]:
        first = next(iter(doc[key]))
        doc[key] = {"10000-01-01" + first[10:]: doc[key][first], **doc[key]}
    return doc


def _bad_tz(route: str, doc):
    if route == "chart":
        res = _chart_result(doc)
        if res is not None and isinstance(res.get("meta"), dict):
            res["meta"]["exchangeTimezoneName"] = BAD_ZONE
        return doc
    meta = doc.get("Meta Data") if isinstance(doc, dict) else None
    if isinstance(meta, dict):
        for k in list(meta):
            if k.endswith("Time Zone"):
                meta[k] = BAD_ZONE
    return doc


def mutate(doc, rng: random.Random, *, changes: int | None = None):
    """A copy of the JSON tree ``doc`` with 1-3 (or ``changes``) values replaced by hostile
    ones or keys dropped."""
    doc = copy.deepcopy(doc)
    for _ in range(changes or rng.randint(1, 3)):
        paths: list[tuple[Any, ...]] = []
        stack: list[tuple[tuple[Any, ...], Any]] = [((), doc)]
        while stack:
            path, node = stack.pop()
            items = (
                node.items()
                if isinstance(node, dict)
                else enumerate(node[:4])
                if isinstance(node, list)
                else ()
            )
            for k, v in items:
                paths.append(path + (k,))
                stack.append((path + (k,), v))
        if not paths:
            break
        paths.sort(key=repr)  # the walk order must not depend on anything but the doc
        path = rng.choice(paths)
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if isinstance(parent, dict) and rng.random() < 0.2:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(HOSTILE))
    return doc


def echo_secret(query: dict) -> tuple[bytes, list[tuple[str, str]]]:
    """An Alpha Vantage error answer that echoes the key back in three spellings."""
    key = query.get("apikey", "")
    body = json.dumps(
        {
            "Error Message": (
                f"Invalid API call. The apikey={quote(key, safe='')} you sent ({json.dumps(key)}, "
                f"{key}) is not valid."
            )
        }
    ).encode()
    return body, [("X-Echo-Key", quote(key, safe=""))]


def apply(kind: str, route: str, payload: bytes, *, seed: int = 0, fired: int = 0) -> bytes:
    """The hostile version of ``payload`` (a 200 answer of ``route``) for fault ``kind``."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return payload
    if not isinstance(doc, dict):
        return payload
    if kind == "out_of_window":
        doc = _out_of_window(route, doc)
    elif kind == "ts_overflow":
        doc = _ts_overflow(route, doc)
    elif kind == "bad_tz":
        doc = _bad_tz(route, doc)
    elif kind == "fuzz":
        doc = mutate(doc, random.Random(seed * 1_000_003 + fired))
    return _dumps(doc)
