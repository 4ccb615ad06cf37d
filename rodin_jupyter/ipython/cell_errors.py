"""Errors that stop a cell with one readable line instead of a traceback.

IPython and ipykernel call ``_render_traceback_`` when an exception has it and show
exactly those lines; the cell still fails, so "Run All" stops there.
"""

from __future__ import annotations

RED = "\x1b[0;31m"
RESET = "\x1b[0m"


PREFIX = "rodin_jupyter"
PARTS = ("guard",)
"""Parts whose messages name themselves first ("guard: ...")."""


def one_line_message(message: str) -> str:
    """``rodin_jupyter: <message>``; a message that names its part ("guard: needs 0.5
    credits") reads ``rodin_jupyter guard: needs 0.5 credits``, not two prefixes in a row."""
    part, sep, rest = message.partition(": ")
    if sep and part in PARTS:
        return f"{PREFIX} {part}: {rest}"
    return f"{PREFIX}: {message}"


class OneLineError:
    """Mixin: render as one line (``rodin_jupyter: <message>``) and nothing else."""

    def _render_traceback_(self) -> list[str]:
        return [f"{RED}{one_line_message(str(self))}{RESET}"]


class CellStopped(OneLineError, Exception):
    """A magic could not do what was asked (balance short, service unreachable, ...)."""
