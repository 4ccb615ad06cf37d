"""Figure 3: ``import rodin_jupyter`` on top of ``import IPython, requests``, in subprocesses."""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import Params, Result, verdict

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
