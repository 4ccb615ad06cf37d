"""Regression tests for defects a red-team review found in the sandbox, over real loopback.

The parallelism limit under concurrent submits, faults taken only by requests that reach an
endpoint, multipart delimiters only at a line start, no key in the DEBUG log, the CLI's
option checks, and the balance scale's allowed values.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections import Counter
from decimal import Decimal as D
from typing import Any

import pytest
import requests

from rodin_jupyter.balance.settings import check_balance_scale, settings
from rodin_jupyter.cli import main
from rodin_jupyter.errors import PricingError
from rodin_jupyter.guard.price_table import load_prices
from rodin_jupyter.guard.pricing import (
    AddonsNotJSONError,
    estimate_cost,
    price_request,
    wire_addons,
)
from rodin_jupyter.sandbox import SANDBOX_KEY, Sandbox
from rodin_jupyter.sandbox.faults import FaultPlan
from rodin_jupyter.sandbox.forms import MULTIPART, ParsedBody, parse_body
from rodin_jupyter.sandbox.ledger import Ledger
from rodin_jupyter.sandbox.routes import Service
from rodin_jupyter.sandbox.tasks import DownloadLinks, TaskBoard
from tests.conftest import FAKE_KEY, run_cell

AUTH = {"Authorization": f"Bearer {SANDBOX_KEY}"}
BOUNDARY_TYPE = "multipart/form-data; boundary=zz"


def rodin(sb: Sandbox, headers: dict[str, str] | None = None,
          base: str | None = None) -> requests.Response:
    return requests.post((base or sb.base_url) + "/rodin", headers=AUTH if headers is None
                         else headers, files={"prompt": (None, "a chair")}, timeout=10)


# -- 2. the parallelism limit holds under concurrent submits --------------------------------


def test_parallelism_limit_holds_when_submits_race() -> None:
    """Count, charge and create are one step: never more running tasks than the limit."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so a gap between the steps shows
    try:
        for _ in range(5):
            with Sandbox(balance="100", job_seconds=60, max_parallel=1) as sb:
                answers = race(sb, threads=12)
                assert answers == {(201, None): 1, (201, "API_PARALLELISM_LIMIT_REACHED"): 11}
                assert len(sb.charges) == 1 and sb.balance == D("99.5")
    finally:
        sys.setswitchinterval(saved)


class SlowBoard(TaskBoard):
    """A board whose count takes a while: the window in which unlocked submits overlap."""

    def running(self) -> int:
        time.sleep(0.05)
        return super().running()


