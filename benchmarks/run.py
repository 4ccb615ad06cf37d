"""rodin-jupyter performance benchmarks: ``python benchmarks/run.py [--quick] [--json [FILE]]``.

Prints a table (figure, measured, goal, pass/miss) and the machine it ran on. Every ratio
is measured within this one run, as the median over several repetitions, against a local
HTTPS server in a child process (self-signed certificate made here, ``REQUESTS_CA_BUNDLE``
pointed at it). Request counts are counted by that server.

1. a warm ``%rodin_balance`` vs the docs' ``requests.get`` snippet (new connection per call)
2. ``%rodin_guard on`` vs off over 1,000 ordinary 30-line cells, and zero requests
3. ``import rodin_jupyter`` on top of ``import IPython, requests`` (fresh subprocesses)
4. ten ``BalancePanel``s, one refresh: exactly one request
5. a cached read (``%rodin_balance --cached``, ``get_monitor().read(max_age=...)``)

``--quick`` runs a few repetitions of everything (the smoke test uses it; its timings mean
little). ``--json`` prints JSON instead of the table; ``--json FILE`` prints the table and
writes the JSON to FILE. ``--profile`` profiles every figure that misses its goal (and the
info rows): cProfile for in-process figures, ``python -X importtime`` for the import.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import importlib.util
import io
import json
import os
import platform
import pstats
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from cells import LINES_PER_CELL, ordinary_cells  # noqa: E402
from https_server import CertificateError, ServerProcess, make_certificate  # noqa: E402

BENCH_KEY = "FAKE-rodin-benchmark-key-not-a-secret"
PANELS = 10


@dataclass(frozen=True)
class Params:
    """How much work each benchmark does."""

    balance_calls: int = 50
    balance_reps: int = 9
    guard_cells: int = 1000
    guard_reps: int = 5
    import_reps: int = 31
    cached_magic_calls: int = 2000
    cached_read_calls: int = 50_000
    cached_reps: int = 7


QUICK = Params(balance_calls=5, balance_reps=2, guard_cells=40, guard_reps=1, import_reps=2,
               cached_magic_calls=100, cached_read_calls=2000, cached_reps=2)


@dataclass
class Result:
    """One row of the table."""

    number: str  # the issue's figure number ("5a", "5b": two rows for one figure)
    id: str
    figure: str
    measured: float | None
    unit: str
    goal: str
    status: str  # "pass", "miss" or "n/a"
    text: str = ""  # how ``measured`` is shown
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def not_available(number: str, id_: str, figure: str, goal: str, why: str) -> Result:
    return Result(number, id_, figure, None, "", goal, "n/a", f"n/a ({why})")


def verdict(ok: bool) -> str:
    return "pass" if ok else "miss"


# -- timing helpers --------------------------------------------------------------------


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Collect first, then keep the collector out of the timed block (as timeit does)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def timed(fn: Callable[[], Any], calls: int) -> float:
    """Seconds for ``calls`` calls of ``fn``."""
    with no_gc():
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return time.perf_counter() - start


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow what magics print while they are switched on and off."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def profile_text(fn: Callable[[], Any], limit: int = 15) -> str:
    """cProfile of one call of ``fn``: rodin_jupyter's functions by cumulative time, then
    the whole process's top functions by their own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats("rodin_jupyter", limit)
    stats.sort_stats("tottime").print_stats(limit)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())


# -- the machine -----------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    versions = {}
    for name in ("rodin-jupyter", "ipython", "requests", "urllib3", "ipywidgets", "traitlets"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "memory": memory,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "openssl": ssl.OPENSSL_VERSION,
        "versions": versions,
    }


# -- 1. warm %rodin_balance vs the docs' snippet ---------------------------------------


