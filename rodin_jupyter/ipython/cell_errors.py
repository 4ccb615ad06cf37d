"""Errors that stop a cell with one readable line instead of a traceback.

IPython and ipykernel call ``_render_traceback_`` when an exception has it and show
exactly those lines; the cell still fails, so "Run All" stops there.
"""

from __future__ import annotations

RED = "\x1b[0;31m"
RESET = "\x1b[0m"


class OneLineError:
    """Mixin: render as ``rodin_jupyter: <message>`` and nothing else."""

    def _render_traceback_(self) -> list[str]:
        return [f"{RED}rodin_jupyter: {self}{RESET}"]


class CellStopped(OneLineError, Exception):
    """A magic could not do what was asked (balance short, service unreachable, ...)."""
