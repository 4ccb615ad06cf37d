"""Regression tests for the red-team review of the send-time guard: host spellings, nested
requests, multipart ambiguity, forked children, httpx transports / httpcore, shell escapes,
and the asyncio tests' independence of a loop running in the main thread."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from rodin_jupyter.balance.ledger import get_ledger
from rodin_jupyter.guard.body import UnreadableBody, read_fields
from rodin_jupyter.guard.decision import GuardBlocked, billable_endpoint
from rodin_jupyter.guard.sendtime import SendTimeGuard
from rodin_jupyter.ipython.cell_guard import posts_from_shell
from rodin_jupyter.sandbox import Sandbox
from tests.system.test_guard_sendtime import HAS_HTTPX, H, guard, post_requests, run_loop

__all__ = ["guard"]  # the fixture, shared with test_guard_sendtime
MP = "multipart/form-data; boundary=bnd"
FILES = {"prompt": (None, "a cat"), "tier": (None, "Gen-2")}


def mp(*parts: tuple[bytes, bytes]) -> bytes:
    return b"".join(b"--bnd\r\n" + h + b"\r\n\r\n" + v + b"\r\n" for h, v in parts) + \
        b"--bnd--\r\n"


def cd(name: str) -> bytes:
    return f'Content-Disposition: form-data; name="{name}"'.encode()


@pytest.fixture
def loopback_base(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("RODIN_API_BASE", "http://127.0.0.1:8123/api/v2")
    yield "http://127.0.0.1:8123/api/v2"


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "localhost.", "127.0.0.1", "127.1",
                                  "127.0.0.2", "2130706433", "0x7f.1", "[::ffff:127.0.0.1]",
                                  "[::1]", "0.0.0.0", "x.localhost"])
def test_every_loopback_spelling_is_billable(loopback_base: str, host: str) -> None:
    for port in ("8123", "9999"):
        assert billable_endpoint("POST", f"http://{host}:{port}/x/rodin") == "rodin"


@pytest.mark.parametrize("url", [
    "https://API.Hyper3D.com/api/v2/rodin", "https://api.hyper3d.com./api/v2/rodin",
    "http://api.hyper3d.com/api/v2/rodin", "https://api.hyper3d.com:8443/v9/bang",
    "https://api.hyper3d.com/api/v2/%72odin", "https://api.hyper3d.com/api/v2/rodin;x/",
    "https://api.hyper3d.com/api/v2//./rodin", "https://api.hyper3d.com/api/x/../v2/rodin",
    "https://203.0.113.7/api/v2/rodin_texture_only", "http://proxy.internal/api/v2/rodin"])
def test_service_spellings_and_base_paths_are_billable(loopback_base: str, url: str) -> None:
    assert billable_endpoint("post", url) is not None


def test_not_billable_stays_not_billable(loopback_base: str) -> None:
    assert billable_endpoint("GET", "http://localhost:8123/api/v2/rodin") is None
    assert billable_endpoint("POST", "http://localhost:8123/api/v2/status") is None
    assert billable_endpoint("POST", "https://example.com/blog/rodin") is None
    assert billable_endpoint("POST", "http://128.0.0.1/x/rodin") is None


def test_other_spellings_of_the_sandbox_are_stopped(guard: SendTimeGuard,
                                                    sandbox_env: Sandbox) -> None:
    sandbox_env.set_balance("0.2")
    for host in ("localhost", "127.1", "2130706433", "0x7f.1"):
        url = sandbox_env.base_url.replace("127.0.0.1", host) + "/rodin/"
        with pytest.raises(GuardBlocked, match="not sent"):
            requests.post(url, files=FILES, headers=H, timeout=10)
    assert sandbox_env.count("POST", "/rodin") == 0


def test_billable_request_from_a_non_billable_posts_hook_is_checked(
        guard: SendTimeGuard, sandbox_env: Sandbox) -> None:
    sandbox_env.set_balance("0.2")
    inner: list[BaseException] = []

    def hook(response: Any, **kwargs: Any) -> Any:
        try:
            post_requests(sandbox_env)
        except GuardBlocked as exc:
            inner.append(exc)
        return response

    requests.post(f"{sandbox_env.base_url}/status", json={"subscription_key": "x"},
                  headers=H, hooks={"response": hook}, timeout=10)
    assert len(inner) == 1 and sandbox_env.count("POST", "/rodin") == 0


def test_folded_headers_and_boundary_text_are_priced_as_the_sandbox_charges(
        guard: SendTimeGuard, sandbox_env: Sandbox) -> None:
    folded = mp((cd("prompt"), b"a cat"),
                (b'Content-Disposition: form-data;\r\n name="tier"', b"Gen-2.5-Extreme-High"))
    inside = mp((cd("prompt"), b"a cat --bnd-- b\r\nx--bnd"),
                (cd("tier"), b"Gen-2.5-Extreme-High"))
    for body in (folded, inside):
        assert read_fields(MP, body)["tier"] == ["Gen-2.5-Extreme-High"]
        guard.account.set_budget(Decimal("0.5"))
        with pytest.raises(GuardBlocked, match="needs 1 credits, the budget"):
            requests.post(f"{sandbox_env.base_url}/rodin", data=body,
                          headers={**H, "Content-Type": MP}, timeout=10)
        guard.account.set_budget(None)
        requests.post(f"{sandbox_env.base_url}/rodin", data=body,
                      headers={**H, "Content-Type": MP}, timeout=10).raise_for_status()
    assert [c.credits for c in sandbox_env.charges] == [Decimal(1), Decimal(1)]
    assert get_ledger().total() == Decimal(2)


@pytest.mark.parametrize("body, why", [
    (mp((cd("tier"), b"Sketch"), (cd("tier"), b"Gen-2")), "two 'tier'"),
    (mp((cd("tier"), b"Sketch")) + b"--bnd\r\n" + cd("tier") + b"\r\n\r\nGen-2\r\n", "after"),
    (mp((b"Content-Disposition: form-data; name*=utf-8''tier", b"Gen-2")), "RFC 2231"),
    (b"--bnd\r\n" + cd("tier") + b"\r\n\r\nGen-2\r\n", "without"),
])
def test_ambiguous_multipart_is_refused(body: bytes, why: str) -> None:
    with pytest.raises(UnreadableBody, match=why):
        read_fields(MP, body)


def _child(base: str) -> str:
    try:
        return str(requests.post(f"{base}/rodin", files=FILES, headers=H, timeout=10)
                   .status_code)
    except GuardBlocked as exc:
        return str(exc)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_forked_children_refuse_billable_requests(guard: SendTimeGuard,
                                                  sandbox_env: Sandbox) -> None:
    sandbox_env.set_balance("10")
    guard.account.read_fresh()  # the parent holds a reading the children must not use
    with multiprocessing.get_context("fork").Pool(2) as pool:
        outcomes = pool.map(_child, [sandbox_env.base_url] * 2)
    assert all("forked child process" in o for o in outcomes), outcomes
    assert sandbox_env.count("POST", "/rodin") == 0
    assert post_requests(sandbox_env).status_code == 201  # the parent still sends


@pytest.mark.skipif(not HAS_HTTPX, reason="httpx is not installed")
def test_httpx_transports_and_httpcore_are_checked(guard: SendTimeGuard,
                                                   sandbox_env: Sandbox) -> None:
    import httpcore
    import httpx

    url = f"{sandbox_env.base_url}/rodin"
    body = mp((cd("prompt"), b"a"), (cd("tier"), b"Gen-2"))
    headers = {**H, "Content-Type": MP}
    sandbox_env.set_balance("0.2")
    with pytest.raises(GuardBlocked):
        httpx.HTTPTransport().handle_request(httpx.Request("POST", url, headers=headers,
                                                           content=body))
    with pytest.raises(GuardBlocked):
        httpcore.request("POST", url, headers=headers, content=body)

    async def via_async_transport() -> None:
        async with httpx.AsyncHTTPTransport() as transport:
            await transport.handle_async_request(httpx.Request("POST", url, headers=headers,
                                                               content=body))

    with pytest.raises(GuardBlocked):
        run_loop(via_async_transport())
    assert sandbox_env.count("POST", "/rodin") == 0
    sandbox_env.set_balance("10")
    answer = httpcore.request("POST", url, headers=headers, content=body)
    assert answer.status == 201
    entries = get_ledger().entries()
    assert len(entries) == 1 and entries[0].status == "sent"  # one layer, one entry
    assert entries[0].task_uuid == sandbox_env.charges[0].task_uuid


def test_async_tests_run_beside_a_loop_in_the_main_thread(guard: SendTimeGuard,
                                                          sandbox_env: Sandbox) -> None:
    """What Playwright's sync API leaves behind: a loop running in the calling thread."""
    sandbox_env.set_balance("1.0")

    async def batch() -> list[Any]:
        return await asyncio.gather(*[asyncio.to_thread(post_requests, sandbox_env)
                                      for _ in range(3)], return_exceptions=True)

    async def main_thread_loop() -> list[Any]:
        old = batch()
        # compat: jupyter_client 7 (Colab's pins) applies nest_asyncio, which lets asyncio.run
        # nest; the old tests' failure only shows where asyncio is unpatched.
        if not getattr(asyncio, "_nest_patched", False):
            with pytest.raises(RuntimeError):
                asyncio.run(old)  # what the old tests did, and why they failed
        old.close()
        return list(run_loop(batch()))

    outcomes = run_loop(main_thread_loop())  # a loop runs in the thread that calls run_loop
    assert sum(isinstance(o, GuardBlocked) for o in outcomes) == 1
    assert sandbox_env.count("POST", "/rodin") == 2


@pytest.mark.parametrize("cell, blocked", [
    ('!echo "step 1; curl -X POST https://api.hyper3d.com/api/v2/rodin -F tier=Gen-2"', False),
    ("!echo 'docs: | curl -X POST $BASE/rodin -d prompt=x'", False),
    ("!cat notes | grep 'curl -X POST .../rodin -F' || true", False),
    ("!curl '$B/rodin", False),  # unclosed quote: uncertain, not judged
    ("!curl -X POST https://api.hyper3d.com/api/v2/rodin -F tier=Gen-2", True),
    ("!echo hi; curl $BASE/rodin -F prompt=x", True),
    ("!FOO=1 sudo curl -XPOST $B/bang", True),
    ("%%bash\ncurl -X POST \\\n  $B/rodin \\\n  -F a=b", True),
])
def test_shell_escapes_are_tokenised(cell: str, blocked: bool) -> None:
    assert posts_from_shell(cell.splitlines(True)) is blocked
