"""JupyterLab 4 and Notebook 7 started by the tests, driven by Playwright in Debian's Chromium.

Everything a server writes goes to temporary folders (config, data, runtime, IPython, user
settings, workspaces, the notebook root): nothing is written into the virtualenv or $HOME.
The sandbox runs in the test process; the server's environment carries the fake key and
the sandbox address, so every kernel it starts inherits them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter.sandbox import Sandbox
from tests.conftest import ENV_VARIABLES, FAKE_KEY

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = Path(os.environ.get("RODIN_ARTIFACTS") or REPO / "artifacts")  # gitignored
START_BALANCE = "42"
SERVER_START_TIMEOUT = 90.0

# Settings a person would click; written as *user* settings into the temporary
# JUPYTERLAB_SETTINGS_DIR (no overrides.json in the virtualenv needed).
USER_SETTINGS = {
    # No "Would you like to receive official Jupyter news?" toast over the page.
    "@jupyterlab/apputils-extension/notification":
        {"fetchNews": "false", "checkForUpdates": False},
    # Save live widget state into the notebook on save (the leak test needs it).
    "@jupyter-widgets/jupyterlab-manager/plugin": {"saveState": True},
}


def browser_problem() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install playwright)"
    return None


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> None:
    # Remember failures so the page fixture can save a full-page screenshot.
    if call.when == "call" and call.excinfo is not None:
        item.stash[FAILED] = True


FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Headless Debian Chromium; never downloads a browser. In CI a missing one fails."""
    problem = browser_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run: {problem}", pytrace=False)
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS,
                                             headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def browser_sandbox() -> Iterator[Sandbox]:
    with Sandbox(balance=START_BALANCE, api_key=FAKE_KEY, job_seconds=0.3) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(browser_sandbox: Sandbox) -> Sandbox:
    """The shared sandbox, reset: START_BALANCE credits and no faults."""
    browser_sandbox.clear_faults()
    browser_sandbox.set_balance(START_BALANCE)
    return browser_sandbox


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sidecar_data_dir() -> Path | None:
    """The share/jupyter folder beside an importable ``sidecar`` outside sys.prefix, if any."""
    import importlib.util

    spec = importlib.util.find_spec("sidecar")
    if spec is None or spec.origin is None:
        return None
    share = Path(spec.origin).resolve().parents[1] / "share" / "jupyter"
    return share if (share / "labextensions").is_dir() else None


@dataclass
class JupyterServer:
    """A JupyterLab or Notebook 7 server process on loopback."""

    kind: str  # "lab" or "notebook"
    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes]

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def notebook_url(self, name: str) -> str:
        if self.kind == "lab":
            return (f"{self.url}/lab/workspaces/t{uuid.uuid4().hex[:8]}/tree/{name}"
                    f"?reset&token={self.token}")
        return f"{self.url}/notebooks/{name}?token={self.token}"

    def shutdown_sessions(self) -> None:
        """Closing a page leaves its kernel running: shut the kernels down."""
        for session in self.api("GET", "/api/sessions"):
            with contextlib.suppress(urllib.error.URLError):
                self.api("DELETE", f"/api/sessions/{session['id']}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_server(kind: str, sandbox: Sandbox, base: Path) -> JupyterServer:
    dirs = {name: base / name for name in
            ("root", "config", "data", "runtime", "ipython", "settings", "workspaces")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    for plugin, values in USER_SETTINGS.items():
        target = dirs["settings"] / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARIABLES}
    env.update(
        RODIN_API_KEY=FAKE_KEY,
        RODIN_API_BASE=sandbox.base_url,
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        IPYTHONDIR=str(dirs["ipython"]),
        JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
        JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
        # Each test sets the sandbox's balance and expects its kernel to read it; a reading
        # another test's kernel shared (same account) would be adopted instead, by design.
        RODIN_JUPYTER_SHARED_READINGS="0",
    )
    extra = sidecar_data_dir()
    if extra is not None:  # sidecar installed outside the venv (pip --target): its lab extension
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(extra), env.get("JUPYTER_PATH")]))
    port, token = free_port(), secrets.token_hex(16)
    app = "LabApp" if kind == "lab" else "JupyterNotebookApp"
    command = [
        sys.executable, "-m", "jupyterlab" if kind == "lab" else "notebook",
        "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={dirs['root']}",
        "--ServerApp.allow_root=True", "--ServerApp.terminals_enabled=False",
        f"--{app}.expose_app_in_browser=True",
        f"--{app}.user_settings_dir={dirs['settings']}",
        f"--{app}.workspaces_dir={dirs['workspaces']}",
    ]
    log = base / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=dirs["root"])
    server = JupyterServer(kind, f"http://127.0.0.1:{port}", token, dirs["root"], log, process)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter {kind} exited early:\n{server.log_tail()}")
        try:
            server.api("GET", "/api/status")
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"jupyter {kind} did not start:\n{server.log_tail()}") from None
            time.sleep(0.25)


@pytest.fixture(scope="module", params=["lab", "notebook"])
def jupyter(request: pytest.FixtureRequest, chromium: Any, browser_sandbox: Sandbox,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """One server per app and module (JupyterLab 4, then Notebook 7)."""
    server = start_server(request.param, browser_sandbox,
                          tmp_path_factory.mktemp(f"jupyter-{request.param}"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(request: pytest.FixtureRequest, chromium: Any, jupyter: JupyterServer) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        if request.node.stash.get(FAILED, False):
            ARTIFACTS.mkdir(exist_ok=True)
            with contextlib.suppress(Exception):  # best effort, for debugging
                page.screenshot(path=str(ARTIFACTS / f"failed-{request.node.name}.png"),
                                full_page=True)
        context.close()
        jupyter.shutdown_sessions()


def write_notebook(server: JupyterServer, cells: list[str]) -> str:
    """A notebook in the server's root (with a kernelspec, so no kernel dialog)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(
        cells=[new_code_cell(source) for source in cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}},
    )
    name = f"panel-{uuid.uuid4().hex[:8]}.ipynb"
    nbformat.write(notebook, server.root / name)
    return name


def copy_notebook(server: JupyterServer, source: Path) -> str:
    name = f"{source.stem}-{uuid.uuid4().hex[:8]}.ipynb"
    shutil.copy(source, server.root / name)
    return name


_RUN_ALL = """async (ms) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('kernel not ready in time')), ms);
  });
  try {
    await Promise.race([panel.sessionContext.ready, timeout]);
    await Promise.race([app.commands.execute('notebook:run-all-cells'), timeout]);
  } finally {
    clearTimeout(timer);
  }
}"""

_NOTEBOOK_OPEN = """() => {
  const app = window.jupyterapp;
  const w = app && app.shell && app.shell.currentWidget;
  return !!(w && w.sessionContext && w.content && w.content.widgets
            && w.content.widgets.length > 0);
}"""


def open_and_run(page: Any, server: JupyterServer, name: str) -> None:
    """Open the notebook in the app and run all its cells."""
    page.goto(server.notebook_url(name))
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    page.wait_for_function(_NOTEBOOK_OPEN, timeout=60_000)
    page.evaluate(_RUN_ALL, 60_000)


def run_cell(page: Any, index: int) -> None:
    page.evaluate("""async (index) => {
      const app = window.jupyterapp;
      app.shell.currentWidget.content.activeCellIndex = index;
      await app.commands.execute('notebook:run-cell');
    }""", index)


def save_notebook(page: Any) -> None:
    page.evaluate("async () => { await window.jupyterapp.commands.execute('docmanager:save'); }")
