"""Figures 4 (ten panels in one kernel, one refresh) and 6 (many kernels on one account)."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common import BENCH_KEY, PANELS, Params, Result, not_available, verdict
from https_server import ServerProcess

# -- 4. panels --------------------------------------------------------------------------


def _wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def _widget_texts(widget: Any) -> Iterator[str]:
    value = getattr(widget, "value", None)
    if isinstance(value, str):
        yield value
    for child in getattr(widget, "children", ()):
        yield from _widget_texts(child)


def bench_panels(server: ServerProcess) -> Result:
    figure = f"{PANELS} BalancePanels, one refresh"
    goal = "exactly 1 request"
    if importlib.util.find_spec("rodin_jupyter.widgets.panel") is None:
        return not_available("4", "panels", figure, goal, "panel not available")
    if importlib.util.find_spec("ipywidgets") is None:
        return not_available("4", "panels", figure, goal, "ipywidgets not installed")
    widgets_before = "ipywidgets" in sys.modules
    from rodin_jupyter import BalancePanel
    from rodin_jupyter.balance.monitor import get_monitor
    from rodin_jupyter.http.client import RodinClient
    from rodin_jupyter.widgets.panel import shutdown_all

    monitor = get_monitor()
    monitor.configure(RodinClient)  # no reading yet: the first panel has to ask

    def settled() -> bool:
        snap = monitor.snapshot()
        return snap.balance is not None and not snap.checking

    server.set_balance("10")
    before = server.balance_requests()
    start = time.perf_counter()
    panels = [BalancePanel() for _ in range(PANELS)]
    create_s = time.perf_counter() - start
    _wait_until(settled)
    time.sleep(0.05)  # let any stray request land before counting
    created_requests = server.balance_requests() - before

    server.set_balance("7.25")
    before = server.balance_requests()
    start = time.perf_counter()
    panels[PANELS // 2].refresh(wait=True, timeout=30)
    refresh_s = time.perf_counter() - start
    showing = _wait_until(lambda: all(
        any(">7.25<" in t for t in _widget_texts(panel.widget)) for panel in panels), 5.0)
    time.sleep(0.05)
    refresh_requests = server.balance_requests() - before
    for panel in panels:
        panel.close(timeout=5)
    shutdown_all()
    server.set_balance("10")

    ok = refresh_requests == 1 and showing
    result = Result("4", "panels", figure, float(refresh_requests), "requests", goal, verdict(ok),
                    f"{refresh_requests} request{'s' if refresh_requests != 1 else ''}",
                    details={"requests_on_refresh": refresh_requests,
                             "requests_on_create": created_requests,
                             "all_panels_show_new_balance": showing,
                             "create_ms": create_s * 1e3, "refresh_ms": refresh_s * 1e3,
                             "ipywidgets_imported_before_first_panel": widgets_before})
    result.notes.append(
        f"creating {PANELS} panels: {create_s * 1e3:.0f} ms and {created_requests} request(s); "
        f"one refresh: {refresh_s * 1e3:.1f} ms, {refresh_requests} request(s), all "
        f"{PANELS} panels show the new balance: {showing}")
    return result


# -- 6. many kernels on one account -----------------------------------------------------


def bench_kernels(server: ServerProcess, alone: ServerProcess, runtime: Path,
                  p: Params) -> Result:
    """Ten real kernels with auto-refreshing panels vs one kernel alone, at the same time
    against two servers (so each count is its own), for ``p.kernel_seconds``."""
    figure = f"{p.kernels} kernels, auto-refreshing panels, {p.kernel_seconds:g} s"
    goal = "about 1 request per interval"
    for module in ("ipywidgets", "jupyter_client", "ipykernel"):
        if importlib.util.find_spec(module) is None:
            return not_available("6", "kernels", figure, goal, f"{module} not installed")
    if p.kernels <= 0:
        return not_available("6", "kernels", figure, goal, "skipped with --quick")
    from kernels import KernelRun, run_kernels

    runs: dict[str, KernelRun] = {}
    errors: list[str] = []

    def one(name: str, n: int, srv: ServerProcess, folder: Path) -> None:
        try:
            runs[name] = run_kernels(n, p.kernel_seconds, p.kernel_interval,
                                     base_url=srv.base_url, key=BENCH_KEY,
                                     runtime_dir=str(folder), count=srv.balance_requests)
        except Exception as exc:  # reported in the row, not a traceback
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one, args=("many", p.kernels, server, runtime / "many")),
               threading.Thread(target=one, args=("alone", 1, alone, runtime / "alone"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors or set(runs) != {"many", "alone"}:
        return not_available("6", "kernels", figure, goal, "; ".join(errors)[:200])
    many, single = runs["many"], runs["alone"]
    intervals = p.kernel_seconds / p.kernel_interval
    ok = many.requests <= 1.5 * intervals + 2
    result = Result("6", "kernels", figure, float(many.requests), "requests", goal, verdict(ok),
                    f"{many.requests} requests ({single.requests} for one kernel alone)",
                    details={"requests_many": many.requests, "requests_alone": single.requests,
                             "setup_requests_many": many.setup_requests,
                             "setup_requests_alone": single.setup_requests,
                             "interval_s": p.kernel_interval, "seconds": p.kernel_seconds,
                             "kernels": p.kernels})
    result.notes.append(
        f"{p.kernels} kernels, panels refreshing every {p.kernel_interval:g} s for "
        f"{p.kernel_seconds:g} s ({intervals:g} intervals): {many.requests} requests "
        f"({many.per_interval:.2f} per interval); one kernel alone: {single.requests}; "
        f"opening the panels: {many.setup_requests} vs {single.setup_requests}")
    return result