def bench_balance(shell: Any, server: ServerProcess, p: Params) -> Result:
    import requests

    base, key = server.base_url, BENCH_KEY

    def snippet() -> Any:  # Hyper3D's docs, verbatim: a new connection every call
        return requests.get(f"{base}/check_balance",
                            headers={"Authorization": f"Bearer {key}"}).json()

    def magic() -> Any:
        return shell.run_line_magic("rodin_balance", "")

    from rodin_jupyter.balance.monitor import get_monitor

    def client() -> Any:  # the package's HTTP layer alone, without IPython or the monitor
        return get_monitor().client().check_balance()

    floor_session = requests.Session()

    def floor() -> Any:  # plain requests with a kept-alive connection: the HTTP floor
        return floor_session.get(f"{base}/check_balance",
                                 headers={"Authorization": f"Bearer {key}"}).json()

    expected = magic()  # warm: the client exists, its connection is open
    if str(expected) != str(snippet()["balance"]) or floor()["balance"] != snippet()["balance"]:
        raise RuntimeError("the magic and the snippet disagree about the balance")
    for fn in (magic, client, snippet, floor):
        timed(fn, 3)

    sides: dict[str, Callable[[], Any]] = {"magic": magic, "client": client,
                                           "snippet": snippet, "floor": floor}
    times: dict[str, list[float]] = {name: [] for name in sides}
    magic_requests = magic_connections = 0
    ratios: list[float] = []
    floor_ratios: list[float] = []
    for rep in range(p.balance_reps):
        names = list(sides)
        names = names[rep % len(names):] + names[:rep % len(names)]  # rotate the order
        per_rep: dict[str, float] = {}
        for name in names:
            before = server.stats()
            per_rep[name] = timed(sides[name], p.balance_calls) / p.balance_calls
            if name == "magic":
                after = server.stats()
                magic_requests += after["requests"] - before["requests"]
                magic_connections += after["connections"] - before["connections"]
        for name, value in per_rep.items():
            times[name].append(value)
        ratios.append(per_rep["magic"] / per_rep["snippet"])
        floor_ratios.append(per_rep["magic"] / per_rep["floor"])
    floor_session.close()

    ratio = statistics.median(ratios)
    ms = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    calls = p.balance_calls * p.balance_reps
    result = Result(
        "1", "balance_vs_snippet", "warm %rodin_balance / docs' requests.get snippet",
        ratio, "x", "<= 0.6x", verdict(ratio <= 0.6), f"{ratio:.2f}x",
        details={"ms_per_call": ms, "calls_per_side": calls, "ratios": ratios,
                 "magic_vs_floor": statistics.median(floor_ratios),
                 "magic_requests": magic_requests, "magic_new_connections": magic_connections},
    )
    result.notes.append(
        f"per call: %rodin_balance {ms['magic']:.2f} ms (RodinClient.check_balance alone "
        f"{ms['client']:.2f} ms), snippet {ms['snippet']:.2f} ms, keep-alive "
        f"requests.Session floor {ms['floor']:.2f} ms "
        f"(magic/floor {result.details['magic_vs_floor']:.2f}x)")
    result.notes.append(f"%rodin_balance: {magic_requests} requests over "
                        f"{magic_connections} new connection(s) for {calls} calls")
    if magic_requests != calls:
        result.status = "miss"
        result.notes.append(f"expected exactly {calls} requests from the magic")
    result.details["profile"] = lambda: profile_text(lambda: timed(magic, p.balance_calls))
    return result


# -- 2. the guard on ordinary cells -----------------------------------------------------


def guard_available(shell: Any) -> str | None:
    """None if ``%rodin_guard`` can be used, else why not."""
    if importlib.util.find_spec("rodin_jupyter.ipython.cell_guard") is None:
        return "guard not available"
    if "rodin_guard" not in shell.magics_manager.magics["line"]:
        return "guard not available: no %rodin_guard after %load_ext"
    return None


