"""Where a panel is shown: inline, or in JupyterLab's side area through ``sidecar``.

During "Run All" the inline panel scrolls away just when the balance matters most;
``%rodin_balance --sidecar`` keeps it in view. ``sidecar`` is an optional extra
(``pip install 'rodin-jupyter[sidecar]'``); without it the panel is shown inline with one
line saying how to pin it by hand.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from rodin_jupyter.widgets.panel import BalancePanel, widgets

SIDECAR_TITLE = "Rodin balance"
NO_SIDECAR = ("rodin_jupyter: sidecar is not installed (pip install 'rodin-jupyter[sidecar]'), "
              "so the panel is shown here; to keep it in view, right-click it and choose "
              "'Create New View for Output'.")
IN_SIDECAR = "rodin_jupyter: the balance panel is in JupyterLab's side area ('Rodin balance')."


def sidecar_class() -> Any:
    """``sidecar.Sidecar``, or None when the package (or ipywidgets) is missing."""
    if widgets is None:
        return None
    try:
        return importlib.import_module("sidecar").Sidecar
    except (ImportError, AttributeError):
        return None


def show_panel(*, sidecar: bool = False) -> BalancePanel:
    """Display a new panel, in the side area if asked and possible; returns it."""
    from IPython.display import display

    panel = BalancePanel()
    side = sidecar_class() if sidecar else None
    if side is None:
        if sidecar:
            sys.stdout.write(NO_SIDECAR + "\n")
        display(panel)
        return panel
    area = side(title=SIDECAR_TITLE)
    panel.own(area)
    with area:
        display(panel)
    sys.stdout.write(IN_SIDECAR + "\n")
    return panel


__all__ = ["IN_SIDECAR", "NO_SIDECAR", "show_panel", "sidecar_class"]
