"""rodin-jupyter: your Hyper3D Rodin credit balance in Jupyter, and a guard for costly cells.

Load in IPython / Jupyter with ``%load_ext rodin_jupyter``. The import stays light:
IPython pieces load with the extension, ipywidgets only when a panel is first shown.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rodin_jupyter._version import __version__
from rodin_jupyter.errors import (
    BadResponseError,
    InsecureURLError,
    KeyRefusedError,
    MissingKeyError,
    PricingError,
    RateLimitedError,
    RodinError,
    RodinNetworkError,
    RodinTimeoutError,
    ServiceError,
)

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from rodin_jupyter.generation import Job, JobFailedError, generate, generate_many
    from rodin_jupyter.guard.decision import GuardBlocked
    from rodin_jupyter.guard.pricing import estimate_cost
    from rodin_jupyter.http.client import RodinClient, check_balance
    from rodin_jupyter.http.files_api import UrlExpired
    from rodin_jupyter.http.jobs_api import SubmissionRefused, TaskNotFound
    from rodin_jupyter.http.reading import BalanceReading
    from rodin_jupyter.widgets.panel import BalancePanel

LAZY = {
    "BalancePanel": "rodin_jupyter.widgets.panel",  # pulls in ipywidgets
    "BalanceReading": "rodin_jupyter.http.reading",
    "RodinClient": "rodin_jupyter.http.client",
    "check_balance": "rodin_jupyter.http.client",
    "estimate_cost": "rodin_jupyter.guard.pricing",
    "GuardBlocked": "rodin_jupyter.guard.decision",
    "SubmissionRefused": "rodin_jupyter.http.jobs_api",
    "TaskNotFound": "rodin_jupyter.http.jobs_api",
    "UrlExpired": "rodin_jupyter.http.files_api",
    "generate": "rodin_jupyter.generation",
    "generate_many": "rodin_jupyter.generation",
    "Job": "rodin_jupyter.generation",
    "JobFailedError": "rodin_jupyter.generation",
}
"""Public names loaded on first use, so ``import rodin_jupyter`` (and ``%load_ext``, which
needs none of them up front) stays light: the HTTP stack, prices and widgets load when used."""

__all__ = [
    "BadResponseError",
    "BalancePanel",
    "BalanceReading",
    "GuardBlocked",
    "InsecureURLError",
    "Job",
    "JobFailedError",
    "KeyRefusedError",
    "MissingKeyError",
    "PricingError",
    "RateLimitedError",
    "RodinClient",
    "RodinError",
    "RodinNetworkError",
    "RodinTimeoutError",
    "ServiceError",
    "SubmissionRefused",
    "TaskNotFound",
    "UrlExpired",
    "__version__",
    "check_balance",
    "estimate_cost",
    "generate",
    "generate_many",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def __getattr__(name: str) -> Any:
    module = LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def load_ipython_extension(shell: InteractiveShell) -> None:
    """``%load_ext rodin_jupyter``: register the magics (and the guard's hooks)."""
    from rodin_jupyter.ipython.extension import load

    load(shell)


def unload_ipython_extension(shell: InteractiveShell) -> None:
    """``%unload_ext rodin_jupyter``: undo exactly what loading did."""
    from rodin_jupyter.ipython.extension import unload

    unload(shell)
