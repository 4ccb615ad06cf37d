"""What the send-time guard costs: printed figures, not a timed test.

1. ``%rodin_guard on`` vs off over 1,000 ordinary 30-line cells per side (half of them naming
   Rodin in a comment), in an in-process IPython shell, the sides alternating every 50 cells:
   the median of the per-round ratios (and the ratio of the totals), and the requests the
   sandbox saw (goal: <= 1.02x, 0 requests).
2. The time the check adds to one billable request: ``requests.post`` of a multipart
   ``/rodin`` generation to the local sandbox (plain HTTP on loopback), guard off vs on,
   alternating every 5 requests, at an ample balance (the guard's reading, less what it saw
   spent, proves each one affordable); and the check's own code timed alone. Also a free
   ``POST /status`` (a non-billable request passing the hooks).

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


def switch(shell: Any, on: bool) -> None:
    with quiet():
        shell.run_line_magic("rodin_guard", "on" if on else "off")


def bench_cells(shell: Any, sb: Sandbox, cells: int, rounds: int, chunk: int = 50,
                noise: bool = False) -> tuple[float, float, int]:
    """On/off over ``cells`` cells per side per round, the sides alternating every ``chunk``
    cells (so load spikes and drift hit both); median of the per-round ratios, the ratio of
    the totals, and the requests the sandbox saw. ``noise``: both sides off (the harness's
    noise floor on this machine)."""
    salt = 0

    def run_chunk(on: bool) -> float:
        nonlocal salt
        salt += 1
        half = chunk // 2
        batch = ordinary_cells(half, salt) + ordinary_cells(chunk - half, salt, mention=True)
        switch(shell, on and not noise)

        def go() -> None:
            for cell in batch:
                if not shell.run_cell(cell, store_history=True).success:
                    raise SystemExit(f"an ordinary cell failed: {cell[:60]!r}")

        return timed(go)

    before = sb.count()
    ratios, totals = [], [0.0, 0.0]
    for rnd in range(rounds + 1):
        side = {False: 0.0, True: 0.0}
        for i in range(max(1, cells // chunk)):
            for on in ((False, True) if (i + rnd) % 2 else (True, False)):
                side[on] += run_chunk(on)
        if rnd:
            ratios.append(side[True] / side[False])
            totals[0] += side[False]
            totals[1] += side[True]
    switch(shell, False)
    return statistics.median(ratios), totals[1] / totals[0], sb.count() - before


def bench_request(shell: Any, sb: Sandbox, calls: int, rounds: int,
                  chunk: int = 5) -> dict[str, float]:
    """µs per request the guard adds (on - off), the sides alternating every ``chunk``
    requests; median over rounds of ``calls`` requests per side."""
    import requests

    session = requests.Session()
    headers = {"Authorization": f"Bearer {KEY}"}
    files = {"prompt": (None, "a cube"), "tier": (None, "Gen-2")}
    sends = {
        "generate": lambda: session.post(f"{sb.base_url}/rodin", headers=headers, files=files,
                                         timeout=10),
        "status": lambda: session.post(f"{sb.base_url}/status", headers=headers,
                                       json={"subscription_key": "none"}, timeout=10),
    }
    out: dict[str, float] = {}
    sb.set_balance("100000000")
    for name, send in sends.items():
        def run_chunk(on: bool, send: Callable[[], Any] = send) -> float:
            switch(shell, on)

            def go() -> None:
                for _ in range(chunk):
                    send()

            return timed(go)

        diffs, offs = [], []
        for rnd in range(rounds + 1):
            side = {False: 0.0, True: 0.0}
            for i in range(max(1, calls // chunk)):
                for on in ((False, True) if (i + rnd) % 2 else (True, False)):
                    side[on] += run_chunk(on)
            if rnd:
                n = max(1, calls // chunk) * chunk
                diffs.append((side[True] - side[False]) / n)
                offs.append(side[False] / n)
        out[name] = statistics.median(diffs) * 1e6
        out[name + "_off"] = statistics.median(offs) * 1e6
    switch(shell, False)
    return out


def bench_decision(sb: Sandbox, calls: int) -> float:
    """µs of the check's own code per billable request: body to fields, price, reservation,
    ledger entry, settling from the answer (the guard's reading already proves it)."""
    import requests

    from rodin_jupyter.guard.sendtime import get_guard

    guard = get_guard()
    request = requests.Request("POST", f"{sb.base_url}/rodin", files={
        "prompt": (None, "a cube"), "tier": (None, "Gen-2")}).prepare()
    answer = b'{"error": null, "uuid": "u", "jobs": {"uuids": ["j"]}, "consumed": 0.5}'
    content_type = request.headers["Content-Type"]

    def go() -> None:
        for _ in range(calls):
            pending = guard.admit("POST", str(request.url), content_type, request.body)
            assert pending is not None
            pending.account.settle(pending.ticket, charged=False, accepted=False)
            pending.done(201, answer)

    sb.set_balance("100000")
    go()  # the first one reads the balance
    return timed(go) / calls * 1e6


def bench_shell_check(cells: int) -> float:
    """µs the guard's only per-cell work (the shell-escape test) takes on one cell."""
    from rodin_jupyter.ipython.cell_guard import ShellCheck

    check = ShellCheck()
    batch = [c.splitlines(keepends=True) for c in ordinary_cells(cells, 99, mention=True)]
    return timed(lambda: [check(lines) for lines in batch]) / cells * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cells and repetitions")
    args = parser.parse_args()
    cells, rounds, calls = (200, 3, 20) if args.quick else (1000, 5, 100)
    with Sandbox(balance="100000", api_key=KEY, job_seconds=0.1) as sb:
        os.environ.update(RODIN_API_KEY=KEY, RODIN_API_BASE=sb.base_url)
        from IPython.testing.globalipapp import get_ipython

        shell = get_ipython()
        with quiet():
            shell.run_line_magic("load_ext", "rodin_jupyter")
        ratio, total, requests_made = bench_cells(shell, sb, cells, rounds)
        noise, noise_total, _ = bench_cells(shell, sb, cells, rounds, noise=True)
        added = bench_request(shell, sb, calls, rounds)
        check_us = bench_shell_check(1000)
        decision_us = bench_decision(sb, 2000)
    import IPython
    import requests

    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"CPython {platform.python_version()}; IPython {IPython.__version__}; "
          f"requests {requests.__version__}")
    rows = [
        (f"%rodin_guard on / off, {rounds} x {cells:,} cells x {LINES_PER_CELL} lines "
         "(half name Rodin)", f"{ratio:.3f}x ({total:.3f}x), {requests_made} requests",
         "<= 1.02x, 0 requests"),
        ("  the same harness with both sides off (noise floor)",
         f"{noise:.3f}x ({noise_total:.3f}x)", "(info)"),
        ("the guard's per-cell work (shell-escape test), one 30-line cell",
         f"{check_us:.1f} us", "(info)"),
        ("added per billable POST /rodin (requests, sandbox)",
         f"{added['generate']:+.0f} us of {added['generate_off']:.0f} us", "(info)"),
        ("  of which the check's own code (fields, price, reserve, ledger)",
         f"{decision_us:.0f} us", "(info)"),
        ("added per free POST /status (passes the hooks)",
         f"{added['status']:+.0f} us of {added['status_off']:.0f} us", "(info)"),
    ]
    print(f"{'figure':66} {'measured':26} goal")
    for figure, measured, goal in rows:
        print(f"{figure:66} {measured:26} {goal}")

if __name__ == "__main__":
    main()
