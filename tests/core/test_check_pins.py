"""scripts/check_pins.py reads pip's dry-run report: what would change, what would be added.

The real check (a Colab-pinned virtualenv, ``pip install --dry-run`` of the built wheel) is a
step of scripts/test; this tests the reading of pip's report on its own.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_pins.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_pins", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(*packages: tuple[str, str]) -> dict[str, Any]:
    return {"install": [{"metadata": {"name": n, "version": v}} for n, v in packages]}


def test_only_additions_pass_and_any_change_is_named() -> None:
    check = _load()
    installed = {"ipython": "7.34.0", "jupyter-client": "7.4.9", "traitlets": "5.16.1"}
    assert check.changes(installed, _report(("rodin-jupyter", "0.1.0"))) == (
        [], ["rodin-jupyter==0.1.0"])
    changed, added = check.changes(installed, _report(
        ("IPython", "8.0.0"), ("jupyter_client", "8.10.0"), ("stack-data", "0.6.3")))
    assert changed == ["IPython 7.34.0 -> 8.0.0", "jupyter_client 7.4.9 -> 8.10.0"]
    assert added == ["stack-data==0.6.3"]
