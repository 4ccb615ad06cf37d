"""What every benchmark module shares: parameters, the result row, timing helpers, the machine."""

from __future__ import annotations

import contextlib
import cProfile
import gc
import io
import os
import platform
import pstats
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

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
    kernels: int = 10
    kernel_seconds: float = 60.0
    kernel_interval: float = 10.0


QUICK = Params(balance_calls=5, balance_reps=2, guard_cells=40, guard_reps=1, import_reps=2,
               cached_magic_calls=100, cached_read_calls=2000, cached_reps=2, kernels=0)


@dataclass
class Result:
    """One row of the table."""

    number: str  # the figure number ("5a", "5b": two rows for one figure)
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
