"""The API key from Google Colab's Secrets panel, for when no key variable is set.

In Colab people keep keys in the Secrets panel (``google.colab.userdata.get(name)``) rather
than in environment variables. Outside Colab this module imports nothing and finds nothing.
Error texts name the secret, never its value; Colab's own exception text is not passed on.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from rodin_jupyter.errors import MissingKeyError

# The names of google.colab.userdata's exceptions (matched by name: they are Colab's classes).
_NOT_FOUND = "SecretNotFoundError"
_NO_ACCESS = "NotebookAccessError"
SECRET_WAIT = 10.0
"""Seconds to wait for the Secrets panel: its answer comes from the browser, which may be gone."""


def _bounded(get: Callable[[str], Any], name: str) -> Any:
    """``get(name)`` within ``SECRET_WAIT`` seconds (its exception re-raised), else one line."""
    outcome: list[Any] = []

    def ask() -> None:
        try:
            outcome.append((True, get(name)))
        except Exception as exc:
            outcome.append((False, exc))

    worker = threading.Thread(target=ask, name="rodin-colab-secret", daemon=True)
    worker.start()
    worker.join(SECRET_WAIT)
    if not outcome:
        raise MissingKeyError(
            f"Colab's Secrets panel did not answer within {SECRET_WAIT:g} s for {name}; run the "
            "cell again, or set RODIN_API_KEY in the environment.")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def in_colab() -> bool:
    """Whether this process is a Colab kernel: Colab's runtime imports ``google.colab``.

    Merely importable is not enough: outside a Colab kernel ``userdata.get`` would wait for
    a frontend that never answers.
    """
    return "google.colab" in sys.modules


def colab_secret(names: Sequence[str]) -> tuple[str, str] | None:
    """``(value, name)`` of the first of ``names`` set in Colab's Secrets panel.

    None when not under Colab. Under Colab, raises :class:`MissingKeyError` in one line
    that says what to do when none of the secrets exists, when one exists but this notebook
    has not been granted access to it, or when the secrets cannot be read at all.
    """
    if not in_colab():
        return None
    try:
        userdata = importlib.import_module("google.colab.userdata")
    except Exception:  # an old Colab without a Secrets panel, or a broken install
        return None
    denied: list[str] = []
    for name in names:
        try:
            value = _bounded(userdata.get, name)
        except MissingKeyError:
            raise
        except Exception as exc:
            kind = type(exc).__name__
            if kind == _NOT_FOUND:
                continue
            if kind == _NO_ACCESS:
                denied.append(name)
                continue
            raise MissingKeyError(
                f"Could not read the Colab secret {name} ({kind}); run the cell again, or set "
                "RODIN_API_KEY in the environment."
            ) from None
        if isinstance(value, str) and value.strip():
            return value, name
    if denied:
        raise MissingKeyError(
            f"This notebook has no access to the Colab secret {denied[0]}: open the Secrets "
            "panel (the key icon on the left), switch on 'Notebook access' for it, and run "
            "the cell again."
        )
    raise MissingKeyError(
        f"No Rodin API key: add {names[0]} in Colab's Secrets panel (the key icon on the "
        "left) and switch on 'Notebook access' for it; never paste the key into a cell."
    )
