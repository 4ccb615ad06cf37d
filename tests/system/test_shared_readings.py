"""Readings shared between kernels: another process's reading serves a read that allows its
age; a fresh read still asks; a foreign account, a stale or corrupt file is ignored.

"Another kernel" is a real second Python process running the real client against the same
sandbox; the shared folder is a private temporary one (``JUPYTER_RUNTIME_DIR``).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter import RodinClient
from rodin_jupyter.balance import shared as shared_module
from rodin_jupyter.balance.monitor import BalanceMonitor
from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY, run_cell

OTHER_KERNEL = """
from rodin_jupyter.balance.monitor import get_monitor
print(get_monitor().refresh().balance)
"""


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(folder))
    monkeypatch.delenv(shared_module.DISABLE_VARIABLE, raising=False)
    return folder


def other_kernel_reads(sandbox: Sandbox, key: str = FAKE_KEY) -> None:
    env = {**os.environ, "RODIN_API_KEY": key, "RODIN_API_BASE": sandbox.base_url}
    done = subprocess.run([sys.executable, "-c", OTHER_KERNEL], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def monitor_for(sandbox: Sandbox, key: str = FAKE_KEY) -> BalanceMonitor:
    return BalanceMonitor(lambda: RodinClient(key, sandbox.base_url))


def test_another_kernels_reading_serves_a_cached_read(sandbox: Sandbox, runtime: Path) -> None:
    sandbox.set_balance("7.5")
    other_kernel_reads(sandbox)
    assert sandbox.count("GET", "/check_balance") == 1
    monitor = monitor_for(sandbox)
    try:
        reading = monitor.read(max_age=30)
        assert reading.balance == Decimal("7.5")
        assert reading is monitor.adopted and reading.age() < 30
        assert sandbox.count("GET", "/check_balance") == 1  # no request of its own
        assert monitor.read(max_age=None).balance == Decimal("7.5")  # a fresh read asks
        assert sandbox.count("GET", "/check_balance") == 2
    finally:
        monitor.close()


def test_the_file_holds_no_key_and_only_its_owner_may_read_it(sandbox: Sandbox,
                                                              runtime: Path) -> None:
    other_kernel_reads(sandbox)
    path = runtime / shared_module.FILE_NAME
    text = path.read_text()
    assert FAKE_KEY not in text
    assert not any(FAKE_KEY[i:i + 8] in text for i in range(len(FAKE_KEY) - 8))
    assert sandbox.base_url not in text
    if sys.platform != "win32":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in runtime.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_a_file_others_may_write_is_not_trusted(sandbox: Sandbox, runtime: Path) -> None:
    """Anyone who could rewrite the file could forge a balance for --cached and the panels."""
    other_kernel_reads(sandbox)
    path = runtime / shared_module.FILE_NAME
    path.chmod(0o666)
    monitor = monitor_for(sandbox)
    try:
        monitor.read(max_age=30)
        assert monitor.adopted is None
        assert sandbox.count("GET", "/check_balance") == 2  # it asked the service itself
    finally:
        monitor.close()


def test_another_account_is_not_served(sandbox: Sandbox, runtime: Path) -> None:
    other_kernel_reads(sandbox)  # FAKE_KEY's reading
    monitor = monitor_for(sandbox, key=FAKE_KEY + "-other")
    try:
        with pytest.raises(Exception, match="refused"):  # the sandbox refuses that key
            monitor.read(max_age=30)
        assert monitor.adopted is None
    finally:
        monitor.close()


def test_a_reading_older_than_allowed_is_not_served(sandbox: Sandbox, runtime: Path) -> None:
    other_kernel_reads(sandbox)
    time.sleep(1.1)
    monitor = monitor_for(sandbox)
    try:
        monitor.read(max_age=1.0)
        assert monitor.adopted is None
        assert sandbox.count("GET", "/check_balance") == 2
    finally:
        monitor.close()


@pytest.mark.parametrize("content", [
    b"", b"{", b"\xff\xfe", b"[]", b'{"format": 1, "salt": "zz", "readings": {}}',
    b'{"format": 1, "salt": "00", "readings": []}', b"9" * 100_000,
    json.dumps({"format": 1, "salt": "ab" * 16,
                "readings": {"x": {"balance": "1e999999", "at": 1e300}}}).encode(),
])
def test_a_corrupt_file_is_ignored_and_replaced(sandbox: Sandbox, runtime: Path,
                                               content: bytes) -> None:
    runtime.mkdir(parents=True, exist_ok=True)
    (runtime / shared_module.FILE_NAME).write_bytes(content)
    monitor = monitor_for(sandbox)
    try:
        assert monitor.read(max_age=30).balance == Decimal(10)
        assert sandbox.count("GET", "/check_balance") == 1
    finally:
        monitor.close()
    other_kernel_reads(sandbox)  # a later writer replaces the bad file with a good one
    loaded = json.loads((runtime / shared_module.FILE_NAME).read_text())
    assert loaded["format"] == 1 and len(loaded["readings"]) == 1


def test_a_forged_reading_from_the_future_is_ignored(sandbox: Sandbox, runtime: Path) -> None:
    other_kernel_reads(sandbox)
    path = runtime / shared_module.FILE_NAME
    data = json.loads(path.read_text())
    for entry in data["readings"].values():
        entry["at"] = time.time() + 3600
    path.write_text(json.dumps(data))
    monitor = monitor_for(sandbox)
    try:
        monitor.read(max_age=30)
        assert monitor.adopted is None
    finally:
        monitor.close()


def test_sharing_off_and_an_unusable_folder_change_nothing(sandbox: Sandbox, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(blocker / "runtime"))
    monitor = monitor_for(sandbox)
    try:
        assert monitor.read(max_age=30).balance == Decimal(10)
    finally:
        monitor.close()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv(shared_module.DISABLE_VARIABLE, "0")
    other_kernel_reads(sandbox)
    assert not (tmp_path / "runtime" / shared_module.FILE_NAME).exists()


def test_the_magic_shows_another_kernels_reading_as_cached_and_require_asks(
        ip: Any, sandbox_env: Sandbox, runtime: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox_env.set_balance("4")
    other_kernel_reads(sandbox_env)
    capsys.readouterr()
    assert run_cell(ip, "%rodin_balance --cached --json").success
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert shown["cached"] is True and shown["balance"] in ("4", 4)
    assert sandbox_env.count("GET", "/check_balance") == 1  # the other kernel's request only
    sandbox_env.set_balance("0.5")
    assert not run_cell(ip, "%rodin_balance --require 1").success  # a fresh read: 0.5 < 1
    assert sandbox_env.count("GET", "/check_balance") == 2
