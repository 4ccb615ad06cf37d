"""The refreshable balance panel: an ipywidgets view over the kernel's one ``BalanceMonitor``.

This is the only module that imports ipywidgets, and it is imported only when a panel is
first asked for (``%rodin_balance --panel`` or ``rodin_jupyter.BalancePanel``).

How the pieces fit:

* A panel holds no balance of its own. It renders ``get_monitor().snapshot()`` and
  subscribes to the monitor, so a reading taken anywhere (the magic, the guard, another
  panel) shows up in every panel at once.
* One kernel-wide *clock* thread runs while at least one panel is open. Once a second it
  re-renders every panel ("checked 12 s ago" stays current, ``%config`` threshold changes
  show up; a trait only crosses the wire when its text changed) and, if any panel has
  auto-refresh on, decides whether a refresh is due. It exits when the last panel closes.
* Refreshes (a click, ``panel.refresh()``, auto-refresh) go through one background *worker*
  per monitor: while one is pending, further requests join it instead of starting another.
  With the monitor's own single-flight this makes ten panels cost one request per refresh,
  and the kernel stays free while the answer is awaited.
* Threads are daemons that sleep on ``Event.wait``; ``close()`` and :func:`shutdown_all`
  (called by ``%unload_ext``) stop and join them.
* Without ipywidgets (or where widgets cannot render) the output still carries a text/plain
  and text/html snapshot from :mod:`rodin_jupyter.balance.text`.
"""

from __future__ import annotations

import contextlib
import html
import importlib
import logging
import threading
import time
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

from rodin_jupyter.balance.monitor import (
    BalanceMonitor,
    BalanceState,
    Snapshot,
    describe_age,
    format_credits,
    get_monitor,
)
from rodin_jupyter.balance.settings import MIN_REFRESH_INTERVAL, settings
from rodin_jupyter.balance.text import STATE_COLOURS, snapshot_html, snapshot_state, snapshot_text
from rodin_jupyter.errors import RodinError

log = logging.getLogger("rodin_jupyter.widgets.panel")

TICK_SECONDS = 1.0
"""How often the clock thread re-renders panels and checks whether a refresh is due."""

MAX_BACKOFF_SECONDS = 600.0
"""Longest wait between automatic refreshes after errors (unless the interval is longer)."""

MAX_INTERVAL_SECONDS = 86_400
JOIN_TIMEOUT = 5.0
DISPLAY_WAIT = 2.0
"""How long displaying a panel waits for a first reading in flight, so the static
text/HTML fallback (nbconvert, viewers) carries a balance rather than 'checking'."""
MAX_ERROR_CHARS = 300

WIDGET_VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"


def _import_widgets() -> ModuleType | None:
    try:
        return importlib.import_module("ipywidgets")
    except ImportError:  # like tqdm.notebook: fall back to a static snapshot
        return None


widgets: Any = _import_widgets()
"""The ipywidgets module, or None when it is not installed."""


