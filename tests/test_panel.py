"""The balance panel against the sandbox over real HTTP: state, sharing, threads, fallbacks."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter.balance.monitor import BalanceMonitor, Snapshot
from rodin_jupyter.balance.settings import settings
from rodin_jupyter.sandbox import Sandbox
from rodin_jupyter.widgets import panel as panel_module
from rodin_jupyter.widgets.panel import (
    BalancePanel,
    _Schedule,
    backoff_delay,
    one_line,
    panel_threads,
    shutdown_all,
)

from .conftest import FAKE_KEY

BALANCE = ("GET", "/check_balance")
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "balance_panel.ipynb"


@pytest.fixture(autouse=True)
def _panels_cleanup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts and ends with no panel and no panel thread."""
    for name in ("warn_below", "min_balance", "refresh_interval", "cache_ttl"):
        monkeypatch.setattr(settings, name, getattr(settings, name))
    shutdown_all()
    yield
    shutdown_all()
    assert panel_threads() == []


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def state_of(panel: BalancePanel) -> str:
    return panel._view()[1].value


def shown(panel: BalancePanel) -> str:
    """Everything the panel's widgets display, as one string."""
    parts = [panel._badge.value, panel._amount.value, panel._age.value, panel._spent.value,
             panel._error.value]
    return " ".join(parts)


def ready(sandbox: Sandbox, **kwargs: Any) -> BalancePanel:
    """A panel whose first (automatic) reading has arrived."""
    panel = BalancePanel(**kwargs)
    panel.refresh(wait=True, timeout=10)
    wait_for(lambda: state_of(panel) != "checking")
    return panel


# -- state -----------------------------------------------------------------------------


def test_refresh_updates_the_value(sandbox_env: Sandbox, fresh_monitor: BalanceMonitor) -> None:
    panel = ready(sandbox_env)
    assert ">10<" in panel._amount.value
    assert state_of(panel) == "ok"
    assert "checked just now" in panel._age.value
    sandbox_env.set_balance("7.25")
    panel.refresh(wait=True, timeout=10)
    assert ">7.25<" in panel._amount.value
    assert panel.snapshot().balance == Decimal("7.25")
    assert not panel._button.disabled


def test_error_keeps_the_stale_value_and_one_line(sandbox_env: Sandbox,
                                                  fresh_monitor: BalanceMonitor) -> None:
    panel = ready(sandbox_env)
    sandbox_env.inject_fault(path="/check_balance", status=503, times=None)
    panel.refresh(wait=True, timeout=20)
    assert ">10<" in panel._amount.value  # the last known balance stays
    assert "stale" in panel._age.value
    assert state_of(panel) == "error"
    assert panel._error.layout.display is None  # visible
    assert "HTTP 503" in panel._error.value
    assert "\n" not in panel._error.value
    assert "Traceback" not in shown(panel)
    sandbox_env.clear_faults()
    panel.refresh(wait=True, timeout=10)
    assert "stale" not in panel._age.value
    assert panel._error.layout.display == "none"
    assert state_of(panel) == "ok"


