"""What the send-time guard costs: printed figures, not a timed test.

1. ``%rodin_guard on`` vs off over 1,000 ordinary 30-line cells (half of them naming Rodin in
   a comment), in an in-process IPython shell: the ratio of medians, and the requests the
   sandbox saw (goal: <= 1.02x, 0 requests).
2. The time the check adds to one billable request: ``requests.post`` of a multipart
   ``/rodin`` generation to the local sandbox (plain HTTP on loopback), guard off vs on, at an
   ample balance (the guard's reading, less what it saw spent, proves each one affordable).
   Also a free ``POST /status`` (a non-billable request passing the hooks).

Run from a checkout: ``python benchmarks/guard_sendtime.py [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cells import LINES_PER_CELL, ordinary_cells

from rodin_jupyter.sandbox import Sandbox

KEY = "FAKE-rodin-bench-key"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        gc.enable()


def bench_cells(shell: Any, sb: Sandbox, cells: int, reps: int) -> tuple[float, int]:
    def switch(on: bool) -> None:
        with quiet():
            shell.run_line_magic("rodin_guard", "on" if on else "off")

    salt = 0

    def block() -> list[str]:
        nonlocal salt
        salt += 1
        half = cells // 2
        return ordinary_cells(half, salt) + ordinary_cells(cells - half, salt, mention=True)

    def run(batch: list[str]) -> None:
        for cell in batch:
            if not shell.run_cell(cell, store_history=True).success:
                raise SystemExit(f"an ordinary cell failed: {cell[:60]!r}")

    times: dict[bool, list[float]] = {False: [], True: []}
    before = sb.count()
    for rep in range(reps + 1):  # the first round warms both sides
        for on in ((False, True) if rep % 2 else (True, False)):
            switch(on)
            batch = block()
            took = timed(lambda b=batch: run(b))  # type: ignore[misc]
            if rep:
                times[on].append(took)
    switch(False)
    return statistics.median(times[True]) / statistics.median(times[False]), sb.count() - before


def bench_request(shell: Any, sb: Sandbox, calls: int, reps: int) -> dict[str, float]:
    import requests

    session = requests.Session()
    headers = {"Authorization": f"Bearer {KEY}"}
    files = {"prompt": (None, "a cube"), "tier": (None, "Gen-2")}

    def generate() -> None:
        for _ in range(calls):
            session.post(f"{sb.base_url}/rodin", headers=headers, files=files, timeout=10)

    def status() -> None:
        for _ in range(calls):
            session.post(f"{sb.base_url}/status", headers=headers,
                         json={"subscription_key": "none"}, timeout=10)

    out: dict[str, float] = {}
    for name, fn in (("generate", generate), ("status", status)):
        per: dict[bool, list[float]] = {False: [], True: []}
        for rep in range(reps + 1):
            for on in ((False, True) if rep % 2 else (True, False)):
                with quiet():
                    shell.run_line_magic("rodin_guard", "on" if on else "off")
                sb.set_balance("100000")
                took = timed(fn) / calls
                if rep:
                    per[on].append(took)
        with quiet():
            shell.run_line_magic("rodin_guard", "off")
        out[name] = (statistics.median(per[True]) - statistics.median(per[False])) * 1e6
        out[name + "_off"] = statistics.median(per[False]) * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cells and repetitions")
    args = parser.parse_args()
    cells, reps, calls = (200, 2, 30) if args.quick else (1000, 5, 200)
    with Sandbox(balance="100000", api_key=KEY, job_seconds=0.1) as sb:
        os.environ.update(RODIN_API_KEY=KEY, RODIN_API_BASE=sb.base_url)
        from IPython.testing.globalipapp import get_ipython

        shell = get_ipython()
        with quiet():
            shell.run_line_magic("load_ext", "rodin_jupyter")
        ratio, requests_made = bench_cells(shell, sb, cells, reps)
        added = bench_request(shell, sb, calls, reps)
    import IPython
    import requests

    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"CPython {platform.python_version()}; IPython {IPython.__version__}; "
          f"requests {requests.__version__}")
    rows = [
        (f"%rodin_guard on / off, {cells:,} cells x {LINES_PER_CELL} lines (half name Rodin)",
         f"{ratio:.3f}x, {requests_made} requests", "<= 1.02x, 0 requests"),
        ("added per billable POST /rodin (requests, sandbox)",
         f"{added['generate']:+.0f} us of {added['generate_off']:.0f} us", "(info)"),
        ("added per free POST /status (passes the hooks)",
         f"{added['status']:+.0f} us of {added['status_off']:.0f} us", "(info)"),
    ]
    print(f"{'figure':66} {'measured':26} goal")
    for figure, measured, goal in rows:
        print(f"{figure:66} {measured:26} {goal}")

if __name__ == "__main__":
    main()
