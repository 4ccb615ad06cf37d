"""When panels refresh, and the threads that do it: no ipywidgets here, only time and threads.

* One kernel-wide *clock* thread runs while at least one panel is open. Once a second it
  asks every panel to repaint (the live "checked 12 s ago", ``%config`` threshold changes;
  a trait only crosses the wire when its text changed) and, if any panel has auto-refresh
  on, decides whether a refresh is due. It exits when the last panel closes.
* Refreshes (a click, ``panel.refresh()``, auto-refresh) go through one background *worker*
  per monitor: while one is pending, further requests join it instead of starting another.
  With the monitor's own single flight this makes ten panels cost one request, and the
  kernel stays free while the answer is awaited.
* The monitor is the only error channel: a failed refresh leaves its one-line message in
  the monitor's snapshot, which every panel paints.
* Threads are daemons that sleep on ``Event.wait``; closing the last panel and
  :func:`shutdown_all` (``%unload_ext``) stop and join them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from rodin_jupyter.balance.monitor import BalanceMonitor, Snapshot
from rodin_jupyter.balance.settings import MIN_REFRESH_INTERVAL
from rodin_jupyter.errors import RodinError

log = logging.getLogger("rodin_jupyter.widgets.schedule")

TICK_SECONDS = 1.0
"""How often the clock repaints panels and checks whether a refresh is due."""

MAX_BACKOFF_SECONDS = 600.0
"""Longest wait between automatic refreshes after errors (unless the interval is longer)."""

JOIN_TIMEOUT = 5.0


class Painted(Protocol):
    """What the scheduler needs of a panel."""

    monitor: BalanceMonitor

    @property
    def closed(self) -> bool: ...
    @property
    def auto_refresh(self) -> bool: ...
    @property
    def interval(self) -> float: ...
    def render(self) -> None: ...
    def tick(self) -> None: ...
    def close(self, timeout: float = JOIN_TIMEOUT) -> None: ...


def backoff_delay(interval: float, errors: int) -> float:
    """Seconds between automatic refreshes after ``errors`` failures in a row.

    The interval itself when all is well, then doubling per failure, capped at
    ``MAX_BACKOFF_SECONDS`` (or the interval, if that is longer).
    """
    interval = max(MIN_REFRESH_INTERVAL, interval)
    if errors <= 0:
        return interval
    return min(interval * 2.0 ** min(errors, 20), max(MAX_BACKOFF_SECONDS, interval))


@dataclass
class Schedule:
    """Refresh bookkeeping for one monitor (in practice: the kernel's one monitor)."""

    pending: bool = False
    worker: threading.Thread | None = None
    errors: int = 0
    last_attempt: float | None = None

    def due(self, snapshot: Snapshot, interval: float, now: float) -> bool:
        """Whether an automatic refresh should start now."""
        if self.pending or snapshot.checking:
            return False
        if snapshot.error is None:
            # Any fresh reading (a click, the magic, the guard) resets the timer.
            age = snapshot.age()
            return age is None or age >= interval
        if self.last_attempt is None:
            return True
        return now - self.last_attempt >= backoff_delay(interval, max(1, self.errors))


class Runtime:
    """The open panels, the clock thread and the refresh workers of this kernel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._panels: list[Painted] = []
        self._schedules: dict[BalanceMonitor, Schedule] = {}
        self._clock: threading.Thread | None = None
        self._clock_stop: threading.Event | None = None
        self.tick_seconds = TICK_SECONDS

    def add(self, panel: Painted) -> None:
        with self._lock:
            self._panels.append(panel)
            if self._clock is None:
                stop = threading.Event()
                clock = threading.Thread(target=self._run_clock, args=(stop,),
                                         name="rodin-panel-clock", daemon=True)
                self._clock, self._clock_stop = clock, stop
                clock.start()

    def remove(self, panel: Painted) -> list[threading.Thread]:
        """Forget a panel; returns the threads the caller should join (none if panels remain)."""
        with self._lock:
            if panel in self._panels:
                self._panels.remove(panel)
            if self._panels:
                return []
            return self._stop_locked()

    def _stop_locked(self) -> list[threading.Thread]:
        threads: list[threading.Thread] = []
        if self._clock_stop is not None:
            self._clock_stop.set()
        if self._clock is not None:
            threads.append(self._clock)
        self._clock, self._clock_stop = None, None
        threads += [s.worker for s in self._schedules.values() if s.worker is not None]
        self._schedules = {m: s for m, s in self._schedules.items() if s.pending}
        return threads

    def panels(self, monitor: BalanceMonitor | None = None) -> list[Painted]:
        with self._lock:
            return [p for p in self._panels if monitor is None or p.monitor is monitor]

    def threads(self) -> list[threading.Thread]:
        """Every thread this module started that is still alive."""
        with self._lock:
            found = [self._clock] + [s.worker for s in self._schedules.values()]
        return [t for t in found if t is not None and t.is_alive()]

    def _run_clock(self, stop: threading.Event) -> None:
        while not stop.wait(self.tick_seconds):
            panels = self.panels()
            for panel in panels:
                panel.tick()
            try:
                self.auto_refresh(panels, time.monotonic())
            except Exception as exc:  # the clock must keep going
                log.debug("auto-refresh check failed: %s", type(exc).__name__)

    def auto_refresh(self, panels: list[Painted], now: float) -> list[BalanceMonitor]:
        """Start the refreshes that are due; returns their monitors."""
        wanted: dict[BalanceMonitor, float] = {}
        for panel in panels:
            if panel.auto_refresh and not panel.closed:
                interval = panel.interval
                wanted[panel.monitor] = min(wanted.get(panel.monitor, interval), interval)
        started = []
        for monitor, interval in wanted.items():
            snapshot = monitor.snapshot()
            with self._lock:
                due = self._schedule(monitor).due(snapshot, interval, now)
            if due:  # a reading another kernel took within the interval will do
                self.request_refresh(monitor, max_age=interval)
                started.append(monitor)
        return started

    def _schedule(self, monitor: BalanceMonitor) -> Schedule:
        schedule = self._schedules.get(monitor)
        if schedule is None:
            schedule = self._schedules[monitor] = Schedule()
        return schedule

    def pending(self, monitor: BalanceMonitor) -> bool:
        """A refresh was asked for and has not finished."""
        with self._lock:
            schedule = self._schedules.get(monitor)
            return schedule is not None and schedule.pending

    def pending_worker(self, monitor: BalanceMonitor) -> threading.Thread | None:
        with self._lock:
            schedule = self._schedules.get(monitor)
            if schedule is None or not schedule.pending:
                return None
            return schedule.worker

    def request_refresh(self, monitor: BalanceMonitor,
                        max_age: float | None = None) -> threading.Thread:
        """Start a background refresh, or return the one already pending for this monitor.

        With ``max_age``, a reading that young (e.g. another kernel's) does instead.
        """
        with self._lock:
            schedule = self._schedule(monitor)
            worker = schedule.worker
            if not (schedule.pending and worker is not None):
                schedule.pending = True
                worker = threading.Thread(target=self._refresh,
                                          args=(monitor, schedule, max_age),
                                          name="rodin-panel-refresh", daemon=True)
                schedule.worker = worker
                worker.start()
        for panel in self.panels(monitor):
            panel.render()  # every panel says "checking" at once
        return worker

    def _refresh(self, monitor: BalanceMonitor, schedule: Schedule,
                 max_age: float | None = None) -> None:
        try:
            monitor.refresh() if max_age is None else monitor.read(max_age=max_age)
            ok = True
        except RodinError:
            ok = False  # the monitor keeps the one-line message and the last balance
        except Exception as exc:  # the monitor turns client bugs into RodinError already
            ok = False
            log.debug("unexpected error in panel refresh: %s", type(exc).__name__)
        with self._lock:
            schedule.pending = False
            schedule.last_attempt = time.monotonic()
            schedule.errors = 0 if ok else schedule.errors + 1
        for panel in self.panels(monitor):
            panel.render()

    def shutdown(self, timeout: float) -> None:
        with self._lock:
            panels = list(self._panels)
            threads = self._stop_locked()
            self._panels.clear()
        for panel in panels:
            panel.close(timeout=0)  # unsubscribes and closes its widgets
        with self._lock:
            threads += [s.worker for s in self._schedules.values() if s.worker is not None]
            self._schedules.clear()
        join(threads, timeout)


def join(threads: list[threading.Thread], timeout: float) -> None:
    """Join ``threads`` within ``timeout`` in all (never the calling thread)."""
    deadline = time.monotonic() + timeout
    current = threading.current_thread()
    for thread in threads:
        if thread is not current:
            thread.join(max(0.0, deadline - time.monotonic()))


runtime = Runtime()
"""The kernel's one scheduler."""


def shutdown_all(timeout: float = JOIN_TIMEOUT) -> None:
    """Close every panel, stop the clock, wait for refreshes in flight; no thread is left.

    Called by ``%unload_ext rodin_jupyter``. A refresh in flight is bounded by the client's
    deadline; ``timeout`` caps how long this waits for it.
    """
    runtime.shutdown(timeout)


def panel_threads() -> list[threading.Thread]:
    """The panel threads still alive (for tests and diagnostics)."""
    return runtime.threads()


__all__ = ["Runtime", "Schedule", "backoff_delay", "join", "panel_threads", "runtime",
           "shutdown_all"]
