"""Differences between the IPython / ipywidgets versions we support, in one place.

Google Colab pins IPython 7.34, ipykernel 5.5.6 and ipywidgets 7.7.1; elsewhere IPython 8/9
and ipywidgets 8 are usual. Code elsewhere calls these helpers instead of looking at a
version or probing for an attribute itself. Nothing here imports ipywidgets.
"""

from __future__ import annotations

import sys
from typing import Any

WIDGET_VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"


def widget_view(widget: Any) -> dict[str, Any] | None:
    """The widget-view entry of a live widget's display data, or None once it is closed.

    ipywidgets 8 displays widgets through ``_repr_mimebundle_``, 7.7 through
    ``_ipython_display_`` (which calls ``display`` itself); both put this same view spec 2.0
    (the model id) in the output, so it is built here rather than taken from either.
    """
    try:
        comm = widget.comm
        model_id = widget.model_id if comm is not None else None
    except AttributeError:
        return None
    if not model_id:
        return None
    return {"version_major": 2, "version_minor": 0, "model_id": model_id}


def running_cell_number(shell: Any) -> int | None:
    """The running cell's In[] number.

    IPython 9 increments ``execution_count`` before a cell runs, 7.34 after; both store the
    input in the history first, so the history knows.
    """
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    if isinstance(history, list) and history:
        return len(history) - 1
    count = getattr(shell, "execution_count", None)
    return count if isinstance(count, int) else None


def live_widgets() -> dict[str, Any]:
    """Every open widget by model id: what "Save Widget State" would write to disk.

    Read from the loaded module: no ipywidgets imported means no widget (and only widgets/
    imports ipywidgets).
    """
    widget = sys.modules.get("ipywidgets.widgets.widget")
    if widget is None:
        return {}
    for holder, name in ((widget, "_instances"),             # ipywidgets >= 8.1
                         (widget.Widget, "_active_widgets"),  # ipywidgets 8.0
                         (widget.Widget, "widgets")):         # ipywidgets 7
        instances = getattr(holder, name, None)
        if isinstance(instances, dict):
            return dict(instances)
    return {}
