"""The balance view and panel: pure view logic, a panel over a fake client, then real HTTP.

Most tests give the monitor a client factory that returns an in-process fake (the seam
the monitor has for that), so they need no socket; the last section keeps the real
sandbox, the real IPython shell and a real kernel.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter.balance.monitor import BalanceMonitor, LedgerEntry, Snapshot
from rodin_jupyter.balance.settings import settings
from rodin_jupyter.balance.text import LedgerView, view_html, view_text
from rodin_jupyter.balance.view import balance_view, one_line, spent_here
from rodin_jupyter.errors import RodinError
from rodin_jupyter.http.client import BalanceReading
from rodin_jupyter.ipython.cell_errors import one_line_message
from rodin_jupyter.sandbox import Sandbox
from rodin_jupyter.widgets.panel import BalancePanel, widget_view
from rodin_jupyter.widgets.schedule import (
    Runtime,
    Schedule,
    backoff_delay,
    panel_threads,
    shutdown_all,
)
from rodin_jupyter.widgets.side import NO_SIDECAR, sidecar_class

from .conftest import FAKE_KEY

BALANCE = ("GET", "/check_balance")
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "balance_panel.ipynb"
CLOCK = re.compile(r"\d\d:\d\d:\d\d")
NOW = datetime(2026, 12, 1, 20, 31, 5, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _panels_cleanup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts and ends with no panel and no panel thread."""
    for name in ("warn_below", "min_balance", "refresh_interval", "cache_ttl"):
        monkeypatch.setattr(settings, name, getattr(settings, name))
    shutdown_all()
    yield
    shutdown_all()
    assert panel_threads() == []


class FakeClient:
    """In-process stand-in for RodinClient: answers, fails or blocks as told; counts calls."""

    def __init__(self, balance: str = "10") -> None:
        self.balance = Decimal(balance)
        self.fail: Exception | None = None
        self.gate: threading.Event | None = None
        self.calls = 0

    def check_balance(self) -> BalanceReading:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        return BalanceReading(self.balance, datetime.now(timezone.utc))

    def close(self) -> None:
        pass


@pytest.fixture
def fake() -> FakeClient:
    return FakeClient()


@pytest.fixture
def monitor(fake: FakeClient) -> BalanceMonitor:
    return BalanceMonitor(lambda: fake)  # type: ignore[arg-type, return-value]


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def ready(monitor: BalanceMonitor | None = None, **kwargs: Any) -> BalancePanel:
    """A panel whose first (automatic) reading has arrived."""
    panel = BalancePanel(monitor=monitor, **kwargs)
    panel.refresh(wait=True, timeout=10)
    wait_for(lambda: panel.view().word != "checking")
    return panel


def amount_in(panel: BalancePanel) -> str:
    found = re.search(r'class="rodin-number"[^>]*>([^<]*)<', panel.shown())
    return found.group(1) if found else ""


def entry(before: str, after: str) -> LedgerEntry:
    return LedgerEntry("cell 1", Decimal("0.5"), Decimal(before), Decimal(after), NOW)


def snap(balance: str | None = "10", **kwargs: Any) -> Snapshot:
    value = None if balance is None else Decimal(balance)
    checked = NOW if value is not None else None
    mono = time.monotonic() - 12 if value is not None else None
    return Snapshot(balance=value, checked_at=checked, checked_monotonic=mono, **kwargs)


# -- the view: one place decides every word ------------------------------------------------


def test_thresholds_give_the_states(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "warn_below", Decimal(5))
    monkeypatch.setattr(settings, "min_balance", Decimal("0.5"))
    assert balance_view(snap(None)).word == "unknown"
    assert balance_view(snap(None)).amount == "unknown"  # a word, not a dash
    for balance, state in (("10", "ok"), ("3", "low"), ("0.2", "too low")):
        assert balance_view(snap(balance)).word == state
    settings.min_balance = Decimal("0.1")  # %config RodinMagics.min_balance
    assert balance_view(snap("0.2")).word == "low"
    assert balance_view(snap("10", error="down")).word == "error"
    assert balance_view(snap("10", checking=True)).word == "checking"