def test_parallelism_check_charge_and_create_are_one_step() -> None:
    ledger, board = Ledger("100"), SlowBoard(job_seconds=60)
    service = Service(ledger, board, DownloadLinks(), FaultPlan(), load_prices(), D(1),
                      max_parallel=1, origin=lambda: "http://127.0.0.1")
    body = ParsedBody(fields={"prompt": ["x"]}, kind=MULTIPART)
    results: list[int] = []
    start = threading.Barrier(8)

    def submit() -> None:
        start.wait()
        answer = json.loads(service.generate("/rodin", body).body)
        results.append(1 if answer["error"] is None else 0)

    workers = [threading.Thread(target=submit) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert sorted(results) == [0] * 7 + [1]
    assert len(ledger.charges) == 1 and board.running() == 1


def race(sb: Sandbox, threads: int) -> Counter[tuple[int, Any]]:
    """``threads`` submits released at once; their (status, error) counts."""
    answers, lock = Counter[tuple[int, Any]](), threading.Lock()
    start = threading.Barrier(threads)

    def submit() -> None:
        with requests.Session() as session:
            start.wait()
            r = session.post(sb.base_url + "/rodin", headers=AUTH,
                             files={"prompt": (None, "x")}, timeout=30)
            with lock:
                answers[(r.status_code, r.json()["error"])] += 1

    workers = [threading.Thread(target=submit) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    return answers


# -- 7. faults are taken only by requests that reach an endpoint ----------------------------


def test_a_fault_is_not_used_up_by_a_bad_key_a_stray_path_or_a_wrong_method() -> None:
    with Sandbox(balance="10") as sb:
        sb.drop_after_charge("/rodin")
        assert rodin(sb, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert rodin(sb, headers={}).status_code == 401
        assert rodin(sb, base=sb.origin).status_code == 404  # /rodin outside /api/v2
        assert requests.get(sb.base_url + "/rodin", headers=AUTH, timeout=10).status_code == 405
        assert sb.charges == []
        with pytest.raises(requests.exceptions.ConnectionError):  # the real submit takes it
            rodin(sb)
        assert len(sb.charges) == 1
        assert rodin(sb).status_code == 201


def test_an_any_path_fault_skips_unauthenticated_requests() -> None:
    with Sandbox(balance="10") as sb:
        sb.inject_fault(path=None, status=503, times=1)
        url = sb.base_url + "/check_balance"
        stranger = {"Authorization": "Bearer no"}
        assert requests.get(url, headers=stranger, timeout=10).status_code == 401
        assert requests.get(url, headers=AUTH, timeout=10).status_code == 503
        assert requests.get(url, headers=AUTH, timeout=10).status_code == 200


# -- 8. multipart delimiters only at a line start -------------------------------------------


def test_boundary_text_inside_a_value_is_content() -> None:
    body = b'--zz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na--zz cube\r\n--zz--\r\n'
    assert parse_body(BOUNDARY_TYPE, body).fields == {"prompt": ["a--zz cube"]}
    with Sandbox(balance="10") as sb:
        r = requests.post(sb.base_url + "/rodin", headers={**AUTH, "Content-Type": BOUNDARY_TYPE},
                          data=body, timeout=10)
        assert r.status_code == 201 and r.json()["uuid"] and sb.balance == D("9.5")


def test_a_delimiter_line_with_trailing_text_is_refused() -> None:
    body = (b'--zz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\ncube\r\n'
            b'--zzGARBAGE\r\nContent-Disposition: form-data; name="tier"\r\n\r\n'
            b'Sketch\r\n--zz--\r\n')
    with Sandbox(balance="10") as sb:
        r = requests.post(sb.base_url + "/rodin", headers={**AUTH, "Content-Type": BOUNDARY_TYPE},
                          data=body, timeout=10)
        assert r.status_code == 400 and r.json()["error"] == "API_INVALID_REQUEST"
        assert sb.charges == []


def test_a_part_value_keeps_its_own_line_breaks() -> None:
    body = (b'preamble\r\n--zz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n'
            b'two\r\nlines\r\n\r\n--zz\r\nContent-Disposition: form-data; name="f"; '
            b'filename="a.bin"\r\n\r\nx--zz\r\n\r\n--zz--')
    parsed = parse_body(BOUNDARY_TYPE, body)
    assert parsed.fields == {"prompt": ["two\r\nlines\r\n"]}
    assert [f.size for f in parsed.files["f"]] == [len(b"x--zz\r\n")]


# -- 4, 5. addons and mesh_mode: one rule for estimate, price_request and sandbox -----------


def test_wire_addons_follow_the_docs_and_python_callers_keep_the_convenience() -> None:
    for bare in ("HighPack", "HighPack,HighPack", '["HighPack"'):
        with pytest.raises(AddonsNotJSONError):
            wire_addons(bare)
        with pytest.raises(PricingError):
            price_request("rodin", {"addons": bare})
    assert wire_addons(' [ "HighPack" ] ') == ["HighPack"] and wire_addons("") == []
    assert estimate_cost("Regular", addons="HighPack") == D("1.5")  # documented in README
    assert estimate_cost("Regular", addons=["HighPack"]) == D("1.5")
    for twice in (["HighPack", "HighPack"], "HighPack,highpack", '["HighPack","HighPack"]'):
        with pytest.raises(PricingError, match="listed twice"):
            estimate_cost("Regular", addons=twice)
    with pytest.raises(PricingError, match="listed twice"):
        price_request("rodin", {"addons": '["HighPack", "highpack"]'})
    # the flat endpoints take no addons: their price does not read the field
    assert price_request("bang", {"addons": "HighPack"}) == D("0.5")


def test_mesh_mode_spelling_is_the_sandboxs() -> None:
    for wrong in ("raw", "RAW", "quad", ""):
        with pytest.raises(PricingError, match="mesh_mode"):
            estimate_cost("Regular", addons='["HighPack"]', mesh_mode=wrong)
        with pytest.raises(PricingError, match="mesh_mode"):
            estimate_cost("Regular", mesh_mode=wrong)
    assert estimate_cost("Regular", addons='["HighPack"]', mesh_mode=" Quad ") == D("1.5")
    assert estimate_cost("Regular", mesh_mode=" Raw ") == D("0.5")


# -- the DEBUG log never holds a key from the query string or the path ----------------------


def test_debug_log_has_paths_without_query_strings(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-LOOKS-REAL-1234567890"
    caplog.set_level(logging.DEBUG, logger="rodin_jupyter.sandbox")
    with Sandbox(balance="10", api_key=FAKE_KEY) as sb:
        ok = requests.get(f"{sb.base_url}/check_balance?key={secret}",
                          headers={"Authorization": f"Bearer {FAKE_KEY}"}, timeout=10)
        assert ok.status_code == 200
        requests.get(f"{sb.base_url}/{secret}", timeout=10)
        for raw in (b"GET /api/v2/check_balance?key=" + secret.encode() + b" HTTP/1.1\r\n"
                    b"Host: x\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
                    b"BREW /api/v2/" + secret.encode() + b" HTTP/1.1\r\n\r\n",
                    b"GET /?key=" + secret.encode() + b" HTTP/9\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", sb.port), timeout=10) as conn:
                conn.sendall(raw)
                assert conn.recv(100)  # an answer (a refusal), the request was read
    assert "/api/v2/check_balance -> 200" in caplog.text
    assert secret not in caplog.text and FAKE_KEY not in caplog.text


# -- 3. command-line and constructor values: one clear line each ----------------------------


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--balance-scale", "abc", "balance_scale must be 1"),
    ("--balance-scale", "3", "balance_scale must be 1"),
    ("--balance", "abc", "not a credit amount"),
    ("--balance", "-1", "not a credit amount"),
    ("--port", "99999", "not a port"),
    ("--port", "-5", "not a port"),
])
def test_sandbox_command_refuses_bad_values_in_one_line(
        capsys: pytest.CaptureFixture[str], option: str, value: str, says: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["sandbox", f"{option}={value}"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and says in err.strip().splitlines()[-1]


def test_sandbox_constructor_raises_value_error() -> None:
    for scale in ("abc", 3, "NaN", True):
        with pytest.raises(ValueError, match="balance_scale must be 1"):
            Sandbox(balance_scale=scale)  # type: ignore[arg-type]
    for port in (99999, -1):
        with pytest.raises(ValueError, match="port"):
            Sandbox(port=port)
    assert Sandbox(balance_scale="10").balance_scale == D(10)


# -- minor: the scale is 1 or 10, nothing else ----------------------------------------------


def test_balance_scale_is_one_or_ten(ip: Any) -> None:
    saved = settings.balance.scale
    try:
        assert check_balance_scale("10") == D(10) and check_balance_scale(1.0) == D(1)
        assert run_cell(ip, "%config RodinMagics.balance_scale = 10").success
        assert settings.balance.scale == D(10)
        run_cell(ip, "%config RodinMagics.balance_scale = 3")  # refused by the trait
        assert settings.balance.scale == D(10)
    finally:
        settings.balance.scale = saved