def bench_guard(shell: Any, server: ServerProcess, p: Params) -> list[Result]:
    """2: guard on/off over ordinary cells; 2b (info): cells that name Rodin, generate nothing."""
    figure = f"%rodin_guard on / off, {p.guard_cells:,} cells x {LINES_PER_CELL} lines"
    figure_b = "same, cells naming Rodin in a comment (AST check runs)"
    why = guard_available(shell)
    if why is not None:
        return [not_available("2", "guard_cost", figure, "<= 1.10x, 0 requests", why),
                not_available("2b", "guard_cost_mention", figure_b, "info, 0 requests", why)]

    def switch(on: bool) -> None:
        with quiet():
            shell.run_line_magic("rodin_guard", "on" if on else "off")

    failures: list[str] = []

    def run_block(cells: list[str]) -> float:
        with no_gc():
            start = time.perf_counter()
            for cell in cells:
                outcome = shell.run_cell(cell, store_history=True)
                if not outcome.success and len(failures) < 3:
                    failures.append(repr(outcome.error_before_exec or outcome.error_in_exec))
            return time.perf_counter() - start

    salt = 0

    def next_cells(mention: bool) -> list[str]:
        nonlocal salt
        salt += 1
        return ordinary_cells(p.guard_cells, salt, mention)

    for on in (False, True):  # warm both paths
        for mention in (False, True):
            switch(on)
            run_block(ordinary_cells(min(50, p.guard_cells), 10_000 + on, mention))

    # one block = (cells mention Rodin?, guard on?); the order is reversed every repetition
    blocks = [(False, False), (False, True), (True, False), (True, True)]
    times: dict[tuple[bool, bool], list[float]] = {b: [] for b in blocks}
    requests_on = {False: 0, True: 0}
    for rep in range(p.guard_reps):
        for mention, on in (blocks if rep % 2 == 0 else blocks[::-1]):
            cells = next_cells(mention)
            switch(on)
            before = server.stats()["requests"]
            times[mention, on].append(run_block(cells))
            if on:
                requests_on[mention] += server.stats()["requests"] - before
        switch(False)

    results = []
    for mention, id_, number, fig in ((False, "guard_cost", "2", figure),
                                      (True, "guard_cost_mention", "2b", figure_b)):
        ratios = [t_on / t_off for t_on, t_off in zip(times[mention, True],
                                                        times[mention, False], strict=True)]
        ratio = statistics.median(ratios)
        us = {("on" if on else "off"): statistics.median(times[mention, on]) / p.guard_cells
              * 1e6 for on in (False, True)}
        sent = requests_on[mention]
        if mention:
            status = "miss" if sent or failures else "info"
            goal = "info, 0 requests"
        else:
            status = verdict(ratio <= 1.10 and sent == 0 and not failures)
            goal = "<= 1.10x, 0 requests"
        result = Result(number, id_, fig, ratio, "x", goal, status,
                        f"{ratio:.3f}x, {sent} requests",
                        details={"us_per_cell": us, "ratios": ratios, "requests": sent,
                                 "cells_per_side": p.guard_cells * p.guard_reps})
        result.notes.append(f"per cell: guard off {us['off']:.0f} µs, on {us['on']:.0f} µs "
                            f"({us['on'] - us['off']:+.0f} µs); requests with the guard on: "
                            f"{sent}")

        def profile(mention: bool = mention) -> str:
            cells = next_cells(mention)
            switch(True)
            try:
                return profile_text(lambda: run_block(cells))
            finally:
                switch(False)

        result.details["profile"] = profile
        results.append(result)
    if failures:
        results[0].notes.append(f"cells failed: {failures}")
        results[0].status = "miss"
    return results


# -- 3. import cost ---------------------------------------------------------------------

IMPORT_PROBE = r"""
import sys, time, json
t0 = time.perf_counter()
import IPython, requests
t1 = time.perf_counter()
import rodin_jupyter
t2 = time.perf_counter()
out = {"base": t1 - t0, "total": t2 - t0, "widgets_after_import": "ipywidgets" in sys.modules}
if sys.argv[1:] == ["--load-ext"]:
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    t3 = time.perf_counter()
    shell.run_line_magic("load_ext", "rodin_jupyter")
    out["load_ext"] = time.perf_counter() - t3
    out["widgets_after_load_ext"] = "ipywidgets" in sys.modules
    out["magics"] = sorted(n for n in shell.magics_manager.magics["line"] if "rodin" in n)
print(json.dumps(out))
"""


def _probe(args: list[str], workdir: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", IMPORT_PROBE, *args], cwd=workdir,
                          capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"import probe failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def importtime_breakdown(workdir: Path, limit: int = 12) -> str:
    """``python -X importtime``: the modules ``import rodin_jupyter`` adds, slowest first."""
    code = "import IPython, requests\nimport sys\nsys.stderr.write('--MARK--\\n')\n" \
           "import rodin_jupyter\n"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=workdir,
                          capture_output=True, text=True, check=False, timeout=120)
    lines = done.stderr.split("--MARK--\n", 1)[-1].splitlines()
    rows = []
    for line in lines:
        if not line.startswith("import time:") or "|" not in line:
            continue
        self_us, cumulative, name = line[len("import time:"):].split("|", 2)
        with contextlib.suppress(ValueError):
            rows.append((int(cumulative), int(self_us), name.rstrip()))
    rows.sort(reverse=True)
    text = ["cumulative_us  self_us  module"]
    text += [f"{c:>13}  {s:>7}  {n}" for c, s, n in rows[:limit]]
    total = sum(s for _, s, _ in rows)
    text.append(f"{total:>13}  (sum of self times of the {len(rows)} modules it adds)")
    return "\n".join(text)