def test_unexpected_errors_are_one_line(sandbox_env: Sandbox, fresh_monitor: BalanceMonitor,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    panel = ready(sandbox_env)

    def broken() -> None:
        raise ValueError("line one\nTraceback (most recent call last):\n  nonsense")

    monkeypatch.setattr(fresh_monitor, "refresh", broken)
    panel.refresh(wait=True, timeout=5)
    assert "unexpectedly (ValueError)" in panel._error.value
    assert "Traceback" not in shown(panel)
    assert "stale" in panel._age.value
    assert "unexpectedly (ValueError)" in repr(panel)
    assert one_line("first\nsecond") == "first"
    assert one_line("x" * 1000).endswith("…")
    assert len(one_line("x" * 1000)) <= 300


def test_spent_counts_drops_not_top_ups(sandbox_env: Sandbox,
                                        fresh_monitor: BalanceMonitor) -> None:
    panel = ready(sandbox_env)
    for balance in ("7", "12", "11"):  # spend 3, top up 5, spend 1
        sandbox_env.set_balance(balance)
        panel.refresh(wait=True, timeout=10)
    assert panel.snapshot().spent == Decimal(4)
    assert "spent this session: 4<" in panel._spent.value


def test_thresholds_give_the_states(sandbox_env: Sandbox, fresh_monitor: BalanceMonitor,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(panel_module, "TICK_SECONDS", 0.05)
    monkeypatch.setattr(settings, "warn_below", Decimal(5))
    monkeypatch.setattr(settings, "min_balance", Decimal("0.5"))
    monkeypatch.setattr(BalancePanel, "_wants_reading", staticmethod(lambda snapshot: False))
    panel = BalancePanel()
    assert state_of(panel) == "unknown"
    assert "unknown" in panel._badge.value
    for balance, state in (("10", "ok"), ("3", "low"), ("0.2", "too low")):
        sandbox_env.set_balance(balance)
        panel.refresh(wait=True, timeout=10)
        assert state_of(panel) == state
        assert f">{state}<" in panel._badge.value
    # %config RodinMagics.min_balance changes the settings; the next tick re-renders.
    settings.min_balance = Decimal("0.1")
    wait_for(lambda: ">low<" in panel._badge.value, timeout=2)
    sandbox_env.inject_fault(path="/check_balance", status=None, delay=1)
    worker = panel.refresh()
    assert state_of(panel) == "checking"
    worker.join(10)
    sandbox_env.inject_fault(path="/check_balance", status=500)
    panel.refresh(wait=True, timeout=10)
    assert state_of(panel) == "error"


# -- one source of truth -----------------------------------------------------------------


def test_ten_panels_cost_one_request(sandbox_env: Sandbox, fresh_monitor: BalanceMonitor) -> None:
    panels = [BalancePanel() for _ in range(10)]  # each wants a first reading...
    wait_for(lambda: all(state_of(p) == "ok" for p in panels))
    assert sandbox_env.count(*BALANCE) == 1  # ...and they shared one request
    sandbox_env.set_balance("8.5")
    before = sandbox_env.count(*BALANCE)
    panels[3].refresh(wait=True, timeout=10)
    assert sandbox_env.count(*BALANCE) == before + 1
    assert all(">8.5<" in p._amount.value for p in panels)
    # Ten clicks while a slow answer is on its way: still one request.
    sandbox_env.inject_fault(path="/check_balance", status=None, delay=0.5)
    before = sandbox_env.count(*BALANCE)
    workers = set()
    for panel in panels:
        panel._button.click()
        workers.add(panel.refresh())
    assert len(workers) == 1
    assert all(p._button.disabled for p in panels)
    workers.pop().join(10)
    assert sandbox_env.count(*BALANCE) == before + 1
    assert not any(p._button.disabled for p in panels)
    assert len(panel_threads()) == 1  # just the clock: one for all ten panels
    assert panel_threads()[0].name == "rodin-panel-clock"


def test_a_magic_read_updates_every_panel(ip: Any, sandbox_env: Sandbox) -> None:
    panels = [ready(sandbox_env) for _ in range(3)]
    sandbox_env.set_balance("3.5")
    before = sandbox_env.count(*BALANCE)
    value = ip.run_line_magic("rodin_balance", "")
    assert value == Decimal("3.5")
    assert sandbox_env.count(*BALANCE) == before + 1
    assert all(">3.5<" in p._amount.value for p in panels)  # no panel asked again
    assert sandbox_env.count(*BALANCE) == before + 1


def test_the_refresh_runs_off_the_calling_thread(sandbox_env: Sandbox,
                                                 fresh_monitor: BalanceMonitor) -> None:
    panels = [ready(sandbox_env) for _ in range(2)]
    sandbox_env.set_balance("6")
    sandbox_env.inject_fault(path="/check_balance", status=None, delay=2)
    start = time.monotonic()
    worker = panels[0].refresh()
    panels[1]._button.click()  # what the kernel runs when the button is clicked
    assert time.monotonic() - start < 0.5
    assert worker is not threading.current_thread()
    assert worker.daemon
    for panel in panels:
        assert state_of(panel) == "checking"
        assert panel._button.disabled
    worker.join(10)
    assert time.monotonic() - start >= 1.9
    for panel in panels:
        assert state_of(panel) == "ok"
        assert ">6<" in panel._amount.value
        assert not panel._button.disabled


# -- auto-refresh ------------------------------------------------------------------------


def test_backoff_schedule() -> None:
    assert backoff_delay(60, 0) == 60
    assert backoff_delay(60, 1) == 120
    assert backoff_delay(60, 3) == 480
    assert backoff_delay(60, 50) == 600
    assert backoff_delay(3600, 5) == 3600  # never shorter than the interval
    assert backoff_delay(1, 0) == 10  # the minimum interval holds
    schedule = _Schedule()
    fresh = Snapshot(balance=Decimal(1), checked_monotonic=time.monotonic())
    assert not schedule.due(fresh, 60, time.monotonic())
    old = Snapshot(balance=Decimal(1), checked_monotonic=time.monotonic() - 61)
    assert schedule.due(old, 60, time.monotonic())
    assert schedule.due(Snapshot(), 60, time.monotonic())
    failed = Snapshot(balance=Decimal(1), checked_monotonic=time.monotonic() - 500,
                      error="down")
    schedule.errors, schedule.last_attempt = 2, 1000.0
    assert not schedule.due(failed, 60, 1000.0 + 239)
    assert schedule.due(failed, 60, 1000.0 + 240)
    schedule.pending = True
    assert not schedule.due(old, 60, time.monotonic())


def test_auto_refresh_is_off_by_default_then_backs_off(sandbox_env: Sandbox,
                                                       fresh_monitor: BalanceMonitor,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(panel_module, "TICK_SECONDS", 0.05)
    monkeypatch.setattr(panel_module, "MIN_REFRESH_INTERVAL", 0.1)
    monkeypatch.setattr(BalancePanel, "interval", property(lambda self: 0.3))
    panel = ready(sandbox_env)
    assert panel.auto_refresh is False
    time.sleep(0.8)
    assert sandbox_env.count(*BALANCE) == 1
    panel.auto_refresh = True
    wait_for(lambda: sandbox_env.count(*BALANCE) >= 3, timeout=3)
    sandbox_env.inject_fault(path="/check_balance", status=500, times=None)  # not retried
    first = len(sandbox_env.requests)
    time.sleep(2.8)
    stamps = [r.at for r in sandbox_env.requests[first:] if r.status == 500]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(gaps) >= 2, gaps
    assert gaps[1] > gaps[0] * 1.6, gaps  # 0.6 s, 1.2 s, ...
    assert "stale" in panel._age.value
    panel.close()
    assert panel_threads() == []
    count = sandbox_env.count(*BALANCE)
    time.sleep(0.5)
    assert sandbox_env.count(*BALANCE) == count  # stopped with the panel


def test_interval_defaults_to_the_setting(sandbox_env: Sandbox,
                                          fresh_monitor: BalanceMonitor) -> None:
    settings.refresh_interval = 90
    panel = BalancePanel()
    assert panel.auto_refresh is False
    assert panel.interval == 90
    assert panel._interval.value == 90 and panel._interval.min == 10
    panel.interval = 3
    assert panel.interval == 10
    assert BalancePanel(interval=25, auto_refresh=True).auto_refresh


# -- threads and lifecycle -------------------------------------------------------------


def _threads_besides(baseline: set[threading.Thread]) -> list[str]:
    # The sandbox serves each connection on its own thread; those are not ours.
    return sorted(t.name for t in set(threading.enumerate()) - baseline
                  if t.is_alive() and t.name != "rodin-sandbox-conn")


def test_no_thread_left_after_shutdown_all(sandbox_env: Sandbox,
                                           fresh_monitor: BalanceMonitor) -> None:
    baseline = set(threading.enumerate())
    panels = [BalancePanel(auto_refresh=True) for _ in range(4)]
    sandbox_env.inject_fault(path="/check_balance", status=None, delay=0.5)
    panels[0].refresh()
    assert _threads_besides(baseline)
    shutdown_all()
    assert _threads_besides(baseline) == []
    assert fresh_monitor.observer_count == 0
    assert all(p.closed and p.widget.comm is None for p in panels)


def test_closing_panels_lets_go(sandbox_env: Sandbox, fresh_monitor: BalanceMonitor) -> None:
    first, second = ready(sandbox_env), ready(sandbox_env)
    assert fresh_monitor.observer_count == 2
    first.close()
    assert fresh_monitor.observer_count == 1
    assert [t.name for t in panel_threads()] == ["rodin-panel-clock"]
    second.widget.close()  # closed behind the panel's back: the clock notices
    wait_for(lambda: second.closed, timeout=3)
    wait_for(lambda: panel_threads() == [], timeout=3)
    assert fresh_monitor.observer_count == 0


def test_unload_ext_stops_every_panel(ip: Any, sandbox_env: Sandbox) -> None:
    baseline = set(threading.enumerate())
    ip.run_line_magic("rodin_balance", "--panel")
    panel = BalancePanel(auto_refresh=True)
    wait_for(lambda: state_of(panel) == "ok")
    assert len(panel_module._runtime.panels()) == 2
    ip.run_line_magic("unload_ext", "rodin_jupyter")
    assert _threads_besides(baseline) == []
    assert panel_module._runtime.panels() == []
    assert panel.closed
    ip.run_line_magic("load_ext", "rodin_jupyter")  # the fixture unloads again


# -- fallbacks and secrets ---------------------------------------------------------------


def test_mimebundle_carries_a_text_and_html_snapshot(sandbox_env: Sandbox,
                                                     fresh_monitor: BalanceMonitor) -> None:
    from IPython.core.formatters import format_display_data

    panel = ready(sandbox_env)
    data, _metadata = format_display_data(panel)
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id
    assert data["text/plain"].startswith("Rodin balance: 10 credits (ok")
    assert "VBox" not in data["text/plain"]
    assert "10" in data["text/html"] and "rodin-balance" in data["text/html"]
    assert "<script" not in data["text/html"]
    assert repr(panel) == data["text/plain"]
    panel.close()
    data, _metadata = format_display_data(panel)  # closed: the snapshot alone
    assert set(data) == {"text/plain", "text/html"}


def test_without_ipywidgets_the_panel_is_a_snapshot(sandbox_env: Sandbox) -> None:
    code = """
import json, sys, threading
sys.modules["ipywidgets"] = None  # as if not installed
from rodin_jupyter import BalancePanel
from IPython.core.formatters import format_display_data
panel = BalancePanel()
data, _ = format_display_data(panel)
panel.close()
print(json.dumps({"data": data, "repr": repr(panel), "threads": threading.active_count()}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ), check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result["data"]) == {"text/plain", "text/html"}
    assert result["data"]["text/plain"].startswith("Rodin balance: 10 credits")
    assert "rodin-balance" in result["data"]["text/html"]
    assert result["repr"].startswith("Rodin balance: 10 credits")
    assert FAKE_KEY not in out.stdout + out.stderr


def test_loading_the_extension_does_not_import_ipywidgets() -> None:
    code = """
import sys
from IPython.testing.globalipapp import start_ipython
shell = start_ipython()
shell.run_line_magic("load_ext", "rodin_jupyter")
import rodin_jupyter
assert "ipywidgets" not in sys.modules, "ipywidgets imported by %load_ext"
rodin_jupyter.BalancePanel
assert "ipywidgets" in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_the_key_is_in_no_widget_state(sandbox_env: Sandbox, fresh_monitor: BalanceMonitor) -> None:
    import ipywidgets

    panels = [ready(sandbox_env), BalancePanel(auto_refresh=True)]
    sandbox_env.inject_fault(path="/check_balance", status=401)
    panels[0].refresh(wait=True, timeout=10)
    assert "refused" in panels[0]._error.value
    state = json.dumps(ipywidgets.Widget.get_manager_state(), default=str)
    assert "rodin-panel" in state  # the panels' widgets are in there...
    assert FAKE_KEY not in state  # ...the key is not,
    assert "Bearer" not in state
    assert sandbox_env.base_url not in state  # nor where it is sent
    for panel in panels:
        for child in panel._children:
            assert FAKE_KEY not in json.dumps(child.get_state(), default=str)
    assert FAKE_KEY not in repr(panels[0]) and FAKE_KEY not in str(vars(panels[0]))


# -- the example notebook --------------------------------------------------------------


def test_the_example_notebook_runs(sandbox_env: Sandbox, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # the kernel inherits it
    client = nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    panels = [o for o in outputs
              if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert panels, "no panel displayed"
    for output in panels:
        assert "Rodin balance:" in output.data["text/plain"]
        assert "rodin-balance" in output.data["text/html"]
    assert FAKE_KEY not in nbformat.writes(notebook)
