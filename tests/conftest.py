"""Shared fixtures: a real sandbox server on loopback, a fake key, an in-process IPython."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from rodin_jupyter.sandbox import Sandbox

# Obviously fake, and distinctive enough that a leak is easy to grep for.
FAKE_KEY = "FAKE-rodin-test-key-0000-LEAKCHECK"

ENV_VARIABLES = ("RODIN_API_KEY", "HYPER3D_API_KEY", "RODIN_API_BASE", "RODIN_PRICES_FILE")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test sees the developer's real key or base URL, or their Jupyter runtime folder
    (where kernels share balance readings: a sandbox on a reused port is another account)."""
    for name in ENV_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))
    yield


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A fresh sandbox with 10 credits that accepts FAKE_KEY."""
    with Sandbox(balance="10", api_key=FAKE_KEY, job_seconds=0.3) as sb:
        yield sb


@pytest.fixture
def sandbox_env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The sandbox, with RODIN_API_KEY / RODIN_API_BASE pointing at it."""
    monkeypatch.setenv("RODIN_API_KEY", FAKE_KEY)
    monkeypatch.setenv("RODIN_API_BASE", sandbox.base_url)
    return sandbox


@pytest.fixture
def fresh_monitor() -> Iterator[Any]:
    """The process-wide monitor, reset before and after each test: no state crosses tests."""
    from rodin_jupyter.balance.monitor import get_monitor

    fresh = get_monitor()
    fresh.reset()
    yield fresh
    fresh.reset()


@pytest.fixture
def ip(sandbox_env: Sandbox, fresh_monitor: Any) -> Iterator[Any]:
    """A real in-process IPython shell with the extension loaded, pointed at the sandbox."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.testing.globalipapp import get_ipython

    shell: InteractiveShell = get_ipython()
    # %config writes into the shared shell's config too: start and end every test clean.
    for section in ("RodinMagics", "RodinGuard"):
        shell.config.pop(section, None)
    shell.run_line_magic("load_ext", "rodin_jupyter")
    yield shell
    shell.run_line_magic("unload_ext", "rodin_jupyter")
    for section in ("RodinMagics", "RodinGuard"):
        shell.config.pop(section, None)


def run_cell(shell: Any, code: str) -> Any:
    """Run a cell like a frontend does; returns IPython's ExecutionResult."""
    return shell.run_cell(code, store_history=True)


def environ_without_keys() -> dict[str, str]:
    """The current environment less any Rodin variable (for subprocesses)."""
    return {k: v for k, v in os.environ.items() if k not in ENV_VARIABLES}
