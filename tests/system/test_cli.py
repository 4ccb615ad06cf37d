"""The ``rodin-jupyter`` command, run as a real subprocess against the sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY, environ_without_keys


def cli(*args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rodin_jupyter", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def sandbox_environ(sb: Sandbox) -> dict[str, str]:
    return {**environ_without_keys(), "RODIN_API_KEY": FAKE_KEY, "RODIN_API_BASE": sb.base_url}


def test_balance(sandbox: Sandbox) -> None:
    sandbox.set_balance("8.5")
    done = cli("balance", env=sandbox_environ(sandbox))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Rodin balance: 8.5 credits"


def test_balance_json(sandbox: Sandbox) -> None:
    done = cli("balance", "--json", env=sandbox_environ(sandbox))
    assert json.loads(done.stdout)["balance"] == 10


def test_balance_without_key_is_one_line_and_fails() -> None:
    done = cli("balance", env=environ_without_keys())
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "RODIN_API_KEY" in done.stderr and "Traceback" not in done.stderr


def test_balance_wrong_key(sandbox: Sandbox) -> None:
    env = {**sandbox_environ(sandbox), "RODIN_API_KEY": "FAKE-wrong"}
    done = cli("balance", env=env)
    assert done.returncode == 1
    assert done.stderr.startswith("rodin-jupyter: The Rodin API key was refused (HTTP 401)")
    assert "FAKE-wrong" not in done.stderr + done.stdout


def test_sandbox_command_serves_until_stopped() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "rodin_jupyter", "sandbox", "--balance", "3"],
                            stdout=subprocess.PIPE, text=True, env=environ_without_keys())
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        exports = dict(line.strip().removeprefix("export ").split("=", 1)
                       for line in lines if "export " in line)
        answer = requests.get(f"{exports['RODIN_API_BASE']}/check_balance", timeout=5,
                              headers={"Authorization": f"Bearer {exports['RODIN_API_KEY']}"})
        assert answer.json() == {"balance": 3}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert proc.returncode == 0


def test_demo_runs_quickstart_without_key_or_network(tmp_path: Path) -> None:
    started = time.monotonic()
    done = cli("demo", "--output", str(tmp_path / "out.ipynb"), env=environ_without_keys(),
               cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Balance the notebook saw: 10" in done.stdout
    assert "Generations submitted: 1" in done.stdout
    saved = json.loads((tmp_path / "out.ipynb").read_text())
    assert all(c.get("execution_count") for c in saved["cells"] if c["cell_type"] == "code")
    assert time.monotonic() - started < 120
    assert os.environ.get("RODIN_API_KEY") is None


def test_demo_with_a_missing_notebook_is_one_line(tmp_path: Path) -> None:
    done = cli("demo", "--notebook", str(tmp_path / "nope.ipynb"), env=environ_without_keys())
    assert done.returncode == 1
    assert done.stderr.strip() == (f"rodin-jupyter: Could not read the notebook "
                                   f"{tmp_path / 'nope.ipynb'}: FileNotFoundError.")


def test_sandbox_refuses_a_public_address_in_one_line() -> None:
    done = cli("sandbox", "--host", "0.0.0.0", env=environ_without_keys())
    assert done.returncode == 1
    assert "loopback" in done.stderr and "Traceback" not in done.stderr
