"""Pure-Python twin of :mod:`stockbatch._ext.optimizer`: the :class:`BatchOptimizer`.

How it chooses a batch size, per operation type:

1. **Model.** The last ``window`` successful observations are fitted to
   ``t(b) = a + c*b + d*b**2`` (fixed overhead, per-item cost, congestion), by least squares
   weighted by ``1/t**2`` (relative error, so small batches count as much as large ones) with
   ``a, c, d >= 0``: every non-negative subset of the terms is fitted and the lowest BIC wins,
   so noisy timings do not invent a congestion term. Throughput ``b / t(b)`` peaks at
   ``sqrt(a/d)``, or grows without bound when ``d == 0`` and ``a > 0`` — so a constant latency
   pushes the size *up*, never down to the minimum.
2. **Latency target.** With ``latency_target`` the size is also at most the largest ``b`` whose
   modelled ``t(b)`` stays within it.
3. **Trust region.** The choice stays within [smallest tried / 2, largest tried * 2]: it
   explores by doubling instead of trusting an extrapolation.
4. **Errors and rate limits.** A failed or rate-limited batch of size ``b`` caps the next
   sizes at ``b * decrease`` (multiplicative decrease, default 0.5); the cap then grows by
   ``1.2x`` per successful batch near it (AIMD). When batches of ``b`` or more failed at least
   twice and more often than they succeeded, ``b`` is a *cliff*: sizes from ``b`` up are not
   tried again;
   the largest good size below it is approached by geometric bisection until it is within 10 %
   of the cliff. A cliff is forgotten after ``forget`` observations, to re-probe.
5. **Bounds.** Always an int in ``[min_size, max_size]``. The same observations give the same
   recommendations (no randomness, no clock).
"""

from __future__ import annotations

import math
from collections import deque

from ._shared import check_size as _check_size

__all__ = ["BatchOptimizer", "fit", "fit_all"]

_SUBSETS = ((0, 1, 2), (0, 1), (0, 2), (1, 2), (0,), (1,), (2,))
_GROW = 1.2  # cap recovery per successful batch near the cap
_BISECT_STOP = 0.9  # stop bisecting when good >= 0.9 * cliff
_OK, _FAILED, _LIMITED = 0, 1, 2
_PLAUSIBLE = 6.0  # BIC difference below which two models are not told apart


def _solve(m, v, n):
    """Solve the n x n system m x = v by Gaussian elimination with partial pivoting."""
    a = [list(m[i][:n]) + [v[i]] for i in range(n)]
    for col in range(n):
        piv = col
        for r in range(col + 1, n):
            if abs(a[r][col]) > abs(a[piv][col]):
                piv = r
        if abs(a[piv][col]) < 1e-300:
            return None
        a[col], a[piv] = a[piv], a[col]
        for r in range(col + 1, n):
            f = a[r][col] / a[col][col]
            for k in range(col, n + 1):
                a[r][k] -= f * a[col][k]
    x = [0.0] * n
    for i in range(n - 1, -1, -1):
        s = a[i][n]
        for k in range(i + 1, n):
            s -= a[i][k] * x[k]
        x[i] = s / a[i][i]
    return x


def fit_all(sizes, seconds):
    """Weighted least-squares fits of every subset of the terms of t = a + c b + d b^2 whose
    coefficients come out non-negative: a list of (BIC, (a, c, d)), in subset order."""
    out = []
    distinct = len(set(sizes))
    m_obs = len(sizes)
    for subset in _SUBSETS:
        n = len(subset)
        if n > distinct:
            continue  # under-determined
        m = [[0.0] * n for _ in range(n)]
        v = [0.0] * n
        for b, t in zip(sizes, seconds, strict=True):
            w = 1.0 / (t * t) if t > 0 else 1e12
            f = (1.0, b, b * b)
            for i in range(n):
                fi = f[subset[i]]
                v[i] += w * fi * t
                for j in range(n):
                    m[i][j] += w * fi * f[subset[j]]
        x = _solve(m, v, n)
        if x is None or min(x) < 0:
            continue
        coef = [0.0, 0.0, 0.0]
        for i in range(n):
            coef[subset[i]] = x[i]
        sse = 0.0
        for b, t in zip(sizes, seconds, strict=True):
            w = 1.0 / (t * t) if t > 0 else 1e12
            r = coef[0] + coef[1] * b + coef[2] * b * b - t
            sse += w * r * r
        # BIC: a term must pay for itself, so noise does not invent a congestion term
        score = m_obs * math.log(sse / m_obs + 1e-12) + n * math.log(m_obs)
        out.append((score, (coef[0], coef[1], coef[2])))
    return out


