"""Loading and unloading the IPython extension: each step of ``load`` has its undo."""

from __future__ import annotations

import sys
from typing import Any

from traitlets import TraitError

from rodin_jupyter.ipython.cell_errors import CellStopped
from rodin_jupyter.ipython.guard_magics import RodinGuard
from rodin_jupyter.ipython.magics import RodinMagics

MAGICS_CLASSES: tuple[type[Any], ...] = (RodinMagics, RodinGuard)


def load(shell: Any) -> None:
    """Register the magics (``register_magics`` on the class applies ``c.RodinMagics.*``).

    All or nothing: a bad value in ``ipython_config.py`` gives one line and no half-loaded
    extension.
    """
    try:
        for cls in MAGICS_CLASSES:
            if cls.__name__ not in shell.magics_manager.registry:
                shell.register_magics(cls)
    except TraitError as exc:
        unload(shell)
        raise CellStopped(f"{str(exc).rstrip('.')}; the extension was not loaded.") from None


def unload(shell: Any) -> None:
    """Remove the magics, the guard's hooks, panel timers, connections: as if never loaded."""
    manager = shell.magics_manager
    for cls in MAGICS_CLASSES:
        instance = manager.registry.pop(cls.__name__, None)
        if instance is None:
            continue
        undo = getattr(instance, "unload", None)
        if callable(undo):  # the guard: AST transformer, input gate, event callback
            undo()
        for kind, names in cls.magics.items():
            for name in names:
                if manager.magics[kind].get(name) is not None:
                    bound = manager.magics[kind][name]
                    if getattr(bound, "__self__", None) is instance:
                        del manager.magics[kind][name]
        if instance in shell.configurables:
            shell.configurables.remove(instance)
    poller = sys.modules.get("rodin_jupyter.generation.poller")
    if poller is not None:  # the job poller's thread: stopped and joined
        poller.shutdown()
    panel = sys.modules.get("rodin_jupyter.widgets.panel")
    if panel is not None:
        panel.shutdown_all()
    from rodin_jupyter.balance.monitor import get_monitor

    get_monitor().close()
