"""Every notebook in ``notebooks/`` runs top to bottom in a real kernel against the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from rodin_jupyter.demo import run_demo

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
# Notebooks that stop on purpose when the balance is short run with plenty here;
# their own tests cover the short case.
BALANCE = 100


def test_there_are_notebooks() -> None:
    assert any(p.name == "quickstart.ipynb" for p in NOTEBOOKS)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_clean(notebook: Path, tmp_path: Path) -> None:
    summary = run_demo(notebook=notebook, output=tmp_path / notebook.name, balance=BALANCE)
    assert summary.error is None, summary.error
    assert summary.cells_run > 0


def test_committed_notebooks_carry_no_outputs_and_a_kernelspec() -> None:
    import nbformat

    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name
