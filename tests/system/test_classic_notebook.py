"""The panel in the classic Notebook 6.5 with ipywidgets 7.7, in headless Chromium.

Colab's frontend renders ipywidgets 7 widgets; the classic Notebook is the nearest real
frontend for them that runs here (JupyterLab 4 / Notebook 7 cannot show ipywidgets 7).
Runs only in a virtualenv with ``notebook<7`` (scripts/test runs it in the Colab-pinned one:
``pytest -m classic``); elsewhere it skips. The panel is found by what a person sees
("<N> credits", a "Refresh" button), not by its CSS classes.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY, environ_without_keys

pytestmark = [pytest.mark.browser, pytest.mark.classic]

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[2]
WAIT_MS = 60_000


def _classic_notebook() -> str | None:
    """The installed classic Notebook's version, or None (absent, or Notebook 7)."""
    try:
        found = version("notebook")
    except PackageNotFoundError:
        return None
    return found if int(found.split(".")[0]) < 7 else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def classic_server(tmp_path: Path, sandbox: Sandbox) -> Iterator[tuple[str, str, Path]]:
    """A Notebook 6.5 server on loopback; every folder it writes to is temporary."""
    if _classic_notebook() is None:
        pytest.skip("needs the classic Notebook (notebook<7); scripts/test runs it")
    problem = None if CHROMIUM.exists() else f"{CHROMIUM} is missing"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "the playwright package is missing"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"classic Notebook test cannot run: {problem}", pytrace=False)
        pytest.skip(problem)
    dirs = {name: tmp_path / name for name in ("root", "config", "data", "runtime", "ipython")}
    for folder in dirs.values():
        folder.mkdir()
    _write_notebook(dirs["root"] / "panel.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**environ_without_keys(), "RODIN_API_KEY": FAKE_KEY,
           "RODIN_API_BASE": sandbox.base_url,
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                         if p),
           "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
           "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "IPYTHONDIR": str(dirs["ipython"]),
           "JUPYTER_PLATFORM_DIRS": "1"}
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "notebook", "--no-browser", "--ip=127.0.0.1",
             f"--port={port}", "--NotebookApp.port_retries=0", f"--NotebookApp.token={token}",
             f"--NotebookApp.notebook_dir={dirs['root']}", "--allow-root"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=dirs["root"])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Notebook 6.5 did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.2)
        yield url, token, log
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _write_notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("%load_ext rodin_jupyter"),
                nbformat.v4.new_code_cell("%rodin_balance --panel")]
    nbformat.write(nb, str(path))


def test_panel_shows_the_balance_and_refresh_works(classic_server: tuple[str, str, Path],
                                                   sandbox: Sandbox) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, token, log = classic_server
    sandbox.set_balance("42")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS,
                                             headless=True)
        try:
            page = browser.new_page()
            # ipywidgets 7's classic manager asks the kernel for its comms once, after the
            # page loads; widgets created before that are dropped. Wait for that moment
            # (it logs a "jupyter.widget.control" line) before running the cells.
            with page.expect_console_message(lambda m: "jupyter.widget.control" in m.text,
                                             timeout=WAIT_MS):
                page.goto(f"{url}/notebooks/panel.ipynb?token={token}")
            page.wait_for_function("window.Jupyter && Jupyter.notebook && Jupyter.notebook"
                                   ".kernel && Jupyter.notebook.kernel.is_connected()",
                                   timeout=WAIT_MS)
            page.evaluate("Jupyter.notebook.execute_all_cells()")
            outputs = page.locator("#notebook .output_area")
            expect(outputs.get_by_text("42 credits")).to_be_visible(timeout=WAIT_MS)
            refresh = outputs.get_by_role("button", name="Refresh")
            expect(refresh).to_be_visible()
            sandbox.set_balance("17.5")
            refresh.click()
            expect(outputs.get_by_text("17.5 credits")).to_be_visible(timeout=WAIT_MS)
            assert not page.locator("#notebook .output_area .output_error").count()
            content = page.content()
            assert FAKE_KEY not in content
            widget_state: Any = page.evaluate(
                "JSON.stringify(Jupyter.notebook.get_cells().map(c => c.output_area"
                " && c.output_area.outputs))")
            assert FAKE_KEY not in widget_state
        except Exception:
            print(log.read_text()[-3000:])
            raise
        finally:
            browser.close()
