"""Errors that stop a cell with one readable line instead of a traceback.

IPython and ipykernel call ``_render_traceback_`` when an exception has it and show
exactly those lines; the cell still fails, so "Run All" stops there. The rendering lives
on :class:`~rodin_jupyter.errors.RodinError`, so every error of the package reads the same.
"""

from __future__ import annotations

from rodin_jupyter.errors import PARTS, PREFIX, RED, RESET, RodinError, one_line_message


class CellStopped(RodinError):
    """A magic could not do what was asked (balance short, service unreachable, ...)."""


__all__ = ["PARTS", "PREFIX", "RED", "RESET", "CellStopped", "one_line_message"]