def fit(sizes, seconds):
    """Non-negative weighted least-squares fit of t = a + c b + d b^2; returns (a, c, d).

    Every non-negative subset of the three terms is fitted; the one with the lowest BIC
    (``m ln(SSE/m) + k ln m``) wins, so a term is kept only when the data support it.
    """
    best = None
    best_score = math.inf
    for score, coef in fit_all(sizes, seconds):
        if score < best_score:
            best, best_score = coef, score
    return best if best is not None else (0.0, 0.0, 0.0)


def _optimum(a, c, d, lat, min_size, largest):
    """Best size for model (a, c, d) under latency target ``lat`` (None = none): (size, why)."""
    why = [f"model t(b) = {a:.4g} + {c:.4g}*b + {d:.4g}*b^2 s"]
    if d > 0 and a > 0:
        r = math.sqrt(a / d)
        why.append(f"throughput peaks at {r:.1f}")
    elif d > 0 or (a == 0 and c > 0):
        r = float(largest) if d == 0 else float(min_size)
        why.append("throughput does not grow with size")
    else:
        r = math.inf
        why.append("throughput grows with size")
    if lat is not None:
        if a >= lat:
            b_lat = float(min_size)
        elif d > 0:
            b_lat = (-c + math.sqrt(c * c + 4 * d * (lat - a))) / (2 * d)
        elif c > 0:
            b_lat = (lat - a) / c
        else:
            b_lat = math.inf
        if b_lat < r:
            r = b_lat
            why.append(f"latency target {lat:g} s allows {b_lat:.1f}")
    return r, why


class _Op:
    __slots__ = (
        "min_size",
        "max_size",
        "initial",
        "latency_target",
        "hist",
        "cap",
        "cliff",
        "cliff_age",
        "n",
        "n_fail",
        "n_rl",
        "last",
        "why",
    )

    def __init__(
        self, min_size: int, max_size: int, initial: int, latency_target: float | None, window: int
    ) -> None:
        self.min_size = min_size
        self.max_size = max_size
        self.initial = initial
        self.latency_target = latency_target
        self.hist: deque[tuple[int, float, int]] = deque(
            maxlen=window
        )  # (size, seconds, status): _OK, _FAILED, _LIMITED
        self.cap = float(max_size)
        self.cliff = math.inf
        self.cliff_age = 0
        self.n = self.n_fail = self.n_rl = 0
        self.last = None
        self.why = ()


