"""Nothing in the package sends, or re-sends, a request that can spend credits.

Statically: no code outside the sandbox calls a POST. Dynamically, against the sandbox's
ledger: a guarded generation that fails (503) or times out after being charged is sent
exactly once, whichever way the guard is used.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter import RodinClient
from rodin_jupyter.balance.monitor import BalanceMonitor
from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY, run_cell

PACKAGE = Path(__file__).resolve().parents[2] / "rodin_jupyter"
SPENDING = ("/rodin", "/rodin_texture_only", "/bang")
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def package_sources() -> list[Path]:
    files = [p for p in PACKAGE.rglob("*.py") if "sandbox" not in p.relative_to(PACKAGE).parts]
    assert len(files) > 10
    return files


def sending_calls(tree: ast.AST) -> list[str]:
    """Calls that would send a request able to spend: ``x.post(...)``, ``request("POST")``..."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("post", "put", "patch"):
            found.append(f"line {node.lineno}: .{name}(...)")
        if name not in ("request", "urlopen", "Request", "Retry", "putrequest", "send"):
            continue
        values = [*node.args, *(k.value for k in node.keywords
                                if k.arg in ("method", "allowed_methods"))]
        for value in values:
            for const in ast.walk(value):
                if isinstance(const, ast.Constant) and str(const.value).upper() in WRITE_METHODS:
                    found.append(f"line {node.lineno}: {name}({const.value!r})")
    return found


# The one exception: generate() sends the POST the user asked for (once, never retried;
# tests/test_generate.py proves it against the sandbox's ledger).
JOB_CALLS = "http/jobs_api.py"


def test_no_package_code_sends_a_post() -> None:
    offenders = {str(p.relative_to(PACKAGE)): calls for p in package_sources()
                 if (calls := sending_calls(ast.parse(p.read_text(), str(p))))}
    assert len(offenders.pop(JOB_CALLS, [])) == 1, "one POST call site, in _post()"
    assert offenders == {}


def test_the_static_check_would_notice() -> None:
    sample = ast.parse("import requests\nrequests.post(url)\ns.request('POST', url)\n"
                       "Retry(total=3, allowed_methods=['GET', 'POST'])\n")
    assert len(sending_calls(sample)) == 3


def test_the_client_has_no_retrying_adapter(sandbox: Sandbox) -> None:
    """Retries are the client's own loop, for GET /check_balance only; urllib3 retries none."""
    with RodinClient(FAKE_KEY, sandbox.base_url) as client:
        for adapter in client.session.adapters.values():
            retry = adapter.max_retries  # type: ignore[attr-defined]
            assert retry.total == 0 and not retry.read
        sandbox.inject_fault("/check_balance", status=503, times=1)
        client.check_balance()
    assert {(r.method, r.path) for r in sandbox.requests} == {("GET", "/check_balance")}


# -- the guard runs the body once --------------------------------------------------------------

GENERATION = """\
import requests
answer = requests.post(f"{BASE}/rodin", headers=AUTH, timeout=TIMEOUT,
                       files={"prompt": (None, "a chair"), "tier": (None, "Gen-2")})
answer.raise_for_status()
"""


@pytest.fixture
def guard_shell(ip: Any, sandbox_env: Sandbox, fresh_monitor: BalanceMonitor) -> Iterator[Any]:
    pytest.importorskip("rodin_jupyter.ipython.guard_magics")
    ip.user_ns.update(BASE=sandbox_env.base_url, AUTH={"Authorization": f"Bearer {FAKE_KEY}"},
                      TIMEOUT=5)
    yield ip
    run_cell(ip, "%rodin_guard off")
    sandbox_env.clear_faults()
    for name in ("answer", "requests", "BASE", "AUTH", "TIMEOUT"):
        ip.user_ns.pop(name, None)


def assert_sent_once(sandbox: Sandbox, charged: int) -> None:
    posts = [r for r in sandbox.requests if r.method == "POST"]
    assert [r.path for r in posts] == ["/rodin"], "sent exactly once"
    assert len(sandbox.charges) == charged
    spent = sum((c.credits for c in sandbox.charges), Decimal(0))
    assert sandbox.balance == Decimal(10) - spent


@pytest.mark.parametrize("mode", ["cell magic", "automatic", "both"])
def test_a_failed_generation_is_sent_once(guard_shell: Any, sandbox_env: Sandbox,
                                          mode: str) -> None:
    ip = guard_shell
    sandbox_env.inject_fault("/rodin", status=503, body="upstream busy", times=None)
    if mode != "cell magic":
        assert run_cell(ip, "%rodin_guard on").success
    cell = GENERATION if mode == "automatic" else "%%rodin_guard --tier Gen-2\n" + GENERATION
    result = run_cell(ip, cell)
    assert not result.success  # the 503 is the user's to see...
    assert_sent_once(sandbox_env, charged=0)  # ...and nothing tried it again
    assert all(r.method == "GET" for r in sandbox_env.requests if r.path != "/rodin")


@pytest.mark.parametrize("mode", ["cell magic", "automatic"])
def test_a_charged_but_unanswered_generation_is_sent_once(guard_shell: Any,
                                                          sandbox_env: Sandbox,
                                                          mode: str) -> None:
    """The service took the credits but the answer came after the caller's timeout."""
    ip = guard_shell
    ip.user_ns["TIMEOUT"] = 0.3
    sandbox_env.inject_fault("/rodin", status=None, delay=2.0, times=None)
    if mode == "automatic":
        assert run_cell(ip, "%rodin_guard on").success
        cell = GENERATION
    else:
        cell = "%%rodin_guard --tier Gen-2\n" + GENERATION
    result = run_cell(ip, cell)
    assert not result.success
    error = result.error_in_exec
    assert "Timeout" in f"{type(error).__name__} {error}"
    assert_sent_once(sandbox_env, charged=1)


def test_a_good_generation_is_sent_once_and_counted(guard_shell: Any,
                                                    sandbox_env: Sandbox) -> None:
    ip = guard_shell
    assert run_cell(ip, "%%rodin_guard --tier Gen-2\n" + GENERATION).success
    assert_sent_once(sandbox_env, charged=1)
    assert sandbox_env.balance == Decimal("9.5")


def test_the_balance_readers_never_post(ip: Any, sandbox_env: Sandbox,
                                        fresh_monitor: BalanceMonitor) -> None:
    """The magic, the monitor and the panel read; only GET /check_balance reaches the API."""
    sandbox_env.inject_fault("/check_balance", status=503, times=1)
    run_cell(ip, "%rodin_balance")
    run_cell(ip, "%rodin_balance --cached")
    try:
        import rodin_jupyter.widgets.panel as panel_module
    except ImportError:
        pass
    else:
        panel = panel_module.BalancePanel()
        panel.refresh(wait=True, timeout=10)
        panel.close()
    methods = {(r.method, r.path) for r in sandbox_env.requests}
    assert methods == {("GET", "/check_balance")}
    assert sandbox_env.charges == []
