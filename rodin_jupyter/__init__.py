"""rodin-jupyter: your Hyper3D Rodin credit balance in Jupyter, and a guard for costly cells.

Load in IPython / Jupyter with ``%load_ext rodin_jupyter``. The import stays light:
IPython pieces load with the extension, ipywidgets only when a panel is first shown.
"""

from __future__ import annotations

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
from rodin_jupyter.guard.decision import GuardBlocked
from rodin_jupyter.guard.pricing import estimate_cost
from rodin_jupyter.http.client import BalanceReading, RodinClient, check_balance
from rodin_jupyter.http.files_api import UrlExpired
from rodin_jupyter.http.jobs_api import SubmissionRefused, TaskNotFound

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from rodin_jupyter.generation import Job, JobFailedError, generate, generate_many
    from rodin_jupyter.widgets.panel import BalancePanel

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
    # The panel pulls in ipywidgets: import it only when someone asks for it.
    if name == "BalancePanel":
        from rodin_jupyter.widgets.panel import BalancePanel

        return BalancePanel
    if name in ("generate", "generate_many", "Job", "JobFailedError"):  # loaded on first use
        from rodin_jupyter import generation

        return getattr(generation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_ipython_extension(shell: InteractiveShell) -> None:
    """``%load_ext rodin_jupyter``: register the magics (and the guard's hooks)."""
    from rodin_jupyter.ipython.extension import load

    load(shell)


def unload_ipython_extension(shell: InteractiveShell) -> None:
    """``%unload_ext rodin_jupyter``: undo exactly what loading did."""
    from rodin_jupyter.ipython.extension import unload

    unload(shell)
