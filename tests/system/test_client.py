"""The HTTP core against the real sandbox over loopback: values, errors, retries, secrecy."""

from __future__ import annotations

import logging
import time
from decimal import Decimal

import pytest

from rodin_jupyter import (
    BadResponseError,
    InsecureURLError,
    KeyRefusedError,
    MissingKeyError,
    RateLimitedError,
    RodinClient,
    RodinError,
    RodinNetworkError,
    RodinTimeoutError,
    ServiceError,
    check_balance,
)
from rodin_jupyter.http.urls import DEFAULT_BASE_URL, resolve_base_url
from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY


def client_for(sb: Sandbox, **kwargs: object) -> RodinClient:
    return RodinClient(FAKE_KEY, sb.base_url, **kwargs)  # type: ignore[arg-type]


def test_reads_balance_as_decimal_with_time(sandbox: Sandbox) -> None:
    sandbox.set_balance("12.5")
    with client_for(sandbox) as client:
        reading = client.check_balance()
    assert reading.balance == Decimal("12.5")
    assert isinstance(reading.balance, Decimal)
    assert reading.checked_at.tzinfo is not None
    assert reading.age() < 5


def test_integer_balance_stays_exact(sandbox: Sandbox) -> None:
    sandbox.set_balance(7)
    assert check_balance(FAKE_KEY, sandbox.base_url).balance == Decimal(7)


def test_key_and_base_from_environment(sandbox_env: Sandbox) -> None:
    sandbox_env.set_balance("3")
    with RodinClient() as client:
        assert client.key_source == "RODIN_API_KEY"
        assert client.check_balance().balance == Decimal(3)


