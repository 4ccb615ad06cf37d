"""The refreshable balance panel: a thin ipywidgets view over the kernel's one monitor.

This is the only module that imports ipywidgets, and it is imported only when a panel is
first asked for (``%rodin_balance --panel`` or ``rodin_jupyter.BalancePanel``).

* A panel holds no balance and no error of its own: it paints
  ``balance_view(monitor.snapshot())`` (:mod:`rodin_jupyter.balance.view`), the same view
  the magic's card and the text fallback paint, and repaints when the monitor changes.
* Few widgets: one HTML view for the whole readout, and the controls (Refresh, an
  auto-refresh toggle, its interval) in one wrapping box. A panel whose kernel is gone
  then shows one "model not found" line, not a row of broken sub-widgets.
* When and where refreshes run is :mod:`rodin_jupyter.widgets.schedule`'s job.
* Its output always carries text/plain and a text/html snapshot beside the widget view,
  so nbconvert, static viewers and saved notebooks show the balance and the clock time of
  the reading.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from types import ModuleType
from typing import Any

from rodin_jupyter.balance.monitor import BalanceMonitor, Snapshot, get_monitor
from rodin_jupyter.balance.settings import MIN_REFRESH_INTERVAL, settings
from rodin_jupyter.balance.text import view_html, view_text
from rodin_jupyter.balance.view import BalanceView, balance_view
from rodin_jupyter.compat import WIDGET_VIEW_MIMETYPE, widget_view
from rodin_jupyter.errors import RodinError
from rodin_jupyter.widgets.schedule import (
    JOIN_TIMEOUT,
    backoff_delay,
    join,
    panel_threads,
    runtime,
    shutdown_all,
)
from rodin_jupyter.widgets.style import PANEL_STYLE

log = logging.getLogger("rodin_jupyter.widgets.panel")

MAX_INTERVAL_SECONDS = 86_400
DISPLAY_WAIT = 2.0
"""How long displaying a panel waits for a first reading in flight, so the static
text/HTML fallback (nbconvert, viewers) carries a balance rather than 'checking'."""

def _import_widgets() -> ModuleType | None:
    try:
        return importlib.import_module("ipywidgets")
    except ImportError:  # like tqdm.notebook: fall back to a static snapshot
        return None


widgets: Any = _import_widgets()
"""The ipywidgets module, or None when it is not installed."""


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
        self._widgets: list[Any] = []
        start = float(settings.balance.refresh_interval if interval is None else interval)
        start = min(float(MAX_INTERVAL_SECONDS), max(MIN_REFRESH_INTERVAL, start))
        snapshot = self.monitor.snapshot()
        if widgets is None:
            self._unsubscribe = _noop
            if self._wants_reading(snapshot):
                # No widgets to update later: read once now, like the magic does.
                with contextlib.suppress(RodinError):  # the snapshot keeps the error
                    self.monitor.read(max_age=settings.balance.cached_max_age)
            return
        self._build(auto_refresh, start)
        self._unsubscribe = self.monitor.subscribe(self._on_change)
        runtime.add(self)
        if self._wants_reading(snapshot):
            # another kernel's fresh reading will do
            self.refresh(max_age=settings.balance.cached_max_age)
        else:
            self.render()

    @staticmethod
    def _wants_reading(snapshot: Snapshot) -> bool:
        if snapshot.checking or snapshot.error is not None:
            return False
        age = snapshot.age()
        return age is None or age > settings.balance.cached_max_age

    def _build(self, auto_refresh: bool, interval: float) -> None:
        w = widgets
        self._html = w.HTML(layout=w.Layout(flex="1 1 100%", min_width="0", margin="0"))
        self._button = w.Button(description="Refresh", icon="refresh",
                                tooltip="Ask the Rodin API for your balance now "
                                        "(waits for a running cell to finish)",
                                layout=w.Layout(width="auto", margin="2px 8px 2px 12px"))
        self._button.on_click(self._clicked)
        self._auto = w.Checkbox(value=bool(auto_refresh), description="Auto-refresh",
                                indent=False, layout=w.Layout(width="auto", margin="2px 8px"))
        self._interval = w.BoundedIntText(
            value=round(interval), min=int(MIN_REFRESH_INTERVAL), max=MAX_INTERVAL_SECONDS,
            step=10, description="every (s)", style={"description_width": "auto"},
            layout=w.Layout(width="10em", max_width="100%", margin="2px 8px"),
        )
        self._box = w.Box(
            [self._html, self._button, self._auto, self._interval],
            layout=w.Layout(display="flex", flex_flow="row wrap", align_items="center",
                            width="auto", max_width="100%", padding="2px 0"),
        )
        for widget, name in ((self._box, "rodin-panel"), (self._html, "rodin-panel-view"),
                             (self._button, "rodin-panel-refresh"),
                             (self._auto, "rodin-panel-auto"),
                             (self._interval, "rodin-panel-interval")):
            widget.add_class(name)
        self._widgets = [self._html, self._button, self._auto, self._interval, self._box]

    # -- public API --------------------------------------------------------------------

    @property
    def widget(self) -> Any:
        """The ipywidgets box (None without ipywidgets)."""
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
            return max(MIN_REFRESH_INTERVAL, settings.balance.refresh_interval)
        return max(MIN_REFRESH_INTERVAL, float(self._interval.value))

    @interval.setter
    def interval(self, value: float) -> None:
        if self._box is not None:
            bounded = min(float(MAX_INTERVAL_SECONDS), max(MIN_REFRESH_INTERVAL, float(value)))
            self._interval.value = round(bounded)

    @property
    def busy(self) -> bool:
        """A refresh is on its way: the button says "Checking…" and is disabled."""
        return self._box is not None and bool(self._button.disabled)

    def view(self) -> BalanceView:
        """What the panel shows now (the same view the card and the text paint)."""
        return balance_view(self.monitor.snapshot(), busy=runtime.pending(self.monitor))

    def shown(self) -> str:
        """The HTML the live panel displays right now ('' without ipywidgets)."""
        return str(self._html.value) if self._box is not None else ""

    def own(self, widget: Any) -> None:
        """Close ``widget`` (a sidecar holding the panel, say) when the panel closes."""
        self._widgets.append(widget)

    def refresh(self, wait: bool = False, timeout: float | None = None,
                max_age: float | None = None) -> threading.Thread:
        """Ask for the balance in a background thread shared by every panel.

        Returns at once with the worker thread (``wait=True`` joins it). Panels show
        "checking" until the answer arrives; the kernel stays free meanwhile. With
        ``max_age``, a reading that young (this kernel's or another's) does instead.
        """
        if self._box is not None and not self._closed:
            self._button.disabled = True
        worker = runtime.request_refresh(self.monitor, max_age)
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
        threads = runtime.remove(self) if self._box is not None else []
        for child in self._widgets:
            try:
                child.close()
            except Exception as exc:
                log.debug("closing a panel widget failed: %s", type(exc).__name__)
        join(threads, timeout)

    # -- painting ----------------------------------------------------------------------

    def render(self) -> None:
        """Paint the current view (any thread; never raises)."""
        if self._box is None or self._closed:
            return
        try:
            with self._lock:
                if self._closed:
                    return
                view = self.view()
                self._html.value = PANEL_STYLE + view_html(view, live=True)
                self._button.disabled = view.checking
                self._button.description = "Checking…" if view.checking else "Refresh"
        except Exception as exc:  # a view problem must never surface as a traceback
            log.debug("rendering the balance panel failed: %s", type(exc).__name__)

    def tick(self) -> None:
        """The clock's once-a-second call: repaint, or let go if the widget was closed."""
        if self._box is not None and widget_view(self._box) is None and not self._closed:
            self.close(timeout=0)  # the widget was closed directly: let the panel go too
            return
        self.render()

    def _on_change(self, snapshot: Snapshot) -> None:
        self.render()  # paints the newest state, whichever thread notified

    def _clicked(self, _button: Any) -> None:
        try:
            self.refresh()
        except Exception as exc:  # never a traceback from a click
            log.debug("refresh click failed: %s", type(exc).__name__)

    # -- output ------------------------------------------------------------------------

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None,
                          **kwargs: Any) -> dict[str, Any]:
        """The widget view where widgets render; a text and HTML snapshot for the rest.

        The snapshot is what a saved notebook keeps: it carries the clock time of the
        reading, never "just now".
        """
        worker = runtime.pending_worker(self.monitor)
        if worker is not None and worker is not threading.current_thread():
            worker.join(DISPLAY_WAIT)  # a quick first answer makes a better fallback
        data: dict[str, Any] = {}
        view_spec = widget_view(self._box) if self._box is not None and not self._closed \
            else None
        if view_spec is not None:
            data[WIDGET_VIEW_MIMETYPE] = view_spec
        view = balance_view(self.monitor.snapshot())
        data["text/plain"] = view_text(view)
        data["text/html"] = view_html(view)
        return data

    def __repr__(self) -> str:
        return view_text(balance_view(self.monitor.snapshot()))


def _noop() -> None:
    return None


__all__ = ["BalancePanel", "backoff_delay", "panel_threads", "shutdown_all"]
