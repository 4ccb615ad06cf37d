"""Differences between the IPython / ipywidgets versions we support, in one place.

Google Colab pins IPython 7.34, ipykernel 5.5.6 and ipywidgets 7.7.1; elsewhere IPython 8/9
and ipywidgets 8 are usual. Code elsewhere calls these helpers instead of looking at a
version or probing for an attribute itself. Nothing here imports ipywidgets at import time.
"""

from __future__ import annotations

from typing import Any

WIDGET_VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"


def widget_view(widget: Any) -> dict[str, Any] | None:
    """The widget-view mimebundle entry of a live widget, or None once it is closed.

    ipywidgets 8 has ``_repr_mimebundle_``; ipywidgets 7 only ``_ipython_display_`` (which
    calls ``display`` itself). ``get_view_spec()`` exists in both and returns the same dict.
    """
    if getattr(widget, "comm", None) is None or getattr(widget, "_view_name", None) is None:
        return None
    return dict(widget.get_view_spec())


def set_border_left(layout: Any, css: str) -> None:
    """``Layout.border_left`` arrived in ipywidgets 8; ipywidgets 7 has only ``border``.

    On 7 an unknown attribute is silently kept on the Python object and never reaches the
    browser, so fall back to the whole border there.
    """
    if layout.has_trait("border_left"):
        layout.border_left = css
    else:
        layout.border = css


def live_widgets() -> dict[str, Any]:
    """Every open widget by model id: what "Save Widget State" would write to disk."""
    from ipywidgets.widgets import widget

    for holder, name in ((widget, "_instances"),             # ipywidgets >= 8.1
                         (widget.Widget, "_active_widgets"),  # ipywidgets 8.0
                         (widget.Widget, "widgets")):         # ipywidgets 7
        instances = getattr(holder, name, None)
        if isinstance(instances, dict):
            return dict(instances)
    return {}
