"""BatchOptimizer against simulated cost curves, on both backends.

Each curve gives the seconds a batch of b items takes; the optimizer only sees the sizes it
recommends. "Best" is the best throughput (items/s) any allowed size achieves on the curve.
"""

from __future__ import annotations

import math
import random

import pytest

MAX = 1000


def linear(b):  # fixed overhead + per-item cost: bigger is always better
    return 0.05 + 0.001 * b


def overhead_heavy(b):
    return 0.2 + 0.001 * b


def u_shaped(b):  # per-item cost grows with size (congestion): optimum at sqrt(a/d) = 158
    return 0.05 + 0.0005 * b + 2e-6 * b * b


def u_cubic(b):  # a U the quadratic model does not describe exactly
    return 0.02 + 0.0002 * b + 1e-9 * b**3


def constant(b):
    return 0.1


def throughput(curve, b, cliff=None):
    return 0.0 if cliff is not None and b > cliff else b / curve(b)


def best(curve, cliff=None, latency=None):
    ok = [
        b
        for b in range(1, MAX + 1)
        if (cliff is None or b <= cliff) and (latency is None or curve(b) <= latency)
    ]
    return max(throughput(curve, b) for b in ok)


def drive(opt, curve, n, *, cliff=None, noise=0.0, seed=0, op="fetch"):
    rng = random.Random(seed)
    trace = []
    for _ in range(n):
        b = opt.recommend(op)
        t = curve(b) * (math.exp(rng.gauss(0.0, noise)) if noise else 1.0)
        ok = cliff is None or b <= cliff
        opt.record(op, b, t, ok)
        trace.append((b, ok))
    return trace


@pytest.fixture
def Opt(load):
    return load("optimizer").BatchOptimizer


@pytest.mark.parametrize("curve", [linear, overhead_heavy, u_shaped, u_cubic, constant])
def test_reaches_90_percent_of_best_within_30_observations(Opt, curve):
    opt = Opt(min_size=1, max_size=MAX)
    drive(opt, curve, 30)
    r = opt.recommend("fetch")
    assert throughput(curve, r) >= 0.9 * best(curve), opt.explain("fetch")
    # and stays there
    drive(opt, curve, 30)
    assert throughput(curve, opt.recommend("fetch")) >= 0.9 * best(curve)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("curve", [linear, u_shaped])
def test_noisy_timings(Opt, curve, seed):
    opt = Opt(min_size=1, max_size=MAX)
    drive(opt, curve, 30, noise=0.15, seed=seed)
    r = opt.recommend("fetch")
    assert throughput(curve, r) >= 0.9 * best(curve), opt.explain("fetch")


@pytest.mark.parametrize("cliff", [37, 300, 700])
def test_cliff_backs_off_within_3_observations_and_then_gets_close(Opt, cliff):
    opt = Opt(min_size=1, max_size=MAX)
    trace = drive(opt, overhead_heavy, 30, cliff=cliff)
    first_fail = next(i for i, (_, ok) in enumerate(trace) if not ok)
    assert any(b <= cliff for b, _ in trace[first_fail + 1 : first_fail + 4])
    assert trace[first_fail + 1][0] <= cliff  # multiplicative decrease: at once, in fact
    r = opt.recommend("fetch")
    assert r <= cliff
    assert throughput(overhead_heavy, r, cliff) >= 0.9 * best(overhead_heavy, cliff)
    assert sum(not ok for _, ok in trace) <= 6  # few failed batches to find it
    assert opt.stats("fetch")["cliff"] is not None and "cliff" in opt.explain("fetch")


def test_constant_latency_does_not_drift_to_the_minimum(Opt):
    opt = Opt(min_size=1, max_size=MAX)
    trace = drive(opt, constant, 100)
    assert [b for b, _ in trace[-50:]] == [MAX] * 50


def test_latency_target(Opt):
    opt = Opt(min_size=1, max_size=MAX, latency_target=0.3)
    drive(opt, linear, 30)
    r = opt.recommend("fetch")
    assert linear(r) <= 0.3 * 1.02
    assert throughput(linear, r) >= 0.9 * best(linear, latency=0.3)
    assert "latency target" in opt.explain("fetch")


def test_multiplicative_decrease_on_errors_and_rate_limits(Opt):
    opt = Opt(min_size=1, max_size=MAX)
    for b in (100, 200, 400):
        opt.record("fetch", b, linear(b), True)
    assert opt.recommend("fetch") == 800
    opt.record("fetch", 400, 0.5, True, rate_limited=True)
    assert opt.recommend("fetch") == 200  # 400 * 0.5
    opt.record("fetch", 200, 0.1, False)  # a transient error: larger batches worked before
    assert opt.recommend("fetch") == 100
    assert opt.stats("fetch")["cliff"] is None
    # additive-ish recovery: successes near the cap let it grow again
    for _ in range(10):
        b = opt.recommend("fetch")
        opt.record("fetch", b, linear(b), True)
    assert opt.recommend("fetch") > 400
    s = opt.stats("fetch")
    assert s["failed"] == 1 and s["rate_limited"] == 1


def test_random_transient_errors_do_not_ratchet_down(Opt):
    opt = Opt(min_size=1, max_size=MAX)
    rng = random.Random(5)
    for _ in range(200):
        b = opt.recommend("fetch")
        opt.record("fetch", b, linear(b), rng.random() > 0.05)
    sizes = [opt.recommend("fetch")]
    assert sizes[0] >= 250  # still in the high-throughput region


def test_bounds_and_ops_are_independent(Opt):
    opt = Opt(min_size=10, max_size=50)
    drive(opt, linear, 20, op="a")
    drive(opt, u_shaped, 20, op="b")
    assert opt.recommend("a") == 50
    opt.configure("c", min_size=5, max_size=8)
    assert 5 <= opt.recommend("c") <= 8
    opt.record("a", 50, 1.0, False)
    assert opt.recommend("a") >= 10
    assert set(opt.ops()) == {"a", "b", "c"}


def test_deterministic(Opt):
    def run():
        opt = Opt(min_size=1, max_size=MAX)
        return drive(opt, u_shaped, 40, noise=0.2, seed=9), opt.explain("fetch")

    assert run() == run()


def test_both_backends_recommend_the_same():
    from stockbatch import _backend

    try:
        compiled = _backend.load_from("cython", "optimizer").BatchOptimizer
    except ImportError:
        pytest.skip("compiled backend not built")
    pure = _backend.load_from("python", "optimizer").BatchOptimizer
    for curve, cliff in [(u_shaped, None), (overhead_heavy, 300), (linear, None)]:
        a = drive(compiled(latency_target=0.5), curve, 40, cliff=cliff, noise=0.1, seed=3)
        b = drive(pure(latency_target=0.5), curve, 40, cliff=cliff, noise=0.1, seed=3)
        assert a == b


def test_bad_input(Opt):
    with pytest.raises(ValueError):
        Opt(min_size=10, max_size=5)
    with pytest.raises(ValueError):
        Opt(decrease=1.5)
    with pytest.raises(ValueError):
        Opt(latency_target=-1)
    opt = Opt()
    with pytest.raises(ValueError):
        opt.record("x", 0, 1.0, True)
    with pytest.raises(ValueError):
        opt.record("x", 10, -1.0, True)
    with pytest.raises(ValueError):
        opt.record("x", 10, math.inf, True)
    assert opt.stats("x")["observations"] == 0  # nothing recorded by refused input