def test_states_differ_by_more_than_colour() -> None:
    views = [balance_view(snap(b, **kw)) for b, kw in
             (("10", {}), ("3", {}), ("0.1", {}), ("10", {"error": "down"}),
              ("10", {"checking": True}), (None, {}))]
    html = [view_html(v) for v in views]
    words = [re.search(r'class="rodin-state">([^<]*)<', h).group(1) for h in html]  # type: ignore[union-attr]
    assert words == ["ok", "low", "too low", "error", "checking", "unknown"]
    icons = [re.search(r'aria-hidden="true">([^<]*)<', h).group(1) for h in html]  # type: ignore[union-attr]
    assert len(set(icons)) == len(icons)
    outlines = [re.search(r'border:(\d+px \w+)', h).group(1) for h in html]  # type: ignore[union-attr]
    assert outlines[2] != outlines[3]  # "too low" and "error" share a red, not an outline
    assert len(set(outlines)) >= 4


def test_checking_dims_the_number_and_hides_the_old_error() -> None:
    failed = balance_view(snap("10", error="The Rodin API is unavailable (HTTP 503)."))
    assert failed.stale and failed.error
    assert "rodin-error" in view_html(failed) and "rodin-dim" in view_html(failed)
    checking = balance_view(snap("10", error="The Rodin API is unavailable.", checking=True))
    assert checking.word == "checking" and checking.error is None
    html = view_html(checking)
    assert "rodin-error" not in html and "unavailable" not in html
    assert "rodin-dim" in html and ">10<" in html  # the last number stays, dimmed
    fresh = view_html(balance_view(snap("10")))
    assert "rodin-dim" not in fresh and "rodin-stale" not in fresh


def test_the_error_line_is_whole_and_one_line() -> None:
    message = ("No Rodin API key: set RODIN_API_KEY (or HYPER3D_API_KEY) in the environment "
               "before starting Jupyter; never paste the key into a cell.")
    view = balance_view(snap(None, error=message + "\nTraceback (most recent call last):"))
    assert view.error == message
    html = view_html(view)
    assert message in html and "Traceback" not in html
    assert "white-space:normal" in html and "overflow-wrap:anywhere" in html
    assert view_text(view).endswith(message)
    assert one_line("first\nsecond") == "first"
    assert one_line("x" * 1000).endswith("…") and len(one_line("x" * 1000)) <= 500


def test_static_output_has_the_clock_time_live_has_the_age() -> None:
    view = balance_view(snap("10"))
    assert "just now" not in view_text(view) and "ago" not in view_text(view)
    assert CLOCK.search(view_text(view)) and "2026-12-01" in view_text(view)
    assert CLOCK.search(view_html(view))
    live = view_html(view, live=True)
    assert "12 s ago" in live and CLOCK.search(live)
    assert "not checked yet" in view_html(balance_view(snap(None)))


def test_spent_here_is_the_ledger_not_any_drop() -> None:
    # The balance fell from 12 to 4.5 elsewhere; this kernel's one cell cost 0.5.
    outside = snap("4.5", spent=Decimal("7.5"), ledger=(entry("5", "4.5"),))
    assert spent_here(outside) == Decimal("0.5")
    view = balance_view(outside)
    assert "spent here: 0.5<" in view_html(view)
    assert "7.5" not in view_html(view) and "7.5" not in view_text(view)
    ledger = LedgerView(outside)
    assert "Guarded cells spent 0.5 credits (spent here)" in repr(ledger)
    assert "fell by 7 outside" in repr(ledger)  # told apart, not counted here
    assert "not counted as spent here" in ledger._repr_html_()
    assert spent_here(snap("10", spent=Decimal(3))) == 0


