"""yfinance pointed at the fixture server: the oracle of the compat tests and the peer of the
benchmarks, both run against loopback only.

::

    with FixtureServer() as srv, yfinance_at(srv.url):
        yf.Ticker("7203.T").history(period="1y")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_QUERY1 = "https://query1.finance.yahoo.com"


@contextlib.contextmanager
def yfinance_at(base: str) -> Iterator[None]:
    """Point yfinance 1.7 at ``base`` for the ``with`` block, then restore it.

    Its chart / quoteSummary / quote base URLs become ``base``, the cookie/crumb dance is
    skipped, the URL Ticker.info hard-codes (query1) is rewritten to ``base``, and any other
    request is refused (ConnectionRefusedError): nothing leaves loopback.
    """
    import curl_cffi.requests as cr
    from yfinance import base as yb
    from yfinance import data as yd
    from yfinance.scrapers import history as yh
    from yfinance.scrapers import quote as yq

    saved = [
        (yh, "_BASE_URL_", yh._BASE_URL_),
        (yb, "_BASE_URL_", yb._BASE_URL_),
        (yq, "_QUOTE_SUMMARY_URL_", yq._QUOTE_SUMMARY_URL_),
        (yq, "_QUERY1_URL_", yq._QUERY1_URL_),
        (yd.YfData, "_get_cookie_and_crumb", yd.YfData._get_cookie_and_crumb),
        (cr.Session, "request", cr.Session.request),
    ]
    real_request = cr.Session.request

    def loopback_only(self: Any, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        url = str(url)
        if url.startswith(_QUERY1 + "/"):
            url = base + url[len(_QUERY1) :]
        if not url.startswith(base):
            raise ConnectionRefusedError(f"yfinance_at: {url} is not the fixture server")
        return real_request(self, method, url, *args, **kwargs)

    yh._BASE_URL_ = yb._BASE_URL_ = base
    yq._QUOTE_SUMMARY_URL_ = f"{base}/v10/finance/quoteSummary"
    yq._QUERY1_URL_ = base
    yd.YfData._get_cookie_and_crumb = lambda self, timeout=30: (None, "basic")
    setattr(cr.Session, "request", loopback_only)  # noqa: B010 - mypy: no method assignment
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
