"""The guard in a real in-process IPython shell, against the sandbox over loopback.

No mocks: cells are run with ``run_cell`` like a frontend does, generation cells send real
multipart requests with ``requests``, and the sandbox's request log and credit ledger show
what was (not) sent and spent.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from rodin_jupyter.balance.ledger import get_ledger
from rodin_jupyter.balance.monitor import get_monitor
from rodin_jupyter.errors import PricingError
from rodin_jupyter.guard.decision import GuardBlocked
from rodin_jupyter.guard.price_table import FIELD_REPORT_PRICES, load_prices
from rodin_jupyter.guard.pricing import estimate_cost
from rodin_jupyter.guard.sendtime import get_guard
from rodin_jupyter.ipython.guard_magics import GuardedCellFailed, RodinGuard
from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY, run_cell

D = Decimal


def gen_cell(tier: str = "Gen-2", extra: str = "", marker: str = "ran") -> str:
    """A realistic generation cell: plain requests, multipart tuples, a side effect first."""
    return (
        f"{marker} = True\n"
        "r = requests.post(\n"
        '    f"{BASE}/rodin",\n'
        "    headers=HEADERS,\n"
        f'    files={{"prompt": (None, "a small cube"), "tier": (None, "{tier}"){extra}}},\n'
        "    timeout=10,\n"
        ")\n"
        f"{marker}_after = True\n"
    )


HIGHPACK = ', "addons": (None, \'["HighPack"]\')'


@pytest.fixture(autouse=True)
def fresh_guard() -> Iterator[None]:
    """Each test starts with no reading, nothing spent, an empty ledger."""
    get_guard().new_account()
    get_guard().resume_on_load = False
    get_ledger().clear()
    yield
    get_guard().uninstall()
    get_guard().resume_on_load = False
    get_ledger().clear()


@pytest.fixture
def guarded(ip: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """The shell with the guard on and BASE / HEADERS set like a notebook does."""
    for name in ("ran", "ran_after", "body_ran", "body_ran_after"):
        ip.user_ns.pop(name, None)
    setup = run_cell(ip, "import os, requests\n"
                         "BASE = os.environ['RODIN_API_BASE']\n"
                         "HEADERS = {'Authorization': f\"Bearer {os.environ['RODIN_API_KEY']}\"}")
    assert setup.success
    assert run_cell(ip, "%rodin_guard on").success
    capsys.readouterr()
    yield ip
    run_cell(ip, "%rodin_guard off")
    run_cell(ip, "%rodin_budget off")


def blocked_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a blocked cell printed (and nothing like a traceback)."""
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_blocked_request_is_not_sent_and_the_cell_stops(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.set_balance("0.2")
    result = run_cell(guarded, gen_cell())
    assert isinstance(result.error_in_exec, GuardBlocked)
    assert guarded.user_ns["ran"] is True and "ran_after" not in guarded.user_ns
    assert sandbox_env.count("POST", "/rodin") == 0
    assert sandbox_env.count("GET", "/check_balance") == 1
    line = blocked_line(capsys)
    assert "POST /rodin (tier Gen-2) needs 0.5 credits, balance is 0.2: not sent" in line
    assert FAKE_KEY not in line


def test_enough_balance_sends_once_and_the_ledger_has_it(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cell(guarded, gen_cell("Gen-2.5-High", HIGHPACK))
    assert result.success, result.error_in_exec
    assert sandbox_env.count("POST", "/rodin") == 1 and sandbox_env.balance == D("8.5")
    assert sandbox_env.count("GET", "/check_balance") == 1
    assert run_cell(guarded, gen_cell()).success  # the cached reading less 1.5 proves it
    assert sandbox_env.count("GET", "/check_balance") == 1
    entries = get_ledger().entries()
    count = guarded.execution_count
    assert [(e.cell, e.credits, e.status) for e in entries] == [
        (count - 2, D("1.5"), "sent"), (count - 1, D("0.5"), "sent")]
    assert [e.task_uuid for e in entries] == [c.task_uuid for c in sandbox_env.charges]
    from rodin_jupyter.balance.view import spent_here  # the panel's "spent here"

    monitor_entries = get_monitor().snapshot().ledger
    assert spent_here(get_monitor().snapshot()) == D(2)
    assert [(e.before, e.after) for e in monitor_entries] == [(D(10), D("8.5")),
                                                              (D("8.5"), D(8))]
    capsys.readouterr()
    assert run_cell(guarded, "%rodin_balance --ledger --json").success
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == 2
    first = data["entries"][0]
    assert {k: first[k] for k in ("cell", "endpoint", "tier", "addons", "credits", "status")} \
        == {"cell": count - 2, "endpoint": "rodin", "tier": "Gen-2.5-High",
            "addons": ["HighPack"], "credits": 1.5, "status": "sent"}
    assert first["task_uuid"] == sandbox_env.charges[0].task_uuid and first["consumed"] == 1.5
    assert run_cell(guarded, "%rodin_balance --ledger").success
    assert "Sent 2 billable requests for 2 credits" in capsys.readouterr().out


def test_a_swallowed_refusal_still_fails_the_cell(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.set_balance("0.2")
    result = run_cell(guarded, "try:\n" + "".join("    " + line + "\n" for line in
                                                   gen_cell().splitlines())
                      + "except Exception:\n    pass\n")
    assert isinstance(result.error_in_exec, GuardBlocked)  # so "Run All" stops here
    assert guarded.user_ns["ran"] is True and "ran_after" not in guarded.user_ns
    assert "needs 0.5 credits" in blocked_line(capsys)
    assert run_cell(guarded, "x = 1").success  # the next cell is not affected
    assert sandbox_env.count("POST", "/rodin") == 0


def test_ordinary_cells_make_no_request(guarded: Any, sandbox_env: Sandbox) -> None:
    cells = [
        "x = 1 + 1",
        "ENDPOINTS = {'generate': f'{BASE}/rodin', 'status': f'{BASE}/status'}",
        "requests.post(ENDPOINTS['status'], headers=HEADERS, json={'subscription_key': 'k'})",
        "import re\nre.findall(r'/rodin\\b', 'POST /rodin 201\\nPOST /status 200')",
        "help(requests.post)",
        "!echo POST /rodin",
        "# notes on Rodin generations and the bang endpoint\nimport rodin_jupyter",
        "%rodin_guard",
    ]
    checked = get_guard().checked
    for code in cells:
        assert run_cell(guarded, code).success, code
    assert sandbox_env.count("POST", "/rodin") == 0
    assert sandbox_env.count("GET", "/check_balance") == 0
    assert get_guard().checked == checked


@pytest.mark.parametrize(("status", "words"), [(503, "unavailable"), (401, "refused")])
def test_unknown_balance_blocks_with_the_reason(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str],
        status: int, words: str) -> None:
    sandbox_env.inject_fault("/check_balance", status=status, times=None)
    result = run_cell(guarded, gen_cell())
    assert isinstance(result.error_in_exec, GuardBlocked)
    assert sandbox_env.count("POST", "/rodin") == 0
    line = blocked_line(capsys)
    assert "could not read the balance" in line and words in line and "not sent" in line
    assert FAKE_KEY not in line


def test_on_error_allow_sends_with_a_warning(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cell(guarded, "%rodin_guard on --on-error allow").success
    sandbox_env.inject_fault("/check_balance", status=503, times=None)
    capsys.readouterr()
    assert run_cell(guarded, gen_cell()).success
    assert sandbox_env.count("POST", "/rodin") == 1
    err = capsys.readouterr().err
    assert "could not read the balance" in err and "anyway" in err
    assert run_cell(guarded, "%rodin_guard on --on-error block").success


def test_unknown_tier_is_refused_naming_it(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cell(guarded, gen_cell("Gen-9"))
    assert isinstance(result.error_in_exec, GuardBlocked)
    assert "Unknown Rodin tier 'Gen-9'" in blocked_line(capsys)
    assert sandbox_env.count() == 0  # no balance read needed to refuse


def test_shell_escape_posting_to_rodin_is_refused(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cell(guarded, '!curl -s -X POST "$RODIN_API_BASE/rodin" -F tier=Gen-2')
    assert isinstance(result.error_in_exec, GuardBlocked)
    assert "shell command" in blocked_line(capsys)
    for fine in ("!curl -s $RODIN_API_BASE/check_balance", "!grep -c /rodin /dev/null"):
        run_cell(guarded, fine)
    assert sandbox_env.count("POST", "/rodin") == 0


def test_budget(guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cell(guarded, "%rodin_budget 1").success
    assert run_cell(guarded, gen_cell()).success and run_cell(guarded, gen_cell()).success
    capsys.readouterr()
    result = run_cell(guarded, gen_cell())
    assert isinstance(result.error_in_exec, GuardBlocked)
    assert "the budget has 0 of 1 left: not sent" in blocked_line(capsys)
    assert sandbox_env.count("POST", "/rodin") == 2
    assert run_cell(guarded, "%rodin_budget").success
    assert "spent 1, in flight 0, left 0" in capsys.readouterr().out
    for bad in ("-1", "lots", "nan"):
        result = run_cell(guarded, f"%rodin_budget {bad}")
        assert type(result.error_in_exec).__name__ == "UsageError"
        assert "takes a number of credits" in blocked_line(capsys)
    # a reload keeps the budget; `off` still removes it
    assert run_cell(guarded, "%reload_ext rodin_jupyter").success
    assert get_guard().account.budget == D(1) and get_guard().active
    assert run_cell(guarded, "%rodin_budget off").success
    assert run_cell(guarded, gen_cell()).success
    assert sandbox_env.count("POST", "/rodin") == 3


def test_budget_from_config(ip: Any, sandbox_env: Sandbox) -> None:
    run_cell(ip, "%unload_ext rodin_jupyter")
    ip.config.RodinGuard.budget = 0.25
    ip.config.RodinGuard.enabled = True
    try:
        assert run_cell(ip, "%load_ext rodin_jupyter").success
        assert get_guard().account.budget == D("0.25") and get_guard().active
        ip.user_ns.update(BASE=sandbox_env.base_url, HEADERS={}, requests=requests)
        result = run_cell(ip, gen_cell())
        assert "budget has 0.25 of 0.25 left" in str(result.error_in_exec)
    finally:
        ip.config.pop("RodinGuard", None)
        run_cell(ip, "%unload_ext rodin_jupyter")
        run_cell(ip, "%load_ext rodin_jupyter")
    assert sandbox_env.count("POST", "/rodin") == 0


def hooked() -> list[Any]:
    import urllib3

    return [http.client.HTTPConnection.__dict__[n] for n in ("request", "putrequest",
                                                              "getresponse")] + [
        urllib3.connectionpool.HTTPConnectionPool.__dict__["urlopen"],
        requests.Session.__dict__["send"]]


def test_off_and_unload_restore_every_hook_exactly(ip: Any, sandbox_env: Sandbox) -> None:
    baseline, cleanup = hooked(), list(ip.input_transformers_cleanup)
    assert run_cell(ip, "%rodin_guard on").success
    assert all(a is not b for a, b in zip(hooked(), baseline, strict=True))
    assert run_cell(ip, "%rodin_guard off").success
    assert all(a is b for a, b in zip(hooked(), baseline, strict=True))
    assert ip.input_transformers_cleanup == cleanup
    assert run_cell(ip, "%rodin_guard on").success
    assert run_cell(ip, "%unload_ext rodin_jupyter").success
    assert all(a is b for a, b in zip(hooked(), baseline, strict=True))
    assert ip.input_transformers_cleanup == cleanup
    assert "rodin_guard" not in ip.magics_manager.magics["line"]
    assert "rodin_budget" not in ip.magics_manager.magics["line"]
    assert not any(isinstance(c, RodinGuard) for c in ip.configurables)
    for event in ("pre_run_cell", "post_run_cell"):
        assert not any(type(getattr(cb, "__self__", None)).__name__ == "NotebookSide"
                       for cb in ip.events.callbacks[event])
    assert run_cell(ip, "%load_ext rodin_jupyter").success  # for the fixture's teardown


def test_estimate_cost_and_price_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert estimate_cost("Gen-2.5-Extreme-High", '["HighPack"]', "extreme-high") == D("2.0")
    assert estimate_cost("Gen-2.5-Extreme-High", '["HighPack"]', "extreme-high",
                         prices=load_prices(FIELD_REPORT_PRICES)) == D("4.0")
    assert estimate_cost(endpoint="/bang", count=3) == D("1.5")
    with pytest.raises(PricingError, match="Unknown Rodin tier"):
        estimate_cost("Gen-7")
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"tiers": {"Gen-2": "0.8"}, "addons": {"HighPack": "2"}}))
    monkeypatch.setenv("RODIN_PRICES_FILE", str(prices))
    assert estimate_cost("Gen-2", "HighPack") == D("2.8")
    table = load_prices({"tiers": {"Gen-2": "0.6"}})
    assert table.tiers["Gen-2"] == D("0.6") and table.addons["HighPack"] == D(2)


def test_price_file_and_config_reach_the_guard(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    sandbox_env.set_balance("1")
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"tiers": {"Gen-2": "1.25"}}))
    monkeypatch.setenv("RODIN_PRICES_FILE", str(prices))
    assert not run_cell(guarded, gen_cell()).success
    assert "needs 1.25 credits, balance is 1" in blocked_line(capsys)
    assert run_cell(guarded, "%config RodinGuard.prices = {'tiers': {'Gen-2': '0.75'}}").success
    assert run_cell(guarded, gen_cell()).success  # the sandbox itself charges 0.5
    assert get_ledger().entries()[-1].credits == D("0.75")
    run_cell(guarded, "%config RodinGuard.prices = {'tiers': {'Gen-2': 'cheap'}}")
    assert "must be a number" in caplog.text


def test_reserve_option(guarded: Any, sandbox_env: Sandbox,
                        capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.set_balance("1")
    assert run_cell(guarded, "%rodin_guard on --reserve 0.75").success
    capsys.readouterr()
    assert not run_cell(guarded, gen_cell()).success
    assert "needs 0.5 credits + 0.75 reserve, balance is 1: not sent" in blocked_line(capsys)
    assert run_cell(guarded, "%rodin_guard on --reserve 0").success


def test_cell_magic_blocks_with_the_numbers(
        ip: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.set_balance("1")
    ip.user_ns.pop("body_ran", None)
    capsys.readouterr()
    result = run_cell(ip, "%%rodin_guard --cost 2.5 --reserve 1\nbody_ran = True\n")
    assert isinstance(result.error_in_exec, GuardBlocked)
    assert "needs 2.5 credits + 1 reserve, balance is 1: not run" in blocked_line(capsys)
    assert "body_ran" not in ip.user_ns
    run_cell(ip, "%%rodin_guard --tier Gen-2 --addons HighPack --count 2\nbody_ran = True\n")
    assert "(2 generations) needs 3 credits, balance is 1: not run" in blocked_line(capsys)
    assert "body_ran" not in ip.user_ns
    assert sandbox_env.count("POST", "/rodin") == 0


def test_cell_magic_runs_the_body_once_with_each_request_checked(
        ip: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    ip.user_ns.update(BASE=sandbox_env.base_url, requests=requests,
                      HEADERS={"Authorization": f"Bearer {FAKE_KEY}"})
    assert not get_guard().active
    result = run_cell(ip, "%%rodin_guard --tier Gen-2\n" + gen_cell(marker="body_ran"))
    assert result.success and ip.user_ns["body_ran_after"] is True
    assert sandbox_env.count("POST", "/rodin") == 1 and not get_guard().active
    assert [e.credits for e in get_ledger().entries()] == [D("0.5")]
    # the body asks for more than the upfront estimate: its request is still refused
    sandbox_env.set_balance("1.5")
    capsys.readouterr()
    result = run_cell(ip, "%%rodin_guard --tier Gen-2\n" + gen_cell(
        "Gen-2.5-Extreme-High", HIGHPACK, marker="body_ran"))
    assert isinstance(result.error_in_exec, GuardedCellFailed)
    assert "needs 2 credits" in str(result.error_in_exec)
    assert sandbox_env.count("POST", "/rodin") == 1
    result = run_cell(ip, "%%rodin_guard\nx = 1\n")
    assert "needs --cost N or --tier T" in str(result.error_in_exec)


def test_cell_magic_fails_when_its_body_fails(ip: Any, sandbox_env: Sandbox) -> None:
    result = run_cell(ip, "%%rodin_guard --cost 0.5\nraise ValueError('boom')\n")
    assert isinstance(result.error_in_exec, GuardedCellFailed)
    assert "ValueError" in str(result.error_in_exec)
    result = run_cell(ip, "%%rodin_guard --cost 0.5\nthis is not python\n")
    assert isinstance(result.error_in_exec, GuardedCellFailed)


def test_cell_magic_help_and_usage_errors(
        ip: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run_cell(ip, "%%rodin_guard?").success
    text = capsys.readouterr().out
    assert "--cost" in text and "--reserve" in text and "--on-error" in text
    result = run_cell(ip, "%%rodin_guard --cost 1 --tier Gen-2\nx = 1\n")
    assert "do not combine" in str(result.error_in_exec)
    result = run_cell(ip, "%rodin_guard --cost 1")
    assert "only work in the cell form" in str(result.error_in_exec)
    assert sandbox_env.count() == 0