class BatchOptimizer:
    """Recommend batch sizes per operation from measured timings (see the module docstring).

    Parameters
    ----------
    min_size, max_size : int
        Bounds of every recommendation.
    initial : int, optional
        First recommendation before any observation (default: geometric mean of the bounds,
        at most 32).
    latency_target : float, optional
        Seconds one batch may take; None = maximise items/s only.
    decrease : float
        Multiplicative decrease on an error or a rate limit (0 < decrease < 1).
    window : int
        Observations remembered per operation.
    forget : int
        Observations after which a cliff is forgotten and re-probed.
    """

    def __init__(
        self,
        *,
        min_size=1,
        max_size=1000,
        initial=None,
        latency_target=None,
        decrease=0.5,
        window=64,
        forget=200,
    ):
        self._defaults = self._check_limits(min_size, max_size, initial, latency_target)
        if not 0.0 < decrease < 1.0:
            raise ValueError(f"decrease must be in (0, 1), not {decrease!r}")
        self._decrease = float(decrease)
        self._window = _check_size(window, "window")
        if window < 3:
            raise ValueError("window must be >= 3")
        self._forget = _check_size(forget, "forget")
        self._ops = {}

    @staticmethod
    def _check_limits(
        min_size: int, max_size: int, initial: int | None, latency_target: float | None
    ) -> tuple[int, int, int, float | None]:
        _check_size(min_size, "min_size")
        _check_size(max_size, "max_size")
        if min_size > max_size:
            raise ValueError(f"min_size {min_size} > max_size {max_size}")
        if initial is None:
            initial = min(max(min_size, round(math.sqrt(min_size * max_size))), 32)
            initial = max(initial, min_size)
        _check_size(initial, "initial")
        initial = min(max(initial, min_size), max_size)
        if latency_target is not None:
            if (
                isinstance(latency_target, bool)
                or not isinstance(latency_target, (int, float))
                or not latency_target > 0
                or math.isinf(latency_target)
            ):
                raise ValueError(f"latency_target must be seconds > 0, not {latency_target!r}")
            latency_target = float(latency_target)
        return min_size, max_size, initial, latency_target

    def configure(self, op, *, min_size=None, max_size=None, initial=None, latency_target=None):
        """Set bounds / initial size / latency target for one operation (resets it)."""
        d_min, d_max, _, d_lat = self._defaults
        limits = self._check_limits(
            min_size or d_min,
            max_size or d_max,
            initial,
            latency_target if latency_target is not None else d_lat,
        )
        self._ops[op] = _Op(*limits, self._window)

    def _op(self, op):
        st = self._ops.get(op)
        if st is None:
            st = self._ops[op] = _Op(*self._defaults, self._window)
        return st

    def record(self, op, batch_size, seconds, ok, rate_limited=False):
        """One observation: a batch of ``batch_size`` items took ``seconds``; ``ok`` False
        when it failed; ``rate_limited`` when the provider refused for rate reasons."""
        _check_size(batch_size, "batch_size")
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not seconds >= 0
            or math.isinf(seconds)
        ):
            raise ValueError(f"seconds must be a finite number >= 0, not {seconds!r}")
        st = self._op(op)
        b = batch_size
        good = bool(ok) and not rate_limited
        st.n += 1
        st.cliff_age += 1
        if st.cliff_age > self._forget:
            st.cliff = math.inf
        if good:
            if b >= st.cliff:
                st.cliff = math.inf  # it worked after all
            if b >= 0.8 * st.cap:
                st.cap = min(float(st.max_size), st.cap * _GROW)
        else:
            if rate_limited:
                st.n_rl += 1
            if not ok:
                st.n_fail += 1
                # A cliff when batches this large failed at least twice and more often than
                # they succeeded (in the window): one failure alone may be chance.
                n_ok, n_failed = 0, 1
                for hb, _, status in st.hist:
                    if hb >= b:
                        if status == _OK:
                            n_ok += 1
                        elif status == _FAILED:
                            n_failed += 1
                if n_failed >= 2 and n_failed > n_ok:
                    if b < st.cliff:
                        st.cliff = float(b)
                    st.cliff_age = 0
            st.cap = max(float(st.min_size), min(st.cap, float(b)) * self._decrease)
        st.hist.append((b, float(seconds), _OK if good else _FAILED if not ok else _LIMITED))

    def recommend(self, op) -> int:
        """The batch size to use next for ``op``."""
        st = self._op(op)
        why = []
        sizes = [b for b, _, status in st.hist if status == _OK]
        secs = [t for _, t, status in st.hist if status == _OK]
        if not sizes:
            r = float(st.initial)
            why.append(f"no successful observation yet: initial {st.initial}")
        else:
            # Optimism under uncertainty: of the models the data cannot tell apart (BIC
            # within _PLAUSIBLE of the best), follow the one promising the largest size, so
            # noise never stops the exploration early; wrong ones are refuted as data come.
            fits = fit_all(sizes, secs)
            best_score = min(score for score, _ in fits) if fits else 0.0
            r, model_why = -math.inf, []
            for score, (a, c, d) in fits:
                if score <= best_score + _PLAUSIBLE:
                    rk, wk = _optimum(a, c, d, st.latency_target, st.min_size, max(sizes))
                    if rk > r:
                        r, model_why = rk, wk
            if not fits:
                r, model_why = float(max(sizes)), ["no model fits"]
            why.append(f"{model_why[0]} over {len(sizes)} observations")
            why.extend(model_why[1:])
            lo, hi = min(sizes) / 2.0, max(sizes) * 2.0
            if r > hi:
                r = hi
                why.append(f"explore: at most 2x the largest tried ({max(sizes)})")
            elif r < lo:
                r = lo
                why.append(f"explore: at least half the smallest tried ({min(sizes)})")
        if r > st.cap and st.cap < st.max_size:
            r = st.cap
            why.append(f"capped at {st.cap:.1f} after errors/rate limits")
        if st.cliff < math.inf:
            below = [b for b in sizes if b < st.cliff]
            g = max(below) if below else float(st.min_size)
            limit = g if g >= _BISECT_STOP * st.cliff else math.sqrt(g * st.cliff)
            limit = min(limit, st.cliff - 1)
            if r > limit:
                r = limit
                why.append(f"cliff at {st.cliff:g}: probe {limit:.1f} (largest good {g:g})")
        out = int(math.floor(r + 0.5)) if r < st.max_size else st.max_size
        out = min(max(out, st.min_size), st.max_size)
        st.last = out
        st.why = tuple(why)
        return out

    def explain(self, op) -> str:
        """Why :meth:`recommend` chooses what it does for ``op`` (computed afresh)."""
        r = self.recommend(op)
        st = self._op(op)
        head = (
            f"{op}: batch size {r} in [{st.min_size}, {st.max_size}] after {st.n} "
            f"observations ({st.n_fail} failed, {st.n_rl} rate limited)"
        )
        return head + "; " + "; ".join(st.why)

    def stats(self, op) -> dict:
        """Counters and state for ``op``: observations, failures, rate limits, cap, cliff."""
        st = self._op(op)
        return {
            "observations": st.n,
            "failed": st.n_fail,
            "rate_limited": st.n_rl,
            "cap": st.cap,
            "cliff": None if st.cliff == math.inf else int(st.cliff),
            "last": st.last,
        }

    def ops(self) -> list:
        """The operation names seen so far."""
        return list(self._ops)