def bench_import(workdir: Path, p: Params) -> Result:
    first = _probe(["--load-ext"], workdir)  # also warms the page cache
    ratios, extra, base = [], [], []
    widgets_after_import = first["widgets_after_import"]
    for _ in range(p.import_reps):
        probe = _probe([], workdir)
        ratios.append(probe["total"] / probe["base"])
        extra.append(probe["total"] - probe["base"])
        base.append(probe["base"])
        widgets_after_import = widgets_after_import or probe["widgets_after_import"]
    ratio = statistics.median(ratios)
    no_widgets = not widgets_after_import and not first["widgets_after_load_ext"]
    ok = ratio <= 1.15 and no_widgets
    result = Result(
        "3", "import", "import rodin_jupyter on top of IPython + requests", ratio, "x",
        "<= 1.15x, no ipywidgets", verdict(ok),
        f"{ratio:.3f}x, ipywidgets {'not ' if no_widgets else ''}imported",
        details={"ratios": ratios, "base_ms": statistics.median(base) * 1e3,
                 "added_ms": statistics.median(extra) * 1e3,
                 "load_ext_ms": first["load_ext"] * 1e3,
                 "ipywidgets_after_import": widgets_after_import,
                 "ipywidgets_after_load_ext": first["widgets_after_load_ext"],
                 "line_magics": first["magics"], "subprocesses": p.import_reps})
    result.notes.append(
        f"IPython + requests {result.details['base_ms']:.0f} ms, rodin_jupyter adds "
        f"{result.details['added_ms']:.1f} ms; %load_ext {result.details['load_ext_ms']:.1f} ms")
    result.notes.append(
        f"ipywidgets in sys.modules after import: {widgets_after_import}; "
        f"after %load_ext rodin_jupyter: {first['widgets_after_load_ext']}")
    result.details["profile"] = lambda: importtime_breakdown(workdir)
    return result


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


# -- 5. cached reads --------------------------------------------------------------------


def bench_cached(shell: Any, server: ServerProcess, p: Params) -> list[Result]:
    from rodin_jupyter.balance.monitor import get_monitor
    from rodin_jupyter.balance.settings import settings

    monitor = get_monitor()
    monitor.refresh()
    ttl = settings.cache_ttl

    def cached_magic() -> Any:
        return shell.run_line_magic("rodin_balance", "--cached")

    def cached_read() -> Any:
        return monitor.read(max_age=ttl)

    cases: list[tuple[str, str, str, Callable[[], Any], int]] = [
        ("5a", "cached_magic", "%rodin_balance --cached (within TTL)", cached_magic,
         p.cached_magic_calls),
        ("5b", "cached_read", "get_monitor().read(max_age=ttl)", cached_read, p.cached_read_calls),
    ]
    guard_figure = "the guard's balance check within its TTL"
    try:
        from rodin_jupyter.ipython.cell_guard import read_balance_for
    except ImportError:
        guard_case = not_available("5c", "cached_guard", guard_figure, "< 1000 µs, 0 requests",
                                   "guard not available")
    else:
        guard_case = None
        cost, reserve = Decimal("0.5"), Decimal(0)

        def cached_guard() -> Any:  # what %rodin_guard on does with RodinGuard.cache_ttl > 0
            return read_balance_for(cost, reserve, "block", ttl, "1 generation call")

        cases.append(("5c", "cached_guard", guard_figure + " (read_balance_for)",
                      cached_guard, p.cached_read_calls))

    before = server.balance_requests()
    results = []
    for number, id_, figure, fn, calls in cases:
        timed(fn, min(100, calls))
        per_call = [timed(fn, calls) / calls for _ in range(p.cached_reps)]
        us = statistics.median(per_call) * 1e6
        result = Result(number, id_, figure, us, "µs", "< 1000 µs, 0 requests", verdict(us < 1000),
                        f"{us:.1f} µs", details={"us_per_call": [t * 1e6 for t in per_call],
                                                 "calls": calls * p.cached_reps})
        result.details["profile"] = lambda fn=fn, calls=calls: profile_text(
            lambda: timed(fn, calls))
        results.append(result)
    requests_made = server.balance_requests() - before
    for result in results:
        result.details["requests"] = requests_made
        if requests_made:
            result.status = "miss"
            result.notes.append(f"cached reads sent {requests_made} request(s)")
    results[0].notes.append(f"requests during {sum(r.details['calls'] for r in results):,} "
                            f"cached reads: {requests_made}")
    if guard_case is not None:
        results.append(guard_case)
    return results


