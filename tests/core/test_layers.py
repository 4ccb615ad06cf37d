"""The layers hold: the core loads no IPython or widgets; the faces never speak HTTP.

Read off the source (every import statement, at any depth), and checked once for real in a
fresh interpreter, in the style of jupyter-ai's lazy-import test.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "rodin_jupyter"
CORE = ("http", "balance", "guard", "generation")
"""generation/ is core too: its HTML (text.py, preview.py, viewer.py) is plain strings, like
balance/text.py; its live widget is widgets/jobs.py, reached lazily from ``_repr_mimebundle_``."""
FACES = ("ipython", "widgets")
UI_MODULES = ("IPython", "ipywidgets", "ipykernel", "traitlets", "sidecar")
HTTP_MODULES = ("requests", "urllib3", "httpx", "httpcore", "http.client", "rodin_jupyter.http")
"""A face reads balances, builds no client and speaks no HTTP (rodin_jupyter.http included)."""
REQUESTS_MODULES = ("requests", "urllib3")


def imported_names(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
    return names


def modules_in(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def names_under(names: set[str], roots: tuple[str, ...]) -> set[str]:
    return {n for n in names if any(n == r or n.startswith(r + ".") for r in roots)}


@pytest.mark.parametrize("layer", CORE)
def test_core_modules_import_no_ipython_or_widgets(layer: str) -> None:
    found = {str(p.relative_to(PACKAGE)): names_under(imported_names(p), UI_MODULES)
             for p in modules_in(layer)}
    assert {k: v for k, v in found.items() if v} == {}


@pytest.mark.parametrize("layer", FACES)
def test_face_modules_import_no_http(layer: str) -> None:
    found = {str(p.relative_to(PACKAGE)): names_under(imported_names(p), HTTP_MODULES)
             for p in modules_in(layer)}
    assert {k: v for k, v in found.items() if v} == {}


def test_only_widgets_imports_ipywidgets() -> None:
    outside = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if (PACKAGE / "widgets") not in p.parents
               and names_under(imported_names(p), ("ipywidgets",))}
    assert outside == set()


def test_only_http_imports_requests() -> None:
    """The guard's send-time hooks patch requests/urllib3 by name (importlib, only once
    they are loaded), so no module outside http/ imports them."""
    outside = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if (PACKAGE / "http") not in p.parents
               and names_under(imported_names(p), REQUESTS_MODULES)}
    assert outside == set()


def test_the_scan_sees_imports() -> None:
    """The scan itself: a face module's real imports are found (the checks above can fail)."""
    names = imported_names(PACKAGE / "ipython" / "magics.py")
    assert names_under(names, UI_MODULES)
    assert "rodin_jupyter.balance.connect" in names


def test_importing_the_core_loads_no_ipython_nor_widgets() -> None:
    code = ("import sys, rodin_jupyter, rodin_jupyter.balance.monitor, rodin_jupyter.guard.pricing,"
            " rodin_jupyter.guard.sendtime, rodin_jupyter.balance.connect,"
            " rodin_jupyter.balance.view, rodin_jupyter.generation;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('IPython', 'ipywidgets', 'ipykernel', 'traitlets')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_a_bare_import_loads_neither_http_nor_widgets() -> None:
    """``import rodin_jupyter`` is what every kernel with the extension pays first: the HTTP
    stack, prices and widgets load when a name is first used (``LAZY`` in ``__init__``)."""
    code = ("import sys, rodin_jupyter; print(sorted(m for m in sys.modules if m.split('.')[0] "
            "in ('requests', 'urllib3', 'IPython', 'ipywidgets')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
    used = subprocess.run([sys.executable, "-c", "import sys; from rodin_jupyter import "
                           "RodinClient; print('requests' in sys.modules)"],
                          capture_output=True, text=True, check=True, timeout=60)
    assert used.stdout.strip() == "True"


def test_every_error_the_package_raises_is_a_rodin_error() -> None:
    """One tree (requests' style): ``except RodinError`` catches whatever we raise on purpose.

    The sandbox (a server: its errors become HTTP answers) and private control-flow
    exceptions (``_Retry``) never reach a caller, so they are left out.
    """
    import importlib
    import inspect

    from rodin_jupyter.errors import RodinError

    outside: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if "sandbox" in parts or parts[-1] == "__main__":
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == name and not attr.startswith("_")
                    and not issubclass(value, RodinError)):
                outside.append(f"{name}.{attr}")
    assert outside == []


def test_user_facing_errors_are_exported() -> None:
    import rodin_jupyter

    for name in ("RodinError", "GuardBlocked", "SubmissionRefused", "TaskNotFound",
                 "UrlExpired", "JobFailedError", "PricingError", "MissingKeyError"):
        assert issubclass(getattr(rodin_jupyter, name), rodin_jupyter.RodinError), name
