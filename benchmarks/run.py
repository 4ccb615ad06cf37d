"""rodin-jupyter performance benchmarks: ``python benchmarks/run.py [--quick] [--json [FILE]]``.

Prints a table (figure, measured, goal, pass/miss) and the machine it ran on. Every ratio
is measured within this one run, as the median over several repetitions, against a local
HTTPS server in a child process (self-signed certificate made here, ``REQUESTS_CA_BUNDLE``
pointed at it). Request counts are counted by that server.

1. a warm ``%rodin_balance`` vs the docs' ``requests.get`` snippet (new connection per call);
   1b. vs a bare kept-alive ``requests.Session.get`` of the same URL (the floor)
2. ``%rodin_guard on`` vs off over 1,000 ordinary 30-line cells, and zero requests
3. ``import rodin_jupyter`` on top of ``import IPython, requests`` (fresh subprocesses)
4. ten ``BalancePanel``s, one refresh: exactly one request
5. a cached read (``%rodin_balance --cached``, ``get_monitor().read(max_age=...)``)
6. ten real kernels with auto-refreshing panels for a minute vs one kernel alone

The figures live in ``bench_http.py`` (1, 5), ``bench_guard.py`` (2), ``bench_import.py``
(3), ``bench_panels.py`` (4, 6, with ``kernels.py``); ``common.py`` has what they share.

``--quick`` runs a few repetitions of everything but figure 6 (the smoke test uses it; its
timings mean little). ``--json`` prints JSON instead of the table; ``--json FILE`` prints
the table and writes the JSON to FILE. ``--profile`` profiles every figure that misses its
goal (and the info rows): cProfile for in-process figures, ``python -X importtime`` for
the import.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_guard import bench_guard  # noqa: E402
from bench_http import bench_balance, bench_cached  # noqa: E402
from bench_import import bench_import  # noqa: E402
from bench_panels import bench_kernels, bench_panels  # noqa: E402
from common import BENCH_KEY, QUICK, Params, machine_info, quiet  # noqa: E402
from https_server import CertificateError, ServerProcess, make_certificate  # noqa: E402

# -- running it all ---------------------------------------------------------------------


def prepare_environment(cert: Path, port_base: str, runtime: Path) -> None:
    os.environ["REQUESTS_CA_BUNDLE"] = str(cert)
    os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)  # shared readings: this run's own
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
        with ServerProcess(cert, key) as server, ServerProcess(cert, key) as alone:
            prepare_environment(cert, server.base_url, workdir / "runtime")
            # the import figure first: it runs in subprocesses, before this process warms up
            results = [bench_import(workdir, params)]
            shell = start_shell()
            results[0:0] = bench_balance(shell, server, params)
            # cached reads before the guard's thousands of cells: with history on, IPython's
            # own run_line_magic slows as user_ns fills with _i1, _i2, ... (not our cost)
            cached = bench_cached(shell, server, params)
            panels = bench_panels(server)
            results[2:2] = bench_guard(shell, server, params)  # after 1 and 1b
            results += [panels, *cached]
            results.append(bench_kernels(server, alone, workdir / "kernels", params))
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
