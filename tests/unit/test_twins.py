"""Every compiled module and its pure-Python twin: same public names, same signatures, same
exception types for the same bad input (the rule of ARCHITECTURE.md, "Compiled modules and
their twins"). Behaviour itself is checked by the module tests, which run on both backends.

Signatures: Cython functions and methods expose theirs to ``inspect.signature`` (compared
with the twin's, annotations aside). A cdef class's ``__init__`` does not (it is a slot
wrapper), so its parameters are read from the signature Cython embeds in the class docstring
(``embedsignature``); that line misplaces a keyword-only ``*`` by one parameter, so names and
defaults are compared there and keyword-only-ness is checked by calling with positionals.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pyarrow as pa
import pytest

from stockbatch import _backend
from stockbatch._errors import QueueClosed, QueueFull

TWINS = ("queue", "coalesce", "optimizer", "decode", "kernels", "indicators")

if "cython" not in _backend.available_backends():
    pytest.skip(
        "the compiled modules are not built (STOCKBATCH_PURE_PYTHON=1)", allow_module_level=True
    )


def _pair(name: str):
    return _backend.load_from("cython", name), _backend.load_from("python", name)


def _shape(sig: inspect.Signature, *, drop_self: bool = False) -> list[tuple]:
    """Parameters without annotations: (name, kind, default)."""
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.kind, p.default) for p in params]


def _embedded_init(cls: type) -> list[tuple]:
    """(name, default) of the __init__ parameters Cython wrote into the class docstring."""
    first = (cls.__doc__ or "").splitlines()[0]
    assert first.startswith(cls.__name__ + "("), f"no embedded signature: {first!r}"
    text = (
        first[len(cls.__name__) :].replace(", *)", ")").replace("(*, ", "(").replace(", *, ", ", ")
    )
    sig = inspect.signature(eval(f"lambda {text[1:-1]}: None", {}))  # our own docstring
    return [(p.name, p.default) for p in sig.parameters.values()]


def _public(obj) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


@pytest.mark.parametrize("name", TWINS)
def test_same_public_names(name):
    compiled, twin = _pair(name)
    assert compiled.__all__ == twin.__all__
    for attr in twin.__all__:
        c, p = getattr(compiled, attr), getattr(twin, attr)
        if isinstance(p, type):
            assert _public(c) == _public(p), attr
        elif not callable(p):
            assert c == p, attr


def _callables(name):
    compiled, twin = _pair(name)
    for attr in twin.__all__:
        p = getattr(twin, attr)
        if isinstance(p, type):
            for meth in sorted(_public(p)):
                if callable(getattr(p, meth)) and not isinstance(
                    inspect.getattr_static(p, meth), property
                ):
                    yield f"{attr}.{meth}", getattr(getattr(compiled, attr), meth), getattr(p, meth)
        elif callable(p):
            yield attr, getattr(compiled, attr), p


@pytest.mark.parametrize("name", TWINS)
def test_same_signatures(name):
    checked = 0
    for what, c, p in _callables(name):
        assert _shape(inspect.signature(c)) == _shape(inspect.signature(p)), what
        checked += 1
    assert checked


@pytest.mark.parametrize(
    "name, cls",
    [
        ("queue", "Request"),
        ("queue", "BatchQueue"),
        ("coalesce", "Coalescer"),
        ("optimizer", "BatchOptimizer"),
    ],
)
def test_same_constructor_parameters(name, cls):
    compiled, twin = _pair(name)
    twin_init = inspect.signature(getattr(twin, cls).__init__)
    assert _embedded_init(getattr(compiled, cls)) == [
        (n, d) for n, _, d in _shape(twin_init, drop_self=True)
    ]


# --------------------------------------------------------------- same error, same input


def _bars(n: int = 6) -> pa.RecordBatch:
    ts = pa.array(np.arange(n, dtype=np.int64) * 86_400_000_000, pa.timestamp("us", tz="UTC"))
    close = pa.array(np.linspace(10.0, 11.0, n))
    return pa.record_batch(
        {
            "symbol": pa.array(["A"] * n),
            "interval": pa.array(["1d"] * n),
            "ts": ts,
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "adj_close": close,
            "volume": pa.array(np.full(n, 100, dtype=np.int64)),
            "source": pa.array(["t"] * n),
        }
    )


def _closed_queue_put(m):
    q = m.BatchQueue()
    q.close()
    q.put(m.Request("quote", "yahoo", "AAPL"))


def _full_queue_put(m):
    q = m.BatchQueue(1)
    q.put_nowait(m.Request("quote", "yahoo", "AAPL"))
    q.put_nowait(m.Request("quote", "yahoo", "MSFT"))


def _complete_unknown_call(m):
    q = _backend.load_from(
        "cython" if m.__name__.startswith("stockbatch._ext") else "python", "queue"
    )
    a, b = m.Coalescer(), m.Coalescer()
    a.add(q.Request("quote", "yahoo", "AAPL"))
    (call,) = a.take_calls()
    b.complete(call, None)


BAD = {
    "queue": [
        lambda m: m.Request("nope", "yahoo", "AAPL"),
        lambda m: m.Request("history", "", "AAPL", "1d"),
        lambda m: m.Request("history", "yahoo", "AAPL", "1d", priority=0),
        lambda m: m.Request("history", "yahoo", "AAPL", "1d", params={"k": [1]}),
        lambda m: m.Request("history", "yahoo", "AAPL", "1d", start="yesterday"),
        lambda m: m.Request("history", "yahoo", "AAPL", "1d", start=True),
        lambda m: m.BatchQueue(-1),
        lambda m: m.BatchQueue().get_batch(0, timeout=0),
        lambda m: m.BatchQueue(10, None),
        lambda m: m.to_us(1.5),
        _closed_queue_put,
        _full_queue_put,
    ],
    "coalesce": [
        lambda m: m.Coalescer({"yahoo": 2}),
        lambda m: m.Coalescer(batch_limits={1: 2}),
        lambda m: m.Coalescer(batch_limits={"yahoo": 0}),
        lambda m: m.Coalescer().add("not a request"),
        _complete_unknown_call,
    ],
    "optimizer": [
        lambda m: m.BatchOptimizer(min_size=0),
        lambda m: m.BatchOptimizer(min_size=5, max_size=2),
        lambda m: m.BatchOptimizer(decrease=1.5),
        lambda m: m.BatchOptimizer(window=2),
        lambda m: m.BatchOptimizer(latency_target=-1.0),
        lambda m: m.BatchOptimizer(1),
        lambda m: m.BatchOptimizer().record("op", 10, math.nan, True),
        lambda m: m.BatchOptimizer().record("op", 0, 1.0, True),
    ],
    "decode": [
        lambda m: m.decode_yahoo_chart(b"not json"),
        lambda m: m.decode_yahoo_chart(b"{}"),
        lambda m: m.decode_yahoo_chart(123),
        lambda m: m.decode_alphavantage(b"[1, 2]"),
        lambda m: m.decode_yahoo_quote(b'{"quoteResponse": 5}'),
    ],
    "kernels": [
        lambda m: m.validate("not arrow"),
        lambda m: m.validate(_bars(), spike_threshold=-1.0),
        lambda m: m.validate(_bars(), out=np.empty(2, np.uint16)),
        lambda m: m.resample(_bars(), to="7x"),
        lambda m: m.returns(_bars(), column="nope"),
        lambda m: m.returns(_bars(), out=np.empty(3)),
        lambda m: m.normalize(pa.record_batch({"x": [1]})),
    ],
    "indicators": [
        lambda m: m.sma(_bars(), 0),
        lambda m: m.sma("not arrow", 3),
        lambda m: m.sma(_bars(), 3, column="nope"),
        lambda m: m.sma(_bars(), 3, out=np.empty(2)),
        lambda m: m.sma(_bars(), 3, out=np.empty(6, np.float32)),
        lambda m: m.sma(_bars(), 3, segments=[0, 2]),
        lambda m: m.bbands(_bars(), 3, -1.0),
        lambda m: m.macd(_bars(), 3, 2, 1, out=(np.empty(6),)),
        lambda m: m.volatility(_bars(), 2, ddof=2),
        lambda m: m.volatility(_bars(), 2, annualize=0),
        lambda m: m.vwap(pa.record_batch({"close": [1.0]})),
    ],
}


def _outcome(fn, module):
    try:
        fn(module)
    except Exception as exc:  # noqa: BLE001 - any type: the type is what is compared
        return type(exc)
    return None


@pytest.mark.parametrize("name, case", [(n, k) for n in TWINS for k in range(len(BAD[n]))])
def test_same_error_for_the_same_bad_input(name, case):
    compiled, twin = _pair(name)
    fn = BAD[name][case]
    got = _outcome(fn, compiled), _outcome(fn, twin)
    assert got[0] is not None, f"{name} case {case}: the compiled module accepted it"
    assert got[0] is got[1], f"{name} case {case}: compiled raises {got[0]}, twin {got[1]}"


def test_queue_errors_are_the_library_s():
    for m in _pair("queue"):
        with pytest.raises(QueueClosed):
            _closed_queue_put(m)
        with pytest.raises(QueueFull):
            _full_queue_put(m)
