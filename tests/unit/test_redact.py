"""stockbatch._redact.redact: every reserved character, raw and percent-encoded."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

import pytest

from stockbatch._redact import MASK, redact, uri_secrets

RESERVED = "@:/%+=&#?;,$!*'()[] "
SCHEMES = ["postgresql", "postgres", "mysql", "mariadb", "https"]


def _passwords():
    for ch in RESERVED:
        yield f"ss{ch}W0rd"  # raw in the middle
        yield f"{ch}ssW0rd{ch}"  # raw at both ends
        yield "p" + quote(ch, safe="") + "ssW0rd"  # already percent-encoded in the URI


def _leaks(text: str, password: str) -> bool:
    """Any 4+ character piece of the password's secret part left in the text."""
    core = "ssW0rd"
    return core in text or password in text


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("password", list(_passwords()))
def test_uri_password_masked_whatever_it_holds(scheme, password):
    if " " in password and not password.startswith("p%"):
        password = password.replace(" ", "%20")  # a raw space cannot be in one URI token
    uri = f"{scheme}://postgres:{password}@127.0.0.1:5432/test?sslmode=disable"
    for text in (
        uri,
        f"cannot connect to {uri}: refused",
        repr(uri),
        f"<Sink {uri!r}>",
        json.dumps({"uri": uri}),
    ):
        out = redact(text)
        assert not _leaks(out, password), (text, out)
        assert f"{scheme}://postgres:{MASK}@127.0.0.1:5432/test" in out
        assert "127.0.0.1:5432/test" in out  # host, port and database stay readable


@pytest.mark.parametrize("password", list(_passwords()))
def test_uri_secrets_gives_the_password_raw_and_decoded(password):
    uri = f"postgresql://u:{password}@db.example:5432/x"
    found = uri_secrets(uri)
    assert password in found
    # a driver echoing the password alone (decoded) is still masked
    for s in found:
        assert MASK in redact(f"auth failed for password {s!r}", secrets=found)
        assert "ssW0rd" not in redact(f"auth failed for password {s!r}", secrets=found)


def test_uri_without_password_is_unchanged():
    for text in (
        "mysql://root@127.0.0.1:3306/test",
        "sqlite:///tmp/x.db",
        "https://query2.finance.yahoo.com/v8/finance/chart/AAPL?range=1y",
        "user@example.com wrote: x=1",
    ):
        assert redact(text) == text
    assert uri_secrets("mysql://root@127.0.0.1:3306/test") == ()


def _key_forms(key: str):
    yield key
    yield quote(key, safe="")
    yield quote(key, safe="").lower()
    yield quote(key)  # "/" kept
    yield quote_plus(key)
    yield quote(quote(key, safe=""), safe="")  # double-encoded
    yield json.dumps(key)[1:-1].replace("/", "\\/")  # JSON-escaped slash
    yield json.dumps(key, ensure_ascii=True)[1:-1]


KEYS = ["ab+cd/ef=gh&ij", "K3Y#with?all:the@reserved%chars;", "plain0KEY0value", "sp ace+key"]


@pytest.mark.parametrize("key", KEYS)
def test_api_key_masked_in_every_encoding_a_provider_echoes(key):
    for form in _key_forms(key):
        for text in (
            f'{{"Error Message": "the key {form} is invalid"}}',
            f"Information: your key {form} has reached its quota",
            f"X-Echo-Key: {form}\r\n",
            f"GET /query?function=X&apikey={form}&s=1",
        ):
            out = redact(text, secrets=[key])
            assert form not in out and key not in out, (form, text, out)
            assert MASK in out


def test_api_key_query_pairs_and_headers_masked_without_being_told():
    assert (
        redact("GET /query?symbol=IBM&apikey=a%2Bb%3D&x=1")
        == "GET /query?symbol=IBM&apikey=***&x=1"
    )
    assert redact("http://h/q?api_key=s3cr3t") == "http://h/q?api_key=***"
    assert (
        redact("host=db user=u password=p@ss%20w port=5432")
        == "host=db user=u password=*** port=5432"
    )
    out = redact("{'Authorization': 'Bearer abc.def', 'Accept': 'application/json'}")
    assert "abc.def" not in out and "'Accept': 'application/json'" in out
    assert "tok" not in redact("Authorization: Bearer tok123\r\nHost: x")
    assert "A3=d" not in redact("Set-Cookie: A3=d=AQAB; Path=/")
    # ordinary words are left alone
    assert redact("monkey=banana keyboard=1") == "monkey=banana keyboard=1"


def test_short_and_empty_secrets_do_not_mask_ordinary_text():
    assert redact("a b c", secrets=["", None, "a"]) == "a b c"


def test_redact_takes_any_object():
    assert redact(ValueError("postgresql://u:p@ss@h/db")) == "postgresql://u:***@h/db"
