"""The panel with real parts: the sandbox over HTTP, the IPython shell, a real kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter.balance.monitor import BalanceMonitor
from rodin_jupyter.sandbox import Sandbox
from rodin_jupyter.widgets.panel import BalancePanel
from rodin_jupyter.widgets.schedule import panel_threads
from rodin_jupyter.widgets.side import NO_SIDECAR, sidecar_class
from tests.conftest import FAKE_KEY
from tests.core.test_balance_view import CLOCK
from tests.faces.test_panel import amount_in, panels_cleanup, ready, wait_for

BALANCE = ("GET", "/check_balance")
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "balance_panel.ipynb"
__all__ = ["panels_cleanup"]  # the autouse fixture applies here too


# -- real HTTP, a real shell, a real kernel ----------------------------------------------


def test_a_magic_read_updates_every_panel(ip: Any, sandbox_env: Sandbox) -> None:
    panels = [ready() for _ in range(3)]
    sandbox_env.set_balance("3.5")
    before = sandbox_env.count(*BALANCE)
    value = ip.run_line_magic("rodin_balance", "")
    assert value == Decimal("3.5")
    assert all(amount_in(p) == "3.5" for p in panels)  # no panel asked again
    assert sandbox_env.count(*BALANCE) == before + 1
    assert "spent here" not in repr(value)  # the drop 10 -> 3.5 happened elsewhere


def test_sidecar_or_one_line_of_explanation(ip: Any, sandbox_env: Sandbox,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("rodin_balance", "--sidecar")
    out = capsys.readouterr().out
    if sidecar_class() is None:
        assert NO_SIDECAR in out and "Create New View for Output" in out
    else:
        assert "side area" in out
    assert out.count("\n") <= 2


def test_unload_ext_stops_every_panel(ip: Any, sandbox_env: Sandbox) -> None:
    baseline = set(threading.enumerate())
    ip.run_line_magic("rodin_balance", "--panel")
    panel = BalancePanel(auto_refresh=True)
    wait_for(lambda: panel.view().word == "ok")
    ip.run_line_magic("unload_ext", "rodin_jupyter")
    assert sorted(t.name for t in set(threading.enumerate()) - baseline
                  if t.is_alive() and t.name != "rodin-sandbox-conn") == []
    assert panel.closed and panel_threads() == []
    ip.run_line_magic("load_ext", "rodin_jupyter")  # the fixture unloads again


def test_the_key_is_in_no_widget_state(sandbox_env: Sandbox, fresh_monitor: BalanceMonitor) -> None:
    import ipywidgets

    panels = [ready(), BalancePanel(auto_refresh=True)]
    sandbox_env.inject_fault(path="/check_balance", status=401)
    panels[0].refresh(wait=True, timeout=10)
    assert "refused" in panels[0].shown()
    state = json.dumps(ipywidgets.Widget.get_manager_state(), default=str)
    assert "rodin-panel" in state  # the panels' widgets are in there...
    assert FAKE_KEY not in state  # ...the key is not,
    assert "Bearer" not in state
    assert sandbox_env.base_url not in state  # nor where it is sent
    assert FAKE_KEY not in repr(panels[0]) and FAKE_KEY not in str(vars(panels[0]))


def test_without_ipywidgets_the_panel_is_a_snapshot(sandbox_env: Sandbox) -> None:
    code = """
import json, sys, threading
sys.modules["ipywidgets"] = None  # as if not installed
from rodin_jupyter import BalancePanel
from IPython.core.formatters import format_display_data
panel = BalancePanel()
data, _ = format_display_data(panel)
panel.close()
print(json.dumps({"data": data, "repr": repr(panel), "threads": threading.active_count()}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ), check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result["data"]) == {"text/plain", "text/html"}
    assert result["data"]["text/plain"].startswith("Rodin balance: 10 credits")
    assert "rodin-balance" in result["data"]["text/html"]
    assert result["repr"].startswith("Rodin balance: 10 credits")
    assert FAKE_KEY not in out.stdout + out.stderr


def test_loading_the_extension_does_not_import_ipywidgets() -> None:
    code = """
import sys
from IPython.testing.globalipapp import start_ipython
shell = start_ipython()
shell.run_line_magic("load_ext", "rodin_jupyter")
import rodin_jupyter
assert "ipywidgets" not in sys.modules, "ipywidgets imported by %load_ext"
rodin_jupyter.BalancePanel
assert "ipywidgets" in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_the_example_notebook_runs(sandbox_env: Sandbox, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # the kernel inherits it
    client = nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    panels = [o for o in outputs
              if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert panels, "no panel displayed"
    for output in panels:
        assert "Rodin balance:" in output.data["text/plain"]
        assert "rodin-balance" in output.data["text/html"]
        assert CLOCK.search(output.data["text/html"])  # a saved notebook keeps the time
    assert FAKE_KEY not in nbformat.writes(notebook)