def one_line(text: str) -> str:
    """The first non-empty line of ``text``, trimmed to a readable length."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[0] if lines else "Balance check failed."
    if len(line) > MAX_ERROR_CHARS:
        line = line[: MAX_ERROR_CHARS - 1] + "…"
    return line


def backoff_delay(interval: float, errors: int) -> float:
    """Seconds between automatic refreshes after ``errors`` failures in a row.

    The interval itself when all is well, then doubling per failure, capped at
    ``MAX_BACKOFF_SECONDS`` (or the interval, if that is longer).
    """
    interval = max(MIN_REFRESH_INTERVAL, interval)
    if errors <= 0:
        return interval
    return min(interval * 2.0 ** min(errors, 20), max(MAX_BACKOFF_SECONDS, interval))


# -- the kernel-wide scheduler ---------------------------------------------------------


@dataclass
class _Schedule:
    """Refresh bookkeeping for one monitor (in practice: the kernel's one monitor)."""

    pending: bool = False
    worker: threading.Thread | None = None
    errors: int = 0
    last_attempt: float | None = None
    unexpected: str | None = None

    def due(self, snapshot: Snapshot, interval: float, now: float) -> bool:
        """Whether an automatic refresh should start now."""
        if self.pending or snapshot.checking:
            return False
        if snapshot.error is None and self.unexpected is None:
            # Any fresh reading (a click, the magic, the guard) resets the timer.
            age = snapshot.age()
            return age is None or age >= interval
        if self.last_attempt is None:
            return True
        return now - self.last_attempt >= backoff_delay(interval, max(1, self.errors))


class _Runtime:
    """The open panels, the clock thread and the refresh workers of this kernel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._panels: list[BalancePanel] = []
        self._schedules: dict[BalanceMonitor, _Schedule] = {}
        self._clock: threading.Thread | None = None
        self._clock_stop: threading.Event | None = None

    # -- panels and the clock ----------------------------------------------------------

    def add(self, panel: BalancePanel) -> None:
        with self._lock:
            self._panels.append(panel)
            if self._clock is None:
                stop = threading.Event()
                clock = threading.Thread(target=self._run_clock, args=(stop,),
                                         name="rodin-panel-clock", daemon=True)
                self._clock, self._clock_stop = clock, stop
                clock.start()

    def remove(self, panel: BalancePanel) -> list[threading.Thread]:
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
        for schedule in self._schedules.values():
            if schedule.worker is not None:
                threads.append(schedule.worker)
        self._schedules = {m: s for m, s in self._schedules.items() if s.pending}
        return threads

    def panels(self, monitor: BalanceMonitor | None = None) -> list[BalancePanel]:
        with self._lock:
            return [p for p in self._panels if monitor is None or p.monitor is monitor]

    def threads(self) -> list[threading.Thread]:
        """Every thread this module started that is still alive."""
        with self._lock:
            found = [self._clock] + [s.worker for s in self._schedules.values()]
        return [t for t in found if t is not None and t.is_alive()]

    def _run_clock(self, stop: threading.Event) -> None:
        while not stop.wait(TICK_SECONDS):
            panels = self.panels()
            for panel in panels:
                panel._tick()
            try:
                self._auto_refresh(panels)
            except Exception as exc:  # the clock must keep going
                log.debug("auto-refresh check failed: %s", type(exc).__name__)

    def _auto_refresh(self, panels: list[BalancePanel]) -> None:
        wanted: dict[BalanceMonitor, float] = {}
        for panel in panels:
            if panel.auto_refresh and not panel.closed:
                interval = panel.interval
                wanted[panel.monitor] = min(wanted.get(panel.monitor, interval), interval)
        now = time.monotonic()
        for monitor, interval in wanted.items():
            snapshot = monitor.snapshot()
            with self._lock:
                due = self._schedule(monitor).due(snapshot, interval, now)
            if due:
                self.request_refresh(monitor)

    # -- refreshing --------------------------------------------------------------------

    def _schedule(self, monitor: BalanceMonitor) -> _Schedule:
        schedule = self._schedules.get(monitor)
        if schedule is None:
            schedule = self._schedules[monitor] = _Schedule()
        return schedule

    def status(self, monitor: BalanceMonitor) -> tuple[bool, str | None]:
        """(a refresh is pending, the one-line unexpected error of the last attempt)."""
        with self._lock:
            schedule = self._schedules.get(monitor)
            if schedule is None:
                return False, None
            return schedule.pending, schedule.unexpected

    def pending_worker(self, monitor: BalanceMonitor) -> threading.Thread | None:
        with self._lock:
            schedule = self._schedules.get(monitor)
            if schedule is None or not schedule.pending:
                return None
            return schedule.worker

    def request_refresh(self, monitor: BalanceMonitor) -> threading.Thread:
        """Start a background refresh, or return the one already pending for this monitor."""
        with self._lock:
            schedule = self._schedule(monitor)
            worker = schedule.worker
            if not (schedule.pending and worker is not None):
                schedule.pending = True
                schedule.unexpected = None
                worker = threading.Thread(target=self._refresh, args=(monitor, schedule),
                                          name="rodin-panel-refresh", daemon=True)
                schedule.worker = worker
                worker.start()
        for panel in self.panels(monitor):
            panel._render()  # every panel says "checking" at once
        return worker

    def _refresh(self, monitor: BalanceMonitor, schedule: _Schedule) -> None:
        unexpected: str | None = None
        try:
            monitor.refresh()
            ok = True
        except RodinError:
            ok = False  # the monitor keeps the one-line message and the last balance
        except Exception as exc:  # a bug must not leave a traceback in the page
            ok = False
            unexpected = f"Balance check failed unexpectedly ({type(exc).__name__})."
            log.debug("unexpected error in panel refresh: %s", type(exc).__name__)
        with self._lock:
            schedule.pending = False
            schedule.last_attempt = time.monotonic()
            schedule.errors = 0 if ok else schedule.errors + 1
            schedule.unexpected = unexpected
        for panel in self.panels(monitor):
            panel._render()

    # -- shutting down -----------------------------------------------------------------

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
        _join(threads, timeout)


def _join(threads: list[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    current = threading.current_thread()
    for thread in threads:
        if thread is not current:
            thread.join(max(0.0, deadline - time.monotonic()))


_runtime = _Runtime()


def shutdown_all(timeout: float = JOIN_TIMEOUT) -> None:
    """Close every panel, stop the clock, wait for refreshes in flight; no thread is left.

    Called by ``%unload_ext rodin_jupyter``. A refresh in flight is bounded by the client's
    deadline; ``timeout`` caps how long this waits for it.
    """
    _runtime.shutdown(timeout)


def panel_threads() -> list[threading.Thread]:
    """The panel threads still alive (for tests and diagnostics)."""
    return _runtime.threads()


# -- the panel -------------------------------------------------------------------------


_BADGE = ('<span class="rodin-state" style="display:inline-block;padding:0 8px;'
          'border-radius:10px;font-size:0.8em;line-height:1.6;color:#fff;'
          'background:{colour}">{state}</span>')


class BalancePanel:
    """Your Rodin balance, kept current: ``display(BalancePanel())``.

    Every panel in a kernel shows the same shared state; one refresh updates them all.
    ``panel.widget`` is the ipywidgets box, for use inside your own layouts.
    """

    def __init__(self, *, auto_refresh: bool = False, interval: float | None = None,
                 monitor: BalanceMonitor | None = None) -> None:
        self.monitor: BalanceMonitor = monitor if monitor is not None else get_monitor()
        self._lock = threading.RLock()
        self._closed = False
        self._box: Any = None
        self._children: list[Any] = []
        start = float(settings.refresh_interval if interval is None else interval)
        start = min(float(MAX_INTERVAL_SECONDS), max(MIN_REFRESH_INTERVAL, start))
        snapshot = self.monitor.snapshot()
        if widgets is None:
            self._unsubscribe = _noop
            if self._wants_reading(snapshot):
                # No widgets to update later: read once now, like the magic does.
                with contextlib.suppress(RodinError):  # the snapshot keeps the error
                    self.monitor.read(max_age=settings.cache_ttl)
            return
        self._build(auto_refresh, start)
        self._unsubscribe = self.monitor.subscribe(self._on_change)
        _runtime.add(self)
        if self._wants_reading(snapshot):
            self.refresh()
        else:
            self._render()

    @staticmethod
    def _wants_reading(snapshot: Snapshot) -> bool:
        if snapshot.checking or snapshot.error is not None:
            return False
        age = snapshot.age()
        return age is None or age > settings.cache_ttl

    # -- building ----------------------------------------------------------------------

    def _build(self, auto_refresh: bool, interval: float) -> None:
        w = widgets
        self._title = w.HTML(value='<span style="color:#57606a">Rodin balance</span>')
        self._badge = w.HTML()
        self._amount = w.HTML()
        self._age = w.HTML()
        self._spent = w.HTML()
        self._error = w.HTML(layout=w.Layout(display="none"))
        self._button = w.Button(description="Refresh", icon="refresh",
                                tooltip="Ask the Rodin API for your balance now")
        self._button.on_click(self._clicked)
        self._auto = w.Checkbox(value=bool(auto_refresh), description="Auto-refresh",
                                indent=False, layout=w.Layout(width="auto"))
        self._interval = w.BoundedIntText(
            value=round(interval), min=int(MIN_REFRESH_INTERVAL), max=MAX_INTERVAL_SECONDS,
            step=10, description="every", layout=w.Layout(width="125px"),
            style={"description_width": "auto"},
        )
        self._unit = w.HTML(value="s")
        for spaced in (self._badge, self._auto, self._interval, self._unit):
            spaced.layout.margin = "0 0 0 8px"
        self._spent.layout.margin = "0 0 0 16px"
        header = w.HBox([self._title, self._badge], layout=w.Layout(align_items="center"))
        details = w.HBox([self._age, self._spent])
        controls = w.HBox([self._button, self._auto, self._interval, self._unit],
                          layout=w.Layout(align_items="center"))
        self._box = w.VBox(
            [header, self._amount, details, self._error, controls],
            layout=w.Layout(border_left="4px solid #57606a", padding="4px 12px",
                            width="max-content", min_width="360px"),
        )
        for widget, name in ((self._box, "rodin-panel"), (self._badge, "rodin-panel-state"),
                             (self._amount, "rodin-panel-balance"),
                             (self._age, "rodin-panel-age"), (self._spent, "rodin-panel-spent"),
                             (self._error, "rodin-panel-error"),
                             (self._button, "rodin-panel-refresh"),
                             (self._auto, "rodin-panel-auto"),
                             (self._interval, "rodin-panel-interval")):
            widget.add_class(name)
        self._children = [self._title, self._badge, self._amount, self._age, self._spent,
                          self._error, self._button, self._auto, self._interval, self._unit,
                          header, details, controls, self._box]

    # -- public API --------------------------------------------------------------------

    @property
    def widget(self) -> Any:
        """The ipywidgets ``VBox`` (None without ipywidgets)."""
        return self._box

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def auto_refresh(self) -> bool:
        """Refresh automatically every :attr:`interval` seconds (off by default)."""
        return self._box is not None and bool(self._auto.value)

    @auto_refresh.setter
    def auto_refresh(self, value: bool) -> None:
        if self._box is not None:
            self._auto.value = bool(value)

    @property
    def interval(self) -> float:
        """Seconds between automatic refreshes (at least ``MIN_REFRESH_INTERVAL``)."""
        if self._box is None:
            return max(MIN_REFRESH_INTERVAL, settings.refresh_interval)
        return max(MIN_REFRESH_INTERVAL, float(self._interval.value))

    @interval.setter
    def interval(self, value: float) -> None:
        if self._box is not None:
            bounded = min(float(MAX_INTERVAL_SECONDS), max(MIN_REFRESH_INTERVAL, float(value)))
            self._interval.value = round(bounded)

    def refresh(self, wait: bool = False, timeout: float | None = None) -> threading.Thread:
        """Ask for the balance in a background thread shared by every panel.

        Returns at once with the worker thread (``wait=True`` joins it). Panels show
        "checking" until the answer arrives; the kernel stays free meanwhile.
        """
        if self._box is not None and not self._closed:
            self._button.disabled = True
        worker = _runtime.request_refresh(self.monitor)
        if wait:
            worker.join(timeout)
        return worker

    def snapshot(self) -> Snapshot:
        """The shared state this panel shows."""
        return self.monitor.snapshot()

    def close(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Remove the panel: stop listening, close its widgets; the last one stops the clock."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._unsubscribe()
        threads = _runtime.remove(self) if self._box is not None else []
        for child in self._children:
            try:
                child.close()
            except Exception as exc:
                log.debug("closing a panel widget failed: %s", type(exc).__name__)
        _join(threads, timeout)

    # -- rendering ---------------------------------------------------------------------

    def _view(self) -> tuple[Snapshot, BalanceState, str | None, bool]:
        """(snapshot, state, one-line error, busy) as the panel should show them now."""
        snapshot = self.monitor.snapshot()
        pending, unexpected = _runtime.status(self.monitor)
        busy = pending or snapshot.checking
        error = unexpected or snapshot.error
        if busy:
            state = BalanceState.CHECKING
        elif error is not None:
            state = BalanceState.ERROR
        else:
            state = snapshot_state(snapshot)
        return snapshot, state, (one_line(error) if error else None), busy

    def _render(self) -> None:
        if self._box is None or self._closed:
            return
        try:
            with self._lock:
                if self._closed:
                    return
                self._render_locked()
        except Exception as exc:  # a view problem must never surface as a traceback
            log.debug("rendering the balance panel failed: %s", type(exc).__name__)

    def _render_locked(self) -> None:
        snapshot, state, error, busy = self._view()
        colour = STATE_COLOURS[state]
        stale = snapshot.balance is not None and error is not None
        amount_colour = "#8c959f" if stale else "inherit"
        title = ' title="last known balance; the latest check failed"' if stale else ""
        self._badge.value = _BADGE.format(colour=colour, state=html.escape(state.value))
        self._amount.value = (
            f'<span style="font-size:2.2em;font-weight:600;color:{amount_colour}"{title}>'
            f"{html.escape(format_credits(snapshot.balance))}</span>"
            ' <span style="color:#57606a">credits</span>'
        )
        if snapshot.balance is None:
            age = "not checked yet" if error is None else "no balance read yet"
        else:
            age = f"checked {describe_age(snapshot.age())}"
        marker = (' · <span class="rodin-stale" style="color:#9a6700;font-weight:600">'
                  "stale</span>") if stale else ""
        self._age.value = f'<span style="color:#57606a">{html.escape(age)}</span>{marker}'
        self._spent.value = ('<span style="color:#57606a">spent this session: '
                             f"{html.escape(format_credits(snapshot.spent))}</span>")
        if error is None:
            self._error.value = ""
            self._error.layout.display = "none"
        else:
            self._error.value = (f'<span style="color:{STATE_COLOURS[BalanceState.ERROR]}">'
                                 f"{html.escape(error)}</span>")
            self._error.layout.display = None
        self._button.disabled = busy
        self._box.layout.border_left = f"4px solid {colour}"

    def _on_change(self, snapshot: Snapshot) -> None:
        self._render()  # renders the newest state, whichever thread notified

    def _tick(self) -> None:
        box = self._box
        if box is not None and box.comm is None and not self._closed:
            self.close(timeout=0)  # the widget was closed directly: let the panel go too
            return
        self._render()

    def _clicked(self, _button: Any) -> None:
        try:
            self.refresh()
        except Exception as exc:  # never a traceback from a click
            log.debug("refresh click failed: %s", type(exc).__name__)

    # -- fallbacks ---------------------------------------------------------------------

    def _fallback_snapshot(self) -> Snapshot:
        snapshot = self.monitor.snapshot()
        _pending, unexpected = _runtime.status(self.monitor)
        if unexpected and snapshot.error is None:
            snapshot = replace(snapshot, error=unexpected)
        return snapshot

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None,
                          **kwargs: Any) -> dict[str, Any]:
        """The widget view where widgets render; a text and HTML snapshot everywhere else."""
        worker = _runtime.pending_worker(self.monitor)
        if worker is not None and worker is not threading.current_thread():
            worker.join(DISPLAY_WAIT)  # a quick first answer makes a better fallback
        data: dict[str, Any] = {}
        box = self._box
        if box is not None and not self._closed and box.comm is not None:
            bundle = box._repr_mimebundle_(include=include, exclude=exclude)
            if isinstance(bundle, tuple):
                bundle = bundle[0]
            if isinstance(bundle, dict) and WIDGET_VIEW_MIMETYPE in bundle:
                data[WIDGET_VIEW_MIMETYPE] = bundle[WIDGET_VIEW_MIMETYPE]
        snapshot = self._fallback_snapshot()
        data["text/plain"] = snapshot_text(snapshot)
        data["text/html"] = snapshot_html(snapshot)
        return data

    def __repr__(self) -> str:
        return snapshot_text(self._fallback_snapshot())


def _noop() -> None:
    return None


__all__ = ["BalancePanel", "backoff_delay", "one_line", "panel_threads", "shutdown_all"]
