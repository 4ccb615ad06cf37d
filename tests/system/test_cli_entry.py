"""``python -m rodin_jupyter`` and the installed ``rodin-jupyter`` script behave the same.

Both are run as real subprocesses (the script is the one pip wrote into this virtualenv)
and must give the same exit status, standard output and standard error.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY, environ_without_keys

SCRIPT = Path(sys.executable).parent / ("rodin-jupyter.exe" if os.name == "nt" else "rodin-jupyter")
REPO = Path(__file__).resolve().parents[2]


def _run(command: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    # The one thing allowed to differ: when the balance was read.
    stdout = re.sub(r'"checked_at": "[^"]+"', '"checked_at": "T"', done.stdout)
    return done.returncode, stdout, done.stderr


@pytest.mark.parametrize("args", [
    ["--help"],
    ["balance"],
    ["balance", "--json"],
    ["no-such-command"],
    ["demo", "--notebook", "missing.ipynb"],
], ids=["help", "balance", "json", "bad-command", "missing-notebook"])
def test_module_and_script_agree(args: list[str], sandbox: Sandbox, tmp_path: Path) -> None:
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: install the package (pip install -e .)")
    sandbox.set_balance("3.25")
    env = {**environ_without_keys(), "RODIN_API_KEY": FAKE_KEY,
           "RODIN_API_BASE": sandbox.base_url,
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                         if p)}
    as_module = _run([sys.executable, "-m", "rodin_jupyter", *args], env, tmp_path)
    as_script = _run([str(SCRIPT), *args], env, tmp_path)
    assert as_module == as_script
    status, out, err = as_module
    if args[0] == "balance":
        assert status == 0 and "3.25" in out
    else:
        assert "rodin-jupyter" in out + err  # the same program name either way
    assert FAKE_KEY not in out + err