def test_hyper3d_variable_is_the_fallback(sandbox: Sandbox,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPER3D_API_KEY", FAKE_KEY)
    with RodinClient(base_url=sandbox.base_url) as client:
        assert client.key_source == "HYPER3D_API_KEY"
        assert client.check_balance().balance == Decimal(10)


def test_rodin_variable_wins_over_hyper3d(sandbox: Sandbox,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RODIN_API_KEY", FAKE_KEY)
    monkeypatch.setenv("HYPER3D_API_KEY", "FAKE-other-key")
    with RodinClient(base_url=sandbox.base_url) as client:
        assert client.key_source == "RODIN_API_KEY"
        client.check_balance()


def test_default_base_is_the_real_service(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_base_url() == DEFAULT_BASE_URL
    monkeypatch.setenv("RODIN_API_BASE", "http://127.0.0.1:9/api/v2/")
    assert resolve_base_url() == "http://127.0.0.1:9/api/v2"


def test_one_session_reuses_its_connection(sandbox: Sandbox) -> None:
    with client_for(sandbox) as client:
        for _ in range(5):
            client.check_balance()
        pools = client.session.adapters["http://"].poolmanager.pools
        (only_key,) = pools.keys()
        assert pools[only_key].num_connections == 1
    assert sandbox.count("GET", "/check_balance") == 5


# -- errors: each class, its message, never the key -------------------------------------


def test_missing_key_names_both_variables() -> None:
    with pytest.raises(MissingKeyError) as info:
        RodinClient(base_url="http://127.0.0.1:9/api/v2")
    assert "RODIN_API_KEY" in str(info.value) and "HYPER3D_API_KEY" in str(info.value)


def test_wrong_key_is_refused(sandbox: Sandbox) -> None:
    with RodinClient("FAKE-wrong-key", sandbox.base_url) as client, \
            pytest.raises(KeyRefusedError) as info:
        client.check_balance()
    assert "refused (HTTP 401)" in str(info.value)
    assert "FAKE-wrong-key" not in str(info.value) + repr(info.value)


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_key_problems_whatever_the_body(sandbox: Sandbox, status: int) -> None:
    sandbox.inject_fault("/check_balance", status=status, body='{"balance": 5}',
                         content_type="application/json")
    with client_for(sandbox) as client, pytest.raises(KeyRefusedError, match=str(status)):
        client.check_balance()


@pytest.mark.parametrize("base", [
    "http://api.hyper3d.com/api/v2", "http://10.0.0.1/api/v2", "ftp://127.0.0.1/x",
])
def test_plain_http_refused_off_loopback(base: str) -> None:
    with pytest.raises(InsecureURLError) as info:
        RodinClient(FAKE_KEY, base)
    assert "https" in str(info.value)


@pytest.mark.parametrize("base", ["http://localhost:1/api/v2", "http://127.0.0.2:1/api/v2",
                                  "http://[::1]:1/api/v2"])
def test_plain_http_allowed_on_loopback(base: str) -> None:
    RodinClient(FAKE_KEY, base).close()


def test_rate_limit_honours_retry_after_then_gives_up(sandbox: Sandbox) -> None:
    sandbox.inject_fault("/check_balance", status=429, headers={"Retry-After": "1"}, times=None)
    start = time.monotonic()
    with client_for(sandbox, retries=1) as client, pytest.raises(RateLimitedError) as info:
        client.check_balance()
    assert time.monotonic() - start >= 0.9
    assert sandbox.count("GET", "/check_balance") == 2
    assert "rate limiting" in str(info.value) and "retry after 1 s" in str(info.value)


def test_transient_503_is_retried_and_recovers(sandbox: Sandbox) -> None:
    sandbox.inject_fault("/check_balance", status=503, times=2)
    with client_for(sandbox, retries=2, backoff=0.01) as client:
        assert client.check_balance().balance == Decimal(10)
    assert sandbox.count("GET", "/check_balance") == 3


def test_500_is_a_service_error_without_retry(sandbox: Sandbox) -> None:
    sandbox.inject_fault("/check_balance", status=500, body="<html>oops</html>",
                         content_type="text/html", times=None)
    with client_for(sandbox) as client, pytest.raises(ServiceError, match="HTTP 500"):
        client.check_balance()
    assert sandbox.count("GET", "/check_balance") == 1


def test_wrong_base_path_says_check_the_address(sandbox: Sandbox) -> None:
    with RodinClient(FAKE_KEY, sandbox.origin + "/nope") as client, \
            pytest.raises(ServiceError, match="RODIN_API_BASE"):
        client.check_balance()


def test_nothing_listening_is_a_network_error() -> None:
    with RodinClient(FAKE_KEY, "http://127.0.0.1:9/api/v2", retries=1, backoff=0.01) as client, \
            pytest.raises(RodinNetworkError, match=r"Could not reach 127\.0\.0\.1:9"):
        client.check_balance()


def test_slow_answer_times_out_within_the_deadline(sandbox: Sandbox) -> None:
    sandbox.inject_fault("/check_balance", status=200, delay=5, times=None)
    start = time.monotonic()
    with client_for(sandbox, read_timeout=0.3, deadline=1.0, backoff=0.05) as client, \
            pytest.raises(RodinTimeoutError, match="did not answer in time"):
        client.check_balance()
    assert time.monotonic() - start < 2.5


@pytest.mark.parametrize(("body", "message"), [
    ("<!doctype html><p>Login</p>", "HTML page"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"error": "API_SOMETHING"}', "no 'balance' field (service says API_SOMETHING)"),
    ('{"balance": null}', "null, not a number"),
    ('{"balance": "12"}', "a string, not a number"),
    ('{"balance": true}', "a boolean, not a number"),
    ('{"balance": NaN}', "not a number"),
    ('{"balance": Infinity}', "not a number"),
    ('{"balance": -2}', "negative balance (-2)"),
    ('{"balance": 1e999}', "implausibly large"),
])
def test_unreadable_answers(sandbox: Sandbox, body: str, message: str) -> None:
    sandbox.inject_fault("/check_balance", status=200, body=body,
                         content_type="application/json", times=None)
    with client_for(sandbox) as client, pytest.raises(BadResponseError) as info:
        client.check_balance()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_every_error_is_a_rodin_error() -> None:
    for cls in (MissingKeyError, InsecureURLError, KeyRefusedError, RateLimitedError,
                ServiceError, RodinNetworkError, RodinTimeoutError, BadResponseError):
        assert issubclass(cls, RodinError)


def test_key_never_in_repr_or_logs(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox.inject_fault("/check_balance", status=503, times=1)
    with client_for(sandbox, backoff=0.01) as client:
        client.check_balance()
        assert FAKE_KEY not in repr(client) and FAKE_KEY not in str(client.__dict__)
    assert caplog.records, "the client should log its retries at DEBUG"
    assert FAKE_KEY not in caplog.text
    assert all(FAKE_KEY not in r.getMessage() for r in caplog.records)


def test_errors_carry_no_chain_back_to_the_request(sandbox: Sandbox) -> None:
    """requests' exceptions hold the prepared request, and so the Authorization header."""
    sandbox.inject_fault("/check_balance", status=None, drop=True, times=None)
    with client_for(sandbox, retries=0) as client, pytest.raises(RodinError) as info:
        client.check_balance()
    assert info.value.__context__ is None and info.value.__cause__ is None
    frames = []
    tb = info.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "check_balance"  # nothing deeper than the public method
