"""The one redaction function: secrets out of every text stockbatch prints.

::

    redact("postgresql://postgres:p@ss/w:rd@127.0.0.1:5432/db")
    # 'postgresql://postgres:***@127.0.0.1:5432/db'
    redact('{"Information": "key a%2Bb%2Fc is invalid"}', secrets=["a+b/c"])
    # '{"Information": "key *** is invalid"}'

What is masked (``***``):

* the password of every ``scheme://user:password@host`` URI, whatever it holds: raw ``@ : / %
  + = & # ?`` or their percent-encoded forms (the password runs to the last ``@`` of the token
  that is followed by a host, so a raw ``@`` in it does not end it);
* ``password=…`` / ``apikey=…`` / ``token=…`` style ``key=value`` pairs (query strings,
  libpq keyword DSNs) up to the next ``&``, whitespace or quote;
* the values of credential headers (``Authorization``, ``Proxy-Authorization``,
  ``X-API-Key``, ``Cookie``, ``Set-Cookie``…) written ``Name: value`` or ``'Name': 'value'``;
* every given secret however it was written back: raw, percent-encoded (any mix of encoded
  and plain characters, upper or lower hex, ``+`` for space, double-encoded ``%25XX``), or
  JSON-escaped (``\\/``, ``\\uXXXX``) — providers echo keys in all of these.

Sits at the bottom layer (beside errors): sources, sinks, the engine and the CLI all call it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import unquote

__all__ = ["redact", "uri_secrets", "MASK"]

MASK = "***"

# scheme://[user]:password@host (the host may be empty: sqlite://u:pw@/x.db) — the password
# is greedy up to the last "@" of the token that is followed by a host and then a URI
# delimiter (so raw "@" / ":" / "/" in it are kept inside the masked part).
_USERINFO = re.compile(
    r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@?#'\"]*:)(?P<pw>[^\s<>]*)@"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%\-]*)(?=[:/?#\s'\"<>),;\]]|$)"
)
# a whole string that is one URI: its password may even hold raw spaces
_ONE_URI = re.compile(
    r"\s*[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@?#]*:(?P<pw>.*)@"
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%\-]*)(?:[:/?#]|\s*\Z)",
    re.DOTALL,
)
_SECRET_KEYS = (
    r"password|passwd|pwd|pass|secret|client_secret|api[_-]?key|apikey|"
    r"access[_-]?token|refresh[_-]?token|token|auth|key|sig|signature|crumb"
)
_PAIR = re.compile(rf"(?i)(?P<pre>(?<![A-Za-z0-9_])(?:{_SECRET_KEYS})=)(?P<v>[^&\s'\"#;,)]+)")
_HEADER = re.compile(
    r"(?i)(?P<pre>(?<![A-Za-z0-9_-])['\"]?(?:authorization|proxy-authorization|x-api-key|"
    r"api-key|x-auth-token|x-access-token|cookie|set-cookie)['\"]?\s*[:=]\s*['\"]?)"
    r"(?P<v>[^'\"\r\n]+)"
)


@lru_cache(maxsize=256)
def _secret_pattern(secret: str) -> re.Pattern:
    parts = []
    for ch in secret:
        alts = [re.escape(ch)]
        # percent-encoded (once or twice: %2B, %252B), any hex case (the pattern ignores case)
        alts.append("".join(f"%(?:25)?{b:02X}" for b in ch.encode("utf-8")))
        if ch == " ":
            alts.append(r"\+")
        if ch == "/":
            alts.append(r"\\/")
        if ch in '"\\':
            alts.append(re.escape("\\" + ch))
        if not ch.isalnum():
            alts.append(rf"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else re.escape(ch))
        parts.append("(?:" + "|".join(alts) + ")")
    return re.compile("".join(parts), re.IGNORECASE)


def uri_secrets(uri: str) -> tuple[str, ...]:
    """The secrets a URI carries (its password, raw and percent-decoded), to pass to
    :func:`redact` as ``secrets=`` wherever an error text might echo them without the URI."""
    # not urlsplit: a raw "/", "?" or "#" in the password would end its netloc early
    m = _ONE_URI.match(str(uri))
    if m is None or not m["pw"]:
        return ()
    pw = m["pw"]
    return tuple(dict.fromkeys(s for s in (pw, unquote(pw)) if s))


def redact(text: object, secrets: Iterable[str | None] = ()) -> str:
    """``str(text)`` with URI passwords, credential ``key=value`` pairs, credential headers
    and every one of ``secrets`` (in any of its encodings) replaced by ``***``.

    Parameters
    ----------
    text : object
        Anything; it is passed through ``str``.
    secrets : iterable of str
        Exact secrets to mask wherever they appear (API keys, passwords); empty or ``None``
        items are ignored. Secrets of fewer than 3 characters are masked only inside the
        structural patterns above, not everywhere (they would mask ordinary text).

    Returns
    -------
    str
    """
    out = str(text)
    # the given secrets first (longest first, so that one secret inside another goes whole)
    for s in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        out = _secret_pattern(s).sub(MASK, out)
    out = _USERINFO.sub(lambda m: f"{m['pre']}{MASK}@{m['host']}", out)
    out = _HEADER.sub(lambda m: m["pre"] + MASK, out)
    out = _PAIR.sub(lambda m: m["pre"] + MASK, out)
    return out
