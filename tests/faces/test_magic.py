"""``%rodin_balance`` in a real in-process IPython shell, against the sandbox."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from rodin_jupyter.balance.settings import settings
from rodin_jupyter.ipython.magics import RodinMagics
from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY, run_cell


def test_returns_a_decimal_usable_in_code(ip: Any, sandbox_env: Sandbox) -> None:
    sandbox_env.set_balance("4.5")
    result = run_cell(ip, "b = %rodin_balance\nenough = b >= 4\nb")
    assert result.success
    assert ip.user_ns["b"] == Decimal("4.5")
    assert isinstance(ip.user_ns["b"], Decimal)
    assert ip.user_ns["enough"] is True


def test_text_and_html_representations(ip: Any, sandbox_env: Sandbox) -> None:
    sandbox_env.set_balance("12.5")
    run_cell(ip, "b = %rodin_balance")
    data, _ = ip.display_formatter.format(ip.user_ns["b"])
    assert data["text/plain"].startswith("Rodin balance: 12.5 credits (ok, checked")
    html = ip.user_ns["b"]._repr_html_()  # terminal IPython disables the HTML formatter
    assert "12.5" in html and "<script" not in html


def test_always_asks_the_service_unless_cached(ip: Any, sandbox_env: Sandbox) -> None:
    run_cell(ip, "%rodin_balance")
    run_cell(ip, "%rodin_balance")
    assert sandbox_env.count("GET", "/check_balance") == 2
    sandbox_env.set_balance("7")
    run_cell(ip, "c = %rodin_balance --cached")
    assert sandbox_env.count("GET", "/check_balance") == 2
    assert ip.user_ns["c"] == Decimal(10)  # the cached value, honestly labelled as such
    run_cell(ip, "d = %rodin_balance")
    assert ip.user_ns["d"] == Decimal(7)


def test_require_stops_the_cell_with_one_line(ip: Any, sandbox_env: Sandbox,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.set_balance("1.5")
    result = run_cell(ip, "%rodin_balance --require 2\nafter = 'ran'")
    assert not result.success
    assert "after" not in ip.user_ns
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Balance is 1.5 credits, below the required 2: cell stopped." in text
    assert "Traceback" not in text
    ok = run_cell(ip, "%rodin_balance --require 1.5")
    assert ok.success


def test_require_with_a_bad_number(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cell(ip, "%rodin_balance --require lots")
    assert not result.success
    assert "--require takes a number of credits" in capsys.readouterr().out


def test_json_output(ip: Any, sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.set_balance("2.5")
    capsys.readouterr()
    run_cell(ip, "%rodin_balance --json")
    line = capsys.readouterr().out.strip().splitlines()[-1]
    payload = json.loads(line)
    assert payload["balance"] == 2.5 and payload["balance_exact"] == "2.5"
    assert payload["checked_at"].endswith("+00:00")


def test_service_failure_is_one_line(ip: Any, sandbox_env: Sandbox,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.inject_fault("/check_balance", status=401, times=None)
    result = run_cell(ip, "%rodin_balance")
    assert not result.success
    out = capsys.readouterr().out
    assert "rodin_jupyter: The Rodin API key was refused (HTTP 401)" in out
    assert "Traceback" not in out and FAKE_KEY not in out


def test_help_is_built_from_magic_arguments(ip: Any) -> None:
    doc = ip.magics_manager.magics["line"]["rodin_balance"].__doc__
    for option in ("--cached", "--require", "--json", "--panel", "--ledger"):
        assert option in doc


def test_config_lists_the_settings_and_applies_them(ip: Any, sandbox_env: Sandbox,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run_cell(ip, "%config RodinMagics")
    out = capsys.readouterr().out
    for trait in ("base_url", "read_timeout", "warn_below", "min_balance", "cache_ttl"):
        assert f"RodinMagics.{trait}" in out
    run_cell(ip, "%config RodinMagics.warn_below = 20")
    assert settings.balance.warn_below == Decimal(20)
    run_cell(ip, "%config RodinMagics.warn_below = 5")


def test_config_base_url_points_at_another_server(ip: Any, sandbox_env: Sandbox) -> None:
    with Sandbox(balance="99", api_key=FAKE_KEY) as other:
        run_cell(ip, f"%config RodinMagics.base_url = {other.base_url!r}")
        run_cell(ip, "b = %rodin_balance")
        assert ip.user_ns["b"] == Decimal(99)
        run_cell(ip, "%config RodinMagics.base_url = ''")
    run_cell(ip, "b = %rodin_balance")
    assert ip.user_ns["b"] == Decimal(10)


def test_load_and_unload_undo_each_other(ip: Any) -> None:
    manager = ip.magics_manager
    before_line = dict(manager.magics["line"])
    before_cell = dict(manager.magics["cell"])
    before_conf = list(ip.configurables)
    before_transformers = list(ip.ast_transformers)
    ip.run_line_magic("unload_ext", "rodin_jupyter")
    assert "rodin_balance" not in manager.magics["line"]
    assert "RodinMagics" not in manager.registry
    assert not any(isinstance(c, RodinMagics) for c in ip.configurables)
    ip.run_line_magic("load_ext", "rodin_jupyter")
    assert set(manager.magics["line"]) == set(before_line)
    assert set(manager.magics["cell"]) == set(before_cell)
    assert len(ip.configurables) == len(before_conf)
    assert len(ip.ast_transformers) == len(before_transformers)


def test_unload_then_load_again_works(ip: Any, sandbox_env: Sandbox) -> None:
    ip.run_line_magic("unload_ext", "rodin_jupyter")
    assert not run_cell(ip, "%rodin_balance").success
    ip.run_line_magic("load_ext", "rodin_jupyter")
    assert run_cell(ip, "%rodin_balance").success


def test_reloading_keeps_the_state_of_the_same_account(ip: Any, sandbox_env: Sandbox,
                                                       monkeypatch: Any) -> None:
    run_cell(ip, "%rodin_balance")
    ip.run_line_magic("unload_ext", "rodin_jupyter")
    ip.run_line_magic("load_ext", "rodin_jupyter")
    run_cell(ip, "c = %rodin_balance --cached")
    assert sandbox_env.count("GET", "/check_balance") == 1
    # another key is another account: nothing carries over
    monkeypatch.setenv("RODIN_API_KEY", FAKE_KEY + "-other")
    ip.run_line_magic("unload_ext", "rodin_jupyter")
    ip.run_line_magic("load_ext", "rodin_jupyter")
    from rodin_jupyter.balance.monitor import get_monitor

    assert get_monitor().snapshot().balance is None


def test_cached_flag_says_whether_the_reading_was_reused(ip: Any, sandbox_env: Sandbox) -> None:
    run_cell(ip, "first = %rodin_balance --cached")
    run_cell(ip, "second = %rodin_balance --cached")
    assert ip.user_ns["first"].cached is False  # nothing to reuse yet: asked the service
    assert ip.user_ns["second"].cached is True
    assert sandbox_env.count("GET", "/check_balance") == 1


def test_timeouts_must_be_positive(ip: Any, caplog: pytest.LogCaptureFixture) -> None:
    try:
        result = run_cell(ip, "%config RodinMagics.read_timeout = -1")
        # issue 15: the refusal fails the cell in one line (it used to be an ERROR:root log)
        assert "RodinMagics.read_timeout must be more than 0 seconds" in str(result.error_in_exec)
        assert "must be more than 0" not in caplog.text
        assert ip.magics_manager.registry["RodinMagics"].read_timeout > 0
    finally:  # %config also writes into the shell's config, which outlives this test
        ip.config.RodinMagics.pop("read_timeout", None)


def test_a_bad_configured_value_fails_the_load_in_one_line(
        ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("unload_ext", "rodin_jupyter")
    ip.config.RodinMagics.read_timeout = -1  # as if from ipython_config.py
    try:
        result = run_cell(ip, "%load_ext rodin_jupyter")
        assert not result.success
        out = capsys.readouterr().out
        assert "RodinMagics.read_timeout must be more than 0 seconds; the extension was not " \
               "loaded." in out and "Traceback" not in out
        assert "rodin_balance" not in ip.magics_manager.magics["line"]
        assert "rodin_guard" not in ip.magics_manager.magics["line"]
    finally:
        ip.config.RodinMagics.pop("read_timeout", None)
        ip.run_line_magic("load_ext", "rodin_jupyter")  # the fixture unloads again
