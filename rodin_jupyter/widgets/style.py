"""The panel's one stylesheet: what a panel whose kernel is gone shows instead of controls."""

from __future__ import annotations

# ipywidgets marks every view whose kernel is gone with `jupyter-widgets-disconnected` and a
# broken-link icon. For the panel that becomes one line saying what happened; the controls
# (which can do nothing then) and the live "12 s ago" (false by now) are hidden. Scoped to
# .rodin-panel, so it touches nothing else on the page.
KERNEL_GONE = ("⚠ No kernel is connected: the balance below is as it was at the time shown. "
               "Run the cell again for a live panel.")
PANEL_STYLE = (
    "<style>"
    ".rodin-panel .jupyter-widgets-disconnected::before{display:none}"
    ".rodin-panel.jupyter-widgets-disconnected::before{"
    f'content:"{KERNEL_GONE}";flex:1 1 100%;order:-1;display:block;padding:2px 12px;'
    "font:inherit;font-family:var(--jp-content-font-family,sans-serif);"
    "color:var(--jp-content-font-color1,rgba(0,0,0,.87))}"
    ".rodin-panel.jupyter-widgets-disconnected .rodin-age-live,"
    ".rodin-panel.jupyter-widgets-disconnected .rodin-panel-refresh,"
    ".rodin-panel.jupyter-widgets-disconnected .rodin-panel-auto,"
    ".rodin-panel.jupyter-widgets-disconnected .rodin-panel-interval{display:none}"
    "</style>"
)
