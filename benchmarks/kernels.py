"""Many real kernels, each with an auto-refreshing balance panel, against one local server.

Used by ``run.py`` (figure 6: ten kernels for a minute vs one kernel alone) and by
``tests/test_benchmarks_smoke.py`` (the same, shorter, with a bound on the request count).
Each kernel is a real ``ipykernel`` process started by ``jupyter_client`` (over unix sockets,
so kernels starting elsewhere on the machine cannot take their ports); they share a private
Jupyter runtime folder (where the shared readings live) and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rodin_jupyter.balance.settings import TEST_MIN_INTERVAL_VARIABLE

SETUP = """\
%load_ext rodin_jupyter
import time as _time
from rodin_jupyter.balance.monitor import get_monitor as _get_monitor
from rodin_jupyter.widgets.panel import BalancePanel
_panel = BalancePanel(auto_refresh=True, interval={interval})
_until = _time.monotonic() + 60
while _get_monitor().snapshot().balance is None and _time.monotonic() < _until:
    _time.sleep(0.05)  # the panel's first reading counts as setup, not as the window
"""


@dataclass
class KernelRun:
    """Requests the server saw while ``kernels`` panels auto-refreshed for ``seconds``."""

    kernels: int
    seconds: float
    interval: float
    requests: int
    setup_requests: int

    @property
    def per_interval(self) -> float:
        return self.requests / max(1e-9, self.seconds / self.interval)


def _wait_for_reply(client: Any, msg_id: str, timeout: float) -> dict[str, Any]:
    give_up = time.monotonic() + timeout
    while True:
        msg = client.get_shell_msg(timeout=max(0.1, give_up - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            content: dict[str, Any] = msg["content"]
            return content


def _start(index: int, env: dict[str, str], folder: str) -> Any:
    """A started kernel talking over unix sockets in ``folder`` (no TCP ports to collide
    with other kernels starting on the machine at the same moment)."""
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name="python3", transport="ipc",
                            ip=os.path.join(folder, f"k{index}"))
    manager.start_kernel(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return manager


def _ready_client(manager: Any) -> Any:
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=180)
    except RuntimeError:
        client.stop_channels()
        raise
    return client


def run_kernels(kernels: int, seconds: float, interval: float, *, base_url: str, key: str,
                runtime_dir: str, count: Callable[[], int],
                extra_env: dict[str, str] | None = None) -> KernelRun:
    """Start ``kernels`` kernels at once, open an auto-refreshing panel in each, count.

    ``count()`` returns how many balance requests the server has seen so far; the figure
    is the difference over ``seconds`` once every panel is up.
    """
    env = {**os.environ, "RODIN_API_BASE": base_url, "RODIN_API_KEY": key,
           "JUPYTER_RUNTIME_DIR": runtime_dir, TEST_MIN_INTERVAL_VARIABLE: str(interval),
           **(extra_env or {})}
    managers: list[Any] = []
    clients: list[Any] = []
    sockets = tempfile.mkdtemp(prefix="rodin-k-")  # short: a unix socket path is <= 104 bytes
    try:
        before_setup = count()
        for index in range(kernels):
            managers.append(_start(index, env, sockets))
        for manager in managers:
            clients.append(_ready_client(manager))
        ids = [c.execute(SETUP.format(interval=interval)) for c in clients]
        for client, msg_id in zip(clients, ids, strict=True):
            reply = _wait_for_reply(client, msg_id, 120)
            if reply.get("status") != "ok":
                raise RuntimeError(f"a kernel failed to open its panel: {reply}")
        start = count()
        time.sleep(seconds)
        requests = count() - start
        return KernelRun(kernels, seconds, interval, requests, start - before_setup)
    finally:
        for client in clients:
            client.stop_channels()
        for manager in managers:
            with contextlib.suppress(Exception):
                manager.shutdown_kernel(now=True)
        shutil.rmtree(sockets, ignore_errors=True)
