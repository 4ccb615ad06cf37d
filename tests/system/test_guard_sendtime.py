"""The send-time guard's core against the sandbox over loopback: every HTTP layer, threads,
asyncio, fail closed, refused answers, the exact ledger, and exact unhooking. No IPython.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import importlib.util
import threading
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
import urllib3

from rodin_jupyter.balance.ledger import get_ledger
from rodin_jupyter.balance.settings import settings
from rodin_jupyter.guard.body import UnreadableBody, read_fields
from rodin_jupyter.guard.decision import GuardBlocked, billable_endpoint
from rodin_jupyter.guard.sendtime import SendTimeGuard, get_guard
from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY

D = Decimal
H = {"Authorization": f"Bearer {FAKE_KEY}"}
HAS_HTTPX = importlib.util.find_spec("httpx") is not None


def hooked_attributes() -> dict[tuple[str, str], Any]:
    found = {("http.client.HTTPConnection", n): http.client.HTTPConnection.__dict__[n]
             for n in ("request", "putrequest", "getresponse")}
    found[("urllib3.HTTPConnectionPool", "urlopen")] = \
        urllib3.connectionpool.HTTPConnectionPool.__dict__["urlopen"]
    found[("requests.Session", "send")] = requests.Session.__dict__["send"]
    if HAS_HTTPX:
        import httpx

        found[("httpx.Client", "send")] = httpx.Client.__dict__["send"]
        found[("httpx.AsyncClient", "send")] = httpx.AsyncClient.__dict__["send"]
        import httpcore

        found[("httpcore.ConnectionPool", "handle_request")] = \
            httpcore.ConnectionPool.__dict__["handle_request"]
        found[("httpcore.AsyncConnectionPool", "handle_async_request")] = \
            httpcore.AsyncConnectionPool.__dict__["handle_async_request"]
    return found


@pytest.fixture
def guard(sandbox_env: Sandbox, fresh_monitor: Any) -> Iterator[SendTimeGuard]:
    """The process guard, installed, with a fresh account and ledger."""
    g = get_guard()
    g.new_account()
    get_ledger().clear()
    before = hooked_attributes()
    g.install()
    yield g
    g.uninstall()
    assert hooked_attributes() == before
    get_ledger().clear()
    settings.guard.reading_max_age, settings.guard.on_error = 60.0, "block"


def multipart(**fields: str) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body by hand (the service takes /rodin only as multipart)."""
    fields = {"prompt": "a cube", **fields}
    parts = b"".join(f'--bb\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                     .encode() for k, v in fields.items())
    return parts + b"--bb--\r\n", {**H, "Content-Type": "multipart/form-data; boundary=bb"}


def post_requests(sb: Sandbox, tier: str = "Gen-2", **extra: str) -> requests.Response:
    files = {"prompt": (None, "a cube"), "tier": (None, tier)}
    files.update({k: (None, v) for k, v in extra.items()})
    return requests.post(f"{sb.base_url}/rodin", headers=H, files=files, timeout=10)


def run_loop(coro: Any) -> Any:
    """asyncio.run in a fresh thread: independent of a loop another test (Playwright's sync
    API) left running in the main thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=120)


def test_billable_matching() -> None:
    base = "https://api.hyper3d.com/api/v2"
    assert billable_endpoint("POST", f"{base}/rodin") == "rodin"
    assert billable_endpoint(b"POST", f"{base}/bang/") == "bang"
    assert billable_endpoint("POST", "https://hyperhuman.deemos.com/api/v2/rodin_texture_only")
    assert billable_endpoint("GET", f"{base}/rodin") is None
    for free in ("status", "download", "check_balance", "rodinx", "rodin/logs"):
        assert billable_endpoint("POST", f"{base}/{free}") is None
    # any host under the service's base path is the same paid service (proxy, IP, alias)
    assert billable_endpoint("POST", "https://example.com/api/v2/rodin") == "rodin"
    assert billable_endpoint("POST", "https://example.com/logs/rodin") is None


def test_body_reading() -> None:
    multipart = (b'--xx\r\nContent-Disposition: form-data; name="tier"\r\n\r\nGen-2\r\n'
                 b'--xx\r\nContent-Disposition: form-data; name="images"; filename="a.png"'
                 b"\r\n\r\n\x89PNG\r\n--xx--\r\n")
    assert read_fields("multipart/form-data; boundary=xx", multipart) == {
        "tier": ["Gen-2"], "images": ["<file>"]}
    assert read_fields("application/x-www-form-urlencoded", "tier=Sketch&a=1") == {
        "tier": ["Sketch"], "a": ["1"]}
    assert read_fields("application/json", b'{"tier": "Gen-2", "addons": ["HighPack"]}') == {
        "tier": ["Gen-2"], "addons": ['["HighPack"]']}
    with pytest.raises(UnreadableBody, match="generator"):
        read_fields(None, (b for b in [b"x"]))
    with pytest.raises(UnreadableBody, match="RFC 2231"):
        read_fields("multipart/form-data; boundary=xx",
                    b"--xx\r\nContent-Disposition: form-data; name*=utf-8''tier\r\n\r\n"
                    b"Gen-2\r\n--xx--\r\n")
    unquoted = b"--xx\r\nContent-Disposition: form-data; name=tier\r\n\r\nSketch\r\n--xx--"
    assert read_fields("multipart/form-data; boundary=xx", unquoted) == {"tier": ["Sketch"]}


def test_eight_threads_at_one_credit_send_exactly_two(guard: SendTimeGuard,
                                                      sandbox_env: Sandbox) -> None:
    sandbox_env.set_balance("1.0")
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def submit() -> None:
        barrier.wait()
        try:
            outcomes.append(str(post_requests(sandbox_env).status_code))
        except GuardBlocked:
            outcomes.append("blocked")

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["201", "201"] + ["blocked"] * 6
    assert sandbox_env.count("POST", "/rodin") == 2
    assert sandbox_env.balance == 0 and len(sandbox_env.charges) == 2
    assert get_ledger().total() == D(1)


@pytest.mark.parametrize("layer", ["urllib.request", "http.client", "urllib3", "requests"])
def test_every_layer_is_stopped_before_sending(guard: SendTimeGuard, sandbox_env: Sandbox,
                                               layer: str) -> None:
    sandbox_env.set_balance("0.2")
    url = f"{sandbox_env.base_url}/rodin"
    with pytest.raises(GuardBlocked, match=r"needs 0\.5 credits, balance is 0\.2: not sent"):
        if layer == "urllib.request":
            urllib.request.urlopen(urllib.request.Request(
                url, data=b"tier=Gen-2", headers=H, method="POST"), timeout=10)
        elif layer == "http.client":
            conn = http.client.HTTPConnection("127.0.0.1", sandbox_env.port, timeout=10)
            conn.request("POST", "/api/v2/rodin", body="tier=Gen-2", headers=H)
        elif layer == "urllib3":
            urllib3.PoolManager().request("POST", url, fields={"tier": "Gen-2"}, headers=H)
        else:
            session = requests.Session()
            session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
            session.post(url, headers=H, data={"tier": "Gen-2"}, timeout=10)
    assert sandbox_env.count("POST", "/rodin") == 0


def test_every_layer_is_ledgered_like_the_sandbox_charges(guard: SendTimeGuard,
                                                          sandbox_env: Sandbox) -> None:
    url = f"{sandbox_env.base_url}/rodin"
    body, headers = multipart(tier="Gen-2.5-Extreme-High")
    urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers,
                                                  method="POST"), timeout=10).read()
    conn = http.client.HTTPConnection("127.0.0.1", sandbox_env.port, timeout=10)
    body, headers = multipart(tier="Gen-2", addons='["HighPack"]')
    conn.request("POST", "/api/v2/rodin", body=body, headers=headers)
    conn.getresponse().read()
    urllib3.PoolManager().request("POST", url, fields={"prompt": "x", "tier": "Sketch"},
                                  headers=H)
    post_requests(sandbox_env, addons='["HighPack"]')
    entries = get_ledger().entries()
    assert [e.credits for e in entries] == [D(1), D("1.5"), D("0.5"), D("1.5")]
    assert [e.status for e in entries] == ["sent"] * 4
    assert get_ledger().total() == sum(c.credits for c in sandbox_env.charges) == D("4.5")
    assert [e.task_uuid for e in entries[2:]] == [c.task_uuid for c in sandbox_env.charges[2:]]


def test_piecewise_http_client_is_refused(guard: SendTimeGuard, sandbox_env: Sandbox) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", sandbox_env.port, timeout=10)
    with pytest.raises(GuardBlocked, match="piece by piece"):
        conn.putrequest("POST", "/api/v2/rodin")
    assert sandbox_env.count() == 0


def test_unreadable_balance_fails_closed_and_allow_sends(guard: SendTimeGuard,
                                                         sandbox_env: Sandbox,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    sandbox_env.inject_fault("/check_balance", status=503, times=None)
    with pytest.raises(GuardBlocked, match="could not read the balance"):
        post_requests(sandbox_env)
    assert sandbox_env.count("POST", "/rodin") == 0
    settings.guard.on_error = "allow"
    assert post_requests(sandbox_env).status_code == 201
    assert "sending POST /rodin (tier Gen-2) anyway" in capsys.readouterr().err


def test_unpriceable_requests_name_the_value(guard: SendTimeGuard, sandbox_env: Sandbox) -> None:
    with pytest.raises(GuardBlocked, match="'Gen-9'"):
        post_requests(sandbox_env, tier="Gen-9")
    with pytest.raises(GuardBlocked, match="'MegaPack'"):
        post_requests(sandbox_env, addons="MegaPack")
    with pytest.raises(GuardBlocked, match="generator"):
        requests.post(f"{sandbox_env.base_url}/rodin", headers=H,
                      data=(b for b in [b"tier=Gen-2"]), timeout=10)
    assert sandbox_env.count("POST", "/rodin") == 0


def test_a_refused_answer_is_not_spent(guard: SendTimeGuard, sandbox_env: Sandbox) -> None:
    assert post_requests(sandbox_env).status_code == 201  # the guard now holds a reading of 10
    sandbox_env.set_balance("0")  # spent elsewhere: the service refuses with 2xx + error
    body = post_requests(sandbox_env).json()
    assert "INSUFFICIENT_FUND" in body["error"]
    sandbox_env.inject_fault("/rodin", status=429, times=1)
    post_requests(sandbox_env)
    assert [e.status for e in get_ledger().entries()] == ["sent", "refused", "refused"]
    assert get_ledger().total() == D("0.5") and guard.account.in_flight == 0


def test_reconciliation_names_the_scale_setting(guard: SendTimeGuard, sandbox_env: Sandbox,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    settings.guard.reading_max_age = 0.0  # a fresh reading before every request
    sandbox_env.set_balance("100")
    for _ in range(4):  # the service counts tenths: each 0.5 takes 5 off the balance
        post_requests(sandbox_env)
        sandbox_env.set_balance(sandbox_env.balance - D("4.5"))
    err = capsys.readouterr().err
    assert err.count("dropping 10x") == 1 and "RodinMagics.balance_scale = 10" in err
    assert "note" in get_ledger().to_json()


@pytest.mark.skipif(not HAS_HTTPX, reason="httpx is not installed")
def test_httpx_sync_and_async(guard: SendTimeGuard, sandbox_env: Sandbox) -> None:
    import httpx

    url = f"{sandbox_env.base_url}/rodin"
    sandbox_env.set_balance("1.0")
    with httpx.Client(headers=H) as client:
        files = {"prompt": (None, "x"), "tier": (None, "Gen-2")}
        assert client.post(url, files=files).status_code == 201

    async def batch() -> list[Any]:
        async with httpx.AsyncClient(headers=H) as client:
            return await asyncio.gather(
                *[client.post(url, files=files) for _ in range(4)],
                return_exceptions=True)

    outcomes = run_loop(batch())
    assert sum(isinstance(o, GuardBlocked) for o in outcomes) == 3
    assert sandbox_env.count("POST", "/rodin") == 2 and sandbox_env.balance == 0
    assert get_ledger().total() == D(1)


def test_asyncio_to_thread(guard: SendTimeGuard, sandbox_env: Sandbox) -> None:
    sandbox_env.set_balance("1.0")

    async def batch() -> list[Any]:
        return await asyncio.gather(*[asyncio.to_thread(post_requests, sandbox_env)
                                      for _ in range(5)], return_exceptions=True)

    outcomes = run_loop(batch())
    assert sum(isinstance(o, GuardBlocked) for o in outcomes) == 3
    assert sandbox_env.count("POST", "/rodin") == 2
