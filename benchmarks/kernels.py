"""Many real kernels, each with an auto-refreshing balance panel, against one local server.

Used by ``run.py`` (figure 6: ten kernels for a minute vs one kernel alone) and by
``tests/test_benchmarks_smoke.py`` (the same, shorter, with a bound on the request count).
Each kernel is a real ``ipykernel`` process started by ``jupyter_client``; they share a
private Jupyter runtime folder (where the shared readings live) and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rodin_jupyter.balance.settings import TEST_MIN_INTERVAL_VARIABLE

SETUP = """\
%load_ext rodin_jupyter
from rodin_jupyter.widgets.panel import BalancePanel
_panel = BalancePanel(auto_refresh=True, interval={interval})
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


def _ready_client(manager: Any) -> Any:
    """A client of a kernel that answers; a kernel that died starting (a port taken by a
    neighbour starting at the same moment) is restarted once: starting is not what is counted."""
    for attempt in (1, 2):
        client = manager.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=180)
            return client
        except RuntimeError:
            client.stop_channels()
            if attempt == 2:
                raise
            manager.restart_kernel(now=True)
    raise AssertionError("unreachable")


def run_kernels(kernels: int, seconds: float, interval: float, *, base_url: str, key: str,
                runtime_dir: str, count: Callable[[], int],
                extra_env: dict[str, str] | None = None) -> KernelRun:
    """Start ``kernels`` kernels at once, open an auto-refreshing panel in each, count.

    ``count()`` returns how many balance requests the server has seen so far; the figure
    is the difference over ``seconds`` once every panel is up.
    """
    from jupyter_client.manager import KernelManager

    env = {**os.environ, "RODIN_API_BASE": base_url, "RODIN_API_KEY": key,
           "JUPYTER_RUNTIME_DIR": runtime_dir, TEST_MIN_INTERVAL_VARIABLE: str(interval),
           **(extra_env or {})}
    managers: list[Any] = []
    clients: list[Any] = []
    try:
        before_setup = count()
        for _ in range(kernels):
            manager = KernelManager(kernel_name="python3")
            manager.start_kernel(env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            managers.append(manager)
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
