"""The balance's unit: ``balance_scale`` check_balance units make one credit (1 or 10)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal as D
from typing import Any

import pytest
import requests

from rodin_jupyter.balance.settings import balance_in_credits, settings
from rodin_jupyter.http.client import RodinClient
from rodin_jupyter.ipython.magics import RodinMagics
from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY, environ_without_keys, run_cell


@pytest.fixture
def scale_restored() -> Iterator[None]:
    saved = settings.balance.scale
    yield
    settings.balance.scale = saved


def generate(sb: Sandbox) -> None:
    r = requests.post(sb.base_url + "/rodin", headers={"Authorization": f"Bearer {FAKE_KEY}"},
                      files={"prompt": (None, "x"), "tier": (None, "Gen-2")}, timeout=10)
    assert r.status_code == 201 and r.json()["consumed"] == 0.5


@pytest.mark.parametrize("scale", [1, 10])
def test_readings_are_credits_at_either_scale(scale: int, scale_restored: None) -> None:
    settings.balance.scale = D(scale)
    with Sandbox(balance="7.5", api_key=FAKE_KEY, balance_scale=scale) as sb, \
            RodinClient(api_key=FAKE_KEY, base_url=sb.base_url) as client:
        raw = requests.get(sb.base_url + "/check_balance",
                           headers={"Authorization": f"Bearer {FAKE_KEY}"}, timeout=10).json()
        assert D(str(raw["balance"])) == D("7.5") * scale
        assert client.check_balance().balance == D("7.5")
        generate(sb)  # a 0.5-credit generation: the raw reading drops by 0.5 x scale
        raw_after = requests.get(sb.base_url + "/check_balance",
                                 headers={"Authorization": f"Bearer {FAKE_KEY}"},
                                 timeout=10).json()["balance"]
        assert D(str(raw["balance"])) - D(str(raw_after)) == D("0.5") * scale
        assert client.check_balance().balance == D(7)


def test_a_wrong_scale_shows_as_a_factor_of_ten(scale_restored: None) -> None:
    """How a user tells: with the default scale, a tenths service reads ten times too high."""
    settings.balance.scale = D(1)
    with Sandbox(balance="2", api_key=FAKE_KEY, balance_scale=10) as sb, \
            RodinClient(api_key=FAKE_KEY, base_url=sb.base_url) as client:
        before = client.check_balance().balance
        generate(sb)
        assert (before, before - client.check_balance().balance) == (D(20), D(5))


def test_scale_is_refused_when_not_positive() -> None:
    for bad in (D(0), D(-10), D("Infinity")):
        with pytest.raises(ValueError, match="balance_scale"):
            balance_in_credits(D(5), bad)
        with pytest.raises(ValueError, match="balance_scale"):
            Sandbox(balance_scale=bad)
    assert balance_in_credits(D(95), D(10)) == D("9.5")


def test_config_rodinmagics_balance_scale(ip: Any, monkeypatch: pytest.MonkeyPatch,
                                          scale_restored: None) -> None:
    with Sandbox(balance="3.5", api_key=FAKE_KEY, balance_scale=10) as tenths:
        monkeypatch.setenv("RODIN_API_BASE", tenths.base_url)
        assert "balance_scale" in RodinMagics.class_trait_names(config=True)
        assert run_cell(ip, "%config RodinMagics.base_url = " + repr(tenths.base_url)).success
        assert run_cell(ip, "wrong = %rodin_balance").success
        assert ip.user_ns["wrong"] == D(35)
        assert run_cell(ip, "%config RodinMagics.balance_scale = 10").success
        assert settings.balance.scale == D(10)
        assert run_cell(ip, "right = %rodin_balance").success
        assert ip.user_ns["right"] == D("3.5")
        run_cell(ip, "%config RodinMagics.balance_scale = 0")  # refused by the trait, logged
        assert settings.balance.scale == D(10)


def test_sandbox_command_serves_tenths_and_says_what_it_would_have_cost() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "rodin_jupyter", "sandbox", "--balance", "3",
                             "--balance-scale", "10"],
                            stdout=subprocess.PIPE, text=True, env=environ_without_keys())
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        exports = dict(line.strip().removeprefix("export ").split("=", 1)
                       for line in lines if "export " in line)
        headers = {"Authorization": f"Bearer {exports['RODIN_API_KEY']}"}
        base = exports["RODIN_API_BASE"]
        assert requests.get(f"{base}/check_balance", headers=headers,
                            timeout=10).json() == {"balance": 30}
        r = requests.post(f"{base}/rodin", headers=headers, files={"prompt": (None, "x")},
                          timeout=10)
        assert r.status_code == 201
        assert requests.get(f"{base}/check_balance", headers=headers,
                            timeout=10).json() == {"balance": 25}
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "It would have cost 0.5 credits (1 generation)." in rest
