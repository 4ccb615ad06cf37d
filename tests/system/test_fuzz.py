"""Property-based tests: whatever comes back, a valid balance or one of our own errors.

Pure functions get many examples; the real client against a real socket gets fewer (each
example is a request), with short timeouts so a bad example costs at most a second.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rodin_jupyter import RodinClient, RodinError
from rodin_jupyter.errors import BadResponseError, InsecureURLError, MissingKeyError
from rodin_jupyter.http.answers import MAX_BALANCE, load_json, parse_balance, service_error_code
from rodin_jupyter.http.client import MAX_RETRY_AFTER
from rodin_jupyter.http.key import ApiKey
from rodin_jupyter.http.messages import retry_after_seconds
from rodin_jupyter.http.reading import BalanceReading
from rodin_jupyter.http.urls import resolve_base_url
from tests.conftest import FAKE_KEY
from tests.faultserver import NETWORK_VARIABLES, FaultServer, Reply

PURE = settings(max_examples=400, deadline=None, database=None)
NETWORK = settings(max_examples=60, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- parsing -----------------------------------------------------------------------------------


def assert_balance_or_bad_response(body: bytes) -> Decimal | None:
    try:
        value = parse_balance(body)
    except BadResponseError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) <= 200
        assert message.isprintable()
        return None
    assert type(value) is Decimal
    assert value.is_finite() and Decimal(0) <= value <= MAX_BALANCE
    return value


@PURE
@given(st.binary(max_size=400))
@example(b"\xef\xbb\xbf{\"balance\": 1}")
@example(b"[" * 100_000)
@example(b'{"balance": 1e999999999}')
@example(b'{"balance": -0}')
@example(b'{"balance": 1, "balance": -1}')
@example(b'{"balance": 0.1e-999999999}')
def test_parse_balance_of_any_bytes(body: bytes) -> None:
    assert_balance_or_bad_response(body)


json_scalars = (st.none() | st.booleans() | st.integers() | st.text(max_size=20)
                | st.floats(allow_nan=True, allow_infinity=True))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


@PURE
@given(json_values)
def test_parse_balance_of_any_json_value(value: Any) -> None:
    assert_balance_or_bad_response(json.dumps(value).encode())


finite_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


@PURE
@given(json_values, st.dictionaries(st.text(max_size=8), finite_json_values, max_size=3))
def test_parse_balance_of_any_balance_field(balance: Any, extra: dict[str, Any]) -> None:
    """Other fields (valid JSON) never change the verdict on ``balance``."""
    body = json.dumps({**extra, "balance": balance}).encode()
    value = assert_balance_or_bad_response(body)
    not_a_number = isinstance(balance, bool) or not isinstance(balance, int | float)
    if not_a_number or (isinstance(balance, float) and not math.isfinite(balance)):
        assert value is None
    elif 0 <= balance <= MAX_BALANCE:
        expected = Decimal(repr(balance)) if isinstance(balance, float) else Decimal(balance)
        assert value == expected
    else:
        assert value is None


number_text = st.from_regex(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,12})?",
                            fullmatch=True)


@PURE
@given(number_text)
def test_any_json_number_is_exact_or_refused(text: str) -> None:
    value = assert_balance_or_bad_response(f'{{"balance": {text}}}'.encode())
    exact = Decimal(text)
    if value is not None:
        assert value == exact  # no float rounding on the way
    else:
        assert exact < 0 or exact > MAX_BALANCE


@PURE
@given(st.text(max_size=80))
def test_balance_as_arbitrary_json_text(text: str) -> None:
    assert_balance_or_bad_response(('{"balance": ' + text + "}").encode("utf-8", "replace"))


@PURE
@given(json_values)
def test_service_error_codes_are_never_echoed_raw(value: Any) -> None:
    code = service_error_code({"error": value})
    assert code is None or (isinstance(code, str) and code.isprintable() and len(code) <= 60)
    with contextlib.suppress(BadResponseError):
        load_json(json.dumps(value).encode())


# -- headers and settings ----------------------------------------------------------------------


@PURE
@given(st.text(max_size=40))
@example("inf")
@example("1e308")
@example("-5")
@example("NaN")
@example("Fri, 31 Dec 9999 23:59:59 GMT")
@example("Mon, 01 Jan 2001 00:00:00 +9999")
def test_retry_after_is_a_bounded_number_or_nothing(value: str) -> None:
    seconds = retry_after_seconds(value)
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= MAX_RETRY_AFTER)
    if seconds is not None:
        assert len(f"retry after {seconds:.0f} s") < 40


@PURE
@given(st.text(max_size=60))
@example("http://[::1")
@example("https://[")
@example("http://127.0.0.1:99999/api/v2")
@example("https://exa mple.com")
def test_base_urls_are_accepted_or_refused_cleanly(text: str) -> None:
    try:
        base = resolve_base_url(text or None, environ={})
    except InsecureURLError as exc:
        assert "\n" not in str(exc)
        return
    assert base.startswith(("http://", "https://"))


@PURE
@given(st.text(max_size=40))
@example("key\u200b")
@example("Bearer abc")
@example("kéy")
def test_keys_are_sendable_or_refused(text: str) -> None:
    try:
        key = ApiKey(text)
    except MissingKeyError as exc:
        assert "\n" not in str(exc) and (not text.strip() or text.strip() not in str(exc))
        return
    assert repr(key) == "<ApiKey from argument: redacted>"
    f"Bearer {key.reveal()}".encode("latin-1")  # http.client must be able to send it


# -- the real client over a socket ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with FaultServer() as fault_server:
        yield fault_server


@pytest.fixture(autouse=True)
def hermetic_network(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NETWORK_VARIABLES:
        monkeypatch.delenv(name, raising=False)


header_names = st.sampled_from([
    "Content-Length", "Content-Type", "Content-Encoding", "Transfer-Encoding", "Retry-After",
    "Location", "Connection", "WWW-Authenticate", "X-Whatever", "Set-Cookie",
])
latin1_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    blacklist_characters="\x7f"), max_size=30)
header_values = (latin1_text | st.integers(-5, 10**9).map(str)
                 | st.sampled_from(["gzip", "deflate", "br", "zstd", "chunked", "identity",
                                    "\u00b2", "1e3", "0", "-1", "close", "http://127.0.0.2:1/x",
                                    "/relative", "http://[::1", "application/json"]))
headers = st.lists(st.tuples(header_names, header_values), max_size=4)
bodies = (st.binary(max_size=300)
          | json_values.map(lambda v: json.dumps({"balance": v}).encode())
          | st.sampled_from([b'{"balance": 10}', b'{"balance": 2.5}', b""]))
statuses = st.integers(100, 599) | st.sampled_from([200, 201, 204, 301, 302, 307, 401, 403,
                                                     404, 429, 500, 502, 503, 504, 600, 999])
replies = st.builds(
    Reply, status=statuses, body=bodies, headers=headers,
    content_type=st.none() | st.sampled_from(["application/json", "text/html"]),
    framing=st.sampled_from(["length", "close", "chunked"]),
    mode=st.sampled_from(["answer", "answer", "answer", "drop"]),
)
raw_replies = (st.binary(max_size=200)
               | st.lists(st.tuples(header_names, header_values), max_size=4).map(
                   lambda hs: ("HTTP/1.1 200 OK\r\n" + "".join(f"{n}: {v}\r\n" for n, v in hs)
                               + "\r\n" + '{"balance": 3}').encode("latin-1"))
               ).map(lambda raw: Reply(mode="raw", body=raw))


def assert_reading_or_our_error(server: FaultServer, reply: Reply) -> None:
    server.set(reply)
    with RodinClient(FAKE_KEY, server.base_url, read_timeout=0.5, deadline=0.8, retries=1,
                     backoff=0.01) as client:
        try:
            reading = client.check_balance()
        except RodinError as exc:
            message = str(exc)
            assert message and "\n" not in message and len(message) <= 220, message
            assert message.isprintable(), message
            assert FAKE_KEY not in message and FAKE_KEY not in repr(exc)
            return
    assert isinstance(reading, BalanceReading)
    assert reading.balance.is_finite() and reading.balance >= 0
    if reply.mode == "answer":
        assert 200 <= reply.status < 300


@NETWORK
@given(replies)
@example(Reply(headers=[("Content-Length", "\u00b2")]))
@example(Reply(status=302, headers=[("Location", "http://[::1")]))
@example(Reply(headers=[("Content-Encoding", "gzip")]))
@example(Reply(status=429, headers=[("Retry-After", "inf")]))
def test_client_with_any_status_headers_and_body(server: FaultServer, reply: Reply) -> None:
    assert_reading_or_our_error(server, reply)


@NETWORK
@given(raw_replies)
@example(Reply(mode="raw", body=b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n{}"))
@example(Reply(mode="raw", body=b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n"))
@example(Reply(mode="raw", body=b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000 + b"\r\n\r\n"))
@example(Reply(mode="raw", body=b"HTTP/1.1 2000 OK\r\n\r\n"))
@example(Reply(mode="raw", body=b"SSH-2.0-OpenSSH_9.6\r\n"))
def test_client_with_any_bytes_on_the_wire(server: FaultServer, reply: Reply) -> None:
    assert_reading_or_our_error(server, reply)


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=30))
@example("key\u200b")
@example("kéy")
def test_any_key_is_sent_or_refused_before_sending(server: FaultServer, key: str) -> None:
    server.set(Reply())
    before = len(server.hits)
    try:
        client = RodinClient(key, server.base_url, read_timeout=0.5, deadline=0.8)
    except MissingKeyError:
        assert len(server.hits) == before
        return
    with client, contextlib.suppress(RodinError):
        client.check_balance()
    assert len(server.hits) == before + 1