def test_html_uses_theme_variables_and_no_script() -> None:
    html = view_html(balance_view(snap("10", error="down")))
    assert "<script" not in html and "<style" not in html
    assert "sans-serif;" not in html.split("font-family:", 1)[1][:10]
    assert "var(--jp-content-font-family" in html
    bare = re.sub(r"var\(--jp-[\w-]+, (?:[^()]|\([^()]*\))*\)", "VAR", html)
    hard = re.findall(r"#[0-9a-fA-F]{3,6}\b|rgba?\(", bare)
    assert hard == ["#000"], hard  # only the text on the light state tints
    assert "var(--jp-success-color" in view_html(balance_view(snap("10")))


def test_guard_messages_carry_one_prefix() -> None:
    assert one_line_message("guard: needs 0.5 credits") == "rodin_jupyter guard: needs 0.5 credits"
    assert one_line_message("The key was refused.") == "rodin_jupyter: The key was refused."


# -- scheduling, without threads ----------------------------------------------------------


def test_backoff_schedule() -> None:
    assert backoff_delay(60, 0) == 60
    assert backoff_delay(60, 1) == 120
    assert backoff_delay(60, 3) == 480
    assert backoff_delay(60, 50) == 600
    assert backoff_delay(3600, 5) == 3600  # never shorter than the interval
    assert backoff_delay(1, 0) == 10  # the minimum interval holds
    schedule = Schedule()
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


class StubPanel:
    """What the scheduler sees of a panel, without widgets or the kernel's clock."""

    def __init__(self, monitor: BalanceMonitor) -> None:
        self.monitor = monitor
        self.closed = False
        self.auto_refresh = False
        self.interval = 60.0
        self.renders = 0

    def render(self) -> None:
        self.renders += 1

    def tick(self) -> None:
        self.render()

    def close(self, timeout: float = 0) -> None:
        self.closed = True


def test_auto_refresh_is_off_by_default(monitor: BalanceMonitor, fake: FakeClient) -> None:
    panel = StubPanel(monitor)
    runtime = Runtime()
    later = time.monotonic() + 10_000
    assert runtime.auto_refresh([panel], later) == []  # off: nothing started
    panel.auto_refresh = True
    monitor.record(BalanceReading(Decimal(10), NOW, monotonic=time.monotonic() - 120))
    assert runtime.auto_refresh([panel], later) == [monitor]
    assert runtime.auto_refresh([panel], later) == []  # one pending: no second request
    wait_for(lambda: not runtime.pending(monitor))
    assert fake.calls == 1
    assert runtime.auto_refresh([panel], time.monotonic()) == []  # fresh again
    fake.fail = RodinError("down")
    monitor.record(BalanceReading(Decimal(10), NOW, monotonic=time.monotonic() - 120))
    runtime.request_refresh(monitor).join(10)
    soon = time.monotonic() + 60
    assert runtime.auto_refresh([panel], soon) == []  # one failure: waits 120 s, not 60
    assert runtime.auto_refresh([panel], soon + 61) == [monitor]
    runtime.shutdown(5)


def test_interval_defaults_to_the_setting(monitor: BalanceMonitor) -> None:
    settings.refresh_interval = 90
    panel = BalancePanel(monitor=monitor)
    assert panel.auto_refresh is False
    assert panel.interval == 90
    panel.interval = 3
    assert panel.interval == 10
    assert BalancePanel(interval=25, auto_refresh=True, monitor=monitor).auto_refresh


# -- the panel over a fake client -----------------------------------------------------------


def test_refresh_updates_the_value(monitor: BalanceMonitor, fake: FakeClient) -> None:
    panel = ready(monitor)
    assert amount_in(panel) == "10" and panel.view().word == "ok"
    assert re.search(r"checked <[^>]*>just now, at </span>" + CLOCK.pattern, panel.shown())
    fake.balance = Decimal("7.25")
    panel.refresh(wait=True, timeout=10)
    assert amount_in(panel) == "7.25"
    assert not panel.busy and "Refresh" in str(panel.widget.children[1].description)


