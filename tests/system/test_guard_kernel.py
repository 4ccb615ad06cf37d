"""notebooks/guarded_batch.ipynb in a real kernel against the sandbox.

The kernel inherits RODIN_API_KEY / RODIN_API_BASE (set by the ``sandbox_env`` fixture before
the kernel starts). Two ways of running it: nbclient (stops at the first error), and a real
"Run All" -- every cell queued at once, so that ipykernel's ``stop_on_error`` must abort the
cells after the blocked one.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY

pytestmark = pytest.mark.timeout(240)

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "guarded_batch.ipynb"
BLOCKED_TEXT = "POST /rodin (tier Gen-2) needs 0.5 credits, balance is 0.2: not sent"


@pytest.fixture
def kernel_env(sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Sandbox:
    """The sandbox, plus a private IPython profile and models folder for the kernel."""
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("RODIN_MODELS_DIR", str(tmp_path / "models"))
    return sandbox_env


def read_nb(path: Path) -> Any:
    return nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]


def code_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


def first_generation_index(cells: list[Any]) -> int:
    return next(i for i, c in enumerate(cells) if 'f"{BASE}/rodin"' in c.source)


def output_text(cell: Any) -> str:
    parts: list[str] = []
    for out in cell.outputs:
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
        parts.extend(out.get("traceback", []))
    return "\n".join(parts)


def test_committed_notebook_is_clean() -> None:
    nb = read_nb(NOTEBOOK)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None
        assert FAKE_KEY not in cell.source and "Bearer sk" not in cell.source
    sources = [c.source for c in code_cells(nb)]
    assert "%load_ext rodin_jupyter" in sources and "%rodin_guard on" in sources


def test_short_balance_stops_at_the_first_generation_cell(
        kernel_env: Sandbox, tmp_path: Path) -> None:
    kernel_env.set_balance("0.2")
    nb = read_nb(NOTEBOOK)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    assert info.value.ename == "GuardBlocked"
    assert BLOCKED_TEXT in str(info.value)
    saved = tmp_path / "out.ipynb"
    nbformat.write(nb, saved)  # type: ignore[no-untyped-call]
    cells = code_cells(read_nb(saved))
    stop = first_generation_index(cells)
    assert all(c.execution_count is not None for c in cells[:stop + 1])
    errors = [o for o in cells[stop].outputs if o.output_type == "error"]
    assert len(errors) == 1 and len(cells[stop].outputs) == 1
    assert errors[0].ename == "GuardBlocked"
    assert BLOCKED_TEXT in errors[0].evalue
    assert len(errors[0].traceback) == 1 and "Traceback" not in output_text(cells[stop])
    for cell in cells[stop + 1:]:
        assert cell.execution_count is None and cell.outputs == []
    assert kernel_env.count("POST", "/rodin") == 0
    assert kernel_env.balance == Decimal("0.2") and kernel_env.charges == []
    assert FAKE_KEY not in saved.read_text()


def test_run_all_aborts_the_queued_cells(kernel_env: Sandbox, tmp_path: Path) -> None:
    from jupyter_client.manager import start_new_kernel

    kernel_env.set_balance("0.2")
    cells = code_cells(read_nb(NOTEBOOK))
    stop = first_generation_index(cells)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        ids = [kc.execute(c.source, stop_on_error=True) for c in cells]  # queued at once
        replies: dict[str, Any] = {}
        while not set(ids) <= replies.keys():
            msg = kc.get_shell_msg(timeout=60)
            # compat: jupyter_client 7 (Colab's pins) can leave a kernel_info_reply queued.
            if msg["msg_type"] == "execute_reply":
                replies[msg["parent_header"]["msg_id"]] = msg["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    statuses = [replies[i]["status"] for i in ids]
    assert statuses[:stop] == ["ok"] * stop
    assert statuses[stop] == "error"
    assert replies[ids[stop]]["ename"] == "GuardBlocked"
    assert BLOCKED_TEXT in replies[ids[stop]]["evalue"]
    assert statuses[stop + 1:] == ["aborted"] * (len(ids) - stop - 1)
    assert kernel_env.count("POST", "/rodin") == 0
    assert kernel_env.balance == Decimal("0.2")


def test_enough_balance_runs_the_batch_and_the_ledger_shows_spend(
        kernel_env: Sandbox, tmp_path: Path) -> None:
    nb = read_nb(NOTEBOOK)
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    cells = code_cells(nb)
    assert all(c.execution_count is not None for c in cells)
    # chair 0.5, lamp 1.5 (HighPack), mug + teapot 2 x 0.5
    assert kernel_env.count("POST", "/rodin") == 4
    assert sum(c.credits for c in kernel_env.charges) == Decimal(3)
    assert kernel_env.balance == Decimal(7)
    # %rodin_balance, then one fresh reading before the first generation: the later ones
    # are proved by that reading less what the guard saw spent
    assert kernel_env.count("GET", "/check_balance") == 2
    ledger = output_text(cells[-1])
    assert "Sent 4 billable requests for 3 credits by the price table" in ledger
    rows = [line.split() for line in ledger.splitlines() if line.split()[1:2] == ["rodin"]]
    assert [row[4:6] for row in rows] == [["0.5", "sent"], ["1.5", "sent"], ["0.5", "sent"],
                                          ["0.5", "sent"]]
    assert [row[-1] for row in rows] == [c.task_uuid for c in kernel_env.charges]
    models = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert models == ["chair.glb", "lamp.glb", "mug.glb", "teapot.glb"]
    assert all(FAKE_KEY not in output_text(c) for c in cells)
