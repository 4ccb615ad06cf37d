"""The guard in a real in-process IPython shell, against the sandbox over loopback.

No mocks: cells are run with ``run_cell`` like a frontend does, generation cells send real
multipart requests with ``requests``, and the sandbox's request log and credit ledger show
what was (not) sent and spent.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter.balance.monitor import get_monitor
from rodin_jupyter.errors import PricingError
from rodin_jupyter.guard.cell_analysis import CellAnalyzer, endpoints_in_text, is_recovery_cell
from rodin_jupyter.guard.pricing import (
    FIELD_REPORT_PRICES,
    PriceTable,
    estimate_cost,
    load_prices,
)
from rodin_jupyter.ipython.cell_guard import AutoGuard, GuardBlocked, estimate_sites
from rodin_jupyter.ipython.guard_magics import GuardedCellFailed, RodinGuard
from rodin_jupyter.sandbox import Sandbox

from .conftest import FAKE_KEY, run_cell

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
    )


def guard_of(ip: Any) -> AutoGuard:
    magics = ip.magics_manager.registry["RodinGuard"]
    assert isinstance(magics, RodinGuard)
    return magics.guard


@pytest.fixture
def guarded(ip: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """The shell with the automatic guard on and BASE / HEADERS set like a notebook does."""
    ip.config.pop("RodinGuard", None)
    for name in ("ran", "ran2", "done", "jobs", "PROMPTS"):
        ip.user_ns.pop(name, None)
    setup = run_cell(ip, "import os, requests\n"
                         "BASE = os.environ['RODIN_API_BASE']\n"
                         "HEADERS = {'Authorization': f\"Bearer {os.environ['RODIN_API_KEY']}\"}")
    assert setup.success
    assert run_cell(ip, "%rodin_guard on").success
    capsys.readouterr()
    yield ip
    run_cell(ip, "%rodin_guard off")
    ip.config.pop("RodinGuard", None)


def blocked_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a blocked cell printed (and nothing like a traceback)."""
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# -- blocking and allowing -------------------------------------------------------------------