def test_checking_says_so_on_the_button(monitor: BalanceMonitor, fake: FakeClient) -> None:
    panels = [ready(monitor), ready(monitor)]
    fake.gate = threading.Event()
    start = time.monotonic()
    worker = panels[0].refresh()
    assert time.monotonic() - start < 1  # the caller is not kept waiting
    assert worker is not threading.current_thread() and worker.daemon
    for panel in panels:
        assert panel.view().word == "checking" and panel.busy
        assert panel.widget.children[1].description == "Checking…"
        assert "rodin-dim" in panel.shown()
    fake.gate.set()
    worker.join(10)
    wait_for(lambda: not panels[1].busy)
    assert all(p.view().word == "ok" and not p.busy for p in panels)


def test_error_keeps_the_stale_value_and_one_line(monitor: BalanceMonitor,
                                                  fake: FakeClient) -> None:
    panel = ready(monitor)
    fake.fail = RodinError("The Rodin API is unavailable (HTTP 503).")
    panel.refresh(wait=True, timeout=10)
    shown = panel.shown()
    assert amount_in(panel) == "10"  # the last known balance stays
    assert "rodin-stale" in shown and panel.view().word == "error"
    assert "HTTP 503" in shown and "Traceback" not in shown
    fake.fail = None
    panel.refresh(wait=True, timeout=10)
    assert "rodin-stale" not in panel.shown() and "rodin-error" not in panel.shown()


def test_unexpected_errors_are_one_line_through_the_monitor(monitor: BalanceMonitor,
                                                            fake: FakeClient) -> None:
    panel = ready(monitor)
    fake.fail = ValueError("line one\nTraceback (most recent call last):\n  nonsense")
    panel.refresh(wait=True, timeout=5)
    assert "unexpectedly (ValueError)" in panel.shown()
    assert "Traceback" not in panel.shown()
    assert "stale" in repr(panel) and "unexpectedly (ValueError)" in repr(panel)
    assert panel.view().error == one_line(str(monitor.snapshot().error))  # one channel


def test_ten_panels_cost_one_request(monitor: BalanceMonitor, fake: FakeClient) -> None:
    panels = [BalancePanel(monitor=monitor) for _ in range(10)]  # each wants a reading...
    wait_for(lambda: all(p.view().word == "ok" for p in panels))
    assert fake.calls == 1  # ...and they shared one
    fake.gate = threading.Event()
    workers = set()
    for panel in panels:
        panel.widget.children[1].click()
        workers.add(panel.refresh())
    assert len(workers) == 1 and all(p.busy for p in panels)
    fake.gate.set()
    workers.pop().join(10)
    assert fake.calls == 2
    wait_for(lambda: not any(p.busy for p in panels))
    assert [t.name for t in panel_threads()] == ["rodin-panel-clock"]  # one for all ten


def test_the_panel_is_one_view_and_its_controls(monitor: BalanceMonitor) -> None:
    panel = ready(monitor)
    box = panel.widget
    kinds = [type(child).__name__ for child in box.children]
    assert kinds == ["HTML", "Button", "Checkbox", "BoundedIntText"]
    assert box.layout.flex_flow == "row wrap"  # narrow outputs wrap, nothing is clipped


def test_mimebundle_carries_a_static_snapshot(monitor: BalanceMonitor) -> None:
    panel = ready(monitor)
    data = panel._repr_mimebundle_()  # IPython's display protocol
    view = data["application/vnd.jupyter.widget-view+json"]
    assert view == {"version_major": 2, "version_minor": 0, "model_id": panel.widget.model_id}
    assert data["text/plain"].startswith("Rodin balance: 10 credits (ok")
    for static in (data["text/plain"], data["text/html"]):
        assert CLOCK.search(static) and "just now" not in static
    assert "rodin-balance" in data["text/html"] and "<script" not in data["text/html"]
    assert repr(panel) == data["text/plain"]
    panel.close()
    assert widget_view(panel.widget) is None
    data = panel._repr_mimebundle_()  # closed: the snapshot alone
    assert set(data) == {"text/plain", "text/html"}


