"""The live progress view of Rodin jobs: an ipywidgets HTML the poller's thread updates.

Only the API common to ipywidgets 7.7 (Colab) and 8 is used (``widgets.HTML``, ``.value``).
Where widgets cannot render (a terminal, nbconvert, a saved notebook) the bundle's text/plain
line and static text/html snapshot are what shows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from rodin_jupyter.compat import WIDGET_VIEW_MIMETYPE, widget_view
from rodin_jupyter.generation.job import Job
from rodin_jupyter.generation.text import progress_html, progress_text


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _widget(jobs: Sequence[Job], stopped: Callable[[], str | None]) -> Any:
    try:
        import ipywidgets
    except ImportError:
        return None
    view = ipywidgets.HTML(value=progress_html(jobs, stopped()))
    lock = threading.Lock()
    unsubscribers: list[Callable[[], None]] = []

    def update() -> None:
        with lock:
            if getattr(view, "comm", None) is None:  # closed: stop following
                for unsubscribe in unsubscribers:
                    unsubscribe()
                return
            view.value = progress_html(jobs, stopped())

    unsubscribers.extend(job.subscribe(update) for job in jobs)
    return view


def progress_bundle(source: object, jobs: Sequence[Job],
                    stopped: Callable[[], str | None] = lambda: None) -> dict[str, Any]:
    """The display data for ``source``: widget view where possible, text and HTML always."""
    data: dict[str, Any] = {}
    view = _widget(jobs, stopped) if _in_kernel() else None
    view_spec = widget_view(view) if view is not None else None
    if view_spec is not None:
        data[WIDGET_VIEW_MIMETYPE] = view_spec
    data["text/plain"] = progress_text(jobs, stopped())
    data["text/html"] = progress_html(jobs, stopped())
    return data
