"""``rodin-jupyter demo --notebook``: a path, or a shipped notebook by name (wheel too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rodin_jupyter.demo import SHIPPED, find_notebook, resolve_notebook
from rodin_jupyter.errors import RodinError


@pytest.mark.parametrize("given", ["generate", "generate.ipynb", "notebooks/generate.ipynb"])
def test_a_shipped_notebook_is_found_by_name(given: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # not a checkout: the name alone must do
    assert resolve_notebook(given) == find_notebook("generate.ipynb")


def test_every_shipped_name_resolves_and_a_path_wins(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert all(resolve_notebook(name).is_file() for name in SHIPPED)
    own = tmp_path / "generate.ipynb"
    own.write_text("{}")
    assert resolve_notebook("generate.ipynb") == Path("generate.ipynb")


def test_an_unknown_name_says_what_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RodinError, match="guarded_batch"):
        resolve_notebook("nope")