def test_closing_panels_lets_go(monitor: BalanceMonitor) -> None:
    first, second = ready(monitor), ready(monitor)
    assert monitor.observer_count == 2
    first.close()
    assert monitor.observer_count == 1
    assert [t.name for t in panel_threads()] == ["rodin-panel-clock"]
    second.widget.close()  # closed behind the panel's back: the clock notices
    wait_for(lambda: second.closed, timeout=5)
    wait_for(lambda: panel_threads() == [], timeout=5)
    assert monitor.observer_count == 0


def test_no_thread_left_after_shutdown_all(monitor: BalanceMonitor, fake: FakeClient) -> None:
    baseline = set(threading.enumerate())
    panels = [BalancePanel(auto_refresh=True, monitor=monitor) for _ in range(4)]
    fake.gate = threading.Event()
    panels[0].refresh()
    assert set(threading.enumerate()) - baseline
    fake.gate.set()
    shutdown_all()
    assert {t for t in set(threading.enumerate()) - baseline if t.is_alive()} == set()
    assert monitor.observer_count == 0
    assert all(p.closed and widget_view(p.widget) is None for p in panels)


# -- real HTTP, a real shell, a real kernel ----------------------------------------------


def test_a_magic_read_updates_every_panel(ip: Any, sandbox_env: Sandbox) -> None:
    panels = [ready() for _ in range(3)]
    sandbox_env.set_balance("3.5")
    before = sandbox_env.count(*BALANCE)
    value = ip.run_line_magic("rodin_balance", "")
    assert value == Decimal("3.5")
    assert all(amount_in(p) == "3.5" for p in panels)  # no panel asked again
    assert sandbox_env.count(*BALANCE) == before + 1
    assert "spent here" not in repr(value)  # the drop 10 -> 3.5 happened elsewhere


def test_sidecar_or_one_line_of_explanation(ip: Any, sandbox_env: Sandbox,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("rodin_balance", "--sidecar")
    out = capsys.readouterr().out
    if sidecar_class() is None:
        assert NO_SIDECAR in out and "Create New View for Output" in out
    else:
        assert "side area" in out
    assert out.count("\n") <= 2


def test_unload_ext_stops_every_panel(ip: Any, sandbox_env: Sandbox) -> None:
    baseline = set(threading.enumerate())
    ip.run_line_magic("rodin_balance", "--panel")
    panel = BalancePanel(auto_refresh=True)
    wait_for(lambda: panel.view().word == "ok")
    ip.run_line_magic("unload_ext", "rodin_jupyter")
    assert sorted(t.name for t in set(threading.enumerate()) - baseline
                  if t.is_alive() and t.name != "rodin-sandbox-conn") == []
    assert panel.closed and panel_threads() == []
    ip.run_line_magic("load_ext", "rodin_jupyter")  # the fixture unloads again


def test_the_key_is_in_no_widget_state(sandbox_env: Sandbox, fresh_monitor: BalanceMonitor) -> None:
    import ipywidgets

    panels = [ready(), BalancePanel(auto_refresh=True)]
    sandbox_env.inject_fault(path="/check_balance", status=401)
    panels[0].refresh(wait=True, timeout=10)
    assert "refused" in panels[0].shown()
    state = json.dumps(ipywidgets.Widget.get_manager_state(), default=str)
    assert "rodin-panel" in state  # the panels' widgets are in there...
    assert FAKE_KEY not in state  # ...the key is not,
    assert "Bearer" not in state
    assert sandbox_env.base_url not in state  # nor where it is sent
    assert FAKE_KEY not in repr(panels[0]) and FAKE_KEY not in str(vars(panels[0]))


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
        assert CLOCK.search(output.data["text/html"])  # a saved notebook keeps the time
    assert FAKE_KEY not in nbformat.writes(notebook)