# -- running it all ---------------------------------------------------------------------


def prepare_environment(cert: Path, port_base: str) -> None:
    os.environ["REQUESTS_CA_BUNDLE"] = str(cert)
    os.environ["RODIN_API_KEY"] = BENCH_KEY
    os.environ["RODIN_API_BASE"] = port_base
    for name in ("HYPER3D_API_KEY", "RODIN_PRICES_FILE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    no_proxy = "127.0.0.1,localhost"
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = ",".join(filter(None, [os.environ.get(name, ""), no_proxy]))


def start_shell() -> Any:
    from IPython.testing.globalipapp import get_ipython

    shell = get_ipython()
    with quiet():
        shell.run_line_magic("load_ext", "rodin_jupyter")
    return shell


def run(params: Params, quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rodin-bench-") as tmp:
        workdir = Path(tmp)
        cert, key = make_certificate(workdir)
        with ServerProcess(cert, key) as server:
            prepare_environment(cert, server.base_url)
            # the import figure first: it runs in subprocesses, before this process warms up
            results = [bench_import(workdir, params)]
            shell = start_shell()
            results.insert(0, bench_balance(shell, server, params))
            # cached reads before the guard's thousands of cells: with history on, IPython's
            # own run_line_magic slows as user_ns fills with _i1, _i2, ... (not our cost)
            cached = bench_cached(shell, server, params)
            panels = bench_panels(server)
            results[1:1] = bench_guard(shell, server, params)
            results += [panels, *cached]
            profiles = {}
            for result in results:
                profiler = result.details.pop("profile", None)
                if result.status in ("miss", "info") and profiler is not None and ARGS.profile:
                    profiles[result.id] = profiler()
            with quiet():
                shell.run_line_magic("unload_ext", "rodin_jupyter")
    return {
        "machine": machine_info(),
        "quick": quick,
        "params": asdict(params),
        "results": [asdict(r) for r in results],
        "profiles": profiles,
        "all_passed": all(r.status != "miss" for r in results),
        "runtime_s": time.perf_counter() - started,
    }


def format_table(report: dict[str, Any]) -> str:
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), "
        f"{m['memory'] or '? GiB'}",
        f"         {m['os']}; {m['python']}; {m['openssl']}",
        f"         {versions}",
        f"Mode: {'--quick (few repetitions: timings are indicative only)' if report['quick'] else 'full'}",  # noqa: E501
        "",
    ]
    rows = [("#", "figure", "measured", "goal", "result")]
    for r in report["results"]:
        rows.append((r["number"], r["figure"], r["text"], r["goal"], r["status"]))
    widths = [max(len(row[c]) for row in rows) for c in range(5)]
    for j, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[c]) for c, cell in enumerate(row)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for r in report["results"]:
        for note in r["notes"]:
            lines.append(f"{r['number']}. {note}")
    for id_, text in report["profiles"].items():
        lines += ["", f"== profile of {id_} ==", text.rstrip()]
    lines += ["", f"Ran in {report['runtime_s']:.1f} s: python benchmarks/run.py"
                  f"{' --quick' if report['quick'] else ''}"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="rodin-jupyter performance benchmarks.")
    parser.add_argument("--quick", action="store_true",
                        help="a few repetitions only (for the smoke test)")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                        help="print JSON instead of the table, or with FILE: table on stdout, "
                             "JSON to FILE")
    parser.add_argument("--profile", action="store_true",
                        help="profile every figure that misses its goal (cProfile, importtime)")
    return parser.parse_args(argv)


ARGS = argparse.Namespace(profile=False)


def main(argv: list[str] | None = None) -> int:
    global ARGS
    ARGS = parse_args(argv)
    try:
        report = run(QUICK if ARGS.quick else Params(), ARGS.quick)
    except CertificateError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    if ARGS.json == "-":
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_table(report))
        if ARGS.json:
            Path(ARGS.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