def test_blocked_cell_does_not_run_and_sends_nothing(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.set_balance("0.2")
    result = run_cell(guarded, gen_cell())
    assert not result.success
    assert isinstance(result.error_before_exec, GuardBlocked)
    assert "ran" not in guarded.user_ns
    assert sandbox_env.count("POST", "/rodin") == 0
    assert sandbox_env.count("GET", "/check_balance") == 1
    assert sandbox_env.balance == D("0.2")
    line = blocked_line(capsys)
    assert "needs 0.5 credits, balance is 0.2: cell not run" in line
    assert FAKE_KEY not in line


def test_enough_balance_runs_once_with_one_request(guarded: Any, sandbox_env: Sandbox) -> None:
    result = run_cell(guarded, gen_cell("Gen-2.5-High", ', "addons": (None, \'["HighPack"]\')'))
    assert result.success, result.error_in_exec
    assert guarded.user_ns["ran"] is True
    assert guarded.user_ns["r"].json()["error"] is None
    assert sandbox_env.count("POST", "/rodin") == 1
    assert sandbox_env.balance == D("8.5")
    # one reading before (the check) and one after (the ledger), no more
    assert sandbox_env.count("GET", "/check_balance") == 2
    assert guard_of(guarded).checks == 1


def test_ordinary_cells_make_no_request_and_skip_the_ast_check(
        guarded: Any, sandbox_env: Sandbox) -> None:
    guard = guard_of(guarded)
    cells = [
        "x = 1 + 1",
        "def f(a):\n    return [a * i for i in range(3)]\nf(2)",
        "import json\njson.dumps({'tier': 'Gen-2', 'addons': ['HighPack']})",
        "for i in range(3):\n    print(i)",
        "status_url = f'{BASE}/status'\ncheck = f'{BASE}/check_balance'",
        "requests.get  # not called",
        "# notes on Rodin generations and the bang endpoint\nimport rodin_jupyter\nrodin_n = 2",
    ]
    for code in cells:
        assert run_cell(guarded, code).success, code
        assert not any(t is guard for t in guarded.ast_transformers), code
    assert sandbox_env.count() == 0
    # a cell that only *looks* related is analysed (no transformer cost otherwise) but free
    for code in ("download_url = f'{BASE}/download'\nrodin_models = 3",
                 "p = '/rodin_x'; q = '/rodinfoo'; s = 'rodin'.upper()",
                 "%rodin_guard"):
        assert run_cell(guarded, code).success, code
    assert sandbox_env.count() == 0
    assert guard.checks == 0


def test_defining_things_costs_nothing_but_their_use_is_guarded(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.set_balance("0.4")
    define = ("GEN_URL = f'{BASE}/rodin'\n"
              "def submit(prompt, tier='Gen-2', addons=None):\n"
              "    files = {'prompt': (None, prompt), 'tier': (None, tier)}\n"
              "    if addons:\n"
              "        files['addons'] = (None, json.dumps(addons))\n"
              "    return requests.post(f'{BASE}/rodin', headers=HEADERS, files=files)\n"
              "import json")
    assert run_cell(guarded, define).success
    assert sandbox_env.count() == 0
    capsys.readouterr()
    # the URL variable and the helper were learned: their later use is a generation cell
    assert not run_cell(guarded, "ran = 1\nrequests.post(GEN_URL, headers=HEADERS, "
                                 "files={'prompt': (None, 'x')})").success
    assert "needs 0.5 credits, balance is 0.4" in blocked_line(capsys)
    assert not run_cell(guarded, "ran = 1\nsubmit('x', tier='Gen-2.5-Extreme-High', "
                                 "addons=['HighPack'])").success
    assert "needs 2 credits, balance is 0.4" in blocked_line(capsys)
    assert "ran" not in guarded.user_ns
    assert sandbox_env.count("POST", "/rodin") == 0
    sandbox_env.set_balance("5")
    assert run_cell(guarded, "ran = 1\nout = submit('x', tier='Gen-2.5-Extreme-High', "
                             "addons=['HighPack'])").success
    assert guarded.user_ns["out"].json()["consumed"] == 2
    assert sandbox_env.count("POST", "/rodin") == 1


def test_helpers_defined_before_the_guard_is_on_are_guarded(
        ip: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    run_cell(ip, "%rodin_guard off")
    sandbox_env.set_balance("0.2")
    setup = ("import os, requests\n"
             "BASE = os.environ['RODIN_API_BASE']\n"
             "HEADERS = {'Authorization': f\"Bearer {os.environ['RODIN_API_KEY']}\"}\n"
             "GEN_URL = f'{BASE}/rodin'\n"
             "ENDPOINTS = {'gen': 'rodin', 'status': 'status'}\n"
             "def submit(prompt, tier='Gen-2'):\n"
             "    return requests.post(GEN_URL, headers=HEADERS,\n"
             "                         files={'prompt': (None, prompt), 'tier': (None, tier)})\n"
             "def submit_twice(prompt):\n"
             "    return submit(prompt), submit(prompt)\n"
             "class C:\n"
             "    url = BASE + '/rodin'\n"
             "    def go(self):\n"
             "        return requests.post(self.url, headers=HEADERS, files={})\n"
             "def notes():\n"
             "    '''POST /rodin starts a generation.'''\n"
             "    return 1\n")
    assert run_cell(ip, setup).success
    try:
        assert run_cell(ip, "%rodin_guard on").success
        capsys.readouterr()
        for cell in ("r = requests.post(GEN_URL, headers=HEADERS, files={'prompt': (None, 'x')})",
                     "r = submit('cube')", "r = submit_twice('cube')", "r = C().go()",
                     "r = requests.post(f\"{BASE}/{ENDPOINTS['gen']}\", headers=HEADERS)"):
            result = run_cell(ip, cell)
            assert isinstance(result.error_before_exec, GuardBlocked), cell
            assert "balance is 0.2" in blocked_line(capsys)
        assert sandbox_env.count("POST", "/rodin") == 0
        assert sandbox_env.balance == D("0.2")
        guard = guard_of(ip)
        assert guard.learned_functions["submit_twice"].endpoints == frozenset({"rodin"})
        assert "notes" not in guard.learned_functions  # a docstring sends nothing
        checks = guard.checks
        assert run_cell(ip, "notes()").success
        assert guard.checks == checks
        sandbox_env.set_balance("1")
        assert run_cell(ip, "r = submit('cube')").success
        assert sandbox_env.count("POST", "/rodin") == 1
        assert sandbox_env.balance == D("0.5")
    finally:
        run_cell(ip, "%rodin_guard off")
        for name in ("GEN_URL", "ENDPOINTS", "submit", "submit_twice", "C", "notes"):
            ip.user_ns.pop(name, None)


def test_positional_and_unreadable_price_values(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.set_balance("1.5")
    define = ("def submit(prompt, tier, addons='[]'):\n"
              "    return requests.post(f'{BASE}/rodin', headers=HEADERS, files={\n"
              "        'prompt': (None, prompt), 'tier': (None, tier), 'addons': (None, addons)})\n"
              "def make(prompt, quality='Gen-2'):\n"
              "    return requests.post(f'{BASE}/rodin', headers=HEADERS,\n"
              "                         files={'prompt': (None, prompt), 'tier': (None, quality)})")
    assert run_cell(guarded, define).success
    capsys.readouterr()
    # positional arguments are read (the parameter need not be called tier)
    for cell, cost in (("r = submit('lamp', 'Gen-2.5-Extreme-High', '[\"HighPack\"]')", "2"),
                       ("r = make('lamp', 'Gen-2.5-Extreme-High')\nr = make('x')\n"
                        "r = make('y')", "2")):
        result = run_cell(guarded, cell)
        assert isinstance(result.error_before_exec, GuardBlocked), cell
        assert f"needs {cost} credits, balance is 1.5" in blocked_line(capsys)
    assert run_cell(guarded, "r = make('lamp', quality='Gen-2.5-Extreme-High')\n"
                             "r = submit('x', 'Gen-2')").success
    assert sandbox_env.count("POST", "/rodin") == 2
    assert sandbox_env.balance == D(0)
    # a value the cell does not show: the configured minimum per call, and it says so
    sandbox_env.set_balance("0.2")
    result = run_cell(guarded, "r = submit('lamp', pick_tier())")
    assert isinstance(result.error_before_exec, GuardBlocked)
    line = blocked_line(capsys)
    assert "needs 0.5 credits, balance is 0.2" in line
    assert "not readable, counted at the --min floor" in line
    sandbox_env.set_balance("3")
    assert run_cell(guarded, "%rodin_guard on --min 4").success
    capsys.readouterr()
    result = run_cell(guarded, "r = submit('lamp', pick_tier())")
    assert isinstance(result.error_before_exec, GuardBlocked)
    assert "needs 4 credits, balance is 3" in blocked_line(capsys)
    assert sandbox_env.count("POST", "/rodin") == 2
    assert sandbox_env.balance == D(3)


def test_cells_that_send_nothing_make_no_balance_request(
        guarded: Any, sandbox_env: Sandbox, tmp_path: Path) -> None:
    guard = guard_of(guarded)
    assert run_cell(guarded, "url = f'{BASE}/rodin'").success  # learned as a generation URL
    out = tmp_path / "rodin"
    cells = [
        "url = f'{BASE}/status'\ns = requests.post(url, headers=HEADERS, json={})",
        "print(f'{BASE}/rodin')",
        f"import pathlib\nOUT = pathlib.Path({str(out)!r})\nOUT.mkdir(parents=True)",
        f"open({str(tmp_path / 'rodin.txt')!r}, 'w').write('x')",
        f"%%writefile {tmp_path / 'gen.py'}\nimport requests\nrequests.post('http://x/rodin')\n",
        "%%markdown\nCall `/rodin` to generate.\n",
        "%%html\n<p>POST /rodin</p>\n",
        "def helper():\n    '''POST /rodin.'''\n    return 1\nhelper()",
    ]
    for code in cells:
        assert run_cell(guarded, code).success, code
    assert guard.checks == 0
    assert sandbox_env.count("GET", "/check_balance") == 0
    assert sandbox_env.count("POST", "/rodin") == 0
    # still generation calls: the URL reaches a request however it is sent
    sandbox_env.set_balance("0.1")
    for code in ("url = f'{BASE}/rodin'\nrequests.post(url)",
                 "s = requests.Session()\ns.post(f'{BASE}/rodin')",
                 "requests.request('POST', f'{BASE}/rodin')",
                 "import urllib.request as u\nu.urlopen(u.Request(f'{BASE}/rodin', data=b''))",
                 "print(requests.post(f'{BASE}/rodin'))",
                 "u.build_opener().open(f'{BASE}/rodin', data=b'')",
                 "%%html\n<script>fetch('/rodin', {method: 'POST'})</script>\n"):
        assert isinstance(run_cell(guarded, code).error_before_exec, GuardBlocked), code
    assert sandbox_env.count("POST", "/rodin") == 0


# -- failing closed ----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "words"), [(503, "unavailable"), (401, "refused")])
def test_unknown_balance_blocks_with_the_reason(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str],
        status: int, words: str) -> None:
    sandbox_env.inject_fault("/check_balance", status=status, times=None)
    result = run_cell(guarded, gen_cell())
    assert isinstance(result.error_before_exec, GuardBlocked)
    assert "ran" not in guarded.user_ns
    assert sandbox_env.count("POST", "/rodin") == 0
    line = blocked_line(capsys)
    assert "could not read the balance" in line and words in line and "cell not run" in line
    assert FAKE_KEY not in line


def test_on_error_allow_runs_with_a_warning(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cell(guarded, "%rodin_guard on --on-error allow").success
    sandbox_env.inject_fault("/check_balance", status=503, times=None)
    capsys.readouterr()
    result = run_cell(guarded, gen_cell())
    assert result.success
    assert guarded.user_ns["ran"] is True
    assert sandbox_env.count("POST", "/rodin") == 1
    err = capsys.readouterr().err
    assert "could not read the balance" in err and "running the cell anyway" in err


def test_internal_failure_fails_closed_but_recovery_still_works(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    # A real input the analyser cannot handle: a chain deeper than Python's recursion limit.
    deep = "x = '/rodin'" + " + a" * 1500
    guarded.user_ns["a"] = ""
    result = run_cell(guarded, deep)
    assert isinstance(result.error_before_exec, GuardBlocked)
    assert "failed internally (RecursionError)" in blocked_line(capsys)
    assert guard_of(guarded) in guarded.ast_transformers  # not dropped by IPython
    assert sandbox_env.count() == 0
    assert run_cell(guarded, "%rodin_guard").success
    # --on-error allow: a guard failure lets the cell through, with a warning
    assert run_cell(guarded, "%rodin_guard on --on-error allow").success
    capsys.readouterr()
    result = run_cell(guarded, deep)
    assert not isinstance(result.error_before_exec, GuardBlocked)  # (IPython then gives up)
    assert "the guard failed (RecursionError)" in capsys.readouterr().err
    assert run_cell(guarded, "%rodin_guard off").success
    assert not any(isinstance(t, AutoGuard) for t in guarded.ast_transformers)


def test_recovery_commands_work_while_blocked(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.set_balance("0")
    assert not run_cell(guarded, gen_cell()).success
    for code in ("%rodin_guard", "%config RodinGuard", "%config RodinGuard.reserve = 0",
                 "rodin_guard?", "%rodin_guard?", "%rodin_balance", "b = %rodin_balance",
                 "%rodin_balance --ledger", "%xmode Plain\n%xmode Context"):
        result = run_cell(guarded, code)
        assert result.success, (code, result.error_before_exec, result.error_in_exec)
    assert sandbox_env.count("POST", "/rodin") == 0
    assert run_cell(guarded, "%rodin_guard off").success
    assert run_cell(guarded, gen_cell()).success  # sent; the sandbox refuses for lack of funds
    assert sandbox_env.count("POST", "/rodin") == 1
    assert guarded.user_ns["r"].json()["error"] == "API_INSUFFICIENT_FUNDS"


# -- once per execution: %time, silent runs, SyntaxError -----------------------------------


def test_time_magics_check_once(guarded: Any, sandbox_env: Sandbox) -> None:
    guard = guard_of(guarded)
    line = gen_cell().replace("\n", " ").replace("ran = True ", "")
    assert run_cell(guarded, "%time " + line.strip()).success
    assert (guard.checks, sandbox_env.count("POST", "/rodin")) == (1, 1)
    assert sandbox_env.count("GET", "/check_balance") == 2
    assert run_cell(guarded, "%%time\n" + gen_cell(marker="ran2")).success
    assert (guard.checks, sandbox_env.count("POST", "/rodin")) == (2, 2)
    assert sandbox_env.count("GET", "/check_balance") == 4
    assert guarded.user_ns["ran2"] is True
    # %timeit -n N -r R runs N*R times: counted exactly
    sandbox_env.set_balance("1")
    assert run_cell(guarded, "%timeit -q -n2 -r1 " + line.strip()).success
    assert (guard.checks, sandbox_env.count("POST", "/rodin")) == (3, 4)
    assert sandbox_env.balance == D(0)
    # blocked under %time too; %timeit -n2 (x7 repeats) needs 7; without -n it is refused
    sandbox_env.set_balance("0.1")
    assert not run_cell(guarded, "%%time\n" + gen_cell(marker="late")).success
    result = run_cell(guarded, "%timeit -n2 " + line.strip())
    assert isinstance(result.error_before_exec, GuardBlocked)
    assert "needs 7 credits" in str(result.error_before_exec)
    result = run_cell(guarded, "%timeit " + line.strip())
    assert isinstance(result.error_before_exec, GuardBlocked)
    assert "unknown number of times" in str(result.error_before_exec)
    assert sandbox_env.count("POST", "/rodin") == 4
    assert "late" not in guarded.user_ns


def test_silent_runs_are_checked_once_and_leave_nothing_armed(
        guarded: Any, sandbox_env: Sandbox) -> None:
    guard = guard_of(guarded)
    sandbox_env.set_balance("0.2")
    result = guarded.run_cell(gen_cell(), silent=True)
    assert isinstance(result.error_before_exec, GuardBlocked)
    assert sandbox_env.count("POST", "/rodin") == 0
    sandbox_env.set_balance("1")
    assert guarded.run_cell(gen_cell(), silent=True).success
    assert sandbox_env.count("POST", "/rodin") == 1
    assert guard.checks == 2
    ledger = get_monitor().snapshot().ledger
    assert len(ledger) == 1 and ledger[0].spent == D("0.5")  # post_execute fires when silent
    before = sandbox_env.count()
    assert run_cell(guarded, "y = 2").success
    assert sandbox_env.count() == before
    assert guard.checks == 2


def test_syntax_error_checks_nothing_and_does_not_stay_armed(
        guarded: Any, sandbox_env: Sandbox) -> None:
    guard = guard_of(guarded)
    result = run_cell(guarded, gen_cell() + "oops(:\n")
    assert isinstance(result.error_before_exec, SyntaxError)
    assert sandbox_env.count() == 0
    assert run_cell(guarded, "z = 3").success
    assert sandbox_env.count() == 0
    assert run_cell(guarded, gen_cell()).success
    assert guard.checks == 1
    assert sandbox_env.count("POST", "/rodin") == 1


def test_nested_run_cell_is_checked_when_the_outer_cell_was_not(
        guarded: Any, sandbox_env: Sandbox) -> None:
    sandbox_env.set_balance("0.2")
    guarded.user_ns["src"] = gen_cell(marker="inner")  # code the outer cell cannot see
    result = run_cell(guarded, "res = get_ipython().run_cell(src)\nouter = True")
    assert result.success and guarded.user_ns["outer"] is True
    assert isinstance(guarded.user_ns["res"].error_before_exec, GuardBlocked)
    assert "inner" not in guarded.user_ns
    assert sandbox_env.count("POST", "/rodin") == 0


def test_learned_names_are_forgotten_when_redefined(guarded: Any, sandbox_env: Sandbox) -> None:
    guard = guard_of(guarded)
    assert run_cell(guarded, "U = f'{BASE}/rodin'\ndef go():\n"
                             "    return requests.post(U, headers=HEADERS, "
                             "files={'prompt': (None, 'x')})").success
    assert "U" in guard.learned_urls and "go" in guard.learned_functions
    assert run_cell(guarded, "U += '?x=1'").success  # still a generation URL
    assert "U" in guard.learned_urls
    assert run_cell(guarded, "U = f'{BASE}/status'\ndef go():\n    return 1").success
    assert "U" not in guard.learned_urls and "go" not in guard.learned_functions
    assert run_cell(guarded, "go()\nprint(U)").success
    assert sandbox_env.count() == 0


# -- installing and removing --------------------------------------------------------------------


def test_off_and_unload_remove_exactly_what_on_added(ip: Any, sandbox_env: Sandbox) -> None:
    ip.config.pop("RodinGuard", None)
    lists = (ip.ast_transformers, ip.input_transformers_post,
             ip.events.callbacks["post_execute"])
    baseline = [list(x) for x in lists]
    ip.user_ns["BASE"] = sandbox_env.base_url
    assert run_cell(ip, "%rodin_guard on").success
    run_cell(ip, "u = f'{BASE}/rodin'")  # puts the transformer in place
    guard = guard_of(ip)
    assert guard in ip.ast_transformers
    assert run_cell(ip, "%rodin_guard off").success
    assert [list(x) for x in lists] == baseline
    assert run_cell(ip, "%rodin_guard on").success
    run_cell(ip, "u = f'{BASE}/rodin'")
    assert run_cell(ip, "%unload_ext rodin_jupyter").success
    assert [list(x) for x in lists] == baseline
    assert "rodin_guard" not in ip.magics_manager.magics["line"]
    assert "rodin_guard" not in ip.magics_manager.magics["cell"]
    assert not any(isinstance(c, RodinGuard) for c in ip.configurables)
    assert run_cell(ip, "%load_ext rodin_jupyter").success  # for the fixture's teardown


def test_enabled_from_config_at_load(ip: Any, sandbox_env: Sandbox) -> None:
    run_cell(ip, "%unload_ext rodin_jupyter")
    ip.config.RodinGuard.enabled = True
    try:
        assert run_cell(ip, "%load_ext rodin_jupyter").success
        assert guard_of(ip).active
    finally:
        ip.config.pop("RodinGuard", None)


# -- cost estimates from the cell's literals ------------------------------------------------------


def analyze(code: str, namespace: dict[str, Any] | None = None,
            functions: tuple[str, ...] = ()) -> tuple[Decimal, int]:
    analysis = CellAnalyzer(functions, namespace=namespace or {}).analyze(ast.parse(code))
    estimate = estimate_sites(analysis.sites, PriceTable.from_mapping(), D("0.5"))
    return estimate.total, estimate.calls


@pytest.mark.parametrize(("code", "cost", "calls"), [
    # requests-style multipart tuples, JSON addons string
    ('requests.post(f"{B}/rodin", files={"tier": (None, "Gen-2.5-Extreme-High"), '
     '"addons": (None, \'["HighPack"]\')})', "2", 1),
    # data= dict with strings, texture_mode
    ('requests.post(B + "/rodin", data={"tier": "Gen-2.5-High", "addons": \'["HighPack"]\', '
     '"texture_mode": "extreme-high"})', "1.5", 1),  # texture modes: +0 unless opted in
    # files= as a list of pairs; the form built on an earlier line
    ('form = [("prompt", (None, "x")), ("tier", (None, "Gen-2.5-Extreme-High"))]\n'
     'r = requests.post("{}/rodin".format(B), files=form)', "1", 1),
    # no tier: the service's default (Regular)
    ('requests.post(f"{B}/rodin", files={"prompt": (None, "x")})', "0.5", 1),
    # flat-price endpoints; a URL built with urljoin
    ('requests.post(f"{B}/rodin_texture_only", files={})\n'
     'requests.post(urljoin(B, "bang"), files={})', "1", 2),
    # free endpoints and look-alikes are not generations
    ('requests.post(f"{B}/status", json={})\nrequests.post(f"{B}/download", json={})\n'
     'requests.get(f"{B}/check_balance")\nrequests.post(f"{B}/rodin_x")\n'
     'requests.post(f"{B}/rodinfoo")', "0", 0),
    # literal loops multiply; nested loops multiply again
    ('for i in range(3):\n    requests.post(f"{B}/rodin", files={"tier": (None, "Gen-2")})',
     "1.5", 3),
    ('for p in ["a", "b"]:\n    for q in range(1, 4):\n'
     '        requests.post(f"{B}/rodin", files={"addons": (None, \'["HighPack"]\')})',
     "9", 6),
    # a loop variable carries the tiers: the dearest one is assumed for each call
    ('for t in ["Gen-2", "Gen-2.5-Extreme-High"]:\n'
     '    requests.post(f"{B}/rodin", files={"tier": (None, t)})', "2", 2),
    # comprehension over a literal list
    ('rs = [requests.post(f"{B}/rodin", data={"tier": "Gen-2"}) for p in ("a", "b", "c")]',
     "1.5", 3),
    # while: cannot count, so once per call site
    ('while more():\n    requests.post(f"{B}/rodin")', "0.5", 1),
    # the URL in a variable of the same cell; the response is not mistaken for a URL
    ('url = B + "/rodin"\nr = requests.post(url, files={"tier": (None, "Gen-2")})\n'
     'print(r.json())', "0.5", 1),
])
def test_estimates_from_cell_literals(code: str, cost: str, calls: int) -> None:
    assert analyze(code) == (D(cost), calls)


def test_estimates_use_namespace_values_for_names_and_loop_lengths() -> None:
    namespace = {"PROMPTS": ["a", "b", "c", "d"], "TIER": "Gen-2.5-Extreme-High",
                 "FORM": {"tier": (None, "Gen-2"), "addons": (None, '["HighPack"]')}}
    assert analyze('for p in PROMPTS:\n    requests.post(f"{B}/rodin", data={"tier": TIER})',
                   namespace) == (D(4), 4)
    assert analyze('requests.post(f"{B}/rodin", files=FORM)', namespace) == (D("1.5"), 1)
    # appended to in the cell: the namespace length no longer holds, count once
    assert analyze('PROMPTS.append("e")\nfor p in PROMPTS:\n    requests.post(f"{B}/rodin")',
                   namespace) == (D("0.5"), 1)


def test_configured_helper_functions_and_keyword_literals() -> None:
    code = 'make_model("a chair", tier="Gen-2.5-Extreme-High", addons=["HighPack"])'
    assert analyze(code) == (D(0), 0)
    assert analyze(code, functions=("make_model",)) == (D(2), 1)
    assert analyze("client.make_model('x')", functions=("make_model",)) == (D("0.5"), 1)
    assert analyze("other.make('x')\nclient.make('y')", functions=("client.make",)) == (D("0.5"), 1)


def test_unknown_literal_tier_or_addon_is_an_error() -> None:
    with pytest.raises(PricingError, match="Unknown Rodin tier 'Gen-9'"):
        analyze('requests.post(f"{B}/rodin", files={"tier": (None, "Gen-9")})')
    with pytest.raises(PricingError, match="Unknown Rodin addon 'MegaPack'"):
        analyze('requests.post(f"{B}/rodin", data={"addons": \'["MegaPack"]\'})')


def test_endpoint_matching_and_recovery_cells() -> None:
    assert endpoints_in_text("https://x/api/v2/rodin") == {"rodin"}
    assert endpoints_in_text("/rodin_texture_only?x=1") == {"rodin_texture_only"}
    assert endpoints_in_text("{}/bang") == {"bang"}
    assert endpoints_in_text("rodin") == {"rodin"}
    for free in ("/rodin_x", "/rodinfoo", "/rodin-x", "/check_balance", "/status", "/download",
                 "rodin_jupyter", "/banging"):
        assert endpoints_in_text(free) == set(), free
    assert is_recovery_cell(ast.parse("get_ipython().run_line_magic('rodin_guard', 'off')"))
    assert not is_recovery_cell(ast.parse("get_ipython().run_line_magic('time', 'x')"))


def test_blocked_unknown_tier_in_the_shell(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cell(guarded, gen_cell("Gen-9"))
    assert isinstance(result.error_before_exec, GuardBlocked)
    line = blocked_line(capsys)
    assert "Unknown Rodin tier 'Gen-9'" in line and "cell not run" in line
    assert sandbox_env.count() == 0  # no balance read needed to refuse


def test_configured_function_via_config(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.set_balance("1")
    assert run_cell(guarded, "def make_model(prompt, **kw):\n    return 'sent'").success
    assert run_cell(guarded, "%config RodinGuard.functions = ['make_model']").success
    capsys.readouterr()
    result = run_cell(guarded, "ran = make_model('x', tier='Gen-2.5-Extreme-High', "
                               "addons='[\"HighPack\"]')")
    assert isinstance(result.error_before_exec, GuardBlocked)
    assert "needs 2 credits, balance is 1: cell not run" in blocked_line(capsys)
    assert "ran" not in guarded.user_ns


# -- prices: file and %config ----------------------------------------------------------------


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
    # %config overrides go on top of the file
    table = load_prices({"tiers": {"Gen-2": "0.6"}})
    assert table.tiers["Gen-2"] == D("0.6") and table.addons["HighPack"] == D(2)
    prices.write_text("{not json")
    with pytest.raises(PricingError, match="Could not read the price file"):
        load_prices({"tiers": {"Gen-2": "0.6"}})


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
    capsys.readouterr()
    # a bad table is refused by %config and the old one stays
    run_cell(guarded, "%config RodinGuard.prices = {'tiers': {'Gen-2': 'cheap'}}")
    assert "must be a number" in caplog.text
    assert guard_of(guarded).config.prices == {"tiers": {"Gen-2": "0.75"}}


def test_reserve_and_min_options(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.set_balance("1")
    assert run_cell(guarded, "%rodin_guard on --reserve 0.75 --min 0.6").success
    capsys.readouterr()
    assert not run_cell(guarded, gen_cell()).success
    assert "needs 0.6 credits + 0.75 reserve, balance is 1: cell not run" in blocked_line(capsys)


# -- the explicit cell magic ---------------------------------------------------------------


def test_cell_magic_blocks_with_the_numbers(
        ip: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.set_balance("1")
    ip.user_ns.pop("body_ran", None)
    capsys.readouterr()
    result = run_cell(ip, "%%rodin_guard --cost 2.5 --reserve 1\nbody_ran = True\n")
    assert not result.success
    assert isinstance(result.error_in_exec, GuardBlocked)
    line = blocked_line(capsys)
    assert "needs 2.5 credits + 1 reserve, balance is 1: cell not run" in line
    assert "body_ran" not in ip.user_ns
    result = run_cell(ip, "%%rodin_guard --tier Gen-2 --addons HighPack --count 2\n"
                          "body_ran = True\n")
    assert "needs 3 credits, balance is 1: cell not run" in blocked_line(capsys)
    assert "body_ran" not in ip.user_ns
    assert sandbox_env.count("POST", "/rodin") == 0


def test_cell_magic_runs_body_once_in_user_namespace(
        ip: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    ip.user_ns["BASE"] = sandbox_env.base_url
    ip.user_ns["HEADERS"] = {"Authorization": f"Bearer {FAKE_KEY}"}
    run_cell(ip, "import requests")
    assert run_cell(ip, "%rodin_guard on").success  # the automatic guard must not check again
    guard = guard_of(ip)
    result = run_cell(ip, "%%rodin_guard --tier Gen-2\n" + gen_cell(marker="body_ran"))
    assert result.success
    assert ip.user_ns["body_ran"] is True
    assert sandbox_env.count("POST", "/rodin") == 1
    assert sandbox_env.count("GET", "/check_balance") == 2  # before + after, nothing more
    assert guard.checks == 0
    entry = get_monitor().snapshot().ledger[-1]
    assert (entry.estimated, entry.before, entry.after, entry.spent) == (
        D("0.5"), D(10), D("9.5"), D("0.5"))
    # without --cost/--tier the cost is estimated from the body
    sandbox_env.set_balance("1.5")
    capsys.readouterr()
    result = run_cell(ip, "%%rodin_guard\n" + gen_cell("Gen-2.5-Extreme-High",
                                                    ', "addons": (None, \'["HighPack"]\')'))
    assert "needs 2 credits, balance is 1.5: cell not run" in blocked_line(capsys)
    run_cell(ip, "%rodin_guard off")


def test_cell_magic_fails_when_its_body_fails(ip: Any, sandbox_env: Sandbox) -> None:
    result = run_cell(ip, "%%rodin_guard --cost 0.5\nraise ValueError('boom')\n")
    assert not result.success
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


# -- the ledger --------------------------------------------------------------------------------


def test_ledger_records_each_guarded_cell(
        guarded: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cell(guarded, gen_cell()).success
    assert run_cell(guarded, gen_cell("Gen-2.5-High", ', "addons": (None, \'["HighPack"]\')')
                    ).success
    sandbox_env.set_balance("0.1")
    assert not run_cell(guarded, gen_cell()).success  # blocked: not in the ledger
    ledger = get_monitor().snapshot().ledger
    assert [(e.estimated, e.before, e.after, e.spent) for e in ledger] == [
        (D("0.5"), D(10), D("9.5"), D("0.5")), (D("1.5"), D("9.5"), D(8), D("1.5"))]
    assert all(e.label.startswith("In [") for e in ledger)
    capsys.readouterr()
    assert run_cell(guarded, "%rodin_balance --ledger").success
    out = capsys.readouterr().out
    assert "Guarded cells spent 2 credits" in out


def test_ledger_after_reading_failure_is_recorded_not_raised(
        guarded: Any, sandbox_env: Sandbox) -> None:
    # the check passes, then the "after" read fails: the cell still succeeds
    code = gen_cell() + "sb_fault()\n"
    guarded.user_ns["sb_fault"] = lambda: sandbox_env.inject_fault(
        "/check_balance", status=503, times=None)
    assert run_cell(guarded, code).success
    entry = get_monitor().snapshot().ledger[-1]
    assert entry.after is None and entry.spent is None and entry.before == D(10)
