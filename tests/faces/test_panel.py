"""The balance view and panel: pure view logic, a panel over a fake client, then real HTTP.

Most tests give the monitor a client factory that returns an in-process fake (the seam
the monitor has for that), so they need no socket; the last section keeps the real
sandbox, the real IPython shell and a real kernel.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter.balance.monitor import BalanceMonitor, Snapshot
from rodin_jupyter.balance.settings import settings
from rodin_jupyter.balance.view import one_line
from rodin_jupyter.compat import widget_view
from rodin_jupyter.errors import RodinError
from rodin_jupyter.http.reading import BalanceReading
from rodin_jupyter.widgets.panel import BalancePanel
from rodin_jupyter.widgets.schedule import (
    Runtime,
    Schedule,
    backoff_delay,
    panel_threads,
    shutdown_all,
)
from tests.core.test_balance_view import CLOCK, NOW

BALANCE = ("GET", "/check_balance")
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "balance_panel.ipynb"


@pytest.fixture(autouse=True)
def panels_cleanup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts and ends with no panel and no panel thread."""
    monkeypatch.setattr(settings, "balance", dataclasses.replace(settings.balance))
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
    settings.balance.refresh_interval = 90
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
